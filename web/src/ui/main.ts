import { GpuBackend } from '../gpu/gpu-backend.ts'
import { benchMatmul } from '../gpu/ops/matmul-bench.ts'
import { runSelfTests, type SelfTestResult } from '../gpu/selftest.ts'
import { renderBench, renderError, renderGpuInfo, selfTestTable } from './gpu-panel.ts'
import { mountNetPanel } from './net-panel.ts'
import { mountTrainPanel } from './train-panel.ts'
import { mountChatPanel } from './chat-panel.ts'

/** What the page exposes for tests and the console. */
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

async function probeGpu (state: PageState): Promise<void> {
  const body = document.querySelector<HTMLElement>('#gpu-panel .body')!
  try {
    state.gpu = await GpuBackend.create()
  } catch (e) {
    renderError(body, (e as Error).message)
    document.body.dataset.gpu = 'missing'
    return
  }
  renderGpuInfo(body, state.gpu)
  document.body.dataset.gpu = 'ready'
  state.selfTest = await runSelfTests(state.gpu, selfTestTable(body))
  document.body.dataset.selftest = state.selfTest.every(r => r.ok) ? 'pass' : 'fail'
  const n = benchSize(state.gpu)
  const { gflops } = await benchMatmul(state.gpu, n, 3)
  state.gflops = gflops
  renderBench(body, n, gflops)
  document.body.dataset.bench = 'done'
}

/** Page entry: probe WebGPU, then mount each panel. Panels fail independently. */
async function main (): Promise<void> {
  const state: PageState = {}
  window.webswarmGpu = state
  void mountNetPanel(document.querySelector<HTMLElement>('#net-panel .body')!)
  // Training runs on this page's GPU once probed; `?device=cpu` (or no WebGPU) uses the CPU twins.
  mountTrainPanel(document.querySelector<HTMLElement>('#train-panel .body')!, async () => {
    if (new URLSearchParams(location.search).get('device') !== 'cpu' && state.gpu !== undefined) return state.gpu
    return (await import('../gpu/cpu-backend.ts')).cpu
  })
  // Chat + serving blocks run on the same GPU (or the CPU twins with `?device=cpu`).
  mountChatPanel(document.querySelector<HTMLElement>('#chat-panel .body')!, async () => {
    while (document.body.dataset.gpu === undefined) await new Promise(resolve => setTimeout(resolve, 50))
    if (new URLSearchParams(location.search).get('device') !== 'cpu' && state.gpu !== undefined) return state.gpu
    return (await import('../gpu/cpu-backend.ts')).cpu
  })
  await probeGpu(state)
}

void main()
