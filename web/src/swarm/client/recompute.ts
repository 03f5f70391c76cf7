/**
 * Recomputing one row of a span for a peer that checks someone else's accusation
 * (evidence-check.ts): on this client's own blocks when it holds them, else on a chain of
 * servers the checker does not suspect; and the accused's own answer, asked on a session of its
 * own. Either way the inputs [0, position] are replayed from the start, as a failover does.
 */
import { MAX_STEP_TOKENS } from '../constants.ts'
import type { Accusation } from '../evidence.ts'
import type { Recompute } from '../evidence-check.ts'
import type { SpanBackend } from '../server/backend.ts'
import type { InferenceClient } from './client.ts'
import { Failover } from './failover.ts'
import { isClientBug, HopRpc } from './hop-rpc.ts'
import { rows } from './verify.ts'

/** The last row of blocks [start, end) of `local` on `inputs` (T, C), computed here. */
export async function forwardLocal (local: SpanBackend, start: number, end: number, inputs: Float32Array, C: number): Promise<Float32Array> {
  const T = inputs.length / C
  const cache = local.createCache(T, start, end)
  try {
    let y: Float32Array = new Float32Array(0)
    for (let t = 0; t < T; t += MAX_STEP_TOKENS) {
      const n = Math.min(MAX_STEP_TOKENS, T - t)
      ;[y] = await local.forward([{ cache, hidden: inputs.slice(t * C, (t + n) * C), tokens: n }])
    }
    return y.slice(y.length - C)
  } finally {
    cache.dispose()
  }
}

/** Recomputation through `client`'s transport and directory (and `local`'s blocks, where they cover the span). */
export function clientRecompute (client: InferenceClient, local?: SpanBackend): Recompute {
  const C = client.hiddenSize
  const attempt = async (what: string, run: () => Promise<Float32Array>): Promise<Float32Array | undefined> => {
    try {
      return await run()
    } catch (e) {
      if (isClientBug(e)) throw e
      client.log(`evidence: ${what} not recomputed (${(e as Error).message})`)
      return undefined
    }
  }
  return {
    honest: async (a: Accusation, inputs: Float32Array, avoid: ReadonlySet<string>) => {
      const [start, end] = a.blocks
      if (local !== undefined && local.start <= start && end <= local.end) return await forwardLocal(local, start, end, inputs, C)
      const rpc = new HopRpc(client, a.position + 1)
      return await attempt(`blocks [${start}, ${end}) at ${a.position}`, async () => {
        const r = await new Failover(rpc, [], []).replacement({ start, end, history: [inputs] }, undefined, avoid)
        rpc.close(r.fresh)
        return rows(r.fresh[r.fresh.length - 1].outputs, C, a.position, a.position + 1)
      })
    },
    accused: async (a: Accusation, inputs: Float32Array) => {
      const [start, end] = a.blocks
      const rpc = new HopRpc(client, a.position + 1)
      return await attempt(`${a.accused}'s answer on [${start}, ${end}) at ${a.position}`, async () => {
        const [hop] = await rpc.open([{ peer: a.accused, start, end }])
        try {
          let y: Float32Array = new Float32Array(0)
          for (let t = 0; t <= a.position; t += MAX_STEP_TOKENS) {
            const n = Math.min(MAX_STEP_TOKENS, a.position + 1 - t)
            y = await rpc.step(hop, inputs.subarray(t * C, (t + n) * C), n, t)
          }
          return y.slice(y.length - C)
        } finally {
          rpc.close([hop])
        }
      })
    }
  }
}
