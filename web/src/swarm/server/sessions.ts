/**
 * Server-side sessions: one KV cache per client session, admitted against a memory budget,
 * closed when idle. Owned by the peer that opened it: another peer naming the id is told it does
 * not exist (session ids are random, so they are not guessable either).
 */
import { MAX_SESSIONS_PER_SERVER } from '../constants.ts'
import { CacheFullError, ServerBusyError, SupersededError, UnknownSessionError } from '../errors.ts'
import type { SpanBackend, SpanCache } from './backend.ts'

/** A CHAIN step waiting for its input from the previous server's PUSH. */
interface PendingChain {
  position: number
  tokens: number
  /** The peer the client said would push it. */
  from: string
  deliver: (hidden: Float32Array) => void
  fail: (e: Error) => void
}

/** A PUSH that came before the client's CHAIN announcing it (the two race on different links). */
interface EarlyPush {
  position: number
  from: string
  tokens: number
  hidden: Float32Array
}

export interface ServerSession {
  id: string
  owner: string
  maxTokens: number
  cache: SpanCache
  /** Bytes reserved for the cache (maxTokens × bytes per token). */
  bytes: number
  lastUsed: number
  /** Steps queued or running: the idle sweep never closes a session at work (a slow forward). */
  active: number
  /** Serialises this session's steps: they must run in position order. */
  busy: Promise<unknown>
  /** At most one CHAIN step awaiting its pushed input. */
  pending?: PendingChain
  /** At most one PUSH awaiting its CHAIN. */
  early?: EarlyPush
}

/** Random 128-bit hex id. */
function newId (): string {
  const b = new Uint8Array(16)
  crypto.getRandomValues(b)
  return Array.from(b, x => x.toString(16).padStart(2, '0')).join('')
}

export class SessionTable {
  private readonly sessions = new Map<string, ServerSession>()
  private reserved = 0

  constructor (
    private readonly backend: SpanBackend,
    /** KV-cache memory this server gives sessions, in bytes. */
    readonly budgetBytes: number,
    private readonly now: () => number
  ) {}

  get size (): number {
    return this.sessions.size
  }

  get reservedBytes (): number {
    return this.reserved
  }

  /** Cache positions a new session over the whole span could still get, in tokens. */
  tokensLeft (): number {
    const perToken = (this.backend.end - this.backend.start) * this.backend.cacheBytesPerToken
    return Math.max(0, Math.floor((this.budgetBytes - this.reserved) / perToken))
  }

  open (owner: string, maxTokens: number, start: number, end: number): ServerSession {
    if (this.sessions.size >= MAX_SESSIONS_PER_SERVER) throw new ServerBusyError(`server holds ${this.sessions.size} sessions, the most it takes`)
    const bytes = maxTokens * (end - start) * this.backend.cacheBytesPerToken
    if (this.reserved + bytes > this.budgetBytes) {
      throw new CacheFullError(`KV cache full: a ${maxTokens}-token session needs ${bytes} B, ${this.budgetBytes - this.reserved} B of ${this.budgetBytes} B left (${this.tokensLeft()} tokens)`)
    }
    const s: ServerSession = { id: newId(), owner, maxTokens, cache: this.backend.createCache(maxTokens, start, end), bytes, lastUsed: this.now(), active: 0, busy: Promise.resolve() }
    this.sessions.set(s.id, s)
    this.reserved += bytes
    return s
  }

  /** The session `id` if `peer` owns it; UnknownSessionError otherwise. */
  get (peer: string, id: string): ServerSession {
    const s = this.sessions.get(id)
    if (s === undefined || s.owner !== peer) throw new UnknownSessionError(`no session ${id} for peer ${peer} (never opened, closed, or idle too long)`)
    s.lastUsed = this.now()
    return s
  }

  /** The session `id` whoever asks (a PUSH comes from another server, not the owner); UnknownSessionError if none. */
  peek (id: string): ServerSession {
    const s = this.sessions.get(id)
    if (s === undefined) throw new UnknownSessionError(`no session ${id} (never opened, closed, or idle too long)`)
    return s
  }

  /** Whether `peer` opened session `id` (and it is still open). */
  owns (peer: string, id: string): boolean {
    return this.sessions.get(id)?.owner === peer
  }

  close (id: string): boolean {
    const s = this.sessions.get(id)
    if (s === undefined) return false
    this.sessions.delete(id)
    this.reserved -= s.bytes
    // Normal at the end of a generation (the client armed the next step): superseded by the close.
    s.pending?.fail(new SupersededError(`session ${id} closed while its CHAIN waited for a push`))
    s.pending = undefined
    s.early = undefined
    s.cache.dispose()
    return true
  }

  /** Closes sessions idle for longer than `idleMs` (none with a step queued or running); returns their ids. */
  sweep (idleMs: number): string[] {
    const t = this.now()
    const gone = [...this.sessions.values()].filter(s => s.active === 0 && t - s.lastUsed > idleMs).map(s => s.id)
    for (const id of gone) this.close(id)
    return gone
  }

  closeAll (): void {
    for (const id of [...this.sessions.keys()]) this.close(id)
  }
}
