/**
 * The inference-verification measurements bench:verify and bench:trust share, on the seeded
 * in-process network (MemoryNetwork: no network time, so the figures are compute and messages,
 * not latency). Every server and the client run on one JS thread, so a verifier's work adds to
 * the wall time one for one: that is what `verify_overhead` measures.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
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
import { loadClientEnds, loadSpanBackend } from '../web/src/swarm/model-backend.ts'
import { MemoryDirectory } from '../web/src/swarm/records.ts'
import type { SpanBackend, SpanCache, SpanStep } from '../web/src/swarm/server/backend.ts'
import { ServerRole } from '../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../web/src/swarm/transport/memory.ts'
import { BLOCKS, C, FakeSpanBackend } from '../test/swarm/fakes.ts'
import { hashedEnds, hashedGreedy, LyingBackend, OtherFakeModel, type LieKind, type LieWhen } from '../test/swarm/verify-hostile.ts'

/** Far beyond any step here: no timeout or hedge may fire on a loaded machine. */
const RELAXED_MS = 600_000

export function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
export const load = (): string => os.loadavg().map(x => x.toFixed(2)).join(' ')

/** A verification mode by name: undefined = off. */
export type Mode = [name: string, verify: VerifyOptions | undefined]

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

export interface OverheadOptions { device: string, promptLen: number, tokens: number, trials: number, modes: Mode[] }

/**
 * Greedy generation through a server holding the whole default-shape model
 * (models/byte-llama.config.json, seeded random weights) with two more servers for the second and
 * third opinions, per mode, trials interleaved. Per mode (medians): `gen_ms`, the whole
 * generation's wall time (prefill, decode, the final check); `verify_overhead` = gen_ms / gen_ms
 * off − 1, the verifiers' extra compute over the honest compute (one thread runs both);
 * `decode_slowdown` = 1 − decode tok/s / decode tok/s off (bench:verify's earlier figure, which
 * leaves out the final check); `recompute_ratio` = positions the verifiers recomputed / served;
 * `answer_bytes_per_check` = bytes of second-opinion answers compared per check (full rows or
 * commitments).
 */
export async function overhead (o: OverheadOptions): Promise<Record<string, unknown>> {
  let be: Backend = cpu
  let deviceName = 'cpu (CPU twins)'
  if (o.device === 'webgpu') {
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
  const prompt = Array.from({ length: o.promptLen }, (_, i) => (i * 37 + 11) % c.vocabSize)
  const names = o.modes.map(([m]) => m)
  const per = (): Map<string, number[]> => new Map(names.map(m => [m, []]))
  const tps = per()
  const gen = per()
  const cpuMs = per()
  const recompute = per()
  const answerBytes = per()
  // A warm-up run (JIT, first loads) that is not counted; its tokens are the reference.
  const warm = await swarm(0, 'bench', L, c.hiddenSize, [full('a', 1), full('b', 2), full('c', 3)])
  const ref = (await swarmGenerate(warm.client, ends, prompt, { maxNewTokens: o.tokens })).tokens
  await warm.stop()
  const served = o.promptLen + o.tokens - 1
  for (let t = 0; t < o.trials; t++) {
    for (const [name, verify] of o.modes) {
      const { client, stop } = await swarm(t + 1, 'bench', L, c.hiddenSize, [full('a', 1), full('b', 2), full('c', 3)], verify === undefined ? undefined : { ...verify, seed: (verify.seed ?? 1) + t })
      const t0 = performance.now()
      const c0 = process.cpuUsage()
      const r = await swarmGenerate(client, ends, prompt, { maxNewTokens: o.tokens })
      const ms = performance.now() - t0
      const c1 = process.cpuUsage(c0)
      cpuMs.get(name)!.push((c1.user + c1.system) / 1000)
      await stop()
      if (r.tokens.join() !== ref.join()) throw new Error(`${name}: tokens differ from the unverified run`)
      const decode = r.decodeMs.length / (r.decodeMs.reduce((a, b) => a + b, 0) / 1000)
      const re = (client.verify?.stats.positionsRecomputed ?? 0) / served
      tps.get(name)!.push(decode)
      gen.get(name)!.push(ms)
      recompute.get(name)!.push(re)
      const st = client.verify?.stats
      if (st !== undefined && st.checks > 0) answerBytes.get(name)!.push(st.answerBytes / st.checks)
      console.log(`trial ${t + 1} ${name}: generation ${ms.toFixed(0)} ms, decode ${decode.toFixed(1)} tok/s, recomputed ${re.toFixed(2)} × the positions served, checks ${client.verify?.stats.checks ?? 0} (load ${load()})`)
    }
  }
  const med = (m: Map<string, number[]>): Record<string, number> => Object.fromEntries([...m].map(([k, v]) => [k, median(v)]))
  const tpsMed = med(tps)
  const genMed = med(gen)
  const cpuMed = med(cpuMs)
  const [off, ...verified] = names
  return {
    device: deviceName,
    model: 'models/byte-llama.config.json, seeded random weights; 3 servers each holding all blocks (route, second, third opinion), one process',
    prompt_len: o.promptLen,
    tokens: o.tokens,
    gen_ms: genMed,
    decode_tps: tpsMed,
    verify_overhead: Object.fromEntries(verified.map(m => [m, genMed[m] / genMed[off] - 1])),
    // The process's CPU time (user + system) per generation instead of wall time: the same ratio
    // without the in-process network's idle timers, and moved far less by other processes' load.
    cpu_ms: cpuMed,
    cpu_overhead: Object.fromEntries(verified.map(m => [m, cpuMed[m] / cpuMed[off] - 1])),
    decode_slowdown: Object.fromEntries(verified.map(m => [m, 1 - tpsMed[m] / tpsMed[off]])),
    recompute_ratio: Object.fromEntries(verified.map(m => [m, median(recompute.get(m)!)])),
    // Bytes of the second opinions' answers the client compared, per check (full rows, or commitments: verify.commit).
    answer_bytes_per_check: Object.fromEntries(verified.map(m => [m, median(answerBytes.get(m)!)])),
    trials: { gen_ms: Object.fromEntries(gen), cpu_ms: Object.fromEntries(cpuMs), decode_tps: Object.fromEntries(tps) }
  }
}

/** A lying server: what it does, on which of its steps. */
export interface LieCase { name: string, kind: LieKind, when: LieWhen }

export interface DetectionOptions { steps: number, runs: number, modes: Mode[], cases: LieCase[] }

/**
 * Fake blocks (fast): one server among honest ones lies as each case says over `steps` steps
 * (the prefill is one), per verification mode; per case, the runs in which it lied at all, those
 * in which a lie was outvoted (found by a third opinion and rewound: `detect_rate`), those in
 * which it was banned (its second outvoted lie: `ban_rate`), and whether every run's tokens equal
 * the honest run.
 */
export async function detection (o: DetectionOptions): Promise<Record<string, unknown>> {
  const prompt = [3, 1, 4, 1, 5, 9, 2, 6]
  const n = o.steps - 1
  const ref = await hashedGreedy(prompt, n)
  const out: Record<string, Record<string, unknown>> = {}
  for (const [mode, verify] of o.modes) {
    out[mode] = {}
    for (const c of o.cases) {
      let lied = 0
      let caught = 0
      let outvoted = 0
      let equal = 0
      const deviations: number[] = []
      for (let run = 0; run < o.runs; run++) {
        let liar: LyingBackend | undefined
        const fake = (peer: string, start: number, end: number, rtt: number, lies = false): Server => ({
          peer, start, end, rtt,
          backend: async (s, e) => {
            const honest = new FakeSpanBackend('fake', s, e)
            if (!lies) return honest
            liar = new LyingBackend(honest, c.kind, { ...c.when, seed: 100 + run }, c.kind === 'model' ? new OtherFakeModel('fake', s, e) : undefined)
            return liar
          }
        })
        const { client, stop } = await swarm(run + 1, 'fake', BLOCKS, C, [
          fake('s1', 0, 2, 1), fake('x', 2, 4, 0.1, true), fake('s3', 4, 6, 1), fake('v1', 2, 4, 2), fake('v2', 0, 6, 20)
        ], { ...verify, seed: 1000 + run })
        const r = await swarmGenerate(client, hashedEnds, prompt, { maxNewTokens: n })
        await stop()
        const st = client.verify!.stats
        if (liar!.lies > 0) lied++
        if (st.liars.includes('x')) caught++
        if (st.strikes > 0 || st.liars.includes('x')) outvoted++
        if (r.tokens.join() === ref.join()) equal++
        deviations.push(...st.outvotedDeviations)
      }
      const range = deviations.length === 0 ? null : [Math.min(...deviations), Math.max(...deviations)]
      out[mode][c.name] = { runs: o.runs, runs_with_lies: lied, outvoted, banned: caught, detect_rate: lied === 0 ? null : outvoted / lied, ban_rate: lied === 0 ? null : caught / lied, tokens_equal_honest: equal, outvoted_deviation_range: range }
      console.log(`${mode}, ${c.name}: lied in ${lied}/${o.runs} runs, outvoted (a lie found and rewound) in ${outvoted}, banned in ${caught}, tokens equal the honest run in ${equal} (load ${load()})`)
    }
  }
  return { steps: o.steps, cases: out }
}

/** A server on the CPU twins whose KV cache is f16: honest, but rounding otherwise than f32. */
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

/**
 * False positives: honest servers on the CPU twins with an f32 KV cache and with an f16 KV cache
 * (alternating which serves the route) verify each other on tiny-mixtral with `verify`, 100-token
 * generations, until `positions` positions are compared.
 */
export async function falsePositives (positions: number, verify: VerifyOptions, mode: string): Promise<Record<string, unknown>> {
  const source: ModelSource = sourceFrom('test/fixtures/tiny-mixtral')
  const ref = JSON.parse(readFileSync('test/fixtures/tiny-mixtral/reference.json', 'utf8')) as { prompt: number[] }
  const { ends, config } = await loadClientEnds(source, cpu)
  let compared = 0
  let mismatches = 0
  let strikes = 0
  let repeats = 0
  let accused = 0
  let worst = 0
  let runs = 0
  const outvoted: number[] = []
  for (; compared < positions; runs++) {
    const f32 = (peer: string, rtt: number): Server => ({ peer, start: 0, end: 2, rtt, backend: async (s, e) => await loadSpanBackend(source, cpu, 'tiny-mixtral', s, e) })
    const f16 = (peer: string, rtt: number): Server => ({ peer, start: 0, end: 2, rtt, backend: async (s, e) => new F16KvBackend('tiny-mixtral', await loadBlocks(source, cpu, { start: s, end: e })) })
    const servers = runs % 2 === 0 ? [f32('a', 1), f16('b', 2), f32('c', 3)] : [f16('a', 1), f32('b', 2), f16('c', 3)]
    const { client, stop } = await swarm(runs + 1, 'tiny-mixtral', 2, config.hiddenSize, servers, verify)
    const prompt = ref.prompt.map((t, i) => (t + runs * 7 + i) % config.vocabSize)
    await swarmGenerate(client, ends, prompt, { maxNewTokens: 100 })
    await stop()
    const st = client.verify!.stats
    compared += st.positionsCompared
    mismatches += st.mismatches
    strikes += st.strikes
    repeats += st.repeats
    accused += st.liars.length
    worst = Math.max(worst, st.maxAgreeingDeviation)
    outvoted.push(...st.outvotedDeviations)
  }
  console.log(`honest (${mode}): ${compared} positions compared in ${runs} runs (f32 KV vs f16 KV), ${mismatches} mismatches, ${strikes} strikes, ${repeats} repeats, ${accused} accused, largest agreeing deviation ${worst.toExponential(2)}, outvoted deviations [${outvoted.map(d => d.toExponential(2)).join(', ')}] (load ${load()})`)
  return { model: `tiny-mixtral fixture, CPU twins, f32 KV vs f16 KV, ${mode}`, runs, positions_compared: compared, mismatches, strikes, repeats, false_positives: accused, max_honest_deviation: worst, outvoted_deviations: outvoted }
}
