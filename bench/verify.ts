/**
 * `npm run bench:verify` — what inference verification (web/src/swarm/client/verify.ts) costs
 * and what it catches, on the seeded in-process network (MemoryNetwork: no network time, so the
 * figures are the verifier's compute and messages, not latency).
 *
 * 1. Overhead: greedy generation through a server holding the whole default-shape model
 *    (models/byte-llama.config.json, seeded random weights) with two more servers for the second
 *    and third opinions, all on one device: decode tokens/s with verification off, at the default
 *    rate (VERIFY_RATE) and in strict mode (rate 1), trials interleaved; `verify_overhead` =
 *    1 − tok/s(verified) / tok/s(off) (medians), and `recompute_ratio` = positions the verifiers
 *    recomputed / positions served.
 * 2. Detection (fake blocks, fast): one server among honest ones lies on 1 %, 10 % or 100 % of
 *    its steps, by a small (×1.03, relative L2 0.03) or large (×1.5) scale, over `--steps`
 *    (200) steps at the default rate; per case, the runs in which it lied at all, those in which
 *    it was caught, and whether every run's tokens equal the honest run.
 * 3. False positives (`--honest N`, default 2000 positions): honest servers on the CPU twins with
 *    an f32 KV cache and with an f16 KV cache verify each other in strict mode on tiny-mixtral.
 *
 * Flags: --device cpu|webgpu (cpu) --prompt-len N (16) --tokens N (24) --trials N (5) --runs N (10)
 *        --steps N (200) --honest N (2000)
 *        --only honest|detection: that part alone, into bench/results/verify-<part>.json
 * Writes bench/results/verify.json (headline figures) and verify.meta.json (every trial, load).
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import type { Backend } from '../web/src/gpu/backend.ts'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { tidy } from '../web/src/gpu/tensor.ts'
import { parseConfig } from '../web/src/model/config.ts'
import { initHostWeights, loadBlocks, type KvCache } from '../web/src/model/model.ts'
import { partParams, wholeModel } from '../web/src/model/params.ts'
import { encodeSafetensors } from '../web/src/model/safetensors.ts'
import { sourceFrom, type ModelSource } from '../web/src/model/source.ts'
import { toHfTensors } from '../web/src/model/weights.ts'
import { InferenceClient } from '../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../web/src/swarm/client/generate.ts'
import type { VerifyOptions } from '../web/src/swarm/client/verify.ts'
import { VERIFY_RATE } from '../web/src/swarm/constants.ts'
import { loadClientEnds, loadSpanBackend } from '../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../web/src/swarm/records.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../web/src/swarm/server/backend.ts'
import { ServerRole } from '../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../web/src/swarm/transport/memory.ts'
import { BLOCKS, C, FakeSpanBackend } from '../test/swarm/fakes.ts'
import { hashedEnds, hashedGreedy, LyingBackend, type LieKind } from '../test/swarm/verify-hostile.ts'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const PROMPT_LEN = Number(arg('prompt-len') ?? 16)
const TOKENS = Number(arg('tokens') ?? 24)
const TRIALS = Number(arg('trials') ?? 5)
const RUNS = Number(arg('runs') ?? 10)
const STEPS = Number(arg('steps') ?? 200)
const HONEST = Number(arg('honest') ?? 2000)
const DEVICE = arg('device') ?? 'cpu'
/** Far beyond any step here: no timeout or hedge may fire on a loaded machine. */
const RELAXED_MS = 600_000

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const load = (): string => os.loadavg().map(x => x.toFixed(2)).join(' ')

interface Server { peer: string, start: number, end: number, rtt: number, backend: (s: number, e: number) => Promise<SpanBackend> }

/** Servers on a fresh seeded network and a client with `verify`; RTTs pinned so the route is the lowest. */
async function swarm (seed: number, model: string, numBlocks: number, hidden: number, servers: Server[], verify?: VerifyOptions): Promise<{ client: InferenceClient, stop: () => Promise<void> }> {
  const net = new MemoryNetwork({ seed })
  const dir = new MemoryDirectory()
  const roles: ServerRole[] = []
  for (const s of servers) {
    const role = new ServerRole({ transport: net.endpoint(s.peer), directory: dir, model, numBlocks, span: { start: s.start, end: s.end }, loadSpan: s.backend, cacheBudgetBytes: 1 << 26, throughput: 100 })
    await role.start()
    roles.push(role)
  }
  const client = new InferenceClient({ transport: net.endpoint('client'), directory: dir, model, numBlocks, hiddenSize: hidden, timeoutMs: RELAXED_MS, hedgeFloorMs: RELAXED_MS, verify })
  for (const s of servers) client.rttMs.set(s.peer, s.rtt)
  return { client, stop: async () => { for (const r of roles) await r.stop() } }
}

// ---- 1. overhead on the default shape ----
async function overhead (): Promise<Record<string, unknown>> {
  let be: Backend = cpu
  let deviceName = 'cpu (CPU twins)'
  if (DEVICE === 'webgpu') {
    const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
    const gpu = await GpuBackend.create()
    be = gpu
    deviceName = `webgpu: ${gpu.info.description}`
  }
  const hf = JSON.parse(readFileSync('models/byte-llama.config.json', 'utf8')) as Record<string, unknown>
  const c = parseConfig(hf)
  const dir = mkdtempSync(join(os.tmpdir(), 'ws-bench-verify-'))
  const specs = partParams(c, wholeModel(c))
  const host = initHostWeights(specs, 1)
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hf))
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(toHfTensors(specs, new Map([...host].map(([k, v]) => [k, v.data])))))
  const source = sourceFrom(dir)
  const { ends } = await loadClientEnds(source, be) as { ends: ClientEnds }
  const L = c.numLayers
  const full = (peer: string, rtt: number): Server => ({ peer, start: 0, end: L, rtt, backend: async (s, e) => await loadSpanBackend(source, be, 'bench', s, e) })
  const prompt = Array.from({ length: PROMPT_LEN }, (_, i) => (i * 37 + 11) % c.vocabSize)
  const modes: Array<[string, VerifyOptions | undefined]> = [['off', undefined], [`rate ${VERIFY_RATE}`, { rate: VERIFY_RATE, seed: 1 }], ['strict', { rate: 1 }]]
  const tps = new Map<string, number[]>(modes.map(([m]) => [m, []]))
  const recompute = new Map<string, number[]>(modes.map(([m]) => [m, []]))
  // A warm-up run (JIT, first loads) that is not counted; its tokens are the reference.
  const warm = await swarm(0, 'bench', L, c.hiddenSize, [full('a', 1), full('b', 2), full('c', 3)])
  const ref = (await swarmGenerate(warm.client, ends, prompt, { maxNewTokens: TOKENS })).tokens
  await warm.stop()
  for (let t = 0; t < TRIALS; t++) {
    for (const [name, verify] of modes) {
      const { client, stop } = await swarm(t + 1, 'bench', L, c.hiddenSize, [full('a', 1), full('b', 2), full('c', 3)], verify === undefined ? undefined : { ...verify, seed: (verify.seed ?? 1) + t })
      const r = await swarmGenerate(client, ends, prompt, { maxNewTokens: TOKENS })
      await stop()
      if (r.tokens.join() !== ref.join()) throw new Error(`${name}: tokens differ from the unverified run`)
      const decodeS = r.decodeMs.reduce((a, b) => a + b, 0) / 1000
      tps.get(name)!.push(r.decodeMs.length / decodeS)
      const served = PROMPT_LEN + TOKENS - 1
      recompute.get(name)!.push((client.verify?.stats.positionsRecomputed ?? 0) / served)
      console.log(`trial ${t + 1} ${name}: decode ${(r.decodeMs.length / decodeS).toFixed(2)} tok/s, recomputed ${((client.verify?.stats.positionsRecomputed ?? 0) / served).toFixed(2)} × the positions served, checks ${client.verify?.stats.checks ?? 0} (load ${load()})`)
    }
  }
  const med = Object.fromEntries([...tps].map(([k, v]) => [k, median(v)]))
  const off = med.off
  return {
    device: deviceName,
    model: 'models/byte-llama.config.json, seeded random weights; 3 servers each holding all blocks (route, second, third opinion)',
    prompt_len: PROMPT_LEN,
    tokens: TOKENS,
    decode_tps: med,
    verify_overhead: Object.fromEntries(modes.slice(1).map(([m]) => [m, 1 - med[m] / off])),
    recompute_ratio: Object.fromEntries(modes.slice(1).map(([m]) => [m, median(recompute.get(m)!)])),
    trials: Object.fromEntries([...tps])
  }
}

// ---- 2. detection with fake blocks ----
async function detection (): Promise<Record<string, unknown>> {
  const prompt = [3, 1, 4, 1, 5, 9, 2, 6]
  const n = STEPS - 1 // the prefill is one step
  const ref = await hashedGreedy(prompt, n)
  const out: Record<string, unknown> = {}
  const cases: Array<[number, LieKind]> = [[0.01, 'small-scale'], [0.1, 'small-scale'], [1, 'small-scale'], [0.01, 'scale'], [0.1, 'scale'], [1, 'scale']]
  for (const [p, kind] of cases) {
    let lied = 0
    let caught = 0
    let outvoted = 0
    let equal = 0
    for (let run = 0; run < RUNS; run++) {
      let liar: LyingBackend | undefined
      const fake = (peer: string, start: number, end: number, rtt: number, lies = false): Server => ({
        peer, start, end, rtt,
        backend: async (s, e) => {
          const honest = new FakeSpanBackend('fake', s, e)
          if (!lies) return honest
          liar = new LyingBackend(honest, kind, { p, seed: 100 + run })
          return liar
        }
      })
      const { client, stop } = await swarm(run + 1, 'fake', BLOCKS, C, [
        fake('s1', 0, 2, 1), fake('x', 2, 4, 0.1, true), fake('s3', 4, 6, 1), fake('v1', 2, 4, 2), fake('v2', 0, 6, 20)
      ], { rate: VERIFY_RATE, seed: 1000 + run })
      const r = await swarmGenerate(client, hashedEnds, prompt, { maxNewTokens: n })
      await stop()
      const st = client.verify!.stats
      if (liar!.lies > 0) lied++
      // Caught: banned (its second outvoted mismatch); outvoted: at least one lie found and rewound.
      if (st.liars.includes('x')) caught++
      if (st.strikes > 0 || st.liars.includes('x')) outvoted++
      if (r.tokens.join() === ref.join()) equal++
    }
    const key = `lies ${p * 100} % ${kind === 'scale' ? 'large (×1.5)' : 'small (×1.03)'}`
    out[key] = { runs: RUNS, runs_with_lies: lied, outvoted, caught, detect_rate: lied === 0 ? null : caught / lied, tokens_equal_honest: equal }
    console.log(`${key}: lied in ${lied}/${RUNS} runs, outvoted (a lie rewound) in ${outvoted}, banned in ${caught}, tokens equal the honest run in ${equal} (load ${load()})`)
  }
  return { steps: STEPS, rate: VERIFY_RATE, cases: out }
}

// ---- 3. false positives among honest servers of different numerics ----
class F16KvBackend implements SpanBackend {
  constructor (readonly model: string, readonly span: Awaited<ReturnType<typeof loadBlocks>>) {}
  get start (): number { return this.span.range.start }
  get end (): number { return this.span.range.end }
  get hiddenSize (): number { return this.span.config.hiddenSize }
  get cacheBytesPerToken (): number { return 2 * this.span.config.numKvHeads * this.span.config.headDim * 2 }
  createCache (capacity: number, start: number, end: number): SpanCache & { kv: KvCache } {
    const kv = this.span.newCache(capacity, 'f16')
    return { kv, start, end, get length () { return kv.length }, get capacity () { return kv.capacity }, dispose: () => kv.dispose() }
  }

  async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    const out: Float32Array[] = []
    for (const s of steps) {
      const y = tidy(() => this.span.forward(this.span.backend.tensor(s.hidden, [s.tokens, this.hiddenSize]), (s.cache as SpanCache & { kv: KvCache }).kv))
      out.push(await y.readF32())
      y.dispose()
    }
    return out
  }

  dispose (): void {}
}

async function falsePositives (): Promise<Record<string, unknown>> {
  const source: ModelSource = sourceFrom('test/fixtures/tiny-mixtral')
  const ref = JSON.parse(readFileSync('test/fixtures/tiny-mixtral/reference.json', 'utf8')) as { prompt: number[] }
  const { ends, config } = await loadClientEnds(source, cpu)
  let compared = 0
  let mismatches = 0
  let accused = 0
  let worst = 0
  for (let run = 0; compared < HONEST; run++) {
    // Alternate which numerics serve the route and which verify it.
    const f32 = (peer: string, rtt: number): Server => ({ peer, start: 0, end: 2, rtt, backend: async (s, e) => await loadSpanBackend(source, cpu, 'tiny-mixtral', s, e) })
    const f16 = (peer: string, rtt: number): Server => ({ peer, start: 0, end: 2, rtt, backend: async (s, e) => new F16KvBackend('tiny-mixtral', await loadBlocks(source, cpu, { start: s, end: e })) })
    const servers = run % 2 === 0 ? [f32('a', 1), f16('b', 2), f32('c', 3)] : [f16('a', 1), f32('b', 2), f16('c', 3)]
    const { client, stop } = await swarm(run + 1, 'tiny-mixtral', 2, config.hiddenSize, servers, { rate: 1 })
    const prompt = ref.prompt.map((t, i) => (t + run * 7 + i) % config.vocabSize)
    await swarmGenerate(client, ends, prompt, { maxNewTokens: 100 })
    await stop()
    const st = client.verify!.stats
    compared += st.positionsCompared
    mismatches += st.mismatches
    accused += st.liars.length
    worst = Math.max(worst, st.maxAgreeingDeviation)
  }
  console.log(`honest: ${compared} positions compared (f32 KV vs f16 KV), ${mismatches} mismatches, ${accused} accused, largest deviation ${worst.toExponential(2)} (load ${load()})`)
  return { model: 'tiny-mixtral fixture, CPU twins, f32 KV vs f16 KV, strict mode', positions_compared: compared, mismatches, false_positives: accused, max_honest_deviation: worst }
}

const t0 = Date.now()
const loadBefore = load()
const only = arg('only')
if (only === 'honest' || only === 'detection') {
  const part = only === 'honest' ? await falsePositives() : await detection()
  mkdirSync('bench/results', { recursive: true })
  writeFileSync(`bench/results/verify-${only}.json`, JSON.stringify({ date: new Date().toISOString(), load_before: loadBefore, load_after: load(), seconds: (Date.now() - t0) / 1000, ...part }, null, 2) + '\n')
  process.exit(0)
}
const results = { overhead: await overhead(), detection: await detection(), honest: await falsePositives() }
mkdirSync('bench/results', { recursive: true })
const o = results.overhead as { verify_overhead: Record<string, number>, recompute_ratio: Record<string, number>, decode_tps: Record<string, number> }
writeFileSync('bench/results/verify.json', JSON.stringify({ decode_tps: o.decode_tps, verify_overhead: o.verify_overhead, recompute_ratio: o.recompute_ratio, detection: (results.detection as { cases: unknown }).cases, false_positives: (results.honest as { false_positives: number }).false_positives, honest_positions: (results.honest as { positions_compared: number }).positions_compared }, null, 2) + '\n')
writeFileSync('bench/results/verify.meta.json', JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, load_before: loadBefore, load_after: load(), seconds: (Date.now() - t0) / 1000, ...results }, null, 2) + '\n')
console.log(JSON.stringify(o, null, 2))
process.exit(0)
