/**
 * What the model-loading commands share: `--model FILE.gguf|URL|DIR` resolved to what the loader
 * reads, the memory plan checked against `--max-gpu-memory` before a byte of weights is read,
 * and load progress on stderr.
 */
import type { ModelConfig } from '../model/config.ts'
import { checkBudget, costliestBlockPlan, describePart, formatBytes, parseByteSize, planPart, readPlanTensors, spanLengthThatFits, MemoryBudgetError, MemoryPlanArgumentError, type PlanOptions, type PlanTensor } from '../model/memory-plan.ts'
import type { PartSpec } from '../model/params.ts'
import { isGgufName, type ModelSource } from '../model/source.ts'
import { UsageError, str, type Flags } from './args.ts'
import { stderrProgress } from './progress.ts'

/**
 * `--model` as the loader takes it: a local directory holding no config.json and exactly one
 * .gguf file stands for that file (a folder downloaded with one quantization in it); anything
 * else (a .gguf path or URL, a safetensors folder or URL) is passed on as given.
 */
export async function resolveModelArg (where: string): Promise<string> {
  if (/^https?:\/\//i.test(where) || isGgufName(where)) return where
  const fs = await import('node:fs/promises')
  const path = await import('node:path')
  let names: string[]
  try {
    if (!(await fs.stat(where)).isDirectory()) return where
    names = await fs.readdir(where)
  } catch {
    return where // the loader reports a missing path in its own words
  }
  if (names.includes('config.json')) return where
  const ggufs = names.filter(isGgufName)
  if (ggufs.length > 1) throw new UsageError(`--model ${where}: ${ggufs.length} .gguf files (${ggufs.join(', ')}); name one`)
  return ggufs.length === 1 ? path.join(where, ggufs[0]) : where
}

/** `--max-gpu-memory SIZE` in bytes, or undefined (no budget: no check). */
export function maxGpuMemory (f: Flags): number | undefined {
  const v = str(f, 'max-gpu-memory')
  if (v === undefined) return undefined
  try {
    return parseByteSize(v)
  } catch (e) {
    if (e instanceof MemoryPlanArgumentError) throw new UsageError(`--max-gpu-memory: ${e.message}`)
    throw e
  }
}

/** A model's tensors, read once (headers only) for any number of plans. */
export class ModelPlanner {
  private tensors?: Promise<PlanTensor[]>

  constructor (readonly source: ModelSource, readonly config: ModelConfig, readonly budget: number | undefined, private readonly log: (line: string) => void) {}

  private async all (): Promise<PlanTensor[]> {
    this.tensors ??= readPlanTensors(this.source)
    return await this.tensors
  }

  /** Checks `part` against the budget (a no-op without one): logs a plan that fits, throws one that does not. */
  async check (part: PartSpec, opts: PlanOptions): Promise<void> {
    if (this.budget === undefined) return
    const plan = planPart(this.config, await this.all(), part, opts)
    checkBudget(plan, this.budget)
    this.log(`memory plan: ${describePart(part)}: ${formatBytes(plan.weightsBytes)} weights + ${formatBytes(plan.kvBytes)} KV (${plan.sessions} × ${plan.context}, ${plan.kvDtype}) + ${formatBytes(plan.scratchBytes)} scratch = ${formatBytes(plan.totalBytes)} of ${formatBytes(this.budget)}`)
  }

  /**
   * The most blocks (at most `wanted`) any window of which fits the budget — a server choosing
   * its own span may land anywhere; throws, naming the costliest block, when not even one fits.
   */
  async blocksThatFit (wanted: number, opts: PlanOptions): Promise<number> {
    if (this.budget === undefined) return wanted
    const tensors = await this.all()
    const n = Math.min(wanted, spanLengthThatFits(this.config, tensors, this.budget, opts))
    if (n === 0) throw new MemoryBudgetError(costliestBlockPlan(this.config, tensors, opts), this.budget)
    if (n < wanted) this.log(`memory plan: ${n} of the ${wanted} blocks asked for fit ${formatBytes(this.budget)}`)
    return n
  }
}

/** LoadOptions.onProgress on stderr, unless --quiet. */
export function loadProgress (f: Flags, label: string): ((p: { bytesLoaded: number, bytesTotal: number }) => void) | undefined {
  return f.quiet === true ? undefined : stderrProgress(label)
}
