import { GpuBackend } from '../gpu/gpu-backend.ts'
import { renderError, renderGpuInfo } from './gpu-panel.ts'

/** Page entry: probe WebGPU, then mount each panel. Panels fail independently. */
async function main (): Promise<void> {
  const gpuBody = document.querySelector<HTMLElement>('#gpu-panel .body')!
  let gpu: GpuBackend | undefined
  try {
    gpu = await GpuBackend.create()
    renderGpuInfo(gpuBody, gpu)
  } catch (e) {
    renderError(gpuBody, (e as Error).message)
  }
  document.body.dataset.gpu = gpu === undefined ? 'missing' : 'ready'
}

void main()
