/** bench/results/train.json: its shape, and how a run that skipped one part keeps the other's figures. */

const GOODPUT_KEYS = ['goodput_processes', 'raw_one_way_mb_s', 'raw_both_ways_mb_s', 'allreduce_busbw_mb_s', 'allreduce_vs_one_way']
/** detail keys of the utilization part (bench/train-util.ts). */
const UTIL_PREFIX = 'util_'

export interface LossPart { bytes_ratio: number, loss_ratio: number, codec: string, device: string, detail: Record<string, unknown> }
export interface GoodputPart { allreduce_goodput_ratio: number, detail: Record<string, unknown> }
export interface UtilPart { compute_utilization: number, detail: Record<string, unknown> }
export interface Results { bytes_ratio: number | null, loss_ratio: number | null, compute_utilization: number | null, allreduce_goodput_ratio: number | null, codec: string | null, device: string, detail: Record<string, unknown> }

/**
 * The results file after this run: every part that ran replaces its figures; a part that was
 * skipped is kept from the existing file (`readPrevious`; named in detail.kept_from_previous_run),
 * so `--skip-goodput` refreshes the loss figures without losing the goodput figure. undefined when
 * no part ran.
 */
export function mergeResults (parts: { loss?: LossPart, goodput?: GoodputPart, util?: UtilPart }, readPrevious: () => Partial<Results>): Results | undefined {
  const { loss, goodput, util } = parts
  if (loss === undefined && goodput === undefined && util === undefined) return undefined
  let prev: Partial<Results> = {}
  if (loss === undefined || goodput === undefined || util === undefined) {
    try { prev = readPrevious() } catch { prev = {} } // no file yet, or not JSON: nothing to keep
  }
  const prevDetail = prev.detail ?? {}
  const partOf = (k: string): 'goodput' | 'util' | 'loss' => GOODPUT_KEYS.includes(k) ? 'goodput' : k.startsWith(UTIL_PREFIX) ? 'util' : 'loss'
  const prevOf = (part: string): Record<string, unknown> => Object.fromEntries(Object.entries(prevDetail).filter(([k]) => k !== 'kept_from_previous_run' && partOf(k) === part))
  const kept = [loss === undefined ? 'loss' : '', goodput === undefined ? 'goodput' : '', util === undefined ? 'util' : ''].filter(x => x !== '')
  return {
    bytes_ratio: loss?.bytes_ratio ?? prev.bytes_ratio ?? null,
    loss_ratio: loss?.loss_ratio ?? prev.loss_ratio ?? null,
    compute_utilization: util?.compute_utilization ?? prev.compute_utilization ?? null,
    allreduce_goodput_ratio: goodput?.allreduce_goodput_ratio ?? prev.allreduce_goodput_ratio ?? null,
    codec: loss?.codec ?? prev.codec ?? null,
    device: loss?.device ?? prev.device ?? 'cpu',
    detail: {
      ...(loss?.detail ?? prevOf('loss')),
      ...(goodput?.detail ?? prevOf('goodput')),
      ...(util?.detail ?? prevOf('util')),
      ...(kept.length === 0 ? {} : { kept_from_previous_run: kept.join(', ') })
    }
  }
}
