/**
 * WGSL sources come from the project's own shaders/ folder only, never the network:
 * bundled by Vite (browser, vitest) or read from disk (Node CLI under tsx).
 *
 * Kernels (shaders/*.wgsl) may share WGSL helpers kept in shaders/lib/*.wgsl: a kernel line of
 * exactly `// #include "name"` is replaced by shaders/lib/name.wgsl (see `expandIncludes`).
 * This is the whole preprocessor — no macros, no conditionals (variants stay in the header).
 */
import { nodeBuiltin } from '../util/node-builtin.ts'
import { ShaderSourceError } from './errors.ts'
let kernels: Map<string, string> | undefined
let libs: Map<string, string> | undefined
/** Expanded kernels, filled on first use so a bad include fails only the kernel that has it. */
const expanded = new Map<string, string>()

/** A line that includes shaders/lib/<name>.wgsl; nothing else on the line. */
const INCLUDE_LINE = /^\/\/ #include "([A-Za-z0-9_]+)"\r?$/

/**
 * `code` (the kernel shaders/<stem>.wgsl) with every include line replaced by its lib's text,
 * recursively. Each lib is pasted at most once per kernel (later includes of it vanish), so two
 * libs may both include a third. Throws naming the kernel and the lib for a missing lib or a cycle.
 */
export function expandIncludes (stem: string, code: string, libs: ReadonlyMap<string, string>): string {
  const done = new Set<string>()
  const expand = (text: string, chain: string[]): string => text.split('\n').map(line => {
    const name = INCLUDE_LINE.exec(line)?.[1]
    if (name === undefined) return line
    if (chain.includes(name)) throw new ShaderSourceError(`shader ${stem}: include cycle ${[...chain, name].join(' → ')}`)
    if (done.has(name)) return ''
    const lib = libs.get(name)
    if (lib === undefined) throw new ShaderSourceError(`shader ${stem}: no lib shaders/lib/${name}.wgsl (included from ${chain.at(-1) ?? stem})`)
    done.add(name)
    return expand(lib.replace(/\r?\n$/, ''), [...chain, name])
  }).join('\n')
  return expand(code, [])
}

function bundled (): Record<string, string> | undefined {
  try {
    // Vite replaces this call at build time; under plain Node it throws and we read the disk.
    return import.meta.glob(['../../../shaders/*.wgsl', '../../../shaders/lib/*.wgsl'], { query: '?raw', import: 'default', eager: true })
  } catch {
    return undefined
  }
}

async function fromDisk (): Promise<Record<string, string>> {
  const fs = await nodeBuiltin('node:fs/promises')
  const out: Record<string, string> = {}
  for (const sub of ['', 'lib/']) {
    const dir = new URL(`../../../shaders/${sub}`, import.meta.url)
    for (const f of await fs.readdir(dir)) {
      if (f.endsWith('.wgsl')) out[sub + f] = await fs.readFile(new URL(f, dir), 'utf8')
    }
  }
  return out
}

/** Loads every shader and lib once; call before the first kernel runs (GpuBackend.create does). */
export async function loadShaderSources (): Promise<void> {
  if (kernels !== undefined) return
  const files = bundled() ?? await fromDisk()
  const k = new Map<string, string>()
  const l = new Map<string, string>()
  for (const [path, code] of Object.entries(files)) {
    const parts = path.split('/')
    const stem = parts.pop()!.replace(/\.wgsl$/, '')
    if (parts.at(-1) === 'lib') l.set(stem, code)
    else k.set(stem, code)
  }
  kernels = k
  libs = l
}

/** The source of shaders/<stem>.wgsl, its includes expanded. */
export function shaderSource (stem: string): string {
  if (kernels === undefined || libs === undefined) throw new ShaderSourceError('shader sources not loaded: call loadShaderSources() first')
  const hit = expanded.get(stem)
  if (hit !== undefined) return hit
  const s = kernels.get(stem)
  if (s === undefined) throw new ShaderSourceError(`no shader shaders/${stem}.wgsl (have: ${[...kernels.keys()].join(', ')})`)
  const code = expandIncludes(stem, s, libs)
  expanded.set(stem, code)
  return code
}

/** Every kernel stem (not the libs), for compile-all checks. */
export function shaderStems (): string[] {
  if (kernels === undefined) throw new ShaderSourceError('shader sources not loaded')
  return [...kernels.keys()]
}
