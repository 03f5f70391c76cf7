/**
 * What the role chooser (role-choice.ts) reads, gathered by a tab: the models it could serve —
 * its own and the relay's other folders (`/models` listing), each read (config and tensor sizes
 * only, no weights) and sized against the GPU-memory budget; the live swarm entries (coverage,
 * expert hosts, who chats with which model); the training runs on the swarm doc.
 */
import { parseConfig, type ModelConfig } from '../model/config.ts'
import { costliestBlockPlan, planPart, readPlanTensors, spanLengthThatFits, type PlanTensor } from '../model/memory-plan.ts'
import { loadConfig } from '../model/model.ts'
import { partParams, wholeModel } from '../model/params.ts'
import { sourceFrom } from '../model/source.ts'
import type { PeerEntry } from '../net/crdt/entries.ts'
import type { Swarm } from '../net/index.ts'
import { RUN_ID_PATTERN, RunBoard, TRAIN_MAP } from '../swarm/train/run-board.ts'
import type { PageContext } from './context.ts'
import { listedFiles } from './model-listing.ts'
import type { ModelOption, RoleInputs, RunOption } from './role-choice.ts'
import { expertCoverage, modelCoverage } from './swarm-summary.ts'

/** KV-cache positions a serving tab offers (one chat's context): what a block's plan includes. */
export const SERVE_PLAN = { sessions: 1, context: 2048 }
/** Models of the relay's listing a tab reads (each costs two small range reads). */
const MAX_LISTED_MODELS = 16
/** Training runs considered (the map draws as many). */
const MAX_RUNS = 6
/** f32 copies a DiLoCo member keeps per parameter: weights, gradients, AdamW m and v, θ_global, outer momentum. */
const TRAIN_COPIES = 6

/** Where a model is and, when the relay lists them, its files (see model-listing.ts). */
interface ModelPlace { id: string, url: string, own: boolean, files?: readonly string[] }

/** A model this tab can load: where, its config and tensor sizes. */
export interface LoadableModel extends ModelPlace { config: ModelConfig, tensors: PlanTensor[] }

/**
 * The models this tab could serve, read once per page: its own model, then every folder or GGUF
 * file of the relay's `/models` listing (the folder `/models/default` stands for is the page's
 * own model, under the page's id). A model whose config or tensor list cannot be read is
 * returned in `unloadable` with the reason.
 */
export async function loadableModels (ctx: PageContext): Promise<{ models: LoadableModel[], unloadable: Array<{ id: string, reason: string }> }> {
  const wanted: ModelPlace[] = [{ id: ctx.params.modelId, url: ctx.params.modelUrl, own: true }]
  const unloadable: Array<{ id: string, reason: string }> = []
  try {
    const listing = await ctx.modelListing()
    wanted[0].files = listedFiles(listing, ctx.params.relayUrl, ctx.params.modelUrl)
    const aliased = ctx.params.modelUrl === new URL('models/default', ctx.params.relayUrl).toString() ? listing.default : undefined
    for (const { name, files } of listing.models.slice(0, MAX_LISTED_MODELS)) {
      const id = name.split('/').at(-1)!
      if (name === aliased || wanted.some(w => w.id === id)) continue
      wanted.push({ id, url: new URL(`models/${name}`, ctx.params.relayUrl).toString(), own: false, files })
    }
  } catch (e) {
    ctx.log(`contribute: the relay's model list is unavailable (${(e as Error).message}): only ${ctx.params.modelId} is considered`)
  }
  const models: LoadableModel[] = []
  for (const w of wanted) {
    try {
      models.push(await readModel(w))
    } catch (e) {
      unloadable.push({ id: w.id, reason: `cannot be loaded here: ${(e as Error).message}` })
    }
  }
  return { models, unloadable }
}

/** Reads one model's config and tensor sizes (no weights). */
export async function readModel (w: ModelPlace): Promise<LoadableModel> {
  const source = sourceFrom(w.url, { files: w.files })
  return { ...w, config: await loadConfig(source), tensors: await readPlanTensors(source) }
}

/** A loadable model's costs under `budget` (undefined: no budget). */
function modelOption (m: LoadableModel, budget: number | undefined): ModelOption {
  const c = m.config
  return {
    id: m.id,
    numBlocks: c.numLayers,
    numExperts: c.numExperts,
    maxBlocks: budget === undefined ? c.numLayers : spanLengthThatFits(c, m.tensors, budget, SERVE_PLAN),
    blockBytes: costliestBlockPlan(c, m.tensors, SERVE_PLAN).totalBytes,
    // An expert host loads the layer's whole block (the reader loads by parameter), no KV cache to speak of.
    expertLayerBytes: c.numExperts === 0 ? 0 : costliestBlockPlan(c, m.tensors, { sessions: 1, context: 1 }).totalBytes,
    own: m.own
  }
}

/** Parameters of the whole model, from the same parameter list its loader and trainer use. */
function parameterCount (c: ModelConfig): number {
  return partParams(c, wholeModel(c)).reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0)
}

/** GPU bytes a DiLoCo member of a run on this model needs (activations of a tiny batch left out). */
export function trainingBytes (c: ModelConfig): number {
  return parameterCount(c) * 4 * TRAIN_COPIES
}

/** The training runs on the swarm doc with their live members and a member's memory. */
function runOptions (swarm: Swarm, log: (line: string) => void): RunOption[] {
  const map = swarm.doc.map<unknown>(TRAIN_MAP)
  const ids = [...map.keys()].filter(k => k.startsWith('run/')).map(k => k.slice(4)).filter(id => RUN_ID_PATTERN.test(id)).sort()
  const out: RunOption[] = []
  for (const id of ids.slice(0, MAX_RUNS)) {
    const board = new RunBoard(map, id)
    try {
      const spec = board.spec()
      if (spec === undefined) continue
      out.push({ id, members: board.memberStatus().live.size, bytes: trainingBytes(parseConfig(spec.model)) })
    } catch (e) {
      log(`contribute: run ${id} ignored: ${(e as Error).message}`)
    }
  }
  return out
}

/** model → live peers (other than `self`) whose entry says they chat with it. */
export function demandOf (entries: Iterable<PeerEntry>, self: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const e of entries) {
    const m = e.data.chatting
    if (e.peer === self || typeof m !== 'string' || m.length === 0) continue
    out.set(m, (out.get(m) ?? 0) + 1)
  }
  return out
}

/** Everything chooseRole reads, from the swarm as this tab sees it now (its own entry left out). */
export async function gatherRoleInputs (swarm: Swarm, models: readonly LoadableModel[], unloadable: RoleInputs['unloadable'], budget: number | undefined, log: (line: string) => void): Promise<RoleInputs> {
  const entries = [...(await swarm.doc.peers()).values()].filter(e => e.peer !== swarm.peerId)
  return {
    models: models.map(m => modelOption(m, budget)),
    unloadable,
    coverage: modelCoverage(entries, new Map(models.map(m => [m.id, m.config.numLayers]))),
    experts: expertCoverage(entries),
    demand: demandOf(entries, swarm.peerId),
    runs: runOptions(swarm, log),
    budget
  }
}
