/**
 * A process hosting some of the relay-failover bench's light Node peers (bench/scale-relays.ts
 * forks several): each peer is `joinSwarm` (libp2p + swarm doc + reservations on 2 relays, no
 * models, no WebRTC links), driven over Node's IPC channel (bench/ipc.ts: one reply per command).
 *
 * Why several processes: 30 peers in one Node process share one event loop, and their gossip
 * (each peer's presence and entries reach all 30) kept it 2 s behind on the loaded 2-core machine,
 * so the failover figure measured that backlog — a real peer is a tab or a process of its own.
 * A re-reservation is timed by the peer's own process, when it first sees reservations on two
 * live relays (checked on every address change and every POLL_MS), as epoch ms.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { connectionKind, joinSwarm, type Swarm } from '../web/src/net/index.ts'

export type FailoverCmd =
  | { op: 'join', bootstrap: string[], count: number }
  | { op: 'reserved' }
  | { op: 'write', gen: number }
  | { op: 'missing', ids: string[], gen: number }
  | { op: 'watch', victim: string, live: string[], all?: boolean }
  | { op: 'failover' }
  | { op: 'timeline' }
  | { op: 'load' }
  | { op: 'stop' }

export type FailoverReply =
  | {
    ok: true
    /** join: the peers' ids. */
    ids?: string[]
    /** reserved: relay ids each peer holds a reservation on. */
    reserved?: Record<string, string[]>
    /** reserved: relay ids each peer holds an open connection to. */
    linked?: Record<string, string[]>
    /** missing: most entries of `ids` lacking generation `gen`, over this process's peers' docs. */
    missing?: number
    /** failover: per affected peer, when it first held reservations on two live relays (epoch ms). */
    done?: Record<string, number>
    /** failover: the affected peers (reserved on the victim when watching began). */
    affected?: string[]
    /** failover: affected peers that held no live reservation at some moment. */
    lostAll?: string[]
    /** timeline: per affected peer, what it saw after the kill (ms since the watch began, event). */
    timeline?: Record<string, Array<[number, string]>>
    /** load: this process's event-loop delay since the last `load`, ms. */
    loopDelayMs?: { p50: number, p99: number, max: number }
    /** load: this process's peers' open connections by kind (websocket = relay links), summed. */
    links?: Record<string, number>
  }
  | { ok: false, error: string }

/** How often a watching process re-checks its peers' reservations, ms (besides address-change events). */
const POLL_MS = 20
/** A peer's first reservation may take this long, ms (a loaded machine: up to minutes). */
const READY_MS = 180_000

const swarms: Swarm[] = []
/** How far this process's event loop runs behind (the bench's steady-state window reads it). */
const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()
let watch: { victim: string, live: Set<string>, done: Map<string, number>, lostAll: Set<string>, affected: string[], timer: ReturnType<typeof setInterval>, at: number } | undefined
/** Per peer, its timeline since the watch began: relay links opening and closing, reservations held, PeerManager's log. */
const timelines = new Map<string, Array<[number, string]>>()
const relayIds = new Set<string>()

function note (peer: string, what: string): void {
  if (watch === undefined || !watch.affected.includes(peer)) return
  const t = timelines.get(peer) ?? []
  if (t.length < 200) t.push([Date.now() - watch.at, what])
  timelines.set(peer, t)
}

/** Records what `s` sees of its relays (links, reservations held) and its PeerManager's log lines. */
function instrument (s: Swarm): void {
  const short = (id: string): string => id.slice(-6)
  s.node.addEventListener('connection:open', e => { const r = e.detail.remotePeer.toString(); if (relayIds.has(r)) note(s.peerId, `open ${short(r)} ${e.detail.direction}`) })
  s.node.addEventListener('connection:close', e => { const r = e.detail.remotePeer.toString(); if (relayIds.has(r)) note(s.peerId, `close ${short(r)}`) })
  let held = ''
  s.node.addEventListener('self:peer:update', () => {
    const now = [...s.peers.reservedRelays()].map(short).sort().join(',')
    if (now !== held) note(s.peerId, `reserved [${held = now}]`)
  })
}

function check (): void {
  if (watch === undefined) return
  for (const s of swarms) {
    if (!watch.affected.includes(s.peerId) || watch.done.has(s.peerId)) continue
    const on = [...s.peers.reservedRelays()].filter(r => watch!.live.has(r)).length
    if (on === 0) watch.lostAll.add(s.peerId)
    if (on >= 2) watch.done.set(s.peerId, Date.now())
  }
}

async function run (m: FailoverCmd): Promise<FailoverReply> {
  switch (m.op) {
    case 'join': {
      const joined = await Promise.all(Array.from({ length: m.count }, async () => {
        for (const a of m.bootstrap) relayIds.add(a.split('/p2p/')[1])
        let self = ''
        const s = await joinSwarm({ bootstrap: m.bootstrap, iceServers: [], targetPeers: 0, persist: false, log: l => { if (/relay|reserv/.test(l)) note(self, l) } })
        self = s.peerId
        instrument(s)
        swarms.push(s)
        s.node.addEventListener('self:peer:update', check)
        // Bounded: a peer with no reservation yet still joins the round (counted by the bench as short).
        await s.peers.ready(READY_MS).catch(() => {})
        await s.setSelf({ name: s.peerId, gen: 1 })
        return s.peerId
      }))
      return { ok: true, ids: joined }
    }
    case 'reserved':
      return {
        ok: true,
        reserved: Object.fromEntries(swarms.map(s => [s.peerId, [...s.peers.reservedRelays()]])),
        linked: Object.fromEntries(swarms.map(s => [s.peerId, [...new Set(s.node.getConnections().filter(c => c.status === 'open').map(c => c.remotePeer.toString()).filter(id => relayIds.has(id)))]]))
      }
    case 'write':
      await Promise.all(swarms.map(async s => { await s.updateSelf({ gen: m.gen }) }))
      return { ok: true }
    case 'missing': {
      let most = 0
      for (const s of swarms) {
        const entries = await s.doc.peers()
        most = Math.max(most, m.ids.filter(id => (entries.get(id)?.data.gen as number | undefined ?? -1) < m.gen).length)
      }
      return { ok: true, missing: most }
    }
    case 'watch': {
      // all: every peer's timeline (a restarted relay's rejoin), not only those reserved on it.
      const affected = swarms.filter(s => m.all === true || s.peers.reservedRelays().has(m.victim)).map(s => s.peerId)
      clearInterval(watch?.timer)
      timelines.clear()
      watch = { victim: m.victim, live: new Set(m.live), done: new Map(), lostAll: new Set(), affected, timer: setInterval(check, POLL_MS), at: Date.now() }
      return { ok: true, affected }
    }
    case 'failover':
      check()
      return { ok: true, done: Object.fromEntries(watch?.done ?? []), affected: watch?.affected ?? [], lostAll: [...watch?.lostAll ?? []] }
    case 'timeline':
      return { ok: true, timeline: Object.fromEntries(timelines) }
    case 'load': {
      const ms = (ns: number): number => Math.round(ns / 1e5) / 10
      const loopDelayMs = { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) }
      loopDelay.reset()
      const links: Record<string, number> = {}
      for (const s of swarms) for (const c of s.node.getConnections()) links[connectionKind(c)] = (links[connectionKind(c)] ?? 0) + 1
      return { ok: true, loopDelayMs, links }
    }
    case 'stop':
      clearInterval(watch?.timer)
      await Promise.all(swarms.splice(0).map(async s => { await s.stop().catch(() => {}) }))
      setTimeout(() => process.exit(0), 100).unref()
      return { ok: true }
  }
}

// Commands run one at a time, in order: each reply answers the oldest command.
let queue = Promise.resolve()
process.on('message', (m: FailoverCmd) => {
  queue = queue.then(async () => {
    const reply = await run(m).catch((e: Error): FailoverReply => ({ ok: false, error: `${e.name}: ${e.message}` }))
    process.send?.(reply)
  })
})
process.on('disconnect', () => { process.exit(0) })
