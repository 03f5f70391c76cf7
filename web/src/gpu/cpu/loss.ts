/** CPU twins of shaders/loss.wgsl: plain loops, in f64. logits are (T, V) row-major. */
import { validateIds } from './embedding.ts'
import { alloc, type Floats } from './elementwise.ts'

/** log Σ_v exp(logits[t, v]) of row t, max-subtracted. */
function logSumExp (logits: Floats, o: number, V: number): { max: number, sum: number, lse: number } {
  let max = -Infinity
  for (let v = 0; v < V; v++) max = Math.max(max, logits[o + v])
  let sum = 0
  for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v] - max)
  return { max, sum, lse: max + Math.log(sum) }
}

function countTargets (targets: Int32Array, ignoreIndex: number): number {
  let n = 0
  for (const t of targets) if (t !== ignoreIndex) n++
  return n
}

/**
 * Mean over non-ignored tokens of logsumexp(logits[t]) − logits[t, targets[t]]; 0 when every
 * token is ignored (PyTorch gives NaN). Throws IdRangeError for a target outside [0, V).
 */
export function crossEntropy (logits: Floats, targets: Int32Array, V: number, ignoreIndex: number): number {
  validateIds(targets, V, 'crossEntropy', ignoreIndex)
  let s = 0
  for (let t = 0; t < targets.length; t++) {
    if (targets[t] === ignoreIndex) continue
    s += logSumExp(logits, t * V, V).lse - logits[t * V + targets[t]]
  }
  const n = countTargets(targets, ignoreIndex)
  return n === 0 ? 0 : s / n
}

/** dlogits[t, v] = (softmax(logits[t])[v] − [v = target]) / count; 0 rows for ignored tokens. */
export function crossEntropyBackward<A extends Floats> (logits: A, targets: Int32Array, V: number, ignoreIndex: number): A {
  validateIds(targets, V, 'crossEntropyBackward', ignoreIndex)
  const out = alloc(logits, logits.length)
  const n = countTargets(targets, ignoreIndex)
  for (let t = 0; t < targets.length; t++) {
    if (targets[t] === ignoreIndex) continue
    const o = t * V
    const { max, sum } = logSumExp(logits, o, V)
    for (let v = 0; v < V; v++) out[o + v] = (Math.exp(logits[o + v] - max) / sum - (v === targets[t] ? 1 : 0)) / n
  }
  return out
}
