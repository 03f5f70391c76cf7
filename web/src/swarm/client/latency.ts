/**
 * Per-server step latency, estimated as TCP estimates a round trip (RFC 6298): a smoothed mean
 * (srtt) and mean deviation (rttvar) of STEP round trips (one-token steps; a second estimator
 * takes prefills' per-token time and scales it by the step's tokens); a step not answered by
 * srtt + 4 · rttvar is "late", and the session hedges it on a spare (session.ts). The deadline is
 * clamped below by a floor, so the sub-second stalls of a loaded machine do not each cost a spare
 * a replay, and above by the hard timeout. A server not yet measured has no deadline but the hard one.
 */
import { SwarmArgumentError } from '../errors.ts'

/** RFC 6298's gains: 1/8 for the mean, 1/4 for the deviation, and K = 4 deviations of margin. */
const ALPHA = 1 / 8
const BETA = 1 / 4
const K = 4

interface Estimate { srtt: number, rttvar: number, samples: number }

export class StepLatency {
  private readonly peers = new Map<string, Estimate>()

  /** `floorMs` ≤ every deadline ≤ `ceilMs` (the hard timeout). */
  constructor (readonly floorMs: number, readonly ceilMs: number) {
    if (!(floorMs > 0) || !(ceilMs >= floorMs)) throw new SwarmArgumentError(`hedge deadlines need 0 < floor ≤ ceiling, got floor ${floorMs} ms, ceiling ${ceilMs} ms`)
  }

  /** Records one answered step of `peer` that took `ms` (per token, for the prefill estimator). */
  sample (peer: string, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    const e = this.peers.get(peer)
    if (e === undefined) {
      this.peers.set(peer, { srtt: ms, rttvar: ms / 2, samples: 1 })
      return
    }
    e.rttvar = (1 - BETA) * e.rttvar + BETA * Math.abs(e.srtt - ms)
    e.srtt = (1 - ALPHA) * e.srtt + ALPHA * ms
    e.samples++
  }

  /**
   * When a step of `peer` is late, in ms after it was sent; undefined when `peer` was never
   * measured. `scale` multiplies the estimate (samples per token, a step of `scale` tokens).
   */
  deadline (peer: string, scale = 1): number | undefined {
    const e = this.peers.get(peer)
    if (e === undefined) return undefined
    return Math.min(this.ceilMs, Math.max(this.floorMs, scale * (e.srtt + K * e.rttvar)))
  }

  /** The estimate of `peer`, for logs and tests. */
  estimate (peer: string): Readonly<Estimate> | undefined {
    return this.peers.get(peer)
  }

  forget (peer: string): void {
    this.peers.delete(peer)
  }
}
