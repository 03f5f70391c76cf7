/**
 * Commands to a forked benchmark peer over Node's IPC channel: one reply per command, in order.
 * A reply `{ ok: false, error }` or the process exiting fails the pending command.
 */
import type { ChildProcess } from 'node:child_process'

export type IpcReply = { ok: true } | { ok: false, error: string }

export interface IpcPeer<C, R extends IpcReply> {
  /** The next reply (the hello a peer sends once it is up, or a command's answer). */
  next: () => Promise<R & { ok: true }>
  /** Sends `c` and waits for its reply. */
  cmd: (c: C) => Promise<R & { ok: true }>
}

export function ipcPeer<C, R extends IpcReply> (child: ChildProcess, label: string): IpcPeer<C, R> {
  const pending: Array<(r: R | { ok: false, error: string }) => void> = []
  child.on('message', (r: R) => { pending.shift()?.(r) })
  child.on('exit', (code) => { for (const p of pending.splice(0)) p({ ok: false, error: `${label} process exited with ${code}` }) })
  child.on('error', () => {}) // a send to a process that just died: its pending command fails on 'exit'
  const next = async (): Promise<R & { ok: true }> => {
    const r = await new Promise<R | { ok: false, error: string }>((resolve) => pending.push(resolve))
    if (!r.ok) throw new Error(`${label}: ${(r as { error: string }).error}`)
    return r as R & { ok: true }
  }
  return { next, cmd: async (c) => { const p = next(); child.send(c as object); return await p } }
}

/** How long a stopped peer gets to exit on its own (a CPU profile is written at exit), in ms. */
const PEER_EXIT_MS = 10_000

/** Tells each peer to stop, lets it exit on its own for up to PEER_EXIT_MS, then kills what is left. */
export async function stopPeers (peers: ReadonlyArray<{ child: ChildProcess, cmd: (c: { op: 'stop' }) => Promise<unknown> }>): Promise<void> {
  await Promise.allSettled(peers.map(async p => { await p.cmd({ op: 'stop' }) }))
  await Promise.all(peers.map(async p => {
    await new Promise(resolve => { if (p.child.exitCode !== null) resolve(null); else { p.child.once('exit', resolve); setTimeout(resolve, PEER_EXIT_MS) } })
  }))
  for (const p of peers) p.child.kill()
}
