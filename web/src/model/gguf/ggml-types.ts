/**
 * GGML tensor types as GGUF files number them (ggml.h `enum ggml_type`): each type's block size
 * in elements and in bytes. The reader needs every type's size to check a tensor's extent in the
 * file, even for types we cannot compute with (those are refused at load, not at parse).
 */

export interface GgmlTypeInfo {
  name: string
  /** Elements per block (1 for plain element types). */
  blockElems: number
  /** Bytes per block. */
  blockBytes: number
}

/** GGML ids of the types this project computes with (see web/src/gpu/quant-types.ts). */
export const GGML = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q8_0: 8,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30
} as const

/** Ids 4 and 5 (Q4_2, Q4_3) and 31–33 were removed from ggml; files never carry them. */
const TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map([
  [0, { name: 'F32', blockElems: 1, blockBytes: 4 }],
  [1, { name: 'F16', blockElems: 1, blockBytes: 2 }],
  [2, { name: 'Q4_0', blockElems: 32, blockBytes: 18 }],
  [3, { name: 'Q4_1', blockElems: 32, blockBytes: 20 }],
  [6, { name: 'Q5_0', blockElems: 32, blockBytes: 22 }],
  [7, { name: 'Q5_1', blockElems: 32, blockBytes: 24 }],
  [8, { name: 'Q8_0', blockElems: 32, blockBytes: 34 }],
  [9, { name: 'Q8_1', blockElems: 32, blockBytes: 36 }], // ggml's size; gguf-py still says 40 (an f32 d and s); files never hold it
  [10, { name: 'Q2_K', blockElems: 256, blockBytes: 84 }],
  [11, { name: 'Q3_K', blockElems: 256, blockBytes: 110 }],
  [12, { name: 'Q4_K', blockElems: 256, blockBytes: 144 }],
  [13, { name: 'Q5_K', blockElems: 256, blockBytes: 176 }],
  [14, { name: 'Q6_K', blockElems: 256, blockBytes: 210 }],
  [15, { name: 'Q8_K', blockElems: 256, blockBytes: 292 }],
  [16, { name: 'IQ2_XXS', blockElems: 256, blockBytes: 66 }],
  [17, { name: 'IQ2_XS', blockElems: 256, blockBytes: 74 }],
  [18, { name: 'IQ3_XXS', blockElems: 256, blockBytes: 98 }],
  [19, { name: 'IQ1_S', blockElems: 256, blockBytes: 50 }],
  [20, { name: 'IQ4_NL', blockElems: 32, blockBytes: 18 }],
  [21, { name: 'IQ3_S', blockElems: 256, blockBytes: 110 }],
  [22, { name: 'IQ2_S', blockElems: 256, blockBytes: 82 }],
  [23, { name: 'IQ4_XS', blockElems: 256, blockBytes: 136 }],
  [24, { name: 'I8', blockElems: 1, blockBytes: 1 }],
  [25, { name: 'I16', blockElems: 1, blockBytes: 2 }],
  [26, { name: 'I32', blockElems: 1, blockBytes: 4 }],
  [27, { name: 'I64', blockElems: 1, blockBytes: 8 }],
  [28, { name: 'F64', blockElems: 1, blockBytes: 8 }],
  [29, { name: 'IQ1_M', blockElems: 256, blockBytes: 56 }],
  [30, { name: 'BF16', blockElems: 1, blockBytes: 2 }],
  [34, { name: 'TQ1_0', blockElems: 256, blockBytes: 54 }],
  [35, { name: 'TQ2_0', blockElems: 256, blockBytes: 66 }],
  [39, { name: 'MXFP4', blockElems: 32, blockBytes: 17 }],
  [40, { name: 'NVFP4', blockElems: 64, blockBytes: 36 }],
  [41, { name: 'Q1_0', blockElems: 128, blockBytes: 18 }]
])

/** The type's sizes, or undefined for an id ggml does not define. */
export function ggmlTypeInfo (id: number): GgmlTypeInfo | undefined {
  return TYPES.get(id)
}

/** 'Q4_K', or 'type 99' for an unknown id (for messages). */
export function ggmlTypeName (id: number): string {
  return TYPES.get(id)?.name ?? `type ${id}`
}

/** Every id ggml defines (tests cross-check the table against the Python gguf package). */
export function ggmlTypeIds (): number[] {
  return [...TYPES.keys()]
}
