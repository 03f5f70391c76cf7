/**
 * `webswarm generate --bootstrap MULTIADDR --model FILE.gguf|DIR|URL (--tokens IDS | --prompt TEXT)
 *  --max-new-tokens N [--temperature T] [--top-k K] [--top-p P] [--seed S] [--max-gpu-memory SIZE] [--out FILE]
 *  [--verify RATE]`
 *
 * Reads only the config, embedding and head from --model and runs the blocks on the swarm's
 * servers; streams tokens to stdout and writes {"tokens": [...]} to FILE. With --verify, checks
 * servers' outputs on other servers after that fraction of steps (1: every step), joins the
 * swarm doc to publish signed evidence against liars and to avoid servers two others accused.
 */
import { writeFile } from 'node:fs/promises'
import { loadConfig } from '../model/model.ts'
import { loadTokenizer } from '../model/tokenizer.ts'
import { sourceFrom } from '../model/source.ts'
import { InferenceClient } from '../swarm/client/client.ts'
import { swarmGenerate } from '../swarm/client/generate.ts'
import type { VerifyOptions } from '../swarm/client/verify.ts'
import { clientRecompute } from '../swarm/client/recompute.ts'
import { EvidenceBoard } from '../swarm/evidence.ts'
import { EvidenceChecker } from '../swarm/evidence-check.ts'
import { loadClientEnds } from '../swarm/model-backend.ts'
import { UsageError, ids, int, optInt, optNum, required, str, type Flags } from './args.ts'
import { openBackend } from './commands.ts'
import { ModelPlanner, loadProgress, maxGpuMemory, resolveModelArg } from './model-plan.ts'
import { joinSwarm, joinSwarmWithDoc, leaveSwarm, modelId, resolveBootstrap } from './swarm-node.ts'
import { chatFromFlags, printUntilStopText } from './chat.ts'
import { samplingFlags } from './sampling.ts'

export async function swarmGenerateCmd (f: Flags): Promise<number> {
  const maxNew = int(f, 'max-new-tokens', 1)
  const verifyRate = optNum(f, 'verify')
  if (verifyRate !== undefined && !(verifyRate > 0 && verifyRate <= 1)) throw new UsageError(`--verify: the fraction of steps checked must be in (0, 1], got ${verifyRate}`)
  const verifyWindow = optInt(f, 'verify-window', 1)
  if (verifyWindow !== undefined && verifyRate !== undefined) throw new UsageError('give --verify RATE or --verify-window N, not both')
  const verifying = verifyRate !== undefined || verifyWindow !== undefined
  const where = await resolveModelArg(required(f, 'model'))
  const source = sourceFrom(where)
  const log = (l: string): void => { if (f.quiet !== true) process.stderr.write(`${l}\n`) }
  const budget = maxGpuMemory(f)
  // Read before the device opens: a --model URL that does not answer fails at once, not after WebGPU's start-up.
  const planned = await loadConfig(source)
  // The client holds only the embedding and the head (no blocks: no KV cache).
  if (budget !== undefined) await new ModelPlanner(source, planned, budget, log).check({ blocks: { start: 0, end: 0 }, embedding: true, head: true }, { context: 1, stepTokens: 1 })
  // The relays too: one that does not answer fails before the device opens.
  const bootstrap = await resolveBootstrap(f)
  const be = await openBackend(f)
  const { config, ends } = await loadClientEnds(source, be, { config: planned, onProgress: loadProgress(f, `loading embedding + head of ${where}`) })
  const tokenizer = await loadTokenizer(source, config.vocabSize)
  let prompt: number[]
  let stopTokens: number[] | undefined // --chat: the end-of-turn ids too
  let stopStrings: readonly string[] = [] // --chat without a chat template: the transcript's next turn
  if (f.tokens !== undefined) prompt = ids(f, 'tokens')
  else if (f.chat !== undefined) ({ prompt, stopTokens, stopStrings } = chatFromFlags(f, tokenizer, config.eosTokenIds))
  else if (f.prompt !== undefined) {
    if (tokenizer === undefined) throw new UsageError('--prompt needs a tokenizer; use --tokens')
    prompt = tokenizer.encode(required(f, 'prompt'))
  } else throw new UsageError('give --tokens IDS, --prompt TEXT or --chat TEXT')
  const shape = { numBlocks: config.numLayers, numExperts: config.numExperts }
  // Verifying joins the swarm doc: evidence goes there, and others' evidence is read from it.
  const peer = !verifying ? await joinSwarm(bootstrap, shape, { log }) : await joinSwarmWithDoc(bootstrap, shape, log)
  try {
    const model = modelId(where, str(f, 'model-id'))
    const board = peer.swarm === undefined ? undefined : new EvidenceBoard(peer.swarm.doc)
    const verify: VerifyOptions | undefined = !verifying ? undefined : { rate: verifyRate, window: verifyWindow, onEvidence: (a, exhibit) => board?.accuse(a, exhibit) }
    const client = new InferenceClient({ transport: peer.transport, directory: peer.directory, model, numBlocks: config.numLayers, hiddenSize: config.hiddenSize, log, verify })
    if (board !== undefined) {
      // Others' accusations count only once this client has recomputed them (swarm/evidence-check.ts).
      const scan = await board.avoidChecked(client.bans, model, new EvidenceChecker(clientRecompute(client), { hiddenSize: config.hiddenSize }))
      if (scan.avoided.length > 0) log(`verify: avoiding ${scan.avoided.join(', ')} (accusations in the swarm doc, recomputed here)`)
      const { confirmed: _, ...ignored } = scan.verdicts
      if (Object.values(ignored).some(n => n > 0) || scan.forged + scan.malformed > 0) log(`verify: accusations ignored: ${JSON.stringify({ ...ignored, badSignature: scan.forged, malformed: scan.malformed })}`)
    }
    const tokens = await printUntilStopText(stopStrings, f.tokens === undefined ? tokenizer?.decoder() : undefined, async onToken => (await swarmGenerate(client, ends, prompt, {
      maxNewTokens: maxNew,
      ...samplingFlags(f),
      stopTokens,
      onSession: s => log(`route: ${s.route.map(x => `${x.peer}[${x.start},${x.end})`).join(' → ')}`),
      onToken
    })).tokens)
    process.stdout.write('\n')
    const st = client.verify?.stats
    if (st !== undefined) log(`verify: ${st.checks} checks, ${st.positionsCompared} positions compared, ${st.mismatches} mismatches, liars: ${st.liars.join(', ') || 'none'}, ${st.skipped} skipped, ${st.undecided} undecided`)
    const out = str(f, 'out')
    if (out !== undefined) await writeFile(out, JSON.stringify({ tokens }) + '\n')
  } finally {
    await leaveSwarm(peer)
  }
  return 0
}
