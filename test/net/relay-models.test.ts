import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { modelFilePath, parseRange } from '../../relay/models.ts'
import { urlSource } from '../../web/src/model/source.ts'

// The relay serves model folders so `npm start` tabs can load just the blocks they serve.
let relay: RelayHandle
let dir: string
const weights = Uint8Array.from({ length: 1000 }, (_, i) => i % 251)
const gguf = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) % 253)

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-models-'))
  await fs.mkdir(path.join(dir, 'models', 'tiny'), { recursive: true })
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'config.json'), '{"architectures":["LlamaForCausalLM"]}')
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'model.safetensors'), weights)
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'optimizer.safetensors'), 'secret')
  await fs.writeFile(path.join(dir, 'models', 'small.gguf'), gguf)
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'tiny-Q8_0.gguf'), gguf.subarray(0, 100))
  await fs.writeFile(path.join(dir, 'models', 'notes.txt'), 'not a model')
  await fs.mkdir(path.join(dir, 'models', 'empty'))
  const config = { ...parseConfig(['--port', '0', '--ice-server', 'none'], {})!, dataDir: path.join(dir, 'data'), staticDir: dir, modelsDir: path.join(dir, 'models'), defaultModel: 'tiny' }
  relay = await startRelay(config, () => {})
})
afterAll(async () => {
  await relay?.stop()
  await fs.rm(dir, { recursive: true, force: true })
})

/** Status of a GET with the path sent verbatim. */
async function rawStatus (p: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const u = new URL(relay.httpUrl)
    http.get({ host: u.hostname, port: u.port, path: p, timeout: 5000 }, res => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
}

describe('relay /models/', () => {
  it('serves whole files, HEAD sizes and single byte ranges; /models/default is the default model', async () => {
    const full = await fetch(`${relay.httpUrl}/models/tiny/model.safetensors`)
    expect(full.status).toBe(200)
    expect(new Uint8Array(await full.arrayBuffer())).toEqual(weights)
    const head = await fetch(`${relay.httpUrl}/models/default/model.safetensors`, { method: 'HEAD' })
    expect(head.headers.get('content-length')).toBe('1000')
    expect(head.headers.get('accept-ranges')).toBe('bytes')
    const part = await fetch(`${relay.httpUrl}/models/default/model.safetensors`, { headers: { Range: 'bytes=10-19' } })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe('bytes 10-19/1000')
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(weights.slice(10, 20))
    const tail = await fetch(`${relay.httpUrl}/models/tiny/model.safetensors`, { headers: { Range: 'bytes=-5' } })
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(weights.slice(995))
  })

  it('is what the model loader reads through urlSource', async () => {
    const src = urlSource(`${relay.httpUrl}/models/default`)
    expect(await src.size('model.safetensors')).toBe(1000)
    expect(await src.read('model.safetensors', 100, 7)).toEqual(weights.slice(100, 107))
  })

  it('refuses other files, escapes and unsatisfiable ranges', async () => {
    expect((await fetch(`${relay.httpUrl}/models/tiny/optimizer.safetensors`)).status).toBe(404)
    expect(await rawStatus('/models/tiny/../../relay/config.ts')).toBe(404) // dot segments resolve above models/
    expect(await rawStatus('/models/tiny/..%2f..%2frelay%2fconfig.ts')).toBe(404)
    expect((await fetch(`${relay.httpUrl}/models/.hidden/config.json`)).status).toBe(404)
    expect((await fetch(`${relay.httpUrl}/models/nope/config.json`)).status).toBe(404)
    expect((await fetch(`${relay.httpUrl}/models/tiny/model.safetensors`, { headers: { Range: 'bytes=2000-' } })).status).toBe(416)
    expect((await fetch(`${relay.httpUrl}/models/tiny/model.safetensors`, { headers: { Range: 'lines=1-2' } })).status).toBe(416)
  })
})

describe('relay /models/ with .gguf files', () => {
  it('lists gguf files and safetensors folders with their sizes', async () => {
    const res = await fetch(`${relay.httpUrl}/models`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      default: 'tiny',
      models: [
        { name: 'small.gguf', bytes: 3000, format: 'gguf', files: ['small.gguf'] },
        { name: 'tiny', bytes: 1000 + '{"architectures":["LlamaForCausalLM"]}'.length, format: 'safetensors', files: ['config.json', 'model.safetensors', 'tiny-Q8_0.gguf'] },
        { name: 'tiny/tiny-Q8_0.gguf', bytes: 100, format: 'gguf', files: ['config.json', 'model.safetensors', 'tiny-Q8_0.gguf'] }
      ]
    })
  })

  it('a reader given the listed files asks for no other: no 404 for an optional file the folder lacks', async () => {
    const listing = await (await fetch(`${relay.httpUrl}/models`)).json() as { models: Array<{ name: string, files: string[] }> }
    const asked: string[] = []
    const counting: typeof fetch = async (input, init) => { asked.push(`${init?.method ?? 'GET'} ${String(input)}`); return await fetch(input, init) }
    const src = urlSource(`${relay.httpUrl}/models/tiny`, counting, { files: listing.models.find(m => m.name === 'tiny')!.files })
    expect(await src.size('tokenizer.json')).toBeUndefined()
    expect(await src.size('model.safetensors.index.json')).toBeUndefined()
    expect(await src.size('model.safetensors')).toBe(1000)
    expect(asked).toEqual([`HEAD ${relay.httpUrl}/models/tiny/model.safetensors`])
    // Without the list (a plain static server), the probe is asked and its 404 read as "no such file".
    expect(await urlSource(`${relay.httpUrl}/models/tiny`, counting).size('tokenizer.json')).toBeUndefined()
    expect(asked).toHaveLength(2)
  })

  it('serves a .gguf file whole, by HEAD and by ranges, one folder down too', async () => {
    const head = await fetch(`${relay.httpUrl}/models/small.gguf`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe('3000')
    expect(head.headers.get('accept-ranges')).toBe('bytes')
    const whole = await fetch(`${relay.httpUrl}/models/small.gguf`)
    expect(new Uint8Array(await whole.arrayBuffer())).toEqual(gguf)
    const part = await fetch(`${relay.httpUrl}/models/small.gguf`, { headers: { Range: 'bytes=2990-5000' } })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe('bytes 2990-2999/3000')
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(gguf.slice(2990))
    const nested = await fetch(`${relay.httpUrl}/models/default/tiny-Q8_0.gguf`, { headers: { Range: 'bytes=0-3' } })
    expect(new Uint8Array(await nested.arrayBuffer())).toEqual(gguf.slice(0, 4))
  })

  it('answers 416 for ranges it cannot satisfy, and the whole file for a stale If-Range', async () => {
    for (const r of ['bytes=3000-', 'bytes=5-2', 'bytes=0-1,4-5', 'bytes=-0', 'bytes=-']) {
      const res = await fetch(`${relay.httpUrl}/models/small.gguf`, { headers: { Range: r } })
      expect(res.status, r).toBe(416)
      expect(res.headers.get('content-range'), r).toBe('bytes */3000')
    }
    const head = await fetch(`${relay.httpUrl}/models/small.gguf`, { method: 'HEAD' })
    const etag = head.headers.get('etag')!
    expect((await fetch(`${relay.httpUrl}/models/small.gguf`, { headers: { Range: 'bytes=0-9', 'If-Range': etag } })).status).toBe(206)
    const stale = await fetch(`${relay.httpUrl}/models/small.gguf`, { headers: { Range: 'bytes=0-9', 'If-Range': '"0-0"' } })
    expect(stale.status).toBe(200)
    expect((await stale.arrayBuffer()).byteLength).toBe(3000)
  })

  it('answers a CORS preflight for Range and exposes Content-Range', async () => {
    const pre = await fetch(`${relay.httpUrl}/models/small.gguf`, { method: 'OPTIONS' })
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-headers')).toContain('range')
    const part = await fetch(`${relay.httpUrl}/models/small.gguf`, { headers: { Range: 'bytes=0-0' } })
    expect(part.headers.get('access-control-expose-headers')).toContain('content-range')
  })

  it('refuses names that are not models or leave the models folder', async () => {
    for (const p of ['/models/notes.txt', '/models/..%2fdata%2fidentity.key', '/models/%2e%2e/x.gguf', '/models/.x.gguf', '/models/a/b/c.gguf', '/models/tiny/..gguf', '/models/missing.gguf', '/models/empty/x.gguf']) {
      expect(await rawStatus(p), p).toBe(404)
    }
    expect(await rawStatus('/models/%E0%A4%A.gguf')).toBe(404) // bad percent-encoding
  })

  it('counts the bytes it sends (metrics), so a range reader can be held to its ranges', async () => {
    const before = relay.metrics.modelServe.bytesSent
    const src = urlSource(`${relay.httpUrl}/models`)
    expect(await src.size('small.gguf')).toBe(3000)
    expect(await src.read('small.gguf', 1000, 24)).toEqual(gguf.slice(1000, 1024))
    expect(relay.metrics.modelServe.bytesSent - before).toBe(24)
    const text = await (await fetch(`${relay.httpUrl}/metrics`)).text()
    expect(text).toMatch(/webswarm_relay_model_bytes_sent_total \d+/)
  })
})

describe('model paths and ranges (pure)', () => {
  it('maps URL names to files under the models folder only', () => {
    expect(modelFilePath('/m', 'dflt', 'a.gguf')).toBe(path.join('/m', 'a.gguf'))
    expect(modelFilePath('/m', 'dflt', 'default/config.json')).toBe(path.join('/m', 'dflt', 'config.json'))
    expect(modelFilePath('/m', 'dflt', 'f/model-00001-of-00002.safetensors')).toBe(path.join('/m', 'f', 'model-00001-of-00002.safetensors'))
    for (const bad of ['a.txt', '../a.gguf', 'f/../../a.gguf', 'f/g/a.gguf', '.a.gguf', 'f/optimizer.safetensors', '', 'f/', '%2e%2e%2fa.gguf']) {
      expect(modelFilePath('/m', 'dflt', bad), bad).toBeUndefined()
    }
    expect(modelFilePath('/m', '../escape', 'default/config.json')).toBeUndefined()
  })

  it('parses single byte ranges against a size', () => {
    expect(parseRange(undefined, 10)).toEqual({ kind: 'whole' })
    expect(parseRange('bytes=2-4', 10)).toEqual({ kind: 'range', start: 2, end: 4 })
    expect(parseRange('bytes=2-', 10)).toEqual({ kind: 'range', start: 2, end: 9 })
    expect(parseRange('bytes=-3', 10)).toEqual({ kind: 'range', start: 7, end: 9 })
    expect(parseRange('bytes=-30', 10)).toEqual({ kind: 'range', start: 0, end: 9 })
    expect(parseRange('bytes=8-100', 10)).toEqual({ kind: 'range', start: 8, end: 9 })
    for (const bad of ['bytes=10-', 'bytes=4-2', 'bytes=1-2,3-4', 'items=1-2', 'bytes=-0', 'bytes=x-1']) expect(parseRange(bad, 10).kind, bad).toBe('unsatisfiable')
    expect(parseRange('bytes=0-0', 0).kind).toBe('unsatisfiable')
  })
})
