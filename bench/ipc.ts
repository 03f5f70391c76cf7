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
