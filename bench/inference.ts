/**
 * `npm run bench:inference` — generation through the swarm on loopback: a relay and server peers
 * in this process, talking libp2p over direct WebRTC on 127.0.0.1 (framed tensor streams), and a
 * client generating greedily through them.
 *
 *   decode tokens/s through 1, 2 and 3 peers (the model's 3 blocks split 3 / 2+1 / 1+1+1) with the
 *   default client (client-driven STEPs), and through the same 3 peers with servers pushing
 *   activations to the next server ("3-push", "3-push-noarm"); prefill tokens/s (prompt through 3
 *   peers), and recovery: the time from a server's death to the next token (a spare covers its
 *   span; the client re-plans, replays the cache), once for a server whose node stops (its
 *   connections close: the client learns at once) and, with --procs, once for a server process
 *   SIGKILLed (no goodbye: the client's hedged step finds the spare). Then a per-token breakdown:
 *   the client's embed / head, one span forward of 1 and of all blocks, one `infer` round trip.
 *
 * Model: the default model's shape (models/byte-llama.config.json); its trained weights when
 * models/byte-llama/ holds them, else seeded random weights (speed does not depend on values).
 * Flags: --device webgpu|cpu (default webgpu)  --prompt-len N (64)  --tokens N (32)  --trials N (7)
 *        --procs: each server in its own process (bench/inference-peer.ts), the client here
 *        --layers N: the same shape with N blocks and seeded random weights (results then go to
 *        bench/results/inference-layersN.json, not the headline file)
 *        --recovery-only: only the recovery runs (into bench/results/inference-recovery.json)
 *        --no-hedge: the recovery client without hedged steps (to compare)
 * Trials are interleaved (1, 2, 3, 3-push, 3-push-noarm, 1, 2, …) so load from other processes hits every
 * configuration alike; the MEDIAN trial is the headline, the best is listed too.
 * Writes bench/results/inference.json {"decode_tps": {"1","2","3"}, "prefill_tps", "recovery_s"}
 * (medians; recovery_s: the node-stop run) and inference.meta.json (device, model, every trial,
 * best-of, breakdown, recovery_kill_s, load).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import { join } from 'node:path'
import type { Backend } from '../web/src/gpu/backend.ts'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../web/src/model/config.ts'
import { initHostWeights } from '../web/src/model/model.ts'
import { partParams, wholeModel } from '../web/src/model/params.ts'
import { encodeSafetensors } from '../web/src/model/safetensors.ts'
import { sourceFrom } from '../web/src/model/source.ts'
import { toHfTensors } from '../web/src/model/weights.ts'
import { createRelay, type WebSwarmNode } from '../web/src/net/node.ts'
import { InferenceClient } from '../web/src/swarm/client/client.ts'
import { swarmGenerate, type ClientEnds } from '../web/src/swarm/client/generate.ts'
import { loadClientEnds, loadSpanBackend } from '../web/src/swarm/model-backend.ts'
import { ServerRole } from '../web/src/swarm/server/role.ts'
import { joinTestPeer, type SwarmTestPeer } from '../test/swarm/libp2p-peer.ts'
import type { PeerCmd, PeerReply } from './inference-peer.ts'
import { ipcPeer } from './ipc.ts'

function arg (name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const PROMPT_LEN = Number(arg('prompt-len') ?? 64)
const DECODE_TOKENS = Number(arg('tokens') ?? 32)
/** Decode steps before the kill in the recovery run, so the replay carries a real cache. */
const KILL_AFTER_TOKENS = 8
/** KV-cache room per server, tokens. */
const CACHE_TOKENS = 1024

// ---- model ----
const CONFIG_FILE = 'models/byte-llama.config.json'
const TRAINED_DIR = 'models/byte-llama'
/** `--layers N`: the default model's shape with N blocks (seeded random weights), to see how the ratio grows with compute per token. */
const LAYERS = arg('layers')
let modelDir = TRAINED_DIR
let weights = 'trained'
if (LAYERS !== undefined || !existsSync(join(TRAINED_DIR, 'model.safetensors'))) {
  weights = 'seeded random (seed 1)'
  modelDir = mkdtempSync(join(os.tmpdir(), 'ws-bench-model-'))
  const hf = JSON.parse(readFileSync(CONFIG_FILE, 'utf8')) as Record<string, unknown>
  if (LAYERS !== undefined) hf.num_hidden_layers = Number(LAYERS)
  const c = parseConfig(hf)
  const specs = partParams(c, wholeModel(c))
  const host = initHostWeights(specs, 1)
  writeFileSync(join(modelDir, 'config.json'), JSON.stringify(hf))
  writeFileSync(join(modelDir, 'model.safetensors'), encodeSafetensors(toHfTensors(specs, new Map([...host].map(([k, v]) => [k, v.data])))))
}
const source = sourceFrom(modelDir)

// ---- device ----
let be: Backend
let deviceName: string
const DEVICE = arg('device') ?? 'webgpu'
/** Each server in its own process (`--procs`), as real peers are; default: all in this one. */
const PROCS = process.argv.includes('--procs')
const RECOVERY_ONLY = process.argv.includes('--recovery-only')
const HEDGE = !process.argv.includes('--no-hedge')
if (DEVICE === 'cpu') {
  be = cpu
  deviceName = 'cpu (CPU twins)'
} else {
  const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
  const gpu = await GpuBackend.create()
  be = gpu
  deviceName = `webgpu: ${gpu.info.description} (${gpu.info.architecture})`
}
console.log(`device: ${deviceName}; model ${CONFIG_FILE} weights: ${weights}`)
const { config, ends } = await loadClientEnds(source, be) as { config: ReturnType<typeof parseConfig>, ends: ClientEnds }
const L = config.numLayers

// ---- swarm ----
const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0/ws'], iceServers: [] })
const nodes: WebSwarmNode[] = []

async function peer (): Promise<SwarmTestPeer> {
  const p = await joinTestPeer(relay, L)
  nodes.push(p.node)
  return p
}

/** A block server as the bench drives it: in this process, or its own (`--procs`). */
interface Served {
  self: string
  /** Sets up a direct connection to `peer` (the next server in the route). */
  connect: (peer: string) => Promise<void>
  stop: () => Promise<void>
  /** Its node stops without the server saying goodbye: connections close, so peers learn at once. */
  drop: () => Promise<void>
  /** SIGKILL (its own process only): connections stay open to the client until WebRTC gives up. */
  kill?: () => Promise<void>
}

const cacheBytes = CACHE_TOKENS * L * 2 * config.numKvHeads * config.headDim * 4

async function serveHere (model: string, start: number, end: number): Promise<Served> {
  const p = await peer()
  const role = new ServerRole({
    transport: p.transport, directory: p.directory, model, numBlocks: L, span: { start, end },
    loadSpan: async (s, e) => await loadSpanBackend(source, be, model, s, e),
    cacheBudgetBytes: cacheBytes, throughput: 100,
    log: l => console.log(`server ${p.transport.self.slice(-6)}: ${l}`)
  })
  await role.start()
  return {
    self: role.self,
    connect: async (next) => {
      for (let attempt = 1; !p.transport.connected(next); attempt++) {
        try {
          await p.transport.connect(next, 15_000)
        } catch (e) {
          if (attempt >= 5) throw e
        }
      }
    },
    stop: async () => await role.stop(),
    drop: async () => await p.node.stop()
  }
}

const children: ChildProcess[] = []

async function serveProc (model: string, start: number, end: number): Promise<Served> {
  const child = fork(fileURLToPath(new URL('./inference-peer.ts', import.meta.url)), [
    '--relay', relay.getMultiaddrs()[0].toString(), '--model-dir', modelDir, '--model', model, '--span', `${start}:${end}`,
    '--blocks', String(L), '--device', DEVICE, '--cache-bytes', String(cacheBytes)
  ], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  const ipc = ipcPeer<PeerCmd, PeerReply>(child, 'server')
  const cmd = async (c: PeerCmd): Promise<void> => { await ipc.cmd(c) }
  const hello = await ipc.next()
  return {
    self: hello.id!,
    connect: async (peer) => await cmd({ op: 'connect', peer }),
    stop: async () => { if (child.exitCode === null && child.signalCode === null) await cmd({ op: 'stop' }).catch(() => {}) },
    drop: async () => await cmd({ op: 'drop' }),
    kill: async () => {
      const gone = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGKILL')
      await gone
    }
  }
}

const serve = PROCS ? serveProc : serveHere

/**
 * Connects each server to the next in the route before timing, as a swarm that has been serving
 * a while would be: a first WebRTC dial through the relay takes 0.1–6 s and sometimes fails under
 * load (servers then retry in the background while the client steps that hop itself).
 */
async function connectChain (servers: readonly Served[]): Promise<void> {
  for (let i = 0; i + 1 < servers.length; i++) await servers[i].connect(servers[i + 1].self)
}

const prompt = Array.from({ length: PROMPT_LEN }, (_, i) => (i * 37 + 11) % config.vocabSize)
/** k peers hold contiguous spans of about L / k blocks (3 blocks: 3 / 2+1 / 1+1+1). */
const split = (k: number): Array<[number, number]> => Array.from({ length: k }, (_, i) => [Math.round(i * L / k), Math.round((i + 1) * L / k)] as [number, number])
const splits: Record<string, Array<[number, number]>> = { 1: split(1), 2: split(2), 3: split(3) }
/**
 * Configurations timed: peers in the route with the default client (client-driven STEPs), and
 * the same 3 servers with push ("3-push": servers push to the next server, the client arms the
 * next step's CHAINs ahead; "3-push-noarm": without arming).
 */
const CONFIGS = [
  { key: '1', peers: '1', push: false, armAhead: false },
  { key: '2', peers: '2', push: false, armAhead: false },
  { key: '3', peers: '3', push: false, armAhead: false },
  { key: '3-push', peers: '3', push: true, armAhead: true },
  { key: '3-push-noarm', peers: '3', push: true, armAhead: false }
]
/** Interleaved timed runs per configuration; the median is reported. */
const TRIALS = Number(arg('trials') ?? 7)
/** Repetitions of each micro-measurement in the breakdown (median kept). */
const PROBES = 50
let reference: number[] | undefined
const clientPeer = await peer()

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

// All configurations stay up; trials are interleaved so load from other processes on the shared
// machine hits all alike.
const servers3: Record<string, Served[]> = {}
const setups: Record<string, InferenceClient> = {}
const trials: Record<string, Array<{ decode_tps: number, prefill_tps: number, decode_ms_median: number }>> = {}
const decodeTps: Record<string, number> = {}
const bestTps: Record<string, number> = {}
const typicalTps: Record<string, number> = {}
let prefillTps = 0
let loadBefore = os.loadavg()
let breakdown: Record<string, unknown> = {}
if (!RECOVERY_ONLY) {
  for (const c of CONFIGS) {
    const model = `bench-${c.peers}`
    if (servers3[c.peers] === undefined) {
      servers3[c.peers] = []
      for (const [s, e] of splits[c.peers]) servers3[c.peers].push(await serve(model, s, e))
      await connectChain(servers3[c.peers])
    }
    const client = new InferenceClient({ transport: clientPeer.transport, directory: clientPeer.directory, model, numBlocks: L, hiddenSize: config.hiddenSize, push: c.push, armAhead: c.armAhead, log: l => console.log(l) })
    // Warm-up: pipelines compiled, connections (client → servers, server → next server) and channels open.
    for (let i = 0; i < 2; i++) await swarmGenerate(client, ends, prompt.slice(0, 8), { maxNewTokens: 4, stopTokens: [] })
    setups[c.key] = client
  }
  loadBefore = os.loadavg()
  for (let trial = 0; trial < TRIALS; trial++) {
    for (const c of CONFIGS) {
      const r = await swarmGenerate(setups[c.key], ends, prompt, { maxNewTokens: DECODE_TOKENS, stopTokens: [] })
      reference ??= r.tokens
      if (JSON.stringify(r.tokens) !== JSON.stringify(reference)) throw new Error(`${c.key}-peer tokens differ from the first run`)
      const tps = r.decodeMs.length / (r.decodeMs.reduce((a, b) => a + b, 0) / 1000)
      const ptps = PROMPT_LEN / (r.prefillMs / 1000)
      ;(trials[c.key] ??= []).push({ decode_tps: tps, prefill_tps: ptps, decode_ms_median: median(r.decodeMs) })
      console.log(`trial ${trial}, ${c.key} peer(s): decode ${tps.toFixed(1)} tokens/s (step median ${median(r.decodeMs).toFixed(2)} ms, max ${Math.max(...r.decodeMs).toFixed(1)} ms), prefill ${ptps.toFixed(1)} tokens/s`)
    }
  }
  for (const c of CONFIGS) {
    decodeTps[c.key] = median(trials[c.key].map(t => t.decode_tps))
    bestTps[c.key] = Math.max(...trials[c.key].map(t => t.decode_tps))
  }
  prefillTps = median(trials['3'].map(t => t.prefill_tps))
  /** 1000 / the median over trials of each trial's median step, ms: what a step takes when no other process stalls this one. */
  for (const c of CONFIGS) typicalTps[c.key] = 1000 / median(trials[c.key].map(t => t.decode_ms_median))
  for (const c of CONFIGS) console.log(`${c.key} peer(s): decode median ${decodeTps[c.key].toFixed(1)} tokens/s, best ${bestTps[c.key].toFixed(1)} (${trials[c.key].map(t => t.decode_tps.toFixed(0)).join(' / ')}); typical step ${(1000 / typicalTps[c.key]).toFixed(2)} ms`)
  console.log(`typical-step ratio 3 / 1: ${(typicalTps['3'] / typicalTps['1']).toFixed(2)} (client-driven), ${(typicalTps['3-push'] / typicalTps['1']).toFixed(2)} (push)`)
  console.log(`3-peer / 1-peer: median ${(decodeTps['3'] / decodeTps['1']).toFixed(2)}, best ${(bestTps['3'] / bestTps['1']).toFixed(2)}; with push ${(decodeTps['3-push'] / decodeTps['1']).toFixed(2)}, push without arming ${(decodeTps['3-push-noarm'] / decodeTps['1']).toFixed(2)}`)

  // ---- breakdown of one decode token (medians of PROBES runs each, ms) ----
  async function probe (f: () => Promise<unknown>): Promise<number> {
    for (let i = 0; i < 5; i++) await f()
    const xs: number[] = []
    for (let i = 0; i < PROBES; i++) {
      const t0 = performance.now()
      await f()
      xs.push(performance.now() - t0)
    }
    return median(xs)
  }
  const one = await loadSpanBackend(source, be, 'probe', 0, 1)
  const all = await loadSpanBackend(source, be, 'probe', 0, L)
  const row = new Float32Array(config.hiddenSize).fill(0.1)
  const forwardMs = async (sp: typeof one): Promise<number> => {
    const cache = sp.createCache(PROBES + 16, sp.start, sp.end)
    const ms = await probe(async () => await sp.forward([{ cache, hidden: row, tokens: 1 }]))
    cache.dispose()
    return ms
  }
  const s1 = servers3['1'][0].self
  breakdown = {
    embed_ms: await probe(async () => await ends.embed([5])),
    head_ms: await probe(async () => await ends.logits(row)),
    forward_1_block_ms: await forwardMs(one),
    forward_all_blocks_ms: await forwardMs(all),
    infer_round_trip_ms: await probe(async () => await setups['1'].call(s1, { type: 'info' })),
    decode_step_ms: Object.fromEntries(CONFIGS.map(c => [c.key, median(trials[c.key].map(t => t.decode_ms_median))]))
  }
  one.dispose()
  all.dispose()
  console.log(`breakdown (median ms): ${JSON.stringify(breakdown)}`)
  for (const k of Object.keys(servers3)) for (const s of servers3[k]) await s.stop()
}
const loadAfter = os.loadavg()

// ---- recovery: 3 peers + a spare over all blocks; the middle one dies after KILL_AFTER_TOKENS ----
interface Recovery { recovery_s: number, failover_ms: number, replayed: number, cause: string, loadavg: number[] }

/** One generation whose middle server dies (`drop`: its node stops; `kill`: SIGKILL) after KILL_AFTER_TOKENS tokens. */
async function recovery (how: 'drop' | 'kill'): Promise<Recovery> {
  const model = `bench-recovery-${how}`
  const servers: Served[] = []
  for (const [s, e] of splits['3']) servers.push(await serve(model, s, e))
  const spare = await serve(model, 0, L)
  await connectChain(servers)
  const client = new InferenceClient({ transport: clientPeer.transport, directory: clientPeer.directory, model, numBlocks: L, hiddenSize: config.hiddenSize, hedge: HEDGE, log: l => console.log(l) })
  await client.measureRtts([...servers.map(s => s.self), spare.self])
  client.rttMs.set(spare.self, 1e6) // used only as the replacement
  // Without the throughput trials: a run without failure gives the reference tokens (and warms up).
  reference ??= (await swarmGenerate(client, ends, prompt, { maxNewTokens: DECODE_TOKENS, stopTokens: [] })).tokens
  let killedAt = 0
  let recoveryS = 0
  let n = 0
  const rr = await swarmGenerate(client, ends, prompt, {
    maxNewTokens: DECODE_TOKENS,
    stopTokens: [],
    onToken: async () => {
      n++
      if (killedAt > 0 && recoveryS === 0) recoveryS = (performance.now() - killedAt) / 1000
      if (n === KILL_AFTER_TOKENS) {
        // The server's death; the clock starts once it is gone.
        await (how === 'kill' ? servers[1].kill!() : servers[1].drop())
        killedAt = performance.now()
      }
    }
  })
  if (JSON.stringify(rr.tokens) !== JSON.stringify(reference)) throw new Error(`tokens after the failover (${how}) differ from the run without one`)
  const fo = rr.session.failovers[0]
  if (fo === undefined) throw new Error(`the ${how === 'kill' ? 'killed' : 'stopped'} server ${servers[1].self} caused no failover; route ${JSON.stringify(rr.session.route)}`)
  console.log(`recovery (${how}): ${recoveryS.toFixed(3)} s from the death to the next token (failover ${fo.ms.toFixed(0)} ms, replayed ${fo.replayed} tokens; ${fo.error})`)
  for (const s of [...servers, spare]) await s.stop().catch(() => {})
  return { recovery_s: recoveryS, failover_ms: fo.ms, replayed: fo.replayed, cause: fo.error, loadavg: os.loadavg() }
}
const dropped = await recovery('drop')
// SIGKILL needs a process of its own; in one process a node can only stop (which closes its connections).
const killed = PROCS ? await recovery('kill') : undefined
const recoveryS = dropped.recovery_s

mkdirSync('bench/results', { recursive: true })
const out = RECOVERY_ONLY ? `bench/results/inference-recovery${HEDGE ? '' : '-nohedge'}` : LAYERS === undefined ? 'bench/results/inference' : `bench/results/inference-layers${LAYERS}`
const transport = `libp2p framed tensor streams over direct WebRTC on 127.0.0.1, ${PROCS ? 'each server in its own process (client and relay in the parent)' : 'all peers in one process'}`
const machine = { cpus: os.cpus().length, node: process.version, loadavg_before: loadBefore, loadavg_after: loadAfter }
if (RECOVERY_ONLY) {
  const r = { device: deviceName, model: CONFIG_FILE, layers: L, weights, prompt_len: PROMPT_LEN, kill_after_tokens: KILL_AFTER_TOKENS, hedge: HEDGE, recovery_s: recoveryS, recovery_kill_s: killed?.recovery_s ?? null, recovery: dropped, recovery_kill: killed ?? null, transport, machine, date: new Date().toISOString() }
  writeFileSync(`${out}.json`, JSON.stringify(r, null, 2) + '\n')
  console.log(JSON.stringify({ recovery_s: recoveryS, recovery_kill_s: killed?.recovery_s ?? null }))
} else {
  const result = { decode_tps: { 1: decodeTps['1'], 2: decodeTps['2'], 3: decodeTps['3'] }, prefill_tps: prefillTps, recovery_s: recoveryS }
  writeFileSync(`${out}.json`, JSON.stringify(result, null, 2) + '\n')
  writeFileSync(`${out}.meta.json`, JSON.stringify({
    device: deviceName, model: CONFIG_FILE, layers: L, weights, prompt_len: PROMPT_LEN, decode_tokens: DECODE_TOKENS, trials: TRIALS,
    headline: 'median of interleaved trials',
    ratio_3_over_1: { median: decodeTps['3'] / decodeTps['1'], best: bestTps['3'] / bestTps['1'], push_median: decodeTps['3-push'] / decodeTps['1'], push_noarm_median: decodeTps['3-push-noarm'] / decodeTps['1'] },
    decode_tps_median: decodeTps, decode_tps_best: bestTps, decode_tps_typical_step: typicalTps,
    ratio_3_over_1_typical_step: { client_driven: typicalTps['3'] / typicalTps['1'], push: typicalTps['3-push'] / typicalTps['1'] },
    per_trial: trials, breakdown,
    // recovery_s: the server's node stops (connections close); recovery_kill_s: its process is SIGKILLed (--procs only, else null).
    recovery_s: recoveryS,
    recovery_hedge: HEDGE,
    recovery_kill_s: killed?.recovery_s ?? null,
    recovery: dropped,
    recovery_kill: killed ?? null,
    transport, machine, date: new Date().toISOString()
  }, null, 2) + '\n')
  console.log(JSON.stringify(result))
}
for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill()
await Promise.allSettled(nodes.map(async x => { await x.stop() }))
await relay.stop()
process.exit(0)
