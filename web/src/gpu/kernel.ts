/**
 * Kernels are declared as data (CONTRIBUTING.md STYLE 4): bindings and uniforms are listed once here and the
 * WGSL header (binding indices, the Params struct, variant constants) is generated from the
 * declaration, so no binding is numbered by hand. A shader file holds only the body.
 *
 * Usage:
 *   const ADD = defineKernel({
 *     name: 'add', shader: 'elementwise', entry: 'add',
 *     bindings: [{ name: 'a', type: 'f32' }, { name: 'b', type: 'f32' }, { name: 'out', type: 'f32', access: 'read_write' }],
 *     uniforms: [{ name: 'n', type: 'u32' }]        // n: u32, // elements
 *   })
 *   gpu.run(ADD, { key: 'wg256', workgroupSize: [256] }, { a, b, out }, { n }, dispatch1d(gpu, n, 256))
 */
import { GpuArgumentError } from './errors.ts'

type WgslScalar = 'f32' | 'i32' | 'u32'

interface BindingDecl {
  /** WGSL variable name. */
  name: string
  /** WGSL element type of the array: 'f32', 'u32', 'i32', 'vec4<f32>', 'T' (f32 or f16 by variant)… */
  type: string
  /** @default 'read' */
  access?: 'read' | 'read_write'
  /** Declares `atomic<type>` elements. @default false */
  atomic?: boolean
}

interface UniformDecl {
  name: string
  type: WgslScalar
}

export interface KernelDecl {
  /** Name used in errors and as the pipeline-cache prefix. */
  name: string
  /** File stem in shaders/. */
  shader: string
  /** Entry point. @default 'main' */
  entry?: string
  bindings: readonly BindingDecl[]
  /** Fields of the generated `params` uniform, in order. */
  uniforms: readonly UniformDecl[]
}

/** A compile-time specialisation of a kernel (CONTRIBUTING.md STYLE 5): what the dispatch must agree with. */
export interface Variant {
  /** Distinguishes compiled pipelines of one kernel, e.g. 'tile64x64-vec4'. */
  key: string
  /** Emitted as WG_X, WG_Y, WG_Z constants for `@workgroup_size(WG_X, WG_Y, WG_Z)`. */
  workgroupSize: readonly [number, number?, number?]
  /** Emitted as `const NAME: u32|i32|f32|bool = …;`. Integers become u32 unless typed. */
  constants?: Readonly<Record<string, number | boolean | { value: number, type: WgslScalar }>>
  /** Element type alias `T`: f16 needs the `shader-f16` feature. @default 'f32' */
  elem?: 'f32' | 'f16'
  /** Overrides the declaration's entry point. */
  entry?: string
}

/** Every declaration made so far (the test of shader coverage reads it). */
export const DECLARED_KERNELS: KernelDecl[] = []

export function defineKernel (decl: KernelDecl): KernelDecl {
  const names = new Set<string>()
  for (const b of decl.bindings) {
    if (names.has(b.name)) throw new GpuArgumentError(`kernel ${decl.name}: duplicate binding ${b.name}`)
    names.add(b.name)
  }
  const frozen = Object.freeze(decl)
  DECLARED_KERNELS.push(frozen)
  return frozen
}

function constLiteral (v: number | boolean | { value: number, type: WgslScalar }): string {
  if (typeof v === 'boolean') return `bool = ${String(v)}`
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0) throw new GpuArgumentError(`variant constant ${v}: untyped constants must be non-negative integers`)
    return `u32 = ${v}u`
  }
  switch (v.type) {
    case 'u32': return `u32 = ${v.value}u`
    case 'i32': return `i32 = ${v.value}i`
    case 'f32': {
      const s = String(v.value)
      return `f32 = ${/[.e]/.test(s) ? s : s + '.0'}f`
    }
  }
}

/** Bytes of the generated uniform struct: 4 per scalar, rounded to 16. */
export function uniformBytes (decl: KernelDecl): number {
  return Math.max(16, Math.ceil((decl.uniforms.length * 4) / 16) * 16)
}

/** The WGSL header for a kernel variant; prepended to the shader file's body. */
export function generateHeader (decl: KernelDecl, variant: Variant): string {
  const lines: string[] = [`// generated from the declaration of kernel '${decl.name}', variant '${variant.key}'`]
  const elem = variant.elem ?? 'f32'
  if (elem === 'f16') lines.push('enable f16;')
  lines.push(`alias T = ${elem};`)
  const [x, y = 1, z = 1] = variant.workgroupSize
  lines.push(`const WG_X: u32 = ${x}u;`, `const WG_Y: u32 = ${y}u;`, `const WG_Z: u32 = ${z}u;`)
  for (const [k, v] of Object.entries(variant.constants ?? {})) lines.push(`const ${k}: ${constLiteral(v)};`)
  decl.bindings.forEach((b, i) => {
    const access = b.access ?? 'read'
    const t = b.atomic === true ? `atomic<${b.type}>` : b.type
    lines.push(`@group(0) @binding(${i}) var<storage, ${access}> ${b.name}: array<${t}>;`)
  })
  if (decl.uniforms.length > 0) {
    lines.push(`struct Params {\n${decl.uniforms.map(u => `  ${u.name}: ${u.type},`).join('\n')}\n}`)
    lines.push(`@group(0) @binding(${decl.bindings.length}) var<uniform> params: Params;`)
  }
  return lines.join('\n') + '\n'
}

/** Packs uniform values in declaration order. */
export function packUniforms (decl: KernelDecl, values: Readonly<Record<string, number>>): ArrayBuffer {
  const buf = new ArrayBuffer(uniformBytes(decl))
  const view = new DataView(buf)
  decl.uniforms.forEach((u, i) => {
    const v = values[u.name]
    if (v === undefined || !Number.isFinite(v)) throw new GpuArgumentError(`kernel ${decl.name}: uniform ${u.name} missing or not finite (${String(v)})`)
    if (u.type === 'f32') view.setFloat32(i * 4, v, true)
    else if (u.type === 'i32') view.setInt32(i * 4, v, true)
    else {
      if (v < 0 || v > 0xffffffff || !Number.isInteger(v)) throw new GpuArgumentError(`kernel ${decl.name}: uniform ${u.name}=${v} is not a u32`)
      view.setUint32(i * 4, v, true)
    }
  })
  return buf
}
