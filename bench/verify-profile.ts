/**
 * Where `verify_overhead`'s time goes (BENCHMARKS.md § Trust): the overhead run of bench:trust
 * (bench/verify-swarm.ts `overhead`, one JS thread) under V8's sampling profiler, once without
 * verification and once with a window, and per generation the CPU time of what differs: the
 * batched forward of the servers (`forwardBatched`: the route's decode steps, and the second
 * opinion's windows), its matmuls and attention, the verifier's own code (verify.ts: slicing,
 * comparing, bookkeeping), the garbage collector, and idle time (the in-process network delivers
 * each message on a timer).
 *
 *   node --import tsx bench/verify-profile.ts [--window 64] [--tokens 128] [--trials 6]
 *
 * Prints a table; writes nothing. After an unprofiled warm-up run, the profile of `off` has the
 * run's warm-up generation and `trials` unverified
 * generations, that of `window W` the same plus `trials` verified ones: their difference over
 * `trials` is one verified generation, and a verified one minus an unverified one is the check.
 */
import { Session } from 'node:inspector/promises'
import { arg, load, overhead, type Mode } from './verify-swarm.ts'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

const W = Number(arg('window') ?? 64)
const TOKENS = Number(arg('tokens') ?? 128)
const TRIALS = Number(arg('trials') ?? 6)

/** Rows of the table: a function's inclusive CPU time (name:file), or a V8 pseudo-node's. */
const ROWS: Array<[label: string, key: string]> = [
  ['batched forward, all servers (incl.)', 'forwardBatched:batched-span.ts'],
  ['  matmuls (self)', 'matmulBlocked:matmul-blocked.ts'],
  ['  attention (self)', 'attention:attention.ts'],
  ['verifier: Verifier.afterStep (incl.)', 'afterStep:verify.ts'],
  ['message pump (incl.)', 'pump:memory.ts'],
  ['garbage collector', '(garbage collector):'],
  ['idle (timers)', '(idle):']
]

/** Inclusive ms per `name:file` (a recursive function counted once per stack). */
function inclusive (p: Profile): Map<string, number> {
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const self = new Map<number, number>()
  p.samples.forEach((s, i) => { self.set(s, (self.get(s) ?? 0) + (p.timeDeltas[i] ?? 0)) })
  const out = new Map<string, number>()
  const onStack = new Set<string>()
  const walk = (id: number): number => {
    const n = byId.get(id)!
    const key = `${n.callFrame.functionName}:${n.callFrame.url.split('/').pop() ?? ''}`
    const outer = !onStack.has(key)
    if (outer) onStack.add(key)
    let t = self.get(id) ?? 0
    for (const c of n.children ?? []) t += walk(c)
    if (outer) {
      onStack.delete(key)
      out.set(key, (out.get(key) ?? 0) + t / 1000)
    }
    return t
  }
  walk(p.nodes[0].id)
  return out
}

async function profiled (modes: Mode[]): Promise<Map<string, number>> {
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 200 })
  await session.post('Profiler.start')
  await overhead({ device: 'cpu', promptLen: 16, tokens: TOKENS, trials: TRIALS, modes })
  const { profile } = await session.post('Profiler.stop') as unknown as { profile: Profile }
  session.disconnect()
  return inclusive(profile)
}

const before = load()
// JIT and first loads before anything is profiled: each profiled run's warm-up is then one more unverified generation.
await overhead({ device: 'cpu', promptLen: 16, tokens: TOKENS, trials: 1, modes: [['off', undefined], [`window ${W}`, { window: W }]] })
const off = await profiled([['off', undefined]])
const on = await profiled([['off', undefined], [`window ${W}`, { window: W }]])
console.log(`\nCPU ms per generation (16 + ${TOKENS} tokens, byte-llama shape, ${TRIALS} trials; load ${before} → ${load()})`)
console.log('| | unverified | verified, window ' + W + ' | the check |')
console.log('|---|---|---|---|')
for (const [label, key] of ROWS) {
  const u = (off.get(key) ?? 0) / (TRIALS + 1) // warm-up + trials
  const v = ((on.get(key) ?? 0) - (off.get(key) ?? 0)) / TRIALS
  console.log(`| ${label} | ${u.toFixed(1)} | ${v.toFixed(1)} | ${(v - u).toFixed(1)} |`)
}
process.exit(0)
