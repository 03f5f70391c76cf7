/**
 * The Swarm panel: this peer's id, the relay link, connected peers with how they are reached
 * (direct WebRTC vs relayed), and the shared swarm state (the CRDT peers map).
 * Also exposes the running swarm as `window.webswarm` for tests and the console.
 */
import { connectionKind, joinSwarm, type Swarm } from '../net/index.ts'
import { call, handle } from '../net/stream/index.ts'

/** Re-render at most this often, in ms: connection events come in bursts. */
const RENDER_INTERVAL_MS = 500

declare global {
  interface Window {
    /** The page's swarm membership, for tests and the console. */
    webswarm?: {
      peerId: string
      node: Swarm['node']
      doc: Swarm['doc']
      swarm: Swarm
      /** Framed tensor streams (net/stream) bound to nothing: pass `node` yourself. */
      tensors: { call: typeof call, handle: typeof handle }
    }
  }
}

function short (id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}

function cell (tr: HTMLTableRowElement, text: string, title?: string): HTMLTableCellElement {
  const td = tr.insertCell()
  td.textContent = text
  if (title !== undefined) td.title = title
  return td
}

async function render (body: HTMLElement, s: Swarm): Promise<void> {
  const info = document.createElement('table')
  info.id = 'net-info'
  const relayUp = s.peers.relayConnected
  const rows: Array<[string, string, string?]> = [
    ['this peer', short(s.peerId), s.peerId],
    ['swarm', s.swarm],
    ['relay', relayUp ? `connected (${short(s.peers.relayIds[0])})` : 'reconnecting…', s.peers.relayIds[0]],
    ['reservation', s.node.getMultiaddrs().some(m => m.toString().includes('/p2p-circuit')) ? 'yes' : 'no']
  ]
  for (const [k, v, title] of rows) {
    const tr = info.insertRow()
    cell(tr, k)
    cell(tr, v, title).dataset.key = k
  }

  const conns = document.createElement('table')
  conns.id = 'net-peers'
  const head = conns.createTHead().insertRow()
  for (const t of ['peer', 'connection', 'address']) head.appendChild(document.createElement('th')).textContent = t
  const tbody = conns.createTBody()
  const relayIds = new Set(s.peers.relayIds)
  const byPeer = new Map<string, string[]>()
  for (const c of s.node.getConnections()) {
    const id = c.remotePeer.toString()
    if (relayIds.has(id)) continue
    byPeer.set(id, [...(byPeer.get(id) ?? []), connectionKind(c)])
  }
  for (const [id, kinds] of byPeer) {
    const tr = tbody.insertRow()
    tr.dataset.peer = id
    const kind = kinds.includes('webrtc') ? 'direct WebRTC' : kinds.includes('relayed') ? 'relayed' : kinds[0]
    tr.dataset.kind = kinds.includes('webrtc') ? 'webrtc' : kinds[0]
    cell(tr, short(id), id)
    cell(tr, kind)
    cell(tr, '')
    const addr = s.node.getConnections().find(c => c.remotePeer.toString() === id && connectionKind(c) === (tr.dataset.kind))?.remoteAddr.toString() ?? ''
    tr.cells[2].textContent = addr.length > 40 ? `${addr.slice(0, 39)}…` : addr
    tr.cells[2].title = addr
    tr.cells[2].style.wordBreak = 'break-all'
  }
  if (byPeer.size === 0) {
    const tr = tbody.insertRow()
    const td = cell(tr, 'no peers yet — open this page in another tab')
    td.colSpan = 3
  }

  const state = document.createElement('table')
  state.id = 'net-state'
  const sh = state.createTHead().insertRow()
  for (const t of ['peers map (CRDT)', 'seq', 'data']) sh.appendChild(document.createElement('th')).textContent = t
  const sb = state.createTBody()
  const online = new Set(s.crdt.presentPeers())
  for (const [id, e] of await s.doc.peers()) {
    const tr = sb.insertRow()
    tr.dataset.peer = id
    cell(tr, `${short(id)}${id === s.peerId ? ' (you)' : ''}${online.has(id) ? ' ●' : ''}`, id)
    cell(tr, String(e.seq))
    cell(tr, JSON.stringify(e.data))
  }

  // MoE expert hosts (tabs or `webswarm serve --experts …`), from their mirrored `experts` field.
  const experts = document.createElement('table')
  experts.id = 'net-experts'
  const eh = experts.createTHead().insertRow()
  for (const t of ['expert host', 'model', 'layer:experts', 'state', 'rows/s']) eh.appendChild(document.createElement('th')).textContent = t
  const eb = experts.createTBody()
  for (const [id, e] of await s.doc.peers()) {
    const x = e.data.experts as { model?: unknown, hosted?: unknown, state?: unknown, throughput?: unknown } | undefined
    if (typeof x !== 'object' || x === null) continue
    const tr = eb.insertRow()
    tr.dataset.peer = id
    cell(tr, `${short(id)}${e.data.agent === 'node' ? ' (node)' : ''}`, id)
    for (const v of [x.model, x.hosted, x.state, x.throughput]) cell(tr, typeof v === 'string' || typeof v === 'number' ? String(v).slice(0, 80) : '?')
  }
  if (eb.rows.length === 0) cell(eb.insertRow(), 'no expert hosts').colSpan = 5

  const h3a = document.createElement('h3'); h3a.textContent = 'Connected peers'
  const h3b = document.createElement('h3'); h3b.textContent = 'Shared swarm state'
  const h3c = document.createElement('h3'); h3c.textContent = 'MoE expert hosts'
  body.replaceChildren(info, h3a, conns, h3b, state, h3c, experts)
  body.dataset.directPeers = String(s.peers.directPeers().length)
}

/** Joins the swarm of the relay that served this page and keeps the panel current. */
export async function mountNetPanel (body: HTMLElement): Promise<Swarm | undefined> {
  body.textContent = 'Joining the swarm…'
  let s: Swarm
  try {
    const params = new URLSearchParams(location.search)
    s = await joinSwarm({
      bootstrapUrl: new URL('bootstrap', location.href).toString(),
      swarm: params.get('swarm') ?? undefined
    })
  } catch (e) {
    const p = document.createElement('p')
    p.className = 'error'
    p.id = 'net-error'
    p.textContent = `Could not join the swarm: ${(e as Error).message}`
    body.replaceChildren(p)
    document.body.dataset.net = 'error'
    return undefined
  }
  window.webswarm = { peerId: s.peerId, node: s.node, doc: s.doc, swarm: s, tensors: { call, handle } }
  await s.setSelf({ agent: navigator.userAgent.includes('Headless') ? 'headless' : 'browser', joinedAt: Date.now() })

  let scheduled = false
  const schedule = (): void => {
    if (scheduled) return
    scheduled = true
    setTimeout(() => {
      scheduled = false
      void render(body, s)
    }, RENDER_INTERVAL_MS)
  }
  s.node.addEventListener('connection:open', schedule)
  s.node.addEventListener('connection:close', schedule)
  s.node.addEventListener('self:peer:update', schedule)
  s.peers.addEventListener('change', schedule)
  s.peers.addEventListener('relay', schedule)
  s.doc.doc.on('update', schedule)
  s.crdt.awareness.on('change', schedule)
  await render(body, s)
  document.body.dataset.net = 'ready'
  return s
}
