/**
 * bench:page — does serving blocks keep the page responsive? A relay (serving the built page,
 * `npx vite build` first) and headless Chromium: tab A serves every block of byte-llama
 * (`?serve=0:3`) with its blocks in the compute worker or on the page thread (`?compute=main`),
 * tab B generates through it. In tab A a 10 ms timer measures how late the page's event loop
 * answers while B generates: the worst and the 95th-percentile delay, ms (what a click would wait).
 * A byte-llama step is about a millisecond, shorter than a frame: `--model wide` makes the relay
 * serve instead a synthetic byte-level Llama with random weights whose step takes longer than a
 * frame (C 512, 8 layers, SwiGLU 1408: 23.6 M block parameters), so that where the blocks run shows.
 *
 *   npx vite build && npm run bench:page -- --runs 3 --tokens 32 --device cpu [--model wide]
 *
 * Options: --runs N (per mode, default 3), --tokens N (default 32), --device cpu|gpu (tab A's
 * compute: the CPU twins, or WebGPU on whatever adapter Chromium finds; default cpu),
 * --model byte-llama|wide (default byte-llama), --port P.
 * Results: bench/results/page.json (appended) and a table on stdout.
 */
import { spawn } from 'node:child_process'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { chromium } from '@playwright/test'
import { encodeSafetensors, type StWriteTensor } from '../web/src/model/safetensors.ts'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    tokens: { type: 'string', default: '32' },
    device: { type: 'string', default: 'cpu' },
    model: { type: 'string', default: 'byte-llama' },
    port: { type: 'string', default: '18620' }
  }
})
const RUNS = Number(values.runs)
const TOKENS = Number(values.tokens)
const DEVICE = values.device === 'gpu' ? 'gpu' : 'cpu'
const PORT = Number(values.port)
const WIDE = values.model === 'wide'
/** The synthetic model of `--model wide`. */
const WIDE_SHAPE = { C: 512, L: 8, I: 1408, heads: 8, kvHeads: 4, V: 256 }
const LAYERS = WIDE ? WIDE_SHAPE.L : 3

/** Writes the `--model wide` folder: a byte-level Llama config and seeded random f32 weights. */
function writeWideModel (dir: string): void {
  const { C, L, I, heads, kvHeads, V } = WIDE_SHAPE
  const hd = C / heads
  let seed = 12345
  const rand = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    return (seed / 2 ** 32 - 0.5) * 2 * scale
  })
  const t = (name: string, shape: number[], data: Float32Array): StWriteTensor => ({ name, shape, data })
  const ones = (n: number): Float32Array => new Float32Array(n).fill(1)
  const tensors: StWriteTensor[] = [t('model.embed_tokens.weight', [V, C], rand(V * C, 0.5)), t('lm_head.weight', [V, C], rand(V * C, 0.05)), t('model.norm.weight', [C], ones(C))]
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`
    tensors.push(t(`${p}input_layernorm.weight`, [C], ones(C)), t(`${p}post_attention_layernorm.weight`, [C], ones(C)),
      t(`${p}self_attn.q_proj.weight`, [C, C], rand(C * C, 0.04)), t(`${p}self_attn.k_proj.weight`, [kvHeads * hd, C], rand(kvHeads * hd * C, 0.04)),
      t(`${p}self_attn.v_proj.weight`, [kvHeads * hd, C], rand(kvHeads * hd * C, 0.04)), t(`${p}self_attn.o_proj.weight`, [C, C], rand(C * C, 0.04)),
      t(`${p}mlp.gate_proj.weight`, [I, C], rand(I * C, 0.04)), t(`${p}mlp.up_proj.weight`, [I, C], rand(I * C, 0.04)), t(`${p}mlp.down_proj.weight`, [C, I], rand(C * I, 0.03)))
  }
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: V, hidden_size: C, intermediate_size: I, num_hidden_layers: L,
    num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: hd, hidden_act: 'silu', rope_theta: 10000, rms_norm_eps: 1e-5,
    tie_word_embeddings: false, max_position_embeddings: 256, torch_dtype: 'float32', attention_bias: false, mlp_bias: false
  }))
  writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors))
}
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
  const modelArgs: string[] = []
  if (WIDE) {
    writeWideModel(path.join(dataDir, 'models', 'wide'))
    modelArgs.push('--models-dir', path.join(dataDir, 'models'), '--default-model', 'wide')
  }
  const relay = spawn(process.execPath, ['--import', 'tsx', 'relay/main.ts', '--host', '127.0.0.1', '--port', String(PORT), '--data-dir', dataDir, '--ice-server', 'none', '--no-api', ...modelArgs], { stdio: 'ignore' })
  const base = `http://127.0.0.1:${PORT}`
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-features=WebRtcHideLocalIpsWithMdns'] })
  const rows: Array<{ compute: string, run: number, maxLagMs: number, p95LagMs: number, tokens: number, seconds: number }> = []
  try {
    await waitHealthy(`${base}/health`, 60_000)
    for (let run = 0; run < RUNS; run++) {
      for (const compute of ['worker', 'main']) {
        const context = await browser.newContext()
        const a = await context.newPage()
        await a.goto(`${base}/?serve=0:${LAYERS}&compute=${compute}${DEVICE === 'cpu' ? '&device=cpu' : ''}`)
        const b = await context.newPage()
        await b.goto(`${base}/?device=cpu`)
        await a.waitForFunction((span) => document.body.dataset.serving === span, `0:${LAYERS}`, { timeout: 180_000 })
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
  appendFileSync('bench/results/page.json', JSON.stringify({ at: new Date().toISOString(), device: DEVICE, model: WIDE ? { name: 'wide', ...WIDE_SHAPE } : 'byte-llama', tokens: TOKENS, load: os.loadavg(), rows, summary }) + '\n')
}

main().catch(e => { console.error(e); process.exit(1) })
