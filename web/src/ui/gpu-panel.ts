import type { GpuBackend } from '../gpu/gpu-backend.ts'

/** Shows the adapter, its features and limits, or why WebGPU is missing. */
export function renderGpuInfo (body: HTMLElement, gpu: GpuBackend): void {
  const i = gpu.info
  const rows: Array<[string, string]> = [
    ['adapter', [i.vendor, i.architecture, i.device, i.description].filter(s => s !== '').join(' · ') || 'unknown'],
    ['software', i.software ? 'yes (expect ~0.3 GFLOP/s)' : 'no'],
    ['features', [i.f16 ? 'shader-f16' : '', i.subgroups ? 'subgroups' : '', i.timestampQuery ? 'timestamp-query' : ''].filter(Boolean).join(', ') || 'none'],
    ['max storage binding', `${(i.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`],
    ['workgroup memory', `${i.limits.maxComputeWorkgroupStorageSize} B`]
  ]
  const table = document.createElement('table')
  table.id = 'gpu-info'
  for (const [k, v] of rows) {
    const tr = table.insertRow()
    tr.insertCell().textContent = k
    tr.insertCell().textContent = v
  }
  body.replaceChildren(table)
}

export function renderError (body: HTMLElement, message: string): void {
  const p = document.createElement('p')
  p.className = 'error'
  p.id = 'gpu-error'
  p.textContent = message
  body.replaceChildren(p)
}
