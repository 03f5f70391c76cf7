/**
 * The Swarm map: who serves what, at a glance. Per model a block-coverage bar (servers per block
 * with their throughput, gaps in red), expert coverage of MoE models, training runs with their live
 * members and loss curve, and the peers alive now — the swarm doc's unexpired entries only (a closed
 * tab leaves the map when its entry expires, not when someone notices) — each with how this tab
 * reaches it (direct WebRTC or through the relay). The raw CRDT entries sit behind "details".
 */
import type { PeerEntry } from '../net/crdt/entries.ts'
import { connectionKind, type Swarm } from '../net/index.ts'
import { RUN_ID_PATTERN, RunBoard, TRAIN_MAP } from '../swarm/train/run-board.ts'
import type { PageContext } from './context.ts'
import { coalesce, disclosure, el, short } from './dom.ts'
import { blockThroughputText, expertCoverage, isBackground, modelCoverage, roleText, serverThroughputText, type ModelCoverage } from './swarm-summary.ts'

/** Re-render at most this often on events, ms (connection events come in bursts). */
const RENDER_COALESCE_MS = 400
/** Re-render at least this often, ms: entries expire without any event. */
const EXPIRY_TICK_MS = 1000
/** Training runs drawn (newest activity first). */
const MAX_RUNS = 6
const SVG = 'http://www.w3.org/2000/svg'

/** How this tab reaches each peer: 'direct' (WebRTC), 'relayed', or absent when not connected. */
function linkKinds (s: Swarm): Map<string, { kind: string, addr: string }> {
  const relays = new Set(s.peers.relayIds)
  const out = new Map<string, { kind: string, addr: string }>()
  for (const c of s.node.getConnections()) {
    const id = c.remotePeer.toString()
    if (relays.has(id)) continue
    const k = connectionKind(c)
    const prev = out.get(id)
    if (prev === undefined || (k === 'webrtc' && prev.kind !== 'webrtc')) out.set(id, { kind: k, addr: c.remoteAddr.toString() })
  }
  return out
}

function coverageBar (m: ModelCoverage): HTMLElement {
  const bar = el('div', { class: 'coverage-bar', role: 'img', 'data-model': m.model, 'aria-label': `${m.model}: ${m.numBlocks - m.gaps.reduce((n, g) => n + g.end - g.start, 0)} of ${m.numBlocks} blocks served` })
  for (const b of m.blocks) {
    const n = b.servers.length
    const title = n === 0
      ? `block ${b.block}: nobody serves it${b.joining.length > 0 ? ` (${b.joining.length} loading)` : ''}`
      : `block ${b.block}: ${b.servers.map(s => `${short(s.peer)} ${serverThroughputText(s.throughput)}`).join(', ')}`
    bar.append(el('span', { class: `cell ${n === 0 ? (b.joining.length > 0 ? 'loading' : 'gap') : n === 1 ? 'one' : 'many'}`, title, 'data-block': String(b.block), 'data-servers': String(n) },
      el('b', {}, String(n)), el('small', {}, n > 0 ? blockThroughputText(b.servers) : '')))
  }
  return bar
}

function sparkline (points: Array<[number, number]>, label: string): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg')
  svg.setAttribute('viewBox', '0 0 120 32')
  svg.setAttribute('class', 'sparkline')
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', label)
  if (points.length > 1) {
    const xs = points.map(p => p[0]); const ys = points.map(p => p[1])
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)]
    const line = document.createElementNS(SVG, 'polyline')
    line.setAttribute('points', points.map(([x, y]) => `${((x - x0) / Math.max(1e-9, x1 - x0) * 116 + 2).toFixed(1)},${(30 - (y - y0) / Math.max(1e-9, y1 - y0) * 28).toFixed(1)}`).join(' '))
    svg.append(line)
  }
  return svg
}

/** Training runs on the swarm doc: members now and the mean worker loss per sync. */
function trainingRuns (s: Swarm): HTMLElement[] {
  const map = s.doc.map<unknown>(TRAIN_MAP)
  const ids = [...map.keys()].filter(k => k.startsWith('run/')).map(k => k.slice(4)).filter(id => RUN_ID_PATTERN.test(id))
  const rows: HTMLElement[] = []
  for (const id of ids.slice(0, MAX_RUNS)) {
    const board = new RunBoard(map, id)
    const ms = board.memberStatus()
    const bySeq = new Map<number, number[]>()
    for (const pts of board.losses().values()) for (const [seq, loss] of pts) bySeq.set(seq, [...(bySeq.get(seq) ?? []), loss])
    const curve = [...bySeq].sort(([a], [b]) => a - b).map(([seq, ls]): [number, number] => [seq, ls.reduce((a, b) => a + b, 0) / ls.length])
    const last = curve.at(-1)
    rows.push(el('div', { class: 'run', 'data-run': id },
      el('div', {}, el('b', {}, id), ` · ${ms.live.size} live member${ms.live.size === 1 ? '' : 's'}`,
        ms.live.size > 0 ? el('span', { class: 'hint' }, ` (${[...ms.live.keys()].map(short).join(', ')})`) : '',
        last !== undefined ? ` · sync ${last[0]} · loss ${last[1].toFixed(3)}` : ' · no syncs yet'),
      sparkline(curve, `run ${id} loss per sync`)))
  }
  return rows
}

async function render (body: HTMLElement, ctx: PageContext, s: Swarm): Promise<void> {
  const live = await s.doc.peers()
  const entries = [...live.values()]
  const links = linkKinds(s)
  const relayUp = s.peers.relayConnected
  const direct = [...links.values()].filter(l => l.kind === 'webrtc').length

  const summary = el('p', { id: 'map-summary', class: 'status-line' },
    `${live.size} peer${live.size === 1 ? '' : 's'} alive · relay ${relayUp ? 'connected' : 'reconnecting…'} · ${direct} direct link${direct === 1 ? '' : 's'}`)
  const info = el('dl', { id: 'net-info', class: 'facts' },
    el('dt', {}, 'this peer'), el('dd', { 'data-key': 'this peer', title: s.peerId }, short(s.peerId)),
    el('dt', {}, 'swarm'), el('dd', { 'data-key': 'swarm' }, s.swarm),
    el('dt', {}, 'relay'), el('dd', { 'data-key': 'relay', title: s.peers.relayIds[0] ?? '' }, `${relayUp ? 'connected' : 'reconnecting…'} · ${ctx.params.relayUrl}`),
    // The browser allows a tab ~500 peer connections in its life: what this tab spent and may still pace out (net/conn-budget.ts).
    el('dt', {}, 'peer connections'), el('dd', { 'data-key': 'peer connections', title: `at most ${s.peers.budget.dailyLimit} a day, ${s.peers.budget.lifetimeLimit} in this tab's life` }, `${s.peers.budget.lifetimeOpened} of ${s.peers.budget.lifetimeLimit} opened · ${Math.max(0, Math.floor(s.peers.budget.bucket))} of ${s.peers.budget.burst} ready now`))

  // Models: the page's own model is always drawn (a model nobody serves is one red gap).
  const known = new Map<string, number>()
  const own = ctx.params.modelId
  const ownDepth = ctx.modelDepth
  if (ownDepth !== undefined) known.set(own, ownDepth)
  const models = modelCoverage(entries, known)
  const modelBox = el('div', { id: 'map-models' })
  for (const m of models) {
    const served = m.numBlocks - m.gaps.reduce((n, g) => n + g.end - g.start, 0)
    modelBox.append(el('div', { class: 'model', 'data-model': m.model },
      el('div', { class: 'model-head' }, el('b', {}, m.model), ` · ${served} of ${m.numBlocks} blocks served by ${m.peers} peer${m.peers === 1 ? '' : 's'}`,
        m.gaps.length > 0 ? el('span', { class: 'gap-text' }, ` · nobody serves block${m.gaps.length === 1 && m.gaps[0].end - m.gaps[0].start === 1 ? '' : 's'} ${m.gaps.map(g => g.end - g.start === 1 ? `${g.start}` : `${g.start}–${g.end - 1}`).join(', ')}`) : el('span', { class: 'ok' }, ' · complete')),
      coverageBar(m)))
  }
  if (models.length === 0) modelBox.append(el('p', { class: 'hint' }, 'No model is served yet. Press Contribute to serve one.'))

  const experts = expertCoverage(entries)
  const expertBox = el('div', { id: 'map-experts' })
  for (const x of experts) {
    const grid = el('table', { class: 'expert-grid', 'data-model': x.model })
    grid.append(el('caption', {}, `${x.model}: hosts per expert`))
    const width = Math.max(0, ...[...x.layers.values()].flatMap(m => [...m.keys()])) + 1
    for (const [layer, byExpert] of [...x.layers].sort(([a], [b]) => a - b)) {
      const tr = el('tr', {}, el('th', { scope: 'row' }, `layer ${layer}`))
      for (let e = 0; e < width; e++) {
        const hosts = byExpert.get(e) ?? []
        tr.append(el('td', { class: hosts.length === 0 ? 'gap' : 'one', title: hosts.length === 0 ? `expert ${e}: nobody` : `expert ${e}: ${hosts.map(short).join(', ')}` }, String(hosts.length)))
      }
      grid.append(tr)
    }
    expertBox.append(grid)
  }

  const runs = trainingRuns(s)

  // Peers alive now (unexpired entries), with how this tab reaches each.
  const peers = el('table', { id: 'net-peers' })
  peers.append(el('thead', {}, el('tr', {}, ...['peer', 'role', 'link'].map(t => el('th', { scope: 'col' }, t)))))
  const tbody = el('tbody')
  const row = (id: string, e: PeerEntry): void => {
    const link = links.get(id)
    const tr = el('tr', { 'data-peer': id, ...(link !== undefined ? { 'data-kind': link.kind } : {}) },
      el('td', { title: id }, `${short(id)}${id === s.peerId ? ' (you)' : ''}${e.data.agent === 'node' ? ' · node' : ''}`),
      el('td', {}, roleText(e), isBackground(e) ? el('span', { class: 'badge warn', title: 'its tab is in the background: the browser throttles it' }, 'background') : ''),
      el('td', { title: link?.addr ?? '' }, id === s.peerId ? '—' : link === undefined ? 'not connected' : link.kind === 'webrtc' ? 'direct' : link.kind === 'relayed' ? 'relayed' : link.kind))
    tbody.append(tr)
  }
  // Only unexpired entries: a closed tab's WebRTC link can linger open for a while, so an open
  // connection is no sign of life (and a peer whose entry has not arrived yet shows a second later).
  for (const [id, e] of live) row(id, e)
  peers.append(tbody)

  // Raw entries, for developers: behind a toggle (its open state survives re-renders).
  const wasOpen = body.querySelector<HTMLDetailsElement>('#map-details')?.open ?? false
  const raw = el('table', { id: 'net-state' })
  raw.append(el('thead', {}, el('tr', {}, ...['peer', 'seq', 'expires in', 'data'].map(t => el('th', { scope: 'col' }, t)))))
  const rb = el('tbody')
  for (const [id, e] of live) rb.append(el('tr', { 'data-peer': id }, el('td', { title: id }, short(id)), el('td', {}, String(e.seq)), el('td', {}, `${Math.round((e.expiresAt - Date.now()) / 1000)} s`), el('td', {}, el('code', {}, JSON.stringify(e.data)))))
  raw.append(rb)
  const details = disclosure('map-details', 'Details: raw swarm state (CRDT)', raw)
  details.open = wasOpen

  body.replaceChildren(summary,
    el('h3', {}, 'Models'), modelBox,
    ...(experts.length > 0 ? [el('h3', {}, 'Experts (MoE)'), expertBox] : []),
    ...(runs.length > 0 ? [el('h3', {}, 'Training runs'), el('div', { id: 'map-runs' }, ...runs)] : []),
    el('h3', {}, 'Peers alive'), peers, info, details)
  body.dataset.livePeers = String(live.size)
  body.dataset.directPeers = String(s.peers.directPeers().length)
}

/** Mounts the map: joining state, relay failure, then the live map. */
export function mountSwarmMap (body: HTMLElement, ctx: PageContext): void {
  let swarm: Swarm | undefined
  const draw = (): void => {
    const st = ctx.swarmStatus
    if (st.state === 'joined') {
      void render(body, ctx, st.swarm).catch(e => { ctx.log(`map: ${(e as Error).message}`) })
      return
    }
    if (st.state === 'joining') {
      body.replaceChildren(el('p', { class: 'status-line' }, `Joining the swarm through ${ctx.params.relayUrl}…`))
      return
    }
    // The notice at the top says it (once, as an alert) and holds Retry (notices.ts).
    body.replaceChildren(el('div', { id: 'net-error', class: 'error' },
      el('p', {}, el('b', {}, 'Not in the swarm: the relay is unreachable. '), `This page joins the swarm through ${ctx.params.relayUrl}, which did not answer.`),
      el('p', { class: 'hint' }, 'Retry from the notice at the top, or open the page with ?relay=https://… to join another relay.')))
  }
  const schedule = coalesce(draw, RENDER_COALESCE_MS)
  ctx.addEventListener('swarm', () => {
    draw()
    const st = ctx.swarmStatus
    if (st.state !== 'joined' || swarm === st.swarm) return
    const s = swarm = st.swarm
    s.node.addEventListener('connection:open', schedule)
    s.node.addEventListener('connection:close', schedule)
    s.peers.addEventListener('change', schedule)
    s.peers.addEventListener('relay', schedule)
    s.doc.doc.on('update', schedule)
    // Each doc generation is a fresh Y.Doc (net/crdt/generation.ts): watch the new one.
    s.doc.onGeneration(() => { s.doc.doc.on('update', schedule); schedule() })
    setInterval(schedule, EXPIRY_TICK_MS)
  })
  ctx.addEventListener('model', schedule)
  draw()
}
