/**
 * The `webswarm` command as a user runs it (a child process through tsx), on the fixtures.
 */
import { describe, expect, it, afterAll } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { decodeSafetensors } from '../../web/src/model/safetensors.ts'
import { assertClose, relL2 } from '../helpers/assert-close.ts'

const LLAMA = 'test/fixtures/tiny-llama'
const ref = JSON.parse(readFileSync(`${LLAMA}/reference.json`, 'utf8')) as { prompt: number[], logits: number[][], greedy: number[], train: { inputs: number[], targets: number[], loss: number } }
const tmp = mkdtempSync(`${tmpdir()}/ws-cli-`)
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

interface Run { code: number, stdout: string, stderr: string }

async function webswarm (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return await new Promise(resolve => {
    execFile('node_modules/.bin/tsx', ['web/src/cli/bin.ts', ...args], { env: { ...process.env, ...env }, timeout: 240_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

/** A loopback port nothing listens on (one just released). */
async function closedPort (): Promise<number> {
  const srv = http.createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as AddressInfo).port
  await new Promise(resolve => srv.close(resolve))
  return port
}

describe('webswarm CLI', () => {
  it('logits writes every position (cpu)', async () => {
    const r = await webswarm(['logits', '--model', LLAMA, '--tokens', ref.prompt.join(','), '--out', `${tmp}/l.json`, '--device', 'cpu'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(readFileSync(`${tmp}/l.json`, 'utf8')) as { logits: number[][] }
    expect(out.logits.length).toBe(ref.prompt.length)
    assertClose(out.logits.flat(), ref.logits.flat(), { atol: 2e-3, rtol: 0, what: 'cli logits' })
  })

  it('logits on webgpu (the default device)', async () => {
    const r = await webswarm(['logits', '--model', LLAMA, '--tokens', ref.prompt.slice(0, 4).join(','), '--out', `${tmp}/lg.json`])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(readFileSync(`${tmp}/lg.json`, 'utf8')) as { logits: number[][] }
    assertClose(out.logits.flat(), ref.logits.slice(0, 4).flat(), { atol: 2e-3, rtol: 0, what: 'cli webgpu logits' })
  })

  it('generate streams ids and writes the new tokens', async () => {
    const r = await webswarm(['generate', '--model', LLAMA, '--tokens', ref.prompt.join(','), '--max-new-tokens', '8', '--out', `${tmp}/g.json`, '--device', 'cpu'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(readFileSync(`${tmp}/g.json`, 'utf8')) as { tokens: number[] }
    expect(out.tokens).toEqual(ref.greedy.slice(0, 8))
    expect(r.stdout.trim()).toBe(ref.greedy.slice(0, 8).join(','))
  })

  it('generate samples reproducibly with a seed, and decodes --prompt text for byte models', async () => {
    const args = ['generate', '--model', LLAMA, '--prompt', 'Hi', '--max-new-tokens', '5', '--temperature', '0.8', '--top-k', '20', '--top-p', '0.9', '--seed', '3', '--device', 'cpu']
    const a = await webswarm([...args, '--out', `${tmp}/s1.json`])
    const b = await webswarm([...args, '--out', `${tmp}/s2.json`])
    expect(a.code, a.stderr).toBe(0)
    expect(readFileSync(`${tmp}/s1.json`, 'utf8')).toBe(readFileSync(`${tmp}/s2.json`, 'utf8'))
  })

  it('grad writes grads.safetensors with the weight names and the loss', async () => {
    const r = await webswarm(['grad', '--model', LLAMA, '--inputs', ref.train.inputs.join(','), '--targets', ref.train.targets.join(','), '--out', `${tmp}/grad`, '--device', 'cpu'])
    expect(r.code, r.stderr).toBe(0)
    const { loss } = JSON.parse(readFileSync(`${tmp}/grad/result.json`, 'utf8')) as { loss: number }
    expect(Math.abs(loss - ref.train.loss) / ref.train.loss).toBeLessThan(1e-4)
    const got = decodeSafetensors(new Uint8Array(readFileSync(`${tmp}/grad/grads.safetensors`))).tensors
    const want = decodeSafetensors(new Uint8Array(readFileSync(`${LLAMA}/grads.safetensors`))).tensors
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
    for (const [n, t] of want) expect(relL2(got.get(n)?.data ?? [], t.data), n).toBeLessThan(1e-3)
  })

  it('train runs from a config and writes a loadable checkpoint', async () => {
    const r = await webswarm(['train', '--config', `${LLAMA}/config.json`, '--data', 'test/fixtures/README.md', '--steps', '3', '--batch', '2', '--seq-len', '16', '--out', `${tmp}/run`, '--device', 'cpu'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/step 3\/3 {2}loss \d/)
    for (const f of ['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer.json']) expect(existsSync(`${tmp}/run/${f}`)).toBe(true)
    const g = await webswarm(['generate', '--model', `${tmp}/run`, '--prompt', 'The', '--max-new-tokens', '3', '--device', 'cpu'])
    expect(g.code, g.stderr).toBe(0)
  })

  it('bad input is one line naming the problem', async () => {
    const a = await webswarm(['logits', '--model', LLAMA, '--tokens', '1,999', '--out', `${tmp}/x.json`, '--device', 'cpu'])
    expect(a.code).toBe(1)
    expect(a.stderr).toBe('webswarm: token id 999 is outside the vocabulary [0, 256)\n')
    const b = await webswarm(['frobnicate'])
    expect(b.code).toBe(2)
    expect(b.stderr).toMatch(/unknown command 'frobnicate'/)
    const c = await webswarm(['logits', '--model', `${tmp}/nowhere`, '--tokens', '1', '--out', `${tmp}/x.json`, '--device', 'cpu'])
    expect(c.stderr).toMatch(/^webswarm: .*config\.json not found\n$/)
    const d = await webswarm(['generate', '--bootstrap', '/ip4/127.0.0.1/tcp/1/ws/p2p/x', '--model', LLAMA, '--tokens', '1', '--max-new-tokens', '2', '--verify', '2', '--device', 'cpu'])
    expect(d.code).toBe(2)
    expect(d.stderr).toMatch(/--verify: the fraction of steps checked must be in \(0, 1\], got 2/)
    const e = await webswarm(['generate', '--bootstrap', '/ip4/127.0.0.1/tcp/1/ws/p2p/x', '--model', LLAMA, '--tokens', '1', '--max-new-tokens', '2', '--verify', '0.1', '--verify-window', '8', '--device', 'cpu'])
    expect(e.code).toBe(2)
    expect(e.stderr).toMatch(/give --verify RATE or --verify-window N, not both/)
  })

  it('--version prints the version from package.json and exits 0', async () => {
    const r = await webswarm(['--version'])
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }
    expect([r.code, r.stdout, r.stderr]).toEqual([0, `webswarm ${pkg.version}\n`, ''])
  })

  it('a URL nobody answers is one line naming it (local and swarm generate); a busy --port is one line naming it', async () => {
    const port = await closedPort()
    const base = `http://127.0.0.1:${port}`
    const line = `webswarm: cannot reach 127.0.0.1:${port} (connection refused: nothing listens there): ${base}/models/default`
    const local = await webswarm(['generate', '--model', `${base}/models/default`, '--tokens', '1', '--max-new-tokens', '2', '--device', 'cpu'])
    expect([local.code, local.stderr]).toEqual([1, `${line}\n`])
    const swarm = await webswarm(['generate', '--model', `${base}/models/default`, '--bootstrap', base, '--tokens', '1', '--max-new-tokens', '2', '--device', 'cpu'])
    expect([swarm.code, swarm.stderr]).toEqual([1, `${line}, ${base}\n`])
    const busy = http.createServer()
    await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve))
    const taken = (busy.address() as AddressInfo).port
    try {
      const api = await webswarm(['api', '--bootstrap', base, '--model', LLAMA, '--port', String(taken), '--device', 'cpu'])
      expect([api.code, api.stderr]).toEqual([1, `webswarm: port ${taken} on 127.0.0.1 is already in use (another relay, API or program listens there); choose another: --port 9000 (0: any free one)\n`])
    } finally {
      busy.close()
    }
  })

  it('--chat on a model without a chat template renders the API\'s transcript and stops where the API stops', async () => {
    const chat = await webswarm(['generate', '--model', 'models/byte-llama', '--chat', 'Hello', '--max-new-tokens', '40', '--device', 'cpu'])
    expect(chat.code, chat.stderr).toBe(0)
    // The same prompt written out by hand (api/prompt.ts transcript()), cut at the API's stop text.
    const byHand = await webswarm(['generate', '--model', 'models/byte-llama', '--prompt', 'User: Hello\nAssistant:', '--max-new-tokens', '40', '--device', 'cpu'])
    expect(chat.stdout).toBe(byHand.stdout.replace(/\n$/, '').split('\nUser:')[0] + '\n')
  })

  it('a missing WebGPU adapter is a one-line error saying what to do', async () => {
    const r = await webswarm(['logits', '--model', LLAMA, '--tokens', '1', '--out', `${tmp}/x.json`], { VK_ICD_FILENAMES: '/nonexistent/icd.json' })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n').filter(l => l.startsWith('webswarm:'))).toHaveLength(1)
    expect(r.stderr).toMatch(/webswarm: no WebGPU adapter: .*--device cpu/)
  })
})
