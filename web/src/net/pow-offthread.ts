/**
 * Identity stamps minted off the page thread (pow.ts `mintStamp`, ~0.1–1 s of hashing at the
 * default difficulty): in a module Web Worker (pow-worker.ts), one per mint and terminated after
 * it (a tab mints a few stamps a day), where Workers exist; in place, yielding to the event loop,
 * where they do not (Node: the CLI and relay) or when the worker cannot start. The result is the
 * same stamp either way: the worker runs the same `mintStamp` from the same first nonce.
 *
 * Messages (structured clone), one request and one answer per worker:
 *   page → worker   MintRequest { scope, peer, bits, now }
 *   worker → page   MintReply   { stamp } | { error }  (error: the mint's own message)
 */
import { NetConfigError } from './errors.ts'
import { mintStamp } from './pow.ts'
import type { Minter } from './stamp-renewal.ts'

export interface MintRequest { scope: string, peer: string, bits: number, now: number }
export type MintReply = { stamp: string } | { error: string }

/** What a minter needs of a worker: a browser Worker (tests: a stand-in). */
export interface MintWorker {
  onmessage: ((ev: { data: MintReply }) => void) | null
  onerror: ((ev: { message: string }) => void) | null
  postMessage: (m: MintRequest) => void
  terminate: () => void
}

/** The worker's side: answers one request (pow-worker.ts posts what this returns). */
export async function answerMint (req: MintRequest): Promise<MintReply> {
  try {
    // No yields needed here: nothing else runs on the worker's thread.
    return { stamp: await mintStamp(req.scope, req.peer, req.bits, req.now, { batch: Number.MAX_SAFE_INTEGER }) }
  } catch (e) {
    return { error: (e as Error).message }
  }
}

/** A module Web Worker running pow-worker.ts, or undefined where Workers are missing. */
function spawnMintWorker (): MintWorker | undefined {
  if (typeof Worker === 'undefined') return undefined
  return new Worker(new URL('./pow-worker.ts', import.meta.url), { type: 'module', name: 'webswarm-pow' }) as unknown as MintWorker
}

/**
 * A Minter that mints in a worker from `spawn` (default: a Web Worker where there are any), and
 * in place when there is none or it fails to start or crashes. A mint the worker refuses (bad
 * difficulty) rejects as in place; `signal` terminates the worker.
 */
export function offThreadMinter (spawn: () => MintWorker | undefined = spawnMintWorker): Minter {
  return async (scope, peer, bits, now, o) => {
    const inPlace = async (): Promise<string> => await mintStamp(scope, peer, bits, now, { signal: o.signal })
    o.signal?.throwIfAborted()
    let worker: MintWorker | undefined
    try {
      worker = spawn()
    } catch {
      worker = undefined // a page whose CSP forbids workers, say
    }
    if (worker === undefined) return await inPlace()
    const w = worker
    const answer = await new Promise<MintReply | 'crashed'>((resolve, reject) => {
      const onAbort = (): void => { w.terminate(); reject(o.signal?.reason as Error) }
      o.signal?.addEventListener('abort', onAbort, { once: true })
      const settle = (r: MintReply | 'crashed'): void => { o.signal?.removeEventListener('abort', onAbort); w.terminate(); resolve(r) }
      w.onmessage = ev => { settle(ev.data) }
      w.onerror = () => { settle('crashed') }
      w.postMessage({ scope, peer, bits, now })
    })
    if (answer === 'crashed') return await inPlace()
    if ('error' in answer) throw new NetConfigError(`minting the identity stamp in a worker: ${answer.error}`)
    return answer.stamp
  }
}

/** The page's minter: a Web Worker where there is one, else in place. */
export const mintOffThread: Minter = offThreadMinter()
