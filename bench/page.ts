/**
 * bench:page — does serving blocks keep the page responsive? A relay (serving the built page,
 * `npx vite build` first) and headless Chromium: tab A serves every block of byte-llama
 * (`?serve=0:3`) with its blocks in the compute worker or on the page thread (`?compute=main`),
 * tab B generates through it. In tab A a 10 ms timer measures how late the page's event loop
 * answers while B generates: the worst and the 95th-percentile delay, ms (what a click would wait).
 *
 *   npx vite build && npm run bench:page -- --runs 3 --tokens 32 --device cpu
 *
 * Options: --runs N (per mode, default 3), --tokens N (default 32), --device cpu|gpu (tab A's
 * compute: the CPU twins, or WebGPU on whatever adapter Chromium finds; default cpu), --port P.
 * Results: bench/results/page.json (appended) and a table on stdout.
 */
import { spawn } from 'node:child_process'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { chromium } from '@playwright/test'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '32' },
    device: { type: 'string', default: 'cpu' },
    port: { type: 'string', default: '18620' }
  }
})
const RUNS = Number(values.runs)
const TOKENS = Number(values.tokens)
const DEVICE = values.device === 'gpu' ? 'gpu' : 'cpu'
const PORT = Number(values.port)
/** Probe period of tab A's event-loop timer, ms. */
const PROBE_MS = 10

async function waitHealthy (url: string, timeoutMs: number): Promise<void> {
  const t0 = Date.now()
  for (;;) {
    try {
      if ((await fetch(url)).ok) return
    } catch {}
    if (Date.now() - t0 > timeoutMs) throw new Error(`relay did not answer ${url} within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }

async function main (): Promise<void> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'webswarm-bench-page-'))
  const relay = spawn(process.execPath, ['--import', 'tsx', 'relay/main.ts', '--host', '127.0.0.1', '--port', String(PORT), '--data-dir', dataDir, '--ice-server', 'none', '--no-api'], { stdio: 'ignore' })
  const base = `http://127.0.0.1:${PORT}`
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-features=WebRtcHideLocalIpsWithMdns'] })
  const rows: Array<{ compute: string, run: number, maxLagMs: number, p95LagMs: number, tokens: number, seconds: number }> = []
  try {
    await waitHealthy(`${base}/health`, 60_000)
    for (let run = 0; run < RUNS; run++) {
      for (const compute of ['worker', 'main']) {
        const context = await browser.newContext()
        const a = await context.newPage()
        await a.goto(`${base}/?serve=0:3&compute=${compute}${DEVICE === 'cpu' ? '&device=cpu' : ''}`)
        const b = await context.newPage()
        await b.goto(`${base}/?device=cpu`)
        await a.waitForFunction(() => document.body.dataset.serving === '0:3', null, { timeout: 120_000 })
        await b.waitForFunction(() => document.body.dataset.net === 'ready', null, { timeout: 60_000 })
        await a.evaluate((ms) => {
          const w = window as unknown as { lags: number[], probe?: ReturnType<typeof setInterval> }
          w.lags = []
          let last = performance.now()
          w.probe = setInterval(() => { const now = performance.now(); w.lags.push(now - last - ms); last = now }, ms)
        }, PROBE_MS)
        const t0 = Date.now()
        const out = await b.evaluate(async (n) => await window.webswarmChat!.generate('The ', n, { stopTokens: [] }), TOKENS)
        const seconds = (Date.now() - t0) / 1000
        const lags = await a.evaluate(() => { const w = window as unknown as { lags: number[], probe?: ReturnType<typeof setInterval> }; clearInterval(w.probe); return w.lags })
        const sorted = [...lags].sort((x, y) => x - y)
        rows.push({ compute, run, maxLagMs: sorted.at(-1) ?? 0, p95LagMs: sorted[Math.floor(0.95 * (sorted.length - 1))] ?? 0, tokens: out.length, seconds })
        console.log(`run ${run} compute=${compute}: ${out.length} tokens in ${seconds.toFixed(1)} s; tab A event-loop delay max ${rows.at(-1)!.maxLagMs.toFixed(0)} ms, p95 ${rows.at(-1)!.p95LagMs.toFixed(0)} ms`)
        await context.close()
      }
    }
  } finally {
    await browser.close()
    relay.kill('SIGTERM')
    rmSync(dataDir, { recursive: true, force: true })
  }
  const summary = ['worker', 'main'].map(c => {
    const r = rows.filter(x => x.compute === c)
    return { compute: c, runs: r.length, medianMaxLagMs: median(r.map(x => x.maxLagMs)), medianP95LagMs: median(r.map(x => x.p95LagMs)), medianSeconds: median(r.map(x => x.seconds)) }
  })
  console.table(summary)
  mkdirSync('bench/results', { recursive: true })
  appendFileSync('bench/results/page.json', JSON.stringify({ at: new Date().toISOString(), device: DEVICE, tokens: TOKENS, load: os.loadavg(), rows, summary }) + '\n')
}

main().catch(e => { console.error(e); process.exit(1) })
