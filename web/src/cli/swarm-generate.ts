/**
 * `webswarm generate --bootstrap MULTIADDR --model FILE.gguf|DIR|URL (--tokens IDS | --prompt TEXT)
 *  --max-new-tokens N [--temperature T] [--top-k K] [--top-p P] [--seed S] [--max-gpu-memory SIZE] [--out FILE]`
 *
 * Reads only the config, embedding and head from --model and runs the blocks on the swarm's
 * servers; streams tokens to stdout and writes {"tokens": [...]} to FILE.
 */
import { writeFile } from 'node:fs/promises'
import { loadConfig } from '../model/model.ts'
import { loadTokenizer } from '../model/tokenizer.ts'
import { sourceFrom } from '../model/source.ts'
import { InferenceClient } from '../swarm/client/client.ts'
import { swarmGenerate } from '../swarm/client/generate.ts'
import { loadClientEnds } from '../swarm/model-backend.ts'
import { UsageError, ids, int, num, required, str, type Flags } from './args.ts'
import { openBackend } from './commands.ts'
import { ModelPlanner, loadProgress, maxGpuMemory, resolveModelArg } from './model-plan.ts'
import { joinSwarm, leaveSwarm, modelId, resolveBootstrap } from './swarm-node.ts'
import { chatFromFlags } from './chat.ts'

export async function swarmGenerateCmd (f: Flags): Promise<number> {
  if (f['max-new-tokens'] === undefined) throw new UsageError('--max-new-tokens is required')
  const maxNew = int(f, 'max-new-tokens', 1, 1)
  const where = await resolveModelArg(required(f, 'model'))
  const source = sourceFrom(where)
  const log = (l: string): void => { if (f.quiet !== true) process.stderr.write(`${l}\n`) }
  const budget = maxGpuMemory(f)
  const planned = budget === undefined ? undefined : await loadConfig(source)
  // The client holds only the embedding and the head (no blocks: no KV cache).
  if (planned !== undefined) await new ModelPlanner(source, planned, budget, log).check({ blocks: { start: 0, end: 0 }, embedding: true, head: true }, { context: 1, stepTokens: 1 })
  const be = await openBackend(f)
  const { config, ends } = await loadClientEnds(source, be, { config: planned, onProgress: loadProgress(f, `loading embedding + head of ${where}`) })
  const tokenizer = await loadTokenizer(source, config.vocabSize)
  let prompt: number[]
  let stopTokens: number[] | undefined // --chat: the end-of-turn ids too
  if (f.tokens !== undefined) prompt = ids(f, 'tokens')
  else if (f.chat !== undefined) ({ prompt, stopTokens } = chatFromFlags(f, tokenizer, config.eosTokenIds))
  else if (f.prompt !== undefined) {
    if (tokenizer === undefined) throw new UsageError('--prompt needs a tokenizer; use --tokens')
    prompt = tokenizer.encode(required(f, 'prompt'))
  } else throw new UsageError('give --tokens IDS, --prompt TEXT or --chat TEXT')
  const peer = await joinSwarm(await resolveBootstrap(f), { numBlocks: config.numLayers, numExperts: config.numExperts })
  try {
    const client = new InferenceClient({ transport: peer.transport, directory: peer.directory, model: modelId(where, str(f, 'model-id')), numBlocks: config.numLayers, hiddenSize: config.hiddenSize, log })
    const decode = tokenizer?.decoder()
    let first = true
    const r = await swarmGenerate(client, ends, prompt, {
      maxNewTokens: maxNew,
      temperature: num(f, 'temperature', 0),
      topK: int(f, 'top-k', 0),
      topP: num(f, 'top-p', 1),
      seed: int(f, 'seed', 0),
      stopTokens,
      onSession: s => log(`route: ${s.route.map(x => `${x.peer}[${x.start},${x.end})`).join(' → ')}`),
      onToken: id => {
        if (decode !== undefined && f.tokens === undefined) process.stdout.write(decode(id))
        else { process.stdout.write(first ? String(id) : `,${id}`); first = false }
      }
    })
    process.stdout.write('\n')
    const out = str(f, 'out')
    if (out !== undefined) await writeFile(out, JSON.stringify({ tokens: r.tokens }) + '\n')
  } finally {
    await leaveSwarm(peer)
  }
  return 0
}
