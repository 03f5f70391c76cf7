/**
 * WGSL sources come from the project's own shaders/ folder only, never the network:
 * bundled by Vite (browser, vitest) or read from disk (Node CLI under tsx).
 */
let sources: Map<string, string> | undefined

function bundled (): Record<string, string> | undefined {
  try {
    // Vite replaces this call at build time; under plain Node it throws and we read the disk.
    return import.meta.glob('../../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true })
  } catch {
    return undefined
  }
}

async function fromDisk (): Promise<Record<string, string>> {
  const fs = await import('node:fs/promises')
  const dir = new URL('../../../shaders/', import.meta.url)
  const out: Record<string, string> = {}
  for (const f of await fs.readdir(dir)) {
    if (f.endsWith('.wgsl')) out[f] = await fs.readFile(new URL(f, dir), 'utf8')
  }
  return out
}

/** Loads every shader once; call before the first kernel runs (GpuBackend.create does). */
export async function loadShaderSources (): Promise<void> {
  if (sources !== undefined) return
  const files = bundled() ?? await fromDisk()
  sources = new Map()
  for (const [path, code] of Object.entries(files)) {
    const stem = path.split('/').pop()!.replace(/\.wgsl$/, '')
    sources.set(stem, code)
  }
}

/** The source of shaders/<stem>.wgsl. */
export function shaderSource (stem: string): string {
  if (sources === undefined) throw new Error('shader sources not loaded: call loadShaderSources() first')
  const s = sources.get(stem)
  if (s === undefined) throw new Error(`no shader shaders/${stem}.wgsl (have: ${[...sources.keys()].join(', ')})`)
  return s
}

/** Every shader stem, for compile-all checks. */
export function shaderStems (): string[] {
  if (sources === undefined) throw new Error('shader sources not loaded')
  return [...sources.keys()]
}
