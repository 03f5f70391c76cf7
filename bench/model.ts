/**
 * `npm run bench:model` — one peer, one model, no network:
 *   prefill tokens/s  (a prompt of --prompt-len tokens through InferenceSession.feed),
 *   decode tokens/s   (--decode tokens, one feed each, KV cache),
 *   train tokens/s    (--train-steps Trainer steps of one --seq-len window: forward, backward, AdamW),
 * for the tiny fixtures and the embedded default models, on WebGPU and on the CPU twins.
 * Each figure is measured after a warm-up pass (pipelines compiled, pool filled).
 * Flags: --devices webgpu,cpu  --prompt-len 32  --decode 32  --seq-len 32  --train-steps 2
 * Writes bench/results/model.json.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import type { Backend } from '../web/src/gpu/backend.ts'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { GpuBackend } from '../web/src/gpu/gpu-backend.ts'
import { loadModel } from '../web/src/model/model.ts'
import { InferenceSession } from '../web/src/model/generate.ts'
import { Trainer } from '../web/src/model/train.ts'
import { Rng } from '../web/src/util/rng.ts'

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}

const PROMPT = Number(arg('prompt-len', '32'))
const DECODE = Number(arg('decode', '32'))
const SEQ = Number(arg('seq-len', '32'))
const TRAIN_STEPS = Number(arg('train-steps', '2'))
const DEVICES = arg('devices', 'webgpu,cpu').split(',')

const MODELS: Record<string, string> = {
  'tiny-llama (fixture)': 'test/fixtures/tiny-llama',
  'tiny-mixtral (fixture)': 'test/fixtures/tiny-mixtral',
  'byte-llama (default)': 'models/byte-llama',
  'byte-mixtral (default)': 'models/byte-mixtral'
}

interface Row {
  model: string
  device: string
  params: number
  prefill_tps: number
  decode_tps: number
  train_tps: number
}

function ids (n: number, vocab: number, seed: number): number[] {
  const r = new Rng(seed)
  return Array.from({ length: n }, () => r.int(vocab))
}

async function measure (dir: string, be: Backend): Promise<Omit<Row, 'model' | 'device'>> {
  const m = await loadModel(dir, be)
  const V = m.config.vocabSize
  const prompt = ids(PROMPT, V, 1)
  const params = [...m.params.values()].reduce((a, t) => a + t.numel, 0)

  const runInference = async (): Promise<{ prefill: number, decode: number }> => {
    const s = new InferenceSession(m, PROMPT + DECODE)
    let t = performance.now()
    let logits = await s.feed(prompt)
    const prefill = PROMPT / ((performance.now() - t) / 1000)
    t = performance.now()
    for (let i = 0; i < DECODE; i++) {
      let best = 0
      for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j
      logits = await s.feed([best])
    }
    const decode = DECODE / ((performance.now() - t) / 1000)
    s.dispose()
    return { prefill, decode }
  }
  await runInference() // warm-up: compiles every pipeline this shape needs
  const inf = await runInference()

  const trainer = new Trainer(m, { lr: 1e-4, totalSteps: TRAIN_STEPS + 1 })
  const batch = [{ inputs: ids(SEQ, V, 2), targets: ids(SEQ, V, 3) }]
  await trainer.trainStep(batch) // warm-up
  const t = performance.now()
  for (let i = 0; i < TRAIN_STEPS; i++) await trainer.trainStep(batch)
  const train = TRAIN_STEPS * SEQ / ((performance.now() - t) / 1000)
  trainer.dispose()
  m.dispose()
  return { params, prefill_tps: inf.prefill, decode_tps: inf.decode, train_tps: train }
}

const rows: Row[] = []
let deviceName = ''
for (const dev of DEVICES) {
  let be: Backend
  if (dev === 'cpu') be = cpu
  else {
    const g = await GpuBackend.create()
    deviceName = `${g.info.vendor} ${g.info.architecture} ${g.info.description}`.trim()
    be = g
  }
  for (const [name, dir] of Object.entries(MODELS)) {
    if (!existsSync(`${dir}/config.json`)) { console.error(`skip ${name}: ${dir} not found`); continue }
    const r = await measure(dir, be)
    rows.push({ model: name, device: dev, ...r })
    console.log(`${name.padEnd(24)} ${dev.padEnd(7)} params ${String(r.params).padStart(8)}  prefill ${r.prefill_tps.toFixed(1).padStart(8)} tok/s  decode ${r.decode_tps.toFixed(1).padStart(7)} tok/s  train ${r.train_tps.toFixed(1).padStart(7)} tok/s`)
  }
  if (be !== cpu) (be as GpuBackend).destroy()
}

mkdirSync('bench/results', { recursive: true })
writeFileSync('bench/results/model.json', JSON.stringify({
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, webgpu: deviceName },
  settings: { promptLen: PROMPT, decodeTokens: DECODE, trainSeqLen: SEQ, trainSteps: TRAIN_STEPS },
  results: rows
}, null, 2) + '\n')
console.log('wrote bench/results/model.json')
