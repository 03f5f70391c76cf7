import type { GpuBackend } from '../gpu/gpu-backend.ts'
import type { SelfTestResult } from '../gpu/selftest.ts'

/** Shows the adapter, its features and limits, or why WebGPU is missing. */
export function renderGpuInfo (body: HTMLElement, gpu: GpuBackend): void {
  const i = gpu.info
  const rows: Array<[string, string]> = [
    ['adapter', [i.vendor, i.architecture, i.device, i.description].filter(s => s !== '').join(' · ') || 'unknown'],
    // No expected speed here: the benchmark below measures this adapter.
    ['software', i.software ? 'yes (runs on the CPU: slow, see the measured matmul below)' : 'no'],
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

/**
 * No WebGPU: says why and offers the CPU twins explicitly (slow, but every panel works on them).
 * `onCpu` runs when the user takes the offer.
 */
export function renderError (body: HTMLElement, message: string, onCpu?: () => void): void {
  const p = document.createElement('p')
  p.className = 'error'
  p.id = 'gpu-error'
  p.setAttribute('role', 'alert')
  p.textContent = message
  body.replaceChildren(p)
  if (onCpu === undefined) return
  const offer = document.createElement('p')
  const btn = document.createElement('button')
  btn.id = 'use-cpu'
  btn.type = 'button'
  btn.className = 'primary'
  btn.textContent = 'Use the CPU instead'
  const hint = document.createElement('span')
  hint.className = 'hint'
  hint.textContent = ' Contribute on this computer\'s CPU: about 10–100× slower than a GPU. (The chat already runs on it.)'
  btn.addEventListener('click', () => {
    onCpu()
    btn.disabled = true
    hint.textContent = ' This tab now computes on the CPU.'
  })
  offer.append(btn, hint)
  body.append(offer)
}

/** A table that fills in as self-test results arrive. */
export function selfTestTable (body: HTMLElement): (r: SelfTestResult) => void {
  // Collapsed: a developer's check. Its summary line counts passes as results come in.
  const box = document.createElement('details')
  box.id = 'selftest-box'
  box.className = 'disclosure'
  const summary = document.createElement('summary')
  summary.textContent = 'Kernel self-test (GPU vs CPU twin): running…'
  const table = document.createElement('table')
  table.id = 'selftest'
  const head = table.createTHead().insertRow()
  for (const t of ['family', 'case', 'result', 'max |err|', 'ms']) head.appendChild(document.createElement('th')).textContent = t
  box.append(summary, table)
  body.append(box)
  let pass = 0
  let fail = 0
  return r => {
    if (r.ok) pass++
    else fail++
    summary.textContent = `Kernel self-test (GPU vs CPU twin): ${pass} passed${fail > 0 ? `, ${fail} FAILED` : ''}`
    if (fail > 0) box.open = true
    const tr = table.insertRow()
    tr.dataset.ok = String(r.ok)
    tr.insertCell().textContent = r.family
    tr.insertCell().textContent = r.name
    const res = tr.insertCell()
    res.textContent = r.ok ? 'pass' : `FAIL${r.error !== undefined ? `: ${r.error}` : ''}`
    res.className = r.ok ? 'ok' : 'fail'
    tr.insertCell().textContent = Number.isFinite(r.maxErr) ? r.maxErr.toExponential(1) : '—'
    tr.insertCell().textContent = r.ms.toFixed(0)
  }
}

export function renderBench (body: HTMLElement, n: number, gflops: number): void {
  const p = document.createElement('p')
  p.id = 'gpu-bench'
  p.dataset.gflops = String(gflops)
  p.textContent = `matmul ${n}×${n}×${n}: ${gflops.toFixed(2)} GFLOP/s`
  body.append(p)
}
