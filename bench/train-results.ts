/** bench/results/train.json: its shape, and how a run that skipped one part keeps the other's figures. */

const GOODPUT_KEYS = ['goodput_processes', 'raw_one_way_mb_s', 'raw_both_ways_mb_s', 'allreduce_busbw_mb_s', 'allreduce_vs_one_way']

export interface LossPart { bytes_ratio: number, loss_ratio: number, device: string, detail: Record<string, unknown> }
export interface GoodputPart { allreduce_goodput_ratio: number, detail: Record<string, unknown> }
export interface Results { bytes_ratio: number | null, loss_ratio: number | null, allreduce_goodput_ratio: number | null, device: string, detail: Record<string, unknown> }

/**
 * The results file after this run: both parts when both ran; a part that was skipped is kept from
 * the existing file (`readPrevious`; named in detail.kept_from_previous_run), so `--skip-goodput`
 * refreshes the loss figures without losing the goodput figure. undefined when no part ran.
 */
export function mergeResults (loss: LossPart | undefined, goodput: GoodputPart | undefined, readPrevious: () => Partial<Results>): Results | undefined {
  if (loss === undefined && goodput === undefined) return undefined
  let prev: Partial<Results> = {}
  if (loss === undefined || goodput === undefined) {
    try { prev = readPrevious() } catch { prev = {} } // no file yet, or not JSON: nothing to keep
  }
  const prevDetail = prev.detail ?? {}
  const prevGoodput = Object.fromEntries(Object.entries(prevDetail).filter(([k]) => GOODPUT_KEYS.includes(k)))
  const prevLoss = Object.fromEntries(Object.entries(prevDetail).filter(([k]) => !GOODPUT_KEYS.includes(k) && k !== 'kept_from_previous_run'))
  const kept = loss === undefined ? 'loss' : goodput === undefined ? 'goodput' : undefined
  return {
    bytes_ratio: loss?.bytes_ratio ?? prev.bytes_ratio ?? null,
    loss_ratio: loss?.loss_ratio ?? prev.loss_ratio ?? null,
    allreduce_goodput_ratio: goodput?.allreduce_goodput_ratio ?? prev.allreduce_goodput_ratio ?? null,
    device: loss?.device ?? prev.device ?? 'cpu',
    detail: {
      ...(loss?.detail ?? prevLoss),
      ...(goodput?.detail ?? prevGoodput),
      ...(kept === undefined ? {} : { kept_from_previous_run: kept })
    }
  }
}
