/**
 * The API's LM head, shared by its concurrent generations: the client-side counterpart of the
 * block server's continuous batching (swarm/server/batched-span.ts). The server answers the
 * sessions of one batched forward together, so their generations ask for logits within one turn
 * of the event loop; those rows go through the final norm and the head as one (M, C) → (M, V)
 * forward with one read-back, instead of one forward, one submission and one read-back per
 * session (on WebGPU each is a queue round trip; on the CPU the blocked matmul reads the head's
 * weights once per four rows).
 *
 * Results equal the per-row head: the norm is per row, and on the CPU every output is the same
 * sum in the same order whatever M is (gpu/cpu/matmul-blocked.ts), so greedy tokens do not
 * depend on which sessions shared a batch (test/api/batched-head.test.ts). On WebGPU, M > 1 may
 * pick another matmul kernel than M = 1: equal within the kernels' tolerance, not bit for bit.
 */
import type { Backend } from '../gpu/backend.ts'
import { tidy } from '../gpu/tensor.ts'
import type { Head } from '../model/model.ts'
import type { ClientEnds } from '../swarm/client/generate.ts'
import { SwarmArgumentError } from '../swarm/errors.ts'
import { nextTurn } from '../util/next-turn.ts'

interface Wanted {
  hidden: Float32Array
  resolve: (logits: Float32Array) => void
  reject: (e: Error) => void
}

/** Runs `head` on every row asked for in one turn of the event loop, as one forward. */
export class BatchedHead {
  private queue: Wanted[] = []
  private scheduled = false
  /** Forwards run and rows through them, for tests and /metrics. */
  readonly stats = { forwards: 0, rows: 0, maxRows: 0 }

  constructor (private readonly head: Head, private readonly backend: Backend) {}

  /** hidden (C) → logits (V), computed with whatever other rows are asked for in this turn. */
  async logits (hidden: Float32Array): Promise<Float32Array> {
    const C = this.head.config.hiddenSize
    if (hidden.length !== C) throw new SwarmArgumentError(`logits: hidden must be (C=${C}), got ${hidden.length} values`)
    return await new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({ hidden, resolve, reject })
      if (this.scheduled) return
      this.scheduled = true
      // After the microtasks of this turn: every generation that got its output from the same
      // server batch reaches here before the forward runs.
      nextTurn(() => { void this.flush() })
    })
  }

  private async flush (): Promise<void> {
    const batch = this.queue
    this.queue = []
    this.scheduled = false
    const C = this.head.config.hiddenSize
    const M = batch.length
    try {
      const stacked = new Float32Array(M * C) // (M, C)
      batch.forEach((w, i) => stacked.set(w.hidden, i * C))
      const t = tidy(() => this.head.forward(this.backend.tensor(stacked, [M, C])))
      let all: Float32Array
      try {
        all = await t.readF32() // (M, V)
      } finally {
        t.dispose()
      }
      const V = all.length / M
      this.stats.forwards++
      this.stats.rows += M
      this.stats.maxRows = Math.max(this.stats.maxRows, M)
      batch.forEach((w, i) => w.resolve(all.slice(i * V, (i + 1) * V)))
    } catch (e) {
      for (const w of batch) w.reject(e as Error)
    }
  }
}

/** `ends` with its logits taken through `head` (embedding and eos ids as they are). */
export function withBatchedHead (ends: ClientEnds, head: BatchedHead): ClientEnds {
  return {
    eosTokenIds: ends.eosTokenIds,
    embed: async (ids) => await ends.embed(ids),
    logits: async (hidden) => await head.logits(hidden)
  }
}
