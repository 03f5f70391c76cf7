/**
 * The OpenAI-compatible API (`/v1`): a client of the swarm, not a part of the relay. server.ts
 * answers HTTP over a Generator; swarm-generator.ts is the Generator that runs the blocks on the
 * swarm's servers. The relay (`npm start`) and `webswarm api` mount it.
 *
 * ```ts
 * const model = await loadSwarmModel({ transport, directory, id: 'byte-llama', source, backend: cpu })
 * const api = new ApiServer({ generator: new SwarmGenerator([model]), apiKeys: ['sk-local'] })
 * http.createServer((req, res) => { void api.handle(req, res) }).listen(8080)
 * ```
 */
export { ApiServer, API_PREFIX, DEFAULT_MAX_TOKENS, MAX_BODY_BYTES, type ApiServerOptions } from './server.ts'
export { SwarmGenerator, loadSwarmModel, type SwarmModel, type LoadSwarmModelOptions } from './swarm-generator.ts'
export type { ApiModel, Generator, GenerateParams, GenerateResult, FinishReason } from './generator.ts'
export { RateLimiter, type RateLimitOptions } from './rate-limit.ts'
export * from './errors.ts'
