/**
 * Identity proof-of-work cost (web/src/net/pow.ts): time to mint one stamp at a difficulty, on
 * this JS thread (V8, as in Chrome), over several fresh peer ids; prints each run and the median.
 *
 *   node --import tsx bench/pow.ts [bits = 16] [runs = 9]
 *
 * A stamp costs 2^bits hashes on average, but any one identity's cost is geometric: the spread
 * between runs is the point of printing them all.
 */
import { loadavg } from 'node:os'
import { DEFAULT_POW_BITS, mintStamp } from '../web/src/net/pow.ts'

const bits = Number(process.argv[2] ?? DEFAULT_POW_BITS)
const runs = Number(process.argv[3] ?? 9)
const ms: number[] = []
for (let i = 0; i < runs; i++) {
  const t0 = performance.now()
  const stamp = await mintStamp('default', `12D3KooWbench${i}x${Date.now()}`, bits, Date.now())
  ms.push(performance.now() - t0)
  const nonce = Number(stamp.split(':')[1])
  console.log(`run ${i}: ${ms[i].toFixed(0)} ms, nonce ${nonce} (${(ms[i] * 1000 / (nonce + 1)).toFixed(2)} µs per hash)`)
}
const sorted = ms.slice().sort((a, b) => a - b)
console.log(`${bits} bits: median ${sorted[Math.floor(runs / 2)].toFixed(0)} ms per identity over ${runs} runs; load average ${loadavg().map(x => x.toFixed(2)).join(', ')}`)
