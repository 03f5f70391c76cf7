/**
 * `npm run bench:api` — the OpenAI-compatible API on loopback, as `npm start` runs it: the relay
 * process (relay/main.ts) with its embedded Node peer serving every block of the default model
 * (byte-llama, CPU twins) and the API client in the same process. This process opens 1, 8 and 32
 * concurrent streams of POST /v1/completions (`stream: true`, greedy, 64 tokens each, no stop)
 * and times each server-sent event as it arrives:
 *
 *   aggregate tokens/s   all streams' completion tokens / wall time from the first request to the last [DONE]
 *   ttft p50 / p95       request sent → first text event, over all streams, ms
 *   itl p50 / p95        gaps between consecutive text events of a stream, over all streams, ms
 *   cpu ms per token     CPU time of the swarm's processes (/proc) / completion tokens: what a
 *                        token costs whatever the machine's load (wall times move with it)
 *
 * Flags: --trials N (3; interleaved 1, 8, 32, 1, …; the MEDIAN of each figure is reported)
 *        --tokens N (64)  --streams 1,8,32 (the concurrencies, e.g. one alone to profile it)
 *        --cpu-prof DIR (each child process writes a V8 CPU profile into DIR when it exits)
 *        --no-thread: the embedded peer's blocks on the relay's main thread, not a worker thread
 *        (WEBSWARM_SPAN_THREAD=0; results to bench/results/api-main-thread.json), to compare
 *        --own-node: the API client on a libp2p node of its own in the relay process, as before
 *        2026-12-05 12:00 (WEBSWARM_API_OWN_NODE=1; results to bench/results/api-own-node.json), to
 *        compare with the default, where it shares the embedded peer's node
 *        --span-threads N: N copies of the blocks on N worker threads (WEBSWARM_SPAN_THREADS; default
 *        2 on ≥ 3 cores, else 1 = the layout before 2026-12-05 12:00; results of 1 to
 *        bench/results/api-one-thread.json)
 *        --procs: the API in its own process (`webswarm api`) and the blocks in
 *        a `webswarm serve` process, beside a relay started with --no-api (two cores: two
 *        processes can compute at once); results then go to bench/results/api-procs.json
 * Writes bench/results/api.json {streams: {"1": {...}, "8": {...}, "32": {...}}, device, ...}.
 * --forward-only: instead, the block server's share alone — one decode step of 1, 8 and 32
 * sessions through all 3 blocks on the CPU twins, batched (one forward on stacked rows) and one
 * session at a time, in this process → bench/results/api-forward.json (medians of 20); with
 * --device webgpu on Node's WebGPU → bench/results/api-forward-webgpu.json.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { spawnTs } from '../test/helpers/spawn-ts.ts'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const TRIALS = Number(arg('trials') ?? 3)
const TOKENS = Number(arg('tokens') ?? 64)
const PROCS = process.argv.includes('--procs')
const PROFILE = arg('cpu-prof')
const NO_THREAD = process.argv.includes('--no-thread')
const OWN_NODE = process.argv.includes('--own-node')
const SPAN_THREADS = arg('span-threads') ?? ''
/** How long the idle swarm processes' CPU is sampled after the warm-up, ms. */
const IDLE_SAMPLE_MS = 5_000
const CONCURRENCY = (arg('streams') ?? '1,8,32').split(',').map(Number)
const PROMPTS = ['The jury said ', 'It was a ', 'In the city ', 'She had been ', 'The man ', 'They were ', 'A new law ', 'He said that ']
const children: ChildProcess[] = []

/** Starts a process; resolves with the first match of `pattern` in its output. */
async function start (args: string[], pattern: RegExp): Promise<RegExpExecArray> {
  const env = { ...process.env, WEBSWARM_NO_EMBEDDED_PEER: '', WEBSWARM_SPAN_THREAD: NO_THREAD ? '0' : '', WEBSWARM_API_OWN_NODE: OWN_NODE ? '1' : '', WEBSWARM_SPAN_THREADS: SPAN_THREADS }
  // --cpu-prof DIR: each child writes a V8 CPU profile there when it exits (NODE_OPTIONS refuses the flag).
  const child = PROFILE === undefined
    ? spawnTs(args[0], args.slice(1), { env })
    : spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', PROFILE, '--cpu-prof-interval', '250', '--import', 'tsx', ...args], { env, stdio: 'pipe' })
  children.push(child)
  let out = ''
  return await new Promise((resolve, reject) => {
    const look = (c: Buffer): void => {
      out += c.toString()
      const m = pattern.exec(out)
      if (m !== null) resolve(m)
    }
    child.stdout!.on('data', look)
    child.stderr!.on('data', look)
    child.on('exit', code => reject(new Error(`${args.join(' ')} exited ${code}:\n${out}`)))
  })
}

interface Stream { ttftMs: number, gapsMs: number[], tokens: number }

/** One streamed completion; times each text event. */
async function stream (url: string, prompt: string): Promise<Stream> {
  const t0 = performance.now()
  const res = await fetch(`${url}/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'default', prompt, max_tokens: TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } })
  })
  if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status}: ${await res.text()}`)
  const times: number[] = []
  let tokens = 0
  let buf = ''
  const dec = new TextDecoder()
  const reader = res.body.getReader()
  for (;;) {
    const { done, value: chunk } = await reader.read()
    if (done) break
    const now = performance.now()
    buf += dec.decode(chunk, { stream: true })
    let i: number
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i).trim()
      buf = buf.slice(i + 2)
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue
      const ev = JSON.parse(line.slice(6)) as { choices: Array<{ text: string }>, usage?: { completion_tokens: number } | null, error?: { message: string } }
      if (ev.error !== undefined) throw new Error(ev.error.message)
      if (ev.usage != null) tokens = ev.usage.completion_tokens
      if ((ev.choices[0]?.text ?? '') !== '') times.push(now)
    }
  }
  if (times.length === 0) throw new Error('no text events')
  return { ttftMs: times[0] - t0, gapsMs: times.slice(1).map((t, j) => t - times[j]), tokens }
}

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]
}
const median = (xs: number[]): number => pct(xs, 0.5)
const r1 = (x: number): number => Math.round(x * 10) / 10

interface Trial { aggregate_tps: number, ttft_p50_ms: number, ttft_p95_ms: number, itl_p50_ms: number, itl_p95_ms: number, cpu_ms_per_token: number, tokens: number, wall_s: number, failed: number }

/**
 * CPU time the swarm's processes (the children: relay with API and embedded peer, or serve + api)
 * have used, ms, from /proc (Linux; undefined elsewhere). Unlike wall time it hardly moves with
 * the machine's load, so per token it shows what a token costs and how much batching shares.
 */
function childrenCpuMs (): number | undefined {
  let ticks = 0
  for (const c of children) {
    if (c.pid === undefined) continue
    try {
      // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
      const f = readFileSync(`/proc/${c.pid}/stat`, 'utf8').split(') ')[1].split(' ')
      ticks += Number(f[11]) + Number(f[12])
    } catch {
      return undefined
    }
  }
  return ticks * 10 // USER_HZ = 100 on Linux
}

async function trial (url: string, n: number): Promise<Trial> {
  const t0 = performance.now()
  const cpu0 = childrenCpuMs()
  // A failed stream (e.g. a 503 while the client has banned its only server) is counted, not fatal.
  const settled = await Promise.all(Array.from({ length: n }, async (_, i) => await stream(url, PROMPTS[i % PROMPTS.length]).catch((e: Error) => { console.error(`stream failed: ${e.message}`); return undefined })))
  const wall = (performance.now() - t0) / 1000
  const cpu1 = childrenCpuMs()
  const all = settled.filter((x): x is Stream => x !== undefined)
  if (all.length === 0) throw new Error(`all ${n} streams failed`)
  const tokens = all.reduce((a, s) => a + s.tokens, 0)
  const ttft = all.map(s => s.ttftMs)
  const gaps = all.flatMap(s => s.gapsMs)
  return { aggregate_tps: r1(tokens / wall), ttft_p50_ms: r1(pct(ttft, 0.5)), ttft_p95_ms: r1(pct(ttft, 0.95)), itl_p50_ms: r1(pct(gaps, 0.5)), itl_p95_ms: r1(pct(gaps, 0.95)), cpu_ms_per_token: cpu0 === undefined || cpu1 === undefined ? Number.NaN : Math.round((cpu1 - cpu0) / tokens * 100) / 100, tokens, wall_s: r1(wall), failed: n - all.length }
}

/** The server's decode step alone: n sessions batched vs one at a time (ms, medians). */
async function forwardOnly (): Promise<void> {
  const gpu = arg('device') === 'webgpu'
  const be0 = gpu ? await (await import('../web/src/gpu/gpu-backend.ts')).GpuBackend.create() : (await import('../web/src/gpu/cpu-backend.ts')).cpu
  const { sourceFrom } = await import('../web/src/model/source.ts')
  const { loadSpanBackend } = await import('../web/src/swarm/model-backend.ts')
  const source = sourceFrom('models/byte-llama')
  const batched = await loadSpanBackend(source, be0, 'default', 0, 3)
  const single = await loadSpanBackend(source, be0, 'default', 0, 3, { batching: false })
  const C = batched.hiddenSize
  const out: Record<string, { batched_ms: number, one_by_one_ms: number, speedup: number }> = {}
  for (const n of CONCURRENCY) {
    const times: Record<'b' | 's', number[]> = { b: [], s: [] }
    for (const [k, be] of [['b', batched], ['s', single]] as const) {
      const caches = Array.from({ length: n }, () => be.createCache(256, 0, 3))
      // Each session holds a 16-token prompt, as after a prefill.
      await be.forward(caches.map(c => ({ cache: c, hidden: new Float32Array(16 * C).fill(0.1), tokens: 16 })))
      // 5 untimed steps first: whichever backend ran first paid for the JIT's warm-up (1 session: 14 ms vs 9).
      for (let r = 0; r < 25; r++) {
        const steps = caches.map(c => ({ cache: c, hidden: new Float32Array(C).fill(0.1), tokens: 1 }))
        const t0 = performance.now()
        await be.forward(steps)
        if (r >= 5) times[k].push(performance.now() - t0)
      }
      for (const c of caches) c.dispose()
    }
    const b = median(times.b)
    const s = median(times.s)
    const r2 = (x: number): number => Math.round(x * 100) / 100
    out[String(n)] = { batched_ms: r2(b), one_by_one_ms: r2(s), speedup: r2(s / b) }
    console.log(`${n} sessions: ${JSON.stringify(out[String(n)])}`)
  }
  mkdirSync('bench/results', { recursive: true })
  const file = gpu ? 'bench/results/api-forward-webgpu.json' : 'bench/results/api-forward.json'
  writeFileSync(file, JSON.stringify({ decode_step: out, device: gpu ? `webgpu (Dawn in Node): ${(be0 as import('../web/src/gpu/gpu-backend.ts').GpuBackend).info.description}` : `cpu (CPU twins), ${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.cpus().length}`, model: 'models/byte-llama', load: os.loadavg().map(r1) }, null, 2) + '\n')
}

async function main (): Promise<void> {
  if (process.argv.includes('--forward-only')) {
    await forwardOnly()
    return
  }
  const dataDir = mkdtempSync(join(os.tmpdir(), 'ws-bench-api-'))
  let url: string
  if (!PROCS) {
    const m = await start(['relay/main.ts', '--port', '0', '--data-dir', dataDir, '--ice-server', 'none', '--api-rate-limit', '0'], /OpenAI-compatible API at (http:\/\/\S+)/)
    url = m[1]
  } else {
    const m = await start(['relay/main.ts', '--port', '0', '--data-dir', dataDir, '--ice-server', 'none', '--no-api'], /page \+ \/health .* at (http:\/\/\S+)/)
    const base = m[1]
    await start(['web/src/cli/bin.ts', 'serve', '--bootstrap', base, '--ice-servers', 'none', '--model', 'models/byte-llama', '--model-id', 'default', '--device', 'cpu', '--cache-tokens', '8192'], /"peer":/)
    url = (await start(['web/src/cli/bin.ts', 'api', '--bootstrap', base, '--ice-servers', 'none', '--model', 'models/byte-llama', '--model-id', 'default', '--device', 'cpu', '--port', '0', '--rate-limit', '0'], /"url":"(http:\/\/[^"]+)"/))[1]
  }
  console.log(`api at ${url}; ${PROCS ? 'relay + webswarm serve + webswarm api processes' : 'relay process with embedded peer (npm start)'}`)
  await stream(url, 'Warm up ') // first route planning, connections
  // The swarm's background with no request in flight (libp2p nodes, DHT, CRDT sync): CPU ms a second.
  const idle0 = childrenCpuMs()
  await new Promise(resolve => setTimeout(resolve, IDLE_SAMPLE_MS))
  const idle1 = childrenCpuMs()
  const idleCpuMsPerS = idle0 === undefined || idle1 === undefined ? Number.NaN : r1((idle1 - idle0) * 1000 / IDLE_SAMPLE_MS)
  console.log(`idle: ${idleCpuMsPerS} ms of CPU a second`)
  const load0 = os.loadavg()
  const trials: Record<string, Trial[]> = Object.fromEntries(CONCURRENCY.map(n => [String(n), []]))
  for (let t = 0; t < TRIALS; t++) {
    for (const n of CONCURRENCY) {
      const r = await trial(url, n)
      trials[String(n)].push(r)
      console.log(`trial ${t + 1} × ${n}: ${JSON.stringify(r)}`)
    }
  }
  const load1 = os.loadavg()
  const keys: Array<keyof Trial> = ['aggregate_tps', 'ttft_p50_ms', 'ttft_p95_ms', 'itl_p50_ms', 'itl_p95_ms', 'cpu_ms_per_token']
  const streams = Object.fromEntries(Object.entries(trials).map(([n, ts]) => [n, Object.fromEntries(keys.map(k => [k, median(ts.map(x => x[k]))]))]))
  const out = {
    streams,
    device: `cpu (CPU twins in Node; embedded peer${PROCS ? ' in its own process' : ` and API in the relay process${OWN_NODE ? ' on two libp2p nodes' : ', sharing one libp2p node'}, blocks on ${NO_THREAD ? 'its main thread' : SPAN_THREADS === '' ? `${os.availableParallelism() >= 3 ? 2 : 1} worker thread(s)` : `${SPAN_THREADS} worker thread(s)`}`}), ${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.cpus().length}`,
    model: 'models/byte-llama (C 96, 3 blocks, byte vocabulary)',
    tokens_per_stream: TOKENS,
    trials: TRIALS,
    statistic: 'median over trials of each figure',
    setup: PROCS ? 'relay --no-api + webswarm serve + webswarm api, loopback' : 'relay/main.ts (npm start): embedded peer + API in one process, loopback',
    load: { before: load0.map(r1), after: load1.map(r1) },
    idle_cpu_ms_per_s: idleCpuMsPerS,
    all_trials: trials
  }
  mkdirSync('bench/results', { recursive: true })
  const file = PROCS ? 'bench/results/api-procs.json' : OWN_NODE ? 'bench/results/api-own-node.json' : SPAN_THREADS === '1' ? 'bench/results/api-one-thread.json' : NO_THREAD ? 'bench/results/api-main-thread.json' : 'bench/results/api.json'
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n')
  console.log(`${file}: ${JSON.stringify(streams)}`)
}

main().then(() => {
  for (const c of children) c.kill('SIGTERM')
  process.exit(0)
}, (e: Error) => {
  console.error(e.stack ?? e.message)
  for (const c of children) c.kill('SIGKILL')
  process.exit(1)
})
