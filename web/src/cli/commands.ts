import { mkdir, readFile, writeFile } from 'node:fs/promises'
import type { Backend } from '../gpu/backend.ts'
import { UsageError, device, ids, int, num, optInt, optNum, required, str, type Flags } from './args.ts'
import { loadConfig, loadModel, initModel, type CausalLM } from '../model/model.ts'
import type { PlanOptions } from '../model/memory-plan.ts'
import { wholeModel } from '../model/params.ts'
import { sourceFrom } from '../model/source.ts'
import { ModelPlanner, loadProgress, maxGpuMemory, resolveModelArg } from './model-plan.ts'
import { parseConfig } from '../model/config.ts'
import { generate } from '../model/generate.ts'
import { chatFromFlags, chatPromptBound, printUntilStopText } from './chat.ts'
import { samplingFlags } from './sampling.ts'
import { lossAndGradients, evaluateLoss, Trainer } from '../model/train.ts'
import { ADAMW_PRETRAIN_DEFAULTS as ADAMW } from '../model/adamw-defaults.ts'
import { encodeSafetensors } from '../model/safetensors.ts'
import { toHfTensors } from '../model/weights.ts'
import { ByteTokenizer } from '../model/tokenizer.ts'
import { TextDataset, brownCorpus, type Window } from '../model/data.ts'
import { directoryStore, loadOptimizerState, readTrainerMeta, saveCheckpoint } from '../model/checkpoint.ts'

/** Opens the chosen backend; a missing adapter surfaces as NoWebGpuError (one line, see bin.ts). */
export async function openBackend (f: Flags): Promise<Backend> {
  if (device(f) === 'cpu') return (await import('../gpu/cpu-backend.ts')).cpu
  const { GpuBackend } = await import('../gpu/gpu-backend.ts')
  return await GpuBackend.create()
}

async function releaseBackend (be: Backend): Promise<void> {
  await be.sync()
  if (be.kind === 'webgpu') (be as import('../gpu/gpu-backend.ts').GpuBackend).destroy()
}

/**
 * Loads --model (a .gguf file or URL, a folder holding one, or a safetensors folder or URL),
 * first checking the whole model against --max-gpu-memory for one session of `plan`'s context;
 * progress on stderr.
 */
async function withModel<T> (f: Flags, plan: PlanOptions, fn: (m: CausalLM) => Promise<T>, keepDtypes = true): Promise<T> {
  const where = await resolveModelArg(required(f, 'model'))
  const source = sourceFrom(where)
  const budget = maxGpuMemory(f)
  // Read before the device opens: a --model URL that does not answer fails at once, not after WebGPU's start-up.
  const config = await loadConfig(source)
  if (budget !== undefined) await new ModelPlanner(source, config, budget, line => { if (f.quiet !== true) process.stderr.write(`${line}\n`) }).check(wholeModel(config), { sessions: 1, ...plan })
  const be = await openBackend(f)
  const model = await loadModel(source, be, { config, keepDtypes, onProgress: loadProgress(f, `loading ${where}`) })
  try {
    return await fn(model)
  } finally {
    model.dispose()
    await releaseBackend(be)
  }
}

/** Full-precision JSON numbers for f32 values (shortest round-trip repr of the double). */
function rows (data: Float32Array, T: number, V: number): number[][] {
  const out: number[][] = []
  for (let t = 0; t < T; t++) out.push(Array.from(data.subarray(t * V, (t + 1) * V)))
  return out
}

export async function logits (f: Flags): Promise<number> {
  const tokens = ids(f, 'tokens')
  const out = required(f, 'out')
  await withModel(f, { context: tokens.length, stepTokens: tokens.length }, async m => {
    const l = m.logits(tokens)
    const data = await l.readF32()
    l.dispose()
    await writeFile(out, JSON.stringify({ logits: rows(data, tokens.length, m.config.vocabSize) }))
  })
  return 0
}

export async function generateCmd (f: Flags): Promise<number> {
  const maxNew = int(f, 'max-new-tokens', 0)
  const out = str(f, 'out')
  // The prompt's token count is known once the tokenizer is loaded: bound it by its UTF-8 bytes.
  const promptTokens = f.tokens !== undefined ? ids(f, 'tokens').length : f.chat !== undefined ? chatPromptBound(f) : new TextEncoder().encode(str(f, 'prompt') ?? '').length + 8
  await withModel(f, { context: promptTokens + maxNew, stepTokens: promptTokens }, async m => {
    let prompt: number[]
    let stopTokens: number[] | undefined // --chat: the end-of-turn ids too
    let stopStrings: readonly string[] = [] // --chat without a chat template: the transcript's next turn
    if (f.tokens !== undefined) prompt = ids(f, 'tokens')
    else if (f.chat !== undefined) ({ prompt, stopTokens, stopStrings } = chatFromFlags(f, m.tokenizer, m.config.eosTokenIds))
    else if (f.prompt !== undefined) {
      if (m.tokenizer === undefined) throw new UsageError('--prompt needs a tokenizer (tokenizer.json, or a vocabulary of 256 bytes); use --tokens')
      prompt = m.tokenizer.encode(required(f, 'prompt'))
    } else throw new UsageError('give --tokens IDS, --prompt TEXT or --chat TEXT')
    // Text in, text out; ids in (--tokens), ids out.
    const tokens = await printUntilStopText(stopStrings, f.tokens === undefined ? m.tokenizer?.decoder() : undefined, async onToken => await generate(m, prompt, {
      maxNewTokens: maxNew,
      ...samplingFlags(f),
      stopTokens,
      onToken
    }))
    process.stdout.write('\n')
    if (out !== undefined) await writeFile(out, JSON.stringify({ tokens }) + '\n')
  })
  return 0
}

export async function grad (f: Flags): Promise<number> {
  const inputs = ids(f, 'inputs')
  const targets = ids(f, 'targets')
  const outDir = required(f, 'out')
  if (inputs.length !== targets.length) throw new UsageError(`--inputs has ${inputs.length} ids but --targets has ${targets.length}`)
  await withModel(f, { context: inputs.length, stepTokens: inputs.length }, async m => {
    const { loss, grads } = await lossAndGradients(m, inputs, targets)
    const specs = m.paramSpecs()
    const values = new Map<string, Float32Array>()
    for (const s of specs) {
      const g = grads.get(s.name)
      if (g === undefined) throw new Error(`no gradient for ${s.name}`)
      values.set(s.name, await g.readF32())
    }
    for (const g of grads.values()) g.dispose()
    await mkdir(outDir, { recursive: true })
    await writeFile(`${outDir}/grads.safetensors`, encodeSafetensors(toHfTensors(specs, values), { format: 'pt' }))
    await writeFile(`${outDir}/result.json`, JSON.stringify({ loss }) + '\n')
  }, false) // gradients need f32 weights
  return 0
}

/** Validation windows: fixed positions spread over the held-out text (same every evaluation). */
function validationWindows (ds: TextDataset, seqLen: number, n: number): Window[] {
  const span = ds.bytes.length - seqLen - 1
  if (span < 0) return []
  const out: Window[] = []
  for (let i = 0; i < n; i++) out.push(ds.window(Math.floor(span * i / Math.max(n - 1, 1)), seqLen))
  return out
}

/** Fraction of the corpus held out for validation loss. */
const VALIDATION_FRACTION = 0.01
/** Sequences in each validation evaluation. */
const VALIDATION_WINDOWS = 16

export async function train (f: Flags): Promise<number> {
  const outDir = required(f, 'out')
  const steps = int(f, 'steps', 1)
  const batch = int(f, 'batch', 1)
  const seqLen = int(f, 'seq-len', 1)
  const seed = int(f, 'seed')
  const ckptEvery = int(f, 'checkpoint-every')
  const evalEvery = int(f, 'eval-every')
  const quiet = f.quiet === true
  const dataArg = required(f, 'data')
  const text = dataArg === 'brown' ? await brownCorpus() : await readFile(dataArg)
  const { train: trainSet, validation } = new TextDataset(typeof text === 'string' ? text : new Uint8Array(text)).split(VALIDATION_FRACTION)

  const be = await openBackend(f)
  const store = directoryStore(outDir)
  const resumeMeta = f.resume === true ? await readTrainerMeta(store) : undefined
  let model: CausalLM
  if (resumeMeta !== undefined) model = await loadModel(outDir, be, { keepDtypes: false })
  else if (f.model !== undefined) model = await loadModel(required(f, 'model'), be, { keepDtypes: false }) // training widens 16-bit weights to f32
  else if (f.config !== undefined) {
    const cfg = parseConfig(JSON.parse(await readFile(required(f, 'config'), 'utf8')))
    model = initModel(cfg, be, seed, cfg.vocabSize === 256 ? new ByteTokenizer() : undefined)
  } else throw new UsageError('give --config FILE (train from scratch) or --model DIR (continue from weights)')
  if (model.config.outputRouterLogits) throw new UsageError('output_router_logits: the MoE load-balancing loss is not implemented; set it false')
  if (model.config.vocabSize < 256) throw new UsageError(`byte-level training data needs a vocabulary of at least 256, the model has ${model.config.vocabSize}`)

  // The optimizer's defaults are command-table.ts's (from TRAINER_DEFAULTS.train); warm-up and min-lr follow steps and lr.
  const lr = num(f, 'lr')
  const trainer = new Trainer(model,
    { lr, warmupSteps: optInt(f, 'warmup') ?? Math.min(100, Math.floor(steps / 10)), totalSteps: steps, minLr: optNum(f, 'min-lr') ?? lr / 10 },
    { beta1: num(f, 'beta1'), beta2: num(f, 'beta2'), eps: ADAMW.eps, weightDecay: num(f, 'weight-decay') },
    { maxGradNorm: num(f, 'clip') })
  if (resumeMeta !== undefined) await loadOptimizerState(store, trainer.optimizer, model.paramSpecs())
  const startStep = trainer.step
  const windows = trainSet.windows(seqLen, seed + startStep * 7919) // a resumed run draws fresh windows
  const valWindows = validationWindows(validation, seqLen, VALIDATION_WINDOWS)
  const log: Array<Record<string, number>> = Array.isArray(resumeMeta?.log) ? resumeMeta.log as Array<Record<string, number>> : []
  const meta = (): Record<string, unknown> => ({ data: dataArg, seqLen, batch, steps, seed, device: be.kind, log })
  const t0 = performance.now()
  let tokens = 0
  let ema: number | undefined
  try {
    for (let s = startStep + 1; s <= steps; s++) {
      const b: Window[] = []
      for (let i = 0; i < batch; i++) b.push(windows.next().value as Window)
      const r = await trainer.trainStep(b)
      tokens += r.tokens
      ema = ema === undefined ? r.loss : 0.95 * ema + 0.05 * r.loss
      const tps = tokens / ((performance.now() - t0) / 1000)
      const entry: Record<string, number> = { step: s, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSecond: tps }
      if (evalEvery > 0 && (s % evalEvery === 0 || s === steps) && valWindows.length > 0) entry.validationLoss = await evaluateLoss(model, valWindows)
      log.push(entry)
      if (!quiet) {
        const line = `step ${s}/${steps}  loss ${r.loss.toFixed(4)} (avg ${ema.toFixed(4)})  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(3)}  ${tps.toFixed(0)} tok/s${entry.validationLoss !== undefined ? `  val ${entry.validationLoss.toFixed(4)}` : ''}`
        if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K${entry.validationLoss !== undefined ? '\n' : ''}`)
        else if (s % 10 === 0 || s === steps || entry.validationLoss !== undefined) process.stderr.write(line + '\n')
      }
      if (ckptEvery > 0 && s % ckptEvery === 0 && s !== steps) await saveCheckpoint(store, model, trainer.optimizer, meta())
    }
    if (process.stderr.isTTY && !quiet) process.stderr.write('\n')
    const finalVal = valWindows.length > 0 ? await evaluateLoss(model, valWindows) : undefined
    await saveCheckpoint(store, model, trainer.optimizer, { ...meta(), finalValidationLoss: finalVal })
    if (!quiet) process.stderr.write(`saved ${outDir} (step ${trainer.step}${finalVal !== undefined ? `, validation loss ${finalVal.toFixed(4)}` : ''})\n`)
  } finally {
    trainer.dispose()
    model.dispose()
    await releaseBackend(be)
  }
  return 0
}
