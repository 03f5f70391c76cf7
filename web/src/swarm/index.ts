/**
 * Swarm roles built from the model and the net: block servers, the inference client (routing,
 * sessions, failover), expert hosts and the remote MoE layer, span selection and rebalancing.
 *
 *   // a server: blocks 0..1 of a model, announced in the DHT, serving `infer`
 *   const role = new ServerRole({ transport, directory, model: 'tiny', numBlocks: 2, span: { start: 0, end: 1 },
 *     loadSpan: (s, e) => loadSpanBackend(source, backend, 'tiny', s, e), cacheBudgetBytes: 64 << 20 })
 *   await role.start()
 *
 *   // a client: embedding + head here, blocks on the swarm
 *   const client = new InferenceClient({ transport, directory, model: 'tiny', numBlocks: 2, hiddenSize: 64 })
 *   const { tokens } = await swarmGenerate(client, ends, [1, 2, 3], { maxNewTokens: 16 })
 *
 * `transport` is a Libp2pTransport (real peers) or a MemoryNetwork endpoint (seeded, in-process);
 * `directory` a DhtDirectory or a MemoryDirectory. `push: true` lets servers pass activations
 * straight to the next server (CHAIN / PUSH in PROTOCOL.md): fewer one-way messages on a token's
 * path, more messages in all — worth it between distant peers, not on loopback.
 *
 *   // a client that checks servers' outputs on other servers, publishing evidence against liars,
 *   // and avoids the servers others accused once it has recomputed their evidence itself
 *   const board = new EvidenceBoard(swarmDoc)
 *   const client = new InferenceClient({ ..., verify: { rate: 0.05, onEvidence: (a, x) => board.accuse(a, x) } })
 *   await board.avoidChecked(client.bans, model, new EvidenceChecker(clientRecompute(client), { hiddenSize }))
 */
export * from './errors.ts'
export type { BlockRecord, ExpertRecord, ServerState, SwarmDirectory } from './records.ts'
export { MemoryDirectory } from './records.ts'
export { DhtDirectory } from './dht-directory.ts'
export { chooseSpan, chooseBestStart, shouldRebalance, blockThroughputs, type Span, type RebalanceDecision } from './spans.ts'
export { planRoute, routeCostMs, type RouteSegment } from './route.ts'
export { BanList } from './ban-list.ts'
export { BlockServer } from './server/block-server.ts'
export { ServerRole } from './server/role.ts'
export type { SpanBackend, SpanCache, SpanStep } from './server/backend.ts'
export { InferenceClient, type FailoverEvent } from './client/client.ts'
export { InferenceSession } from './client/session.ts'
export { swarmGenerate, type ClientEnds } from './client/generate.ts'
export { VerifyPolicy, type VerifyOptions, type VerifyStats } from './client/verify.ts'
export { VERIFY_TOLERANCE, rowDeviation } from './client/verify-compare.ts'
export { EvidenceBoard, parseAccusation, type Accusation, type SignedAccusation, type EvidenceScan } from './evidence.ts'
export { EvidenceChecker, type Exhibit, type Recompute, type Verdict } from './evidence-check.ts'
export { clientRecompute } from './client/recompute.ts'
export { ExpertHost, type ExpertRunner } from './moe/expert-host.ts'
export { RemoteExperts, assignHosts } from './moe/remote-experts.ts'
export { CoSelectionStats, placeExperts } from './moe/coselection.ts'
export { ModelSpanBackend, ModelExpertRunner, loadSpanBackend, loadExpertRunner, loadClientEnds, modelEnds } from './model-backend.ts'
export type { RpcTransport, RpcHandler } from './transport/index.ts'
export { MemoryNetwork } from './transport/memory.ts'
export { Libp2pTransport } from './transport/libp2p.ts'
export { GGUF_HEADER_PIECE, ggufCuts, ggufShardSource, publishGguf, type GgufShardSourceOptions, type PublishGgufOptions } from './gguf-shards.ts'
