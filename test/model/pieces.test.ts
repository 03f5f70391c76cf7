import { describe, expect, it } from 'vitest'
import { Sampler, argmax } from '../../web/src/model/sampler.ts'
import { ByteTokenizer, HfTokenizer } from '../../web/src/model/tokenizer.ts'
import { TextDataset, brownToText } from '../../web/src/model/data.ts'
import { learningRate } from '../../web/src/model/schedule.ts'
import { ModelArgumentError, TokenizerError } from '../../web/src/model/errors.ts'

describe('sampler', () => {
  const logits = [0.1, 2.0, 1.9, -3, 2.0]

  it('greedy takes the argmax, ties to the lower id', () => {
    expect(argmax(logits)).toBe(1)
    expect(new Sampler().sample(logits)).toBe(1)
  })

  it('is reproducible for a seed and differs across seeds', () => {
    const draw = (seed: number): number[] => { const s = new Sampler({ temperature: 1, seed }); return Array.from({ length: 50 }, () => s.sample(logits)) }
    expect(draw(7)).toEqual(draw(7))
    expect(draw(7)).not.toEqual(draw(8))
  })

  it('top-k and top-p restrict the candidates', () => {
    const k2 = new Sampler({ temperature: 5, topK: 2, seed: 1 })
    const seen = new Set(Array.from({ length: 200 }, () => k2.sample(logits)))
    expect([...seen].sort()).toEqual([1, 4])
    // p = 0.5 over {1: ~.31, 4: ~.31, 2: ~.28, ...}: the first two reach it.
    const p = new Sampler({ temperature: 1, topP: 0.5, seed: 3 })
    const seenP = new Set(Array.from({ length: 200 }, () => p.sample(logits)))
    expect([...seenP].sort()).toEqual([1, 4])
  })

  it('follows the softmax distribution', () => {
    const s = new Sampler({ temperature: 1, seed: 11 })
    const l = [Math.log(0.7), Math.log(0.2), Math.log(0.1)]
    const counts = [0, 0, 0]
    for (let i = 0; i < 5000; i++) counts[s.sample(l)]++
    expect(counts[0] / 5000).toBeCloseTo(0.7, 1)
    expect(counts[2] / 5000).toBeCloseTo(0.1, 1)
  })

  it('rejects bad options', () => {
    expect(() => new Sampler({ temperature: -1 })).toThrow(ModelArgumentError)
    expect(() => new Sampler({ topP: 0 })).toThrow(/top-p/)
    expect(() => new Sampler({ topK: 1.5 })).toThrow(/top-k/)
  })
})

describe('tokenizers', () => {
  it('byte tokenizer round-trips UTF-8 and streams split characters', () => {
    const t = new ByteTokenizer()
    const ids = t.encode('héllo ✓')
    expect(ids.length).toBe(10)
    expect(t.decode(ids)).toBe('héllo ✓')
    const d = t.decoder()
    expect(ids.map(d).join('')).toBe('héllo ✓')
    expect(() => t.decode([300])).toThrow(TokenizerError)
  })

  it('loads a tokenizer.json (BPE) through @huggingface/tokenizers', async () => {
    const vocab: Record<string, number> = { h: 0, e: 1, l: 2, o: 3, he: 4, ll: 5, hell: 6, hello: 7, ' ': 8, w: 9, r: 10, d: 11 }
    const json = {
      version: '1.0',
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: 'Fuse' },
      model: { type: 'BPE', vocab, merges: ['h e', 'l l', 'he ll', 'hell o'], unk_token: null }
    }
    const t = await HfTokenizer.create(json, {})
    expect(t.encode('hello')).toEqual([7])
    expect(t.decode([7, 8, 9, 3, 10, 2, 11])).toBe('hello world')
    const d = t.decoder()
    expect([7, 8, 9].map(d).join('')).toBe('hello w')
  })
})

describe('data pipeline', () => {
  it('strips Brown corpus tags into plain text', () => {
    const tagged = '\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn \'\'/\'\' ,/, it/pps didn\'t/do* ./.\n\n\tNext/ap one/cd ./.\n'
    expect(brownToText(tagged)).toBe('The jury said "no evidence", it didn\'t.\nNext one.\n')
  })

  it('draws seeded windows with next-byte targets', () => {
    const ds = new TextDataset('abcdefghijklmnopqrstuvwxyz')
    const a = ds.windows(5, 42)
    const b = ds.windows(5, 42)
    for (let i = 0; i < 10; i++) {
      const w = a.next().value
      expect(w).toEqual(b.next().value)
      if (w === undefined) throw new Error('no window')
      for (let t = 0; t < 4; t++) expect(w.targets[t]).toBe(w.inputs[t + 1])
      expect(w.targets[4]).toBe(w.inputs[4] + 1) // consecutive letters
    }
    expect(() => ds.windows(26, 1).next()).toThrow(/shorter than one window/)
    const { train, validation } = ds.split(0.2)
    expect(train.bytes.length + validation.bytes.length).toBe(26)
  })
})

describe('learning-rate schedule', () => {
  it('warms up linearly then decays by cosine to the floor', () => {
    const o = { lr: 1, warmupSteps: 10, totalSteps: 110, minLr: 0.1 }
    expect(learningRate(o, 1)).toBeCloseTo(0.1)
    expect(learningRate(o, 10)).toBeCloseTo(1)
    expect(learningRate(o, 60)).toBeCloseTo(0.55)
    expect(learningRate(o, 110)).toBeCloseTo(0.1)
    expect(learningRate(o, 500)).toBeCloseTo(0.1)
  })
})
