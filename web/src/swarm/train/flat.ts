/**
 * A model's parameters as one flat f32 vector in a canonical order (the order of
 * `model.paramSpecs()`, which every peer derives from the same config), split into fragments
 * for Streaming DiLoCo. Offsets are in elements.
 */
import { TrainArgumentError } from './errors.ts'

export interface ParamSlot {
  name: string
  shape: number[]
  /** First element in the flat vector. */
  offset: number
  /** Elements. */
  size: number
}

export interface ParamLayout {
  slots: ParamSlot[]
  /** Elements in all. */
  total: number
}

/** Layout of parameters with these names and shapes, in this order. */
export function layoutOf (specs: ReadonlyArray<{ name: string, shape: readonly number[] }>): ParamLayout {
  const slots: ParamSlot[] = []
  let offset = 0
  const seen = new Set<string>()
  for (const s of specs) {
    if (seen.has(s.name)) throw new TrainArgumentError(`parameter ${s.name} appears twice`)
    seen.add(s.name)
    const size = s.shape.reduce((a, b) => a * b, 1)
    slots.push({ name: s.name, shape: [...s.shape], offset, size })
    offset += size
  }
  if (offset === 0) throw new TrainArgumentError('a model with no parameters cannot be trained')
  return { slots, total: offset }
}

/** A half-open range of the flat vector [start, end), in elements. */
export interface Fragment {
  index: number
  start: number
  end: number
}

/**
 * Splits the layout into `count` contiguous fragments of about equal size, cut only at parameter
 * boundaries (a fragment is whole tensors: Streaming DiLoCo syncs layers, not slices of them).
 * Fewer parameters than fragments is an error: an empty fragment would sync nothing.
 */
export function fragmentsOf (layout: ParamLayout, count: number): Fragment[] {
  if (!Number.isInteger(count) || count < 1) throw new TrainArgumentError(`fragment count must be a positive integer, got ${count}`)
  if (count > layout.slots.length) throw new TrainArgumentError(`${count} fragments but only ${layout.slots.length} parameter tensors`)
  const out: Fragment[] = []
  let i = 0
  let start = 0
  for (let f = 0; f < count; f++) {
    const target = Math.round(layout.total * (f + 1) / count)
    let end = start
    const left = count - f - 1 // fragments after this one each need a tensor
    do {
      end = layout.slots[i].offset + layout.slots[i].size
      i++
    } while (i < layout.slots.length - left && end + layout.slots[i].size / 2 <= target)
    if (f === count - 1) { end = layout.total; i = layout.slots.length }
    out.push({ index: f, start, end })
    start = end
  }
  return out
}

/** Copies named host arrays into one flat vector (the layout's order). */
export function flatten (layout: ParamLayout, get: (name: string) => Float32Array): Float32Array {
  const out = new Float32Array(layout.total)
  for (const s of layout.slots) {
    const a = get(s.name)
    if (a.length !== s.size) throw new TrainArgumentError(`parameter ${s.name} has ${a.length} elements, the layout expects ${s.size}`)
    out.set(a, s.offset)
  }
  return out
}

/** The slice of the flat vector that holds parameter `slot` (a view, no copy). */
export function slotView (flat: Float32Array, slot: ParamSlot): Float32Array {
  return flat.subarray(slot.offset, slot.offset + slot.size)
}
