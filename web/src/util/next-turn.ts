/**
 * The next turn of the event loop, after this turn's I/O callbacks: setImmediate in Node. A 0 ms
 * timer waits ≥ 1 ms there (and runs before I/O), which a per-token hand-over pays every token;
 * a browser has no setImmediate, so there it is a 0 ms timer.
 */

/** Runs `f` on the next turn of the event loop. */
export function nextTurn (f: () => void): void {
  if (typeof setImmediate === 'function') setImmediate(f)
  else setTimeout(f, 0)
}

/** Resolves on the next turn of the event loop. */
export async function turn (): Promise<void> {
  await new Promise<void>(resolve => { nextTurn(resolve) })
}
