/**
 * Page entry: read the page's parameters, build the one PageContext, mount the panels on it,
 * then probe WebGPU and join the swarm (both announced to the panels as events). Panels fail
 * independently: a missing GPU or an unreachable relay shows in its own place.
 */
import { GpuBackend } from '../gpu/gpu-backend.ts'
import { benchMatmul } from '../gpu/ops/matmul-bench.ts'
import { runSelfTests, type SelfTestResult } from '../gpu/selftest.ts'
import { mountChatPanel } from './chat-panel.ts'
import { PageContext, readPageParams, type PageParams } from './context.ts'
import { mountContributePanel } from './contribute-panel.ts'
import { el } from './dom.ts'
import { renderBench, renderError, renderGpuInfo, selfTestTable } from './gpu-panel.ts'
import { mountNotices } from './notices.ts'
import { swarmPieces } from './serving.ts'
import { mountSwarmMap } from './swarm-map-panel.ts'
import { mountTrainPanel } from './train-panel.ts'

/** What the page exposes about its GPU for tests and the console. */
export interface PageState {
  gpu?: GpuBackend
  selfTest?: SelfTestResult[]
  /** Measured matmul throughput, announced to the swarm as this peer's capability. */
  gflops?: number
}

declare global {
  interface Window { webswarmGpu: PageState }
}

/** Micro-benchmark size: software adapters are ~1000× slower than real GPUs. */
const benchSize = (gpu: GpuBackend): number => gpu.info.software ? 128 : 1024

const panel = (id: string): HTMLElement => document.querySelector<HTMLElement>(`#${id} .body`)!

async function probeGpu (ctx: PageContext, state: PageState): Promise<void> {
  const body = panel('gpu-panel')
  try {
    state.gpu = await GpuBackend.create()
  } catch (e) {
    const reason = (e as Error).message
    ctx.setGpu({ state: 'missing', reason })
    renderError(body, reason, ctx.cpuChosen ? undefined : () => { ctx.useCpu() })
    document.body.dataset.gpu = 'missing'
    return
  }
  ctx.setGpu({ state: 'ready', gpu: state.gpu })
  renderGpuInfo(body, state.gpu)
  document.body.dataset.gpu = 'ready'
  // `?device=cpu`: this tab computes on the CPU twins; the GPU's self-test and benchmark would
  // only take the CPU from them (software adapters run on it).
  if (ctx.params.device === 'cpu') {
    body.append(el('p', { class: 'hint', id: 'gpu-cpu-note' }, 'This tab computes on the CPU (?device=cpu): the GPU self-test is skipped.'))
    return
  }
  state.selfTest = await runSelfTests(state.gpu, selfTestTable(body))
  document.body.dataset.selftest = state.selfTest.every(r => r.ok) ? 'pass' : 'fail'
  const n = benchSize(state.gpu)
  const { gflops } = await benchMatmul(state.gpu, n, 3)
  state.gflops = gflops
  renderBench(body, n, gflops)
  document.body.dataset.bench = 'done'
  // The patch stays in selfData, and the entry's periodic refresh publishes it again.
  void ctx.publishSelf({ gflops: Math.round(gflops * 100) / 100 }).catch(() => {})
}

async function main (): Promise<void> {
  let params: PageParams
  try {
    params = readPageParams(location.href)
  } catch (e) {
    document.querySelector('main')!.replaceChildren(el('p', { class: 'error', id: 'param-error', role: 'alert' }, (e as Error).message))
    return
  }
  const ctx = new PageContext(params)
  window.webswarmPage = ctx
  const state: PageState = {}
  window.webswarmGpu = state
  mountNotices(document.querySelector<HTMLElement>('#notices')!, document.querySelector<HTMLElement>('#page-log')!, ctx)
  mountSwarmMap(panel('net-panel'), ctx)
  const pieces = swarmPieces(ctx)
  const trainer = mountTrainPanel(panel('train-panel'), ctx)
  const contribution = mountContributePanel(panel('contribute-panel'), ctx, pieces, trainer)
  mountChatPanel(panel('chat-panel'), ctx, pieces, contribution)
  ctx.addEventListener('swarm', () => { document.body.dataset.net = ctx.swarmStatus.state === 'joined' ? 'ready' : ctx.swarmStatus.state === 'error' ? 'error' : 'joining' })
  // A failure shows as the notices' reachability line, with Retry (notices.ts).
  void ctx.readModel()
  void ctx.join()
  // `?serve=A:B` or `?serve=auto`: contribute as soon as the swarm is joined (scripts, demos).
  const serve = new URLSearchParams(location.search).get('serve')
  if (serve !== null) contribution.start(serve).catch(e => { ctx.notify(`Could not contribute: ${(e as Error).message}`, 'error') })
  await probeGpu(ctx, state)
}

void main()
