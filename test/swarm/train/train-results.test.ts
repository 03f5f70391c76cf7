/** bench/results/train.json merging: a run that skipped a part keeps that part's figures. */
import { describe, expect, it } from 'vitest'
import { mergeResults, type Results } from '../../../bench/train-results.ts'

const PREV: Results = {
  bytes_ratio: 500,
  loss_ratio: 1.1,
  compute_utilization: 0.8,
  allreduce_goodput_ratio: 0.6,
  codec: 'q8/64',
  device: 'cpu',
  detail: { seeds: [1], diloco_test_loss: 2.5, raw_one_way_mb_s: 50, allreduce_busbw_mb_s: 15, util_syncs: 4, kept_from_previous_run: 'loss' }
}
const LOSS = { bytes_ratio: 556, loss_ratio: 1.048, codec: 'topk/256/4/2/4', device: 'webgpu', detail: { seeds: [1, 2, 3], diloco_test_loss: 2.45 } }
const GOODPUT = { allreduce_goodput_ratio: 0.9, detail: { raw_one_way_mb_s: 70, allreduce_busbw_mb_s: 21 } }
const UTIL = { compute_utilization: 0.97, detail: { util_syncs: 6, util_per_worker: [0.97, 0.96] } }

describe('bench:train results merge', () => {
  it('every part ran: the file is this run alone, the previous one is not read', () => {
    const out = mergeResults({ loss: LOSS, goodput: GOODPUT, util: UTIL }, () => { throw new Error('must not read') })
    expect(out).toEqual({
      bytes_ratio: 556, loss_ratio: 1.048, compute_utilization: 0.97, allreduce_goodput_ratio: 0.9, codec: 'topk/256/4/2/4', device: 'webgpu',
      detail: { seeds: [1, 2, 3], diloco_test_loss: 2.45, raw_one_way_mb_s: 70, allreduce_busbw_mb_s: 21, util_syncs: 6, util_per_worker: [0.97, 0.96] }
    })
  })

  it('--skip-goodput keeps the previous goodput figures and replaces every loss and utilization figure', () => {
    const out = mergeResults({ loss: LOSS, util: UTIL }, () => PREV)!
    expect(out.allreduce_goodput_ratio).toBe(0.6)
    expect(out.loss_ratio).toBe(1.048)
    expect(out.compute_utilization).toBe(0.97)
    expect(out.codec).toBe('topk/256/4/2/4')
    expect(out.device).toBe('webgpu')
    expect(out.detail).toEqual({ seeds: [1, 2, 3], diloco_test_loss: 2.45, raw_one_way_mb_s: 50, allreduce_busbw_mb_s: 15, util_syncs: 6, util_per_worker: [0.97, 0.96], kept_from_previous_run: 'goodput' })
  })

  it('--skip-loss --skip-util keeps the previous loss and utilization figures and replaces every goodput figure', () => {
    const out = mergeResults({ goodput: GOODPUT }, () => PREV)!
    expect(out).toEqual({ bytes_ratio: 500, loss_ratio: 1.1, compute_utilization: 0.8, allreduce_goodput_ratio: 0.9, codec: 'q8/64', device: 'cpu', detail: { seeds: [1], diloco_test_loss: 2.5, raw_one_way_mb_s: 70, allreduce_busbw_mb_s: 21, util_syncs: 4, kept_from_previous_run: 'loss, util' } })
  })

  it('no previous file (or not JSON): skipped parts are null; nothing ran: nothing to write', () => {
    const out = mergeResults({ loss: LOSS }, () => JSON.parse('not json') as Results)!
    expect(out.allreduce_goodput_ratio).toBeNull()
    expect(out.compute_utilization).toBeNull()
    expect(out.detail).toEqual({ seeds: [1, 2, 3], diloco_test_loss: 2.45, kept_from_previous_run: 'goodput, util' })
    expect(mergeResults({}, () => PREV)).toBeUndefined()
  })
})
