import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as fs from 'node:fs/promises'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { urlSource } from '../../web/src/model/source.ts'

// The relay serves model folders so `npm start` tabs can load just the blocks they serve.
let relay: RelayHandle
let dir: string
const weights = Uint8Array.from({ length: 1000 }, (_, i) => i % 251)

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-models-'))
  await fs.mkdir(path.join(dir, 'models', 'tiny'), { recursive: true })
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'config.json'), '{"architectures":["LlamaForCausalLM"]}')
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'model.safetensors'), weights)
  await fs.writeFile(path.join(dir, 'models', 'tiny', 'optimizer.safetensors'), 'secret')
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
