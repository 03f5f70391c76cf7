/** bench/results/train.json merging: a run that skipped one part keeps the other part's figures. */
import { describe, expect, it } from 'vitest'
import { mergeResults, type Results } from '../../../bench/train-results.ts'

const PREV: Results = {
  bytes_ratio: 500,
  loss_ratio: 1.1,
  allreduce_goodput_ratio: 0.6,
  device: 'cpu',
  detail: { seeds: [1], diloco_test_loss: 2.5, raw_one_way_mb_s: 50, allreduce_busbw_mb_s: 15, kept_from_previous_run: 'loss' }
}
const LOSS = { bytes_ratio: 556, loss_ratio: 1.048, device: 'webgpu', detail: { seeds: [1, 2, 3], diloco_test_loss: 2.45 } }
const GOODPUT = { allreduce_goodput_ratio: 0.9, detail: { raw_one_way_mb_s: 70, allreduce_busbw_mb_s: 21 } }

describe('bench:train results merge', () => {
  it('both parts ran: the file is this run alone, the previous one is not read', () => {
    const out = mergeResults(LOSS, GOODPUT, () => { throw new Error('must not read') })
    expect(out).toEqual({ bytes_ratio: 556, loss_ratio: 1.048, allreduce_goodput_ratio: 0.9, device: 'webgpu', detail: { seeds: [1, 2, 3], diloco_test_loss: 2.45, raw_one_way_mb_s: 70, allreduce_busbw_mb_s: 21 } })
  })

  it('--skip-goodput keeps the previous goodput figures and replaces every loss figure', () => {
    const out = mergeResults(LOSS, undefined, () => PREV)!
    expect(out.allreduce_goodput_ratio).toBe(0.6)
    expect(out.loss_ratio).toBe(1.048)
    expect(out.device).toBe('webgpu')
    expect(out.detail).toEqual({ seeds: [1, 2, 3], diloco_test_loss: 2.45, raw_one_way_mb_s: 50, allreduce_busbw_mb_s: 15, kept_from_previous_run: 'goodput' })
  })

  it('--skip-loss keeps the previous loss figures and replaces every goodput figure', () => {
    const out = mergeResults(undefined, GOODPUT, () => PREV)!
    expect(out).toEqual({ bytes_ratio: 500, loss_ratio: 1.1, allreduce_goodput_ratio: 0.9, device: 'cpu', detail: { seeds: [1], diloco_test_loss: 2.5, raw_one_way_mb_s: 70, allreduce_busbw_mb_s: 21, kept_from_previous_run: 'loss' } })
  })

  it('no previous file (or not JSON): the skipped part is null; nothing ran: nothing to write', () => {
    const out = mergeResults(LOSS, undefined, () => JSON.parse('not json') as Results)!
    expect(out.allreduce_goodput_ratio).toBeNull()
    expect(out.detail).toEqual({ seeds: [1, 2, 3], diloco_test_loss: 2.45, kept_from_previous_run: 'goodput' })
    expect(mergeResults(undefined, undefined, () => PREV)).toBeUndefined()
  })
})
