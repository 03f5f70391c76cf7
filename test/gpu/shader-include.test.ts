import { describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { expandIncludes, loadShaderSources, shaderSource, shaderStems } from '../../web/src/gpu/shader-source.ts'

const libs = (o: Record<string, string>): Map<string, string> => new Map(Object.entries(o))

describe('expandIncludes (shaders/lib/*.wgsl)', () => {
  it('replaces an include line with the lib text and leaves other lines alone', () => {
    const code = 'const A = 1;\n// #include "red"\nfn main() {}\n'
    expect(expandIncludes('k', code, libs({ red: 'fn red() {}\n' }))).toBe('const A = 1;\nfn red() {}\nfn main() {}\n')
    // Only the exact form is an include; lookalikes stay as written.
    const near = '//#include "red"\n  // #include "red"\n// #include red\n'
    expect(expandIncludes('k', near, libs({}))).toBe(near)
  })

  it('expands nested includes, each lib once per kernel', () => {
    const l = libs({ a: '// #include "c"\nfn a() {}', b: '// #include "c"\nfn b() {}', c: 'fn c() {}\n' })
    const out = expandIncludes('k', '// #include "a"\n// #include "b"\n// #include "a"\n', l)
    expect(out).toBe('fn c() {}\nfn a() {}\n\nfn b() {}\n\n')
    expect(out.match(/fn c\(\)/g)).toHaveLength(1)
  })

  it('throws naming the kernel and the lib when a lib is missing', () => {
    expect(() => expandIncludes('norm', '// #include "nope"\n', libs({}))).toThrow(/norm.*nope/)
    expect(() => expandIncludes('norm', '// #include "a"\n', libs({ a: '// #include "gone"' }))).toThrow(/norm.*gone.*from a/)
  })

  it('throws naming the kernel and the libs of an include cycle', () => {
    const l = libs({ a: '// #include "b"', b: '// #include "a"', s: '// #include "s"' })
    expect(() => expandIncludes('softmax', '// #include "a"\n', l)).toThrow('shader softmax: include cycle a → b → a')
    expect(() => expandIncludes('loss', '// #include "s"\n', l)).toThrow('shader loss: include cycle s → s')
  })
})

describe('shader sources', () => {
  const onDisk = fs.readdirSync('shaders').filter(f => f.endsWith('.wgsl')).map(f => f.replace(/\.wgsl$/, '')).sort()

  it('lists the kernels, not the libs, and expands every kernel fully', async () => {
    await loadShaderSources()
    expect(shaderStems().sort()).toEqual(onDisk)
    for (const s of onDisk) expect(shaderSource(s), s).not.toMatch(/#include/)
    expect(shaderSource('norm')).toContain('fn workgroup_sum(')
  })

  it('includes every lib somewhere (a lib nothing includes is code no test runs)', () => {
    const libFiles = fs.readdirSync('shaders/lib').filter(f => f.endsWith('.wgsl')).map(f => f.replace(/\.wgsl$/, ''))
    const texts = [...onDisk.map(s => `shaders/${s}.wgsl`), ...libFiles.map(l => `shaders/lib/${l}.wgsl`)].map(f => fs.readFileSync(f, 'utf8'))
    const used = new Set(texts.flatMap(t => [...t.matchAll(/^\/\/ #include "(\w+)"/gm)].map(m => m[1])))
    expect(libFiles.filter(l => !used.has(l))).toEqual([])
  })

  it('reads the same expanded sources from disk under plain Node (tsx) as from the Vite glob', async () => {
    await loadShaderSources()
    const script = "import { loadShaderSources, shaderSource, shaderStems } from './web/src/gpu/shader-source.ts';" +
      'await loadShaderSources(); console.log(JSON.stringify(Object.fromEntries(shaderStems().map(s => [s, shaderSource(s)]))))'
    const out = execFileSync('node_modules/.bin/tsx', ['--input-type=module', '-e', script], { encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual(Object.fromEntries(onDisk.map(s => [s, shaderSource(s)])))
  })
})
