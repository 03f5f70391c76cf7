/**
 * `npm run bench:real` — a real model's exact shape, random weights, quantized as people run it:
 * a Llama-3.2-1B-shaped GGUF in llama.cpp's Q4_K_M mix (~0.8 GB; bench/real-model.ts streams it
 * to a temp file, seeded) and a Mixtral-8x7B-shaped MoE at reduced depth. On this machine's
 * adapter it measures
 *
 *   load_s              loading the whole 1B (file → GPU buffers in their file encoding)
 *   gpu_bytes           the most GPU memory the pool held (in use + kept for reuse) while loading
 *                       and generating, vs file_bytes (goal ≤ 1.15× plus the KV cache)
 *   prefill_tps         prompt tokens per second through the whole model, one peer
 *   decode_tps          generated tokens per second, one peer
 *   decode_tps_4peers   4 Node peers (own processes, bench/inference-peer.ts) each serving a
 *                       quarter of the blocks, the client here (embedding + head)
 *   gemv_bandwidth_ratio  from bench/kernels.ts (decode GEMV bytes/s over the copy kernel's)
 *   llamacpp_decode_tps the same file on node-llama-cpp (CPU, 2 threads)
 *
 * Software adapters (SwiftShader) do a few GFLOP/s: the default prompt and token counts are small
 * (--prompt-len 4 --tokens 2 --runs 1); the figures are medians of the runs made. The cheap parts
 * run first (llama.cpp, loads); generation runs last, each part under --part-timeout seconds
 * (900): a part that does not finish is recorded as null with the reason, and the results file
 * is rewritten after every part, so an interrupted run still reports what it measured. Flags:
 *   --device webgpu|cpu  --prompt-len N  --tokens N  --runs N  --dir DIR (files kept there and
 *   reused; default a temp dir, deleted)  --moe-layers N (2)  --part-timeout S
 *   --moe-generate (also time generation on the MoE; by default it is loaded and run on llama.cpp)
 *   --layers N (the 1B's widths at N layers, N a multiple of 4; writes bench/results/real-<N>l.json)
 *   --merge (keep the measured values of the last real.json that this run does not measure)
 *   --skip 1peer,4peers,moe,llamacpp,gemv
 * gemv_bandwidth_ratio is read from bench/results/kernels-gemv.json (npm run bench:kernels, the
 * same adapter), not re-measured.
 * Writes bench/results/real.json (the keys above, device, and what was reduced) and
 * bench/results/real.meta.json (every run, the MoE figures, errors of parts that failed).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Backend } from '../web/src/gpu/backend.ts'
import type { GpuBackend } from '../web/src/gpu/gpu-backend.ts'
import { generate } from '../web/src/model/generate.ts'
import { loadModel, type CausalLM } from '../web/src/model/model.ts'
import { sourceFrom } from '../web/src/model/source.ts'
import { createRelay } from '../web/src/net/node.ts'
import { InferenceClient } from '../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../web/src/swarm/client/generate.ts'
import { loadClientEnds } from '../web/src/swarm/model-backend.ts'
import { joinTestPeer } from '../test/swarm/libp2p-peer.ts'
import type { PeerCmd, PeerReply } from './inference-peer.ts'
import { ipcPeer } from './ipc.ts'
import { LLAMA_32_1B, mixtralShape, q4kmMix, writeRandomLlamaGguf, type LlamaShape } from './real-model.ts'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const DEVICE = arg('device') ?? 'webgpu'
const PROMPT_LEN = Number(arg('prompt-len') ?? 4)
const TOKENS = Number(arg('tokens') ?? 2)
/** A part still running after this long is recorded as not finished, s. */
const PART_TIMEOUT_S = Number(arg('part-timeout') ?? 900)
const RUNS = Number(arg('runs') ?? 1)
const MOE_LAYERS = Number(arg('moe-layers') ?? 2)
/**
 * --layers N: the 1B's widths at N layers (N a multiple of 4), for a 4-peer figure a software
 * adapter can finish; the results say so (model.layers, reduced.layers).
 */
const LAYERS = Number(arg('layers') ?? LLAMA_32_1B.layers)
if (!Number.isInteger(LAYERS) || LAYERS < 4 || LAYERS % 4 !== 0) throw new Error(`--layers ${arg('layers')}: must be a multiple of 4 (each of the 4 peers serves a quarter)`)
const LLAMA: LlamaShape = LAYERS === LLAMA_32_1B.layers ? LLAMA_32_1B : { ...LLAMA_32_1B, name: `Llama-3.2-1B widths, ${LAYERS} of ${LLAMA_32_1B.layers} layers (random)`, layers: LAYERS }
/** The 1B's results file; a reduced-depth run writes its own (real-<N>l.json) beside it. */
const OUT = LLAMA === LLAMA_32_1B ? 'bench/results/real' : `bench/results/real-${LAYERS}l`
const SKIP = new Set((arg('skip') ?? '').split(',').filter(s => s !== ''))
const SEED = 1
/** llama.cpp threads: the machine's cores (2 here). */
const LLAMACPP_THREADS = Math.max(1, Math.min(os.cpus().length, 8))

const keepDir = arg('dir')
const dir = keepDir ?? mkdtempSync(join(os.tmpdir(), 'webswarm-real-'))
mkdirSync(dir, { recursive: true })

const median = (xs: readonly number[]): number | null => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const round = (x: number | null, d = 3): number | null => x === null ? null : Math.round(x * 10 ** d) / 10 ** d
const errors: Record<string, string> = {}
const log = (s: string): void => { console.log(s) }

/** A part that ran past --part-timeout (its work may still be queued on the device). */
class PartTimeout extends Error { override name = 'PartTimeout' }

/** Runs one part of the bench under the time cap; a failure or timeout is recorded (and the rest still runs). */
async function part<T> (name: string, fn: () => Promise<T>): Promise<T | undefined> {
  if (SKIP.has(name)) { log(`${name}: skipped (--skip)`); return undefined }
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([fn(), new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new PartTimeout(`did not finish within ${PART_TIMEOUT_S} s (load average ${os.loadavg().map(x => x.toFixed(1)).join(' ')})`)), PART_TIMEOUT_S * 1000) })])
  } catch (e) {
    errors[name] = e instanceof PartTimeout ? e.message : (e as Error).stack ?? String(e)
    log(`${name}: FAILED: ${(e as Error).message}`)
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

/** The file for a shape, written once per --dir (a size marker says it is complete). */
async function modelFile (file: string, shape: LlamaShape): Promise<{ path: string, bytes: number, write_s: number }> {
  const path = join(dir, file)
  const done = `${path}.size`
  if (existsSync(done) && existsSync(path) && statSync(path).size === Number(readFileSync(done, 'utf8'))) return { path, bytes: statSync(path).size, write_s: 0 }
  const t0 = performance.now()
  const bytes = await writeRandomLlamaGguf(path, shape, q4kmMix(shape.layers), SEED)
  writeFileSync(done, String(bytes))
  return { path, bytes, write_s: (performance.now() - t0) / 1000 }
}

async function openBackend (): Promise<{ be: Backend, device: string, gpu?: GpuBackend }> {
  if (DEVICE === 'cpu') return { be: (await import('../web/src/gpu/cpu-backend.ts')).cpu, device: 'cpu (CPU twins)' }
  const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
  const gpu = await GpuBackend.create()
  return { be: gpu, gpu, device: `webgpu: ${gpu.info.description} (${gpu.info.architecture})` }
}

/** GPU memory handed out now (weights, caches, live activations; not the pool's free buffers). */
function heldBytes (gpu: GpuBackend | undefined): number {
  return gpu === undefined ? 0 : gpu.pool.stats.inUseBytes
}

/** The most GPU memory handed out since the last resetPeak (upload staging and activations included). */
function peakBytes (gpu: GpuBackend | undefined): number {
  return gpu === undefined ? 0 : gpu.pool.stats.peakInUseBytes
}

/** Frees a model's buffers for real (released buffers return to the pool at the next submit). */
async function unload (m: CausalLM, be: Backend, gpu: GpuBackend | undefined): Promise<void> {
  m.dispose()
  await be.sync()
  gpu?.pool.trim()
}

/** Prompt ids away from the special tokens, seeded by position. */
const promptIds = (vocab: number): number[] => Array.from({ length: PROMPT_LEN }, (_, i) => 1000 + (i * 7919) % Math.min(vocab - 1000, 100_000))

interface Timed { prefill_tps: number, decode_tps: number, tokens: number[] }

/** One generation: time to the first token is the prefill, the rest is decode. */
async function timeGenerate (run: (prompt: number[], onToken: () => void) => Promise<number[]>, vocab: number): Promise<Timed> {
  const prompt = promptIds(vocab)
  const t0 = performance.now()
  let first = 0
  let n = 0
  const tokens = await run(prompt, () => { if (n++ === 0) first = performance.now() })
  const end = performance.now()
  return { prefill_tps: PROMPT_LEN / ((first - t0) / 1000), decode_tps: (tokens.length - 1) / ((end - first) / 1000), tokens }
}

interface Loaded { model: CausalLM, load_s: number, gpu_bytes: number }

/** Loads the whole model: seconds, and the GPU memory the pool then holds. */
async function loadWhole (path: string, be: Backend, gpu: GpuBackend | undefined): Promise<Loaded> {
  gpu?.pool.resetPeak()
  const t0 = performance.now()
  const model: CausalLM = await loadModel(path, be)
  await be.sync()
  const load_s = (performance.now() - t0) / 1000
  log(`${path}: loaded in ${load_s.toFixed(1)} s; GPU memory in use ${(heldBytes(gpu) / 1e6).toFixed(0)} MB, peak ${(peakBytes(gpu) / 1e6).toFixed(0)} MB`)
  return { model, load_s, gpu_bytes: peakBytes(gpu) }
}

/** Generation runs on a loaded model; `peak` grows with what the pool held meanwhile. */
async function onePeer (m: Loaded, gpu: GpuBackend | undefined): Promise<Timed[]> {
  const runs: Timed[] = []
  for (let r = 0; r < RUNS; r++) {
    const t = await timeGenerate(async (prompt, onToken) => await generate(m.model, prompt, { maxNewTokens: TOKENS, onToken, stopTokens: [] }), m.model.config.vocabSize)
    m.gpu_bytes = Math.max(m.gpu_bytes, peakBytes(gpu))
    log(`1 peer, run ${r + 1}: prefill ${t.prefill_tps.toFixed(3)} tok/s, decode ${t.decode_tps.toFixed(3)} tok/s`)
    runs.push(t)
  }
  return runs
}

/** 4 server processes with a quarter of the blocks each; the client's ends here. */
async function fourPeers (path: string, be: Backend, layers: number, reference: number[] | undefined): Promise<{ runs: Timed[], matches_one_peer?: boolean }> {
  const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
  const children: ChildProcess[] = []
  const model = 'real-1b'
  try {
    const { config, ends, lm } = await loadClientEnds(sourceFrom(path), be)
    const cacheBytes = (PROMPT_LEN + TOKENS + 8) * layers * 2 * config.numKvHeads * config.headDim * 4
    const servers = await Promise.all([0, 1, 2, 3].map(async i => {
      const child = fork(fileURLToPath(new URL('./inference-peer.ts', import.meta.url)), [
        '--relay', relay.getMultiaddrs()[0].toString(), '--model-dir', path, '--model', model, '--span', `${i * layers / 4}:${(i + 1) * layers / 4}`,
        '--blocks', String(layers), '--device', DEVICE, '--cache-bytes', String(cacheBytes)
      ], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      children.push(child)
      const ipc = ipcPeer<PeerCmd, PeerReply>(child, `server ${i}`)
      return { ipc, id: (await ipc.next()).id! }
    }))
    // A warm swarm: each server already holds a direct connection to the next.
    for (let i = 0; i + 1 < servers.length; i++) await servers[i].ipc.cmd({ op: 'connect', peer: servers[i + 1].id })
    const p = await joinTestPeer(relay, layers)
    const client = new InferenceClient({ transport: p.transport, directory: p.directory, model, numBlocks: layers, hiddenSize: config.hiddenSize, log: () => {} })
    const runs: Timed[] = []
    for (let r = 0; r < RUNS; r++) {
      const t = await timeGenerate(async (prompt, onToken) => (await swarmGenerate(client, ends, prompt, { maxNewTokens: TOKENS, onToken, stopTokens: [] })).tokens, config.vocabSize)
      log(`4 peers, run ${r + 1}: prefill ${t.prefill_tps.toFixed(3)} tok/s, decode ${t.decode_tps.toFixed(3)} tok/s`)
      runs.push(t)
    }
    for (const s of servers) await s.ipc.cmd({ op: 'stop' }).catch(() => {})
    p.transport.close()
    await p.node.stop()
    lm.dispose()
    return { runs, matches_one_peer: reference === undefined ? undefined : runs.every(r => r.tokens.join() === reference.join()) }
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await relay.stop()
  }
}

async function llamaCppDecode (path: string, vocab: number): Promise<{ decode_tps: number, runs: number[] }> {
  const { llamaCpp } = await import('../test/helpers/llamacpp.ts')
  const runs: number[] = []
  for (let r = 0; r < RUNS; r++) {
    const [res] = await llamaCpp(path, [{ op: 'timeDecode', tokens: promptIds(vocab), n: TOKENS + 1 }], { threads: LLAMACPP_THREADS })
    runs.push(res.decodeSteps / res.seconds)
    log(`llama.cpp run ${r + 1}: decode ${runs.at(-1)!.toFixed(3)} tok/s (${LLAMACPP_THREADS} threads)`)
  }
  return { decode_tps: median(runs)!, runs }
}

/** gemv_bandwidth_ratio as bench/kernels.ts last measured it on this adapter (bench/results/kernels-gemv.json). */
async function gemvRatio (device: string): Promise<{ ratio: number, row: Record<string, unknown> }> {
  const file = 'bench/results/kernels-gemv.json'
  if (!existsSync(file)) throw new Error(`${file} is missing: run npm run bench:kernels first`)
  const row = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  if (typeof row.gemv_bandwidth_ratio !== 'number') throw new Error(`${file} has no gemv_bandwidth_ratio`)
  if (typeof row.device === 'string' && !device.includes(row.device)) throw new Error(`${file} was measured on ${row.device}, not ${device}`)
  return { ratio: row.gemv_bandwidth_ratio, row }
}

async function main (): Promise<void> {
  const load0 = os.loadavg()
  const { be, gpu, device } = await openBackend()
  log(`device: ${device}; files in ${dir}`)
  const llama = await modelFile(LLAMA === LLAMA_32_1B ? 'llama-3.2-1b-shape-q4_k_m.gguf' : `llama-3.2-1b-widths-${LAYERS}l-q4_k_m.gguf`, LLAMA)
  log(`${LLAMA.name}, Q4_K_M mix: ${(llama.bytes / 1e6).toFixed(0)} MB${llama.write_s > 0 ? ` written in ${llama.write_s.toFixed(1)} s` : ' (reused)'}`)
  const moeShape = mixtralShape(MOE_LAYERS)

  // --merge: start from the last results (a later run fills in what an earlier one could not).
  const merge = process.argv.includes('--merge') && existsSync(`${OUT}.json`)
  const result: Record<string, unknown> = {
    load_s: null, gpu_bytes: null, file_bytes: llama.bytes, decode_tps: null, prefill_tps: null, decode_tps_4peers: null,
    gemv_bandwidth_ratio: null, llamacpp_decode_tps: null, device,
    reduced: { prompt_len: PROMPT_LEN, tokens: TOKENS, runs: RUNS, ...(LLAMA === LLAMA_32_1B ? {} : { layers: LAYERS }), note: 'token counts reduced for a software adapter; medians of the runs made; null = not measured (see real.meta.json errors)' }
  }
  const meta: Record<string, unknown> = { date: new Date().toISOString(), model: { shape: LLAMA, mix: 'Q4_K_M (llama.cpp rules)', seed: SEED }, errors, loadavg: { before: load0 } }
  if (merge) {
    const old = JSON.parse(readFileSync(`${OUT}.json`, 'utf8')) as Record<string, unknown>
    for (const [k, v] of Object.entries(old)) if (v !== null && k !== 'reduced') result[k] = v
    const oldMeta = existsSync(`${OUT}.meta.json`) ? JSON.parse(readFileSync(`${OUT}.meta.json`, 'utf8')) as Record<string, unknown> : {}
    meta.previous = oldMeta
  }
  /** Sets a measured key (a part that did not run leaves a merged value alone). */
  const set = (k: string, v: unknown): void => { if (v !== null && v !== undefined) result[k] = v }
  const save = (): void => {
    (meta.loadavg as Record<string, unknown>).after = os.loadavg()
    mkdirSync('bench/results', { recursive: true })
    writeFileSync(`${OUT}.json`, JSON.stringify(result, null, 2) + '\n')
    writeFileSync(`${OUT}.meta.json`, JSON.stringify(meta, null, 2) + '\n')
  }

  // Cheap parts first.
  const g = await part('gemv', async () => await gemvRatio(device))
  if (g !== undefined) { set('gemv_bandwidth_ratio', g.ratio); meta.gemv = g.row }
  const lcpp = await part('llamacpp', async () => await llamaCppDecode(llama.path, LLAMA.vocab))
  if (lcpp !== undefined) { set('llamacpp_decode_tps', round(lcpp.decode_tps)); meta.llamacpp = { threads: LLAMACPP_THREADS, runs: lcpp.runs } }
  save()

  let moeFile: { path: string, bytes: number } | undefined
  const moe: Record<string, unknown> = { layers: MOE_LAYERS }
  meta.moe = moe
  if (!SKIP.has('moe')) {
    moeFile = await modelFile(`mixtral-shape-${MOE_LAYERS}l-q4_k_m.gguf`, moeShape)
    moe.file_bytes = moeFile.bytes
    log(`Mixtral shape, ${MOE_LAYERS} layers: ${(moeFile.bytes / 1e6).toFixed(0)} MB`)
    const lc = await part('moe_llamacpp', async () => await llamaCppDecode(moeFile!.path, moeShape.vocab))
    if (lc !== undefined) moe.llamacpp_decode_tps = round(lc.decode_tps)
    const m = await part('moe_load', async () => await loadWhole(moeFile!.path, be, gpu))
    if (m !== undefined) {
      moe.load_s = round(m.load_s)
      moe.gpu_bytes = m.gpu_bytes
      // Generation on it only with --moe-generate: on a software adapter it takes longer than the rest together.
      if (process.argv.includes('--moe-generate')) {
        const runs = await part('moe_generate', async () => await onePeer(m, gpu))
        if (runs !== undefined) { moe.decode_tps = round(median(runs.map(x => x.decode_tps))); moe.prefill_tps = round(median(runs.map(x => x.prefill_tps))) }
        if (runs === undefined) { save(); log('MoE generation did not finish: the run stops here'); return }
      }
      await unload(m.model, be, gpu)
    }
    save()
  }

  const one = await part('1peer_load', async () => await loadWhole(llama.path, be, gpu))
  let reference: number[] | undefined
  if (one !== undefined) {
    set('load_s', round(one.load_s))
    set('gpu_bytes', one.gpu_bytes)
    save()
    const runs = await part('1peer', async () => await onePeer(one, gpu))
    if (runs !== undefined) {
      set('gpu_bytes', one.gpu_bytes)
      set('decode_tps', round(median(runs.map(r => r.decode_tps))))
      set('prefill_tps', round(median(runs.map(r => r.prefill_tps))))
      meta.one_peer_runs = runs.map(r => ({ prefill_tps: r.prefill_tps, decode_tps: r.decode_tps }))
      reference = runs[0].tokens
      await unload(one.model, be, gpu)
    }
    save()
    // A generation that timed out may still hold the device: measuring 4 peers behind it would be wrong.
    if (errors['1peer'] !== undefined) { log('1-peer generation did not finish: the run stops here'); return }
  }
  const four = await part('4peers', async () => await fourPeers(llama.path, be, LLAMA.layers, reference))
  if (four !== undefined) {
    set('decode_tps_4peers', round(median(four.runs.map(r => r.decode_tps))))
    meta.four_peer_runs = four.runs.map(r => ({ prefill_tps: r.prefill_tps, decode_tps: r.decode_tps }))
    meta.four_peers_same_tokens_as_one = four.matches_one_peer
  }
  save()
  console.log(JSON.stringify(result, null, 2))
  if (keepDir === undefined) rmSync(dir, { recursive: true, force: true })
  gpu?.destroy()
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e)
  process.exit(1)
})
