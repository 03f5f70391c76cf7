/**
 * What a contributing tab does for the swarm, chosen by the tab itself from what the swarm map
 * already summarizes. A pure function (no DOM, no network), so every rule is unit-tested.
 *
 * The order, each tier before the next:
 *  1. blocks nobody serves (a model with a gap answers nobody): the busiest such model first —
 *     demand is the live peers chatting with it — then the one this tab would leave with the
 *     fewest blocks missing (finishing a model makes it usable), then the page's own model, then
 *     by name; within the model the window covering the most unserved blocks;
 *  2. experts nobody hosts, of an MoE model whose blocks are all served (the layer with most);
 *  3. a training run that wants members (live, but fewer than RUN_WANTS_MEMBERS);
 *  4. a second server for the least-served span of the busiest model.
 * Every role must fit the GPU-memory budget; a model the tab cannot load, or whose single block
 * does not fit, is skipped with a reason; when nothing fits, the reason names the smallest role
 * and what it needs.
 */
import { formatBytes } from '../model/memory-plan.ts'
import { blocksText, type ExpertCoverage, type ModelCoverage } from './swarm-summary.ts'

/** A run with fewer live members averages with too few others: one member averages with nobody. */
export const RUN_WANTS_MEMBERS = 2

/** A model this tab can load, with what its roles cost under the budget. */
export interface ModelOption {
  id: string
  numBlocks: number
  /** Experts per MoE layer; 0 for a dense model. */
  numExperts: number
  /** Longest window of blocks that fits the budget anywhere in the model (0: not one block). */
  maxBlocks: number
  /** GPU bytes of its costliest single block with one session's KV cache. */
  blockBytes: number
  /** GPU bytes one MoE layer needs when its experts are hosted (0 for a dense model). */
  expertLayerBytes: number
  /** The page's own model (the one its chat uses): preferred on ties. */
  own: boolean
}

/** A training run on the swarm doc. */
export interface RunOption {
  id: string
  /** Live members of its current founding. */
  members: number
  /** GPU bytes a member needs (weights, gradients, optimizer and outer state). */
  bytes: number
}

export interface RoleInputs {
  models: readonly ModelOption[]
  /** Models the swarm or the relay lists that this tab cannot load, with why. */
  unloadable?: ReadonlyArray<{ id: string, reason: string }>
  /** Block coverage (swarm-summary.ts), this tab's own entry left out. */
  coverage: readonly ModelCoverage[]
  experts: readonly ExpertCoverage[]
  /** model → live peers chatting with it. */
  demand: ReadonlyMap<string, number>
  runs: readonly RunOption[]
  /** Bytes; undefined: no budget (the CPU twins). */
  budget?: number
}

export type Role =
  | { kind: 'blocks', model: string, start: number, end: number }
  | { kind: 'experts', model: string, layer: number, experts: number[] }
  | { kind: 'train', run: string }

export interface RoleChoice {
  /** Undefined when no role fits (the reason says what would). */
  role?: Role
  /** For people: "blocks 0–1 of byte-mixtral: no server". */
  reason: string
  /** The smallest role's needs, when nothing fit the budget. */
  smallest?: { what: string, bytes: number }
  /** What was left out and why ("default: one block needs 1.4 MB, over the budget"). */
  skipped: string[]
}

interface Candidate { role: Role, reason: string, key: Array<number | string> }

const demandText = (d: number): string => d > 0 ? ` (${d} peer${d === 1 ? '' : 's'} chatting with it)` : ''
const fits = (bytes: number, budget: number | undefined): boolean => budget === undefined || bytes <= budget

/** Lexicographic order of sort keys (numbers ascending, strings by code unit: deterministic). */
function compareKeys (a: ReadonlyArray<number | string>, b: ReadonlyArray<number | string>): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] === b[i]) continue
    return a[i] < b[i] ? -1 : 1
  }
  return a.length - b.length
}

/** Servers of each block, loading ones included (a block being loaded is about to be served). */
function servedCounts (m: ModelOption, cov: ModelCoverage | undefined): number[] {
  return Array.from({ length: m.numBlocks }, (_, b) => {
    const c = cov?.blocks[b]
    return c === undefined ? 0 : c.servers.length + c.joining.length
  })
}

/** The window of `n` blocks covering the most unserved blocks, then the fewest servers, then the first. */
function bestWindow (counts: readonly number[], n: number): { start: number, gaps: number, servers: number } {
  let best: { start: number, gaps: number, servers: number } | undefined
  for (let s = 0; s + n <= counts.length; s++) {
    const w = counts.slice(s, s + n)
    const cand = { start: s, gaps: w.filter(c => c === 0).length, servers: w.reduce((a, c) => a + c, 0) }
    if (best === undefined || cand.gaps > best.gaps || (cand.gaps === best.gaps && cand.servers < best.servers)) best = cand
  }
  return best!
}

/** The role this tab should take now, and why. */
export function chooseRole (inp: RoleInputs): RoleChoice {
  const skipped = (inp.unloadable ?? []).map(u => `${u.id}: ${u.reason}`)
  const candidates: Candidate[] = []
  const smallest: Array<{ what: string, bytes: number }> = []
  const budgetText = inp.budget === undefined ? '' : formatBytes(inp.budget)

  for (const m of inp.models) {
    const demand = inp.demand.get(m.id) ?? 0
    const own = m.own ? 0 : 1
    const cov = inp.coverage.find(c => c.model === m.id)
    const counts = servedCounts(m, cov)
    const missing = counts.filter(c => c === 0).length
    smallest.push({ what: `one block of ${m.id}`, bytes: m.blockBytes })
    if (m.maxBlocks < 1) {
      skipped.push(`${m.id}: one block needs ${formatBytes(m.blockBytes)}, over the ${budgetText} budget`)
    } else {
      // At most half the model: two tabs cover it, and a third has something left to add.
      const n = Math.min(m.maxBlocks, Math.max(1, Math.ceil(m.numBlocks / 2)))
      const w = bestWindow(counts, n)
      const role: Role = { kind: 'blocks', model: m.id, start: w.start, end: w.start + n }
      if (w.gaps > 0) {
        const reason = `${blocksText(w.start, w.start + n)} of ${m.id}: ${w.gaps === n ? 'no server' : `${w.gaps} of them with no server`}${demandText(demand)}`
        candidates.push({ role, reason, key: [1, -demand, missing - w.gaps, own, m.id] })
      } else {
        const per = (w.servers / n).toFixed(1).replace(/\.0$/, '')
        const reason = `${blocksText(w.start, w.start + n)} of ${m.id}: the least-served span of the busiest model (${per} server${per === '1' ? '' : 's'} per block)${demandText(demand)}`
        candidates.push({ role, reason, key: [4, -demand, w.servers / n, own, m.id] })
      }
    }
    // Experts: only once the model's blocks are all served (until then its blocks come first).
    if (m.numExperts > 0 && missing === 0) {
      smallest.push({ what: `one layer of ${m.id}'s experts`, bytes: m.expertLayerBytes })
      const hosted = inp.experts.find(x => x.model === m.id)
      let best: { layer: number, experts: number[] } | undefined
      for (let layer = 0; layer < m.numBlocks; layer++) {
        const byExpert = hosted?.layers.get(layer)
        const free = Array.from({ length: m.numExperts }, (_, e) => e).filter(e => (byExpert?.get(e) ?? []).length === 0)
        if (free.length > (best?.experts.length ?? 0)) best = { layer, experts: free }
      }
      if (best !== undefined) {
        if (!fits(m.expertLayerBytes, inp.budget)) {
          skipped.push(`${m.id} experts: one layer needs ${formatBytes(m.expertLayerBytes)}, over the ${budgetText} budget`)
        } else {
          const reason = `experts ${best.experts.join(',')} of ${m.id} (layer ${best.layer}): no host${demandText(demand)}`
          candidates.push({ role: { kind: 'experts', model: m.id, layer: best.layer, experts: best.experts }, reason, key: [2, -demand, -best.experts.length, own, m.id] })
        }
      }
    }
  }

  for (const r of inp.runs) {
    if (r.members < 1 || r.members >= RUN_WANTS_MEMBERS) continue
    smallest.push({ what: `a member of training run ${r.id}`, bytes: r.bytes })
    if (!fits(r.bytes, inp.budget)) {
      skipped.push(`training run ${r.id}: a member needs ${formatBytes(r.bytes)}, over the ${budgetText} budget`)
      continue
    }
    const reason = `join training run ${r.id}: ${r.members} live member${r.members === 1 ? '' : 's'}, it wants ${RUN_WANTS_MEMBERS}`
    candidates.push({ role: { kind: 'train', run: r.id }, reason, key: [3, r.members, r.id] })
  }

  candidates.sort((a, b) => compareKeys(a.key, b.key))
  const pick = candidates[0]
  if (pick !== undefined) return { role: pick.role, reason: pick.reason, skipped }
  if (smallest.length === 0) {
    return { reason: inp.models.length === 0 && skipped.length > 0 ? `no model this tab can load (${skipped.join('; ')})` : 'nothing to serve: no model this tab can load', skipped }
  }
  const least = smallest.reduce((a, b) => b.bytes < a.bytes ? b : a)
  return { reason: `the ${budgetText} budget fits no role: the smallest, ${least.what}, needs ${formatBytes(least.bytes)}`, smallest: least, skipped }
}
