/**
 * The API as users start it, as child processes over real libp2p: `npm run relay` (relay/main.ts,
 * what `npm start` runs after building the page) answers /v1 on its own port through its embedded
 * peer; `webswarm api` next to it answers the same greedy text with a Bearer key. Waits are on
 * the processes' own output lines, not on time.
 */
import type { ChildProcess } from 'node:child_process'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import OpenAI from 'openai'
import { afterAll, describe, expect, it, onTestFailed } from 'vitest'
import { spawnTs } from '../helpers/spawn-ts.ts'

const children: ChildProcess[] = []
/** Every started process's output so far, for the failure report. */
const outputs: Array<() => string> = []
afterAll(() => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL') })

/** Starts a process; resolves with the first match of `pattern` in its output. */
async function start (args: string[], pattern: RegExp): Promise<{ child: ChildProcess, match: RegExpExecArray, output: () => string }> {
  const child = spawnTs(args[0], args.slice(1), { env: { ...process.env, WEBSWARM_NO_EMBEDDED_PEER: '', WEBSWARM_API_KEY: '' } })
  children.push(child)
  let out = ''
  outputs.push(() => `${args.join(' ')}:\n${out}`)
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const look = (c: Buffer): void => {
      out += c.toString()
      const m = pattern.exec(out)
      if (m !== null) resolve(m)
    }
    child.stdout!.on('data', look)
    child.stderr!.on('data', look)
    child.on('exit', code => reject(new Error(`${args.join(' ')} exited ${code} before printing ${pattern}:\n${out}`)))
  })
  return { child, match, output: () => out }
}

async function stop (child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  child.kill('SIGTERM')
  return await exited
}

/**
 * Three Node processes (relay + embedded peer, api), each transpiling the code base and minting an
 * identity stamp, on 2 shared cores beside another test file: this took 16 s alone and over 120 s
 * under load, so its limit is generous; a failure names the step it was on and the outputs.
 */
const PROCESS_TEST_TIMEOUT_MS = 360_000

describe('the API as processes', () => {
  it('npm run relay serves /v1 through its embedded peer; webswarm api beside it answers the same, with a key', async () => {
    let step = 'starting the relay'
    onTestFailed(() => { console.error(`process.test failed while ${step}; outputs:\n${outputs.map(o => o()).join('\n----\n')}`) })
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ws-api-'))
    const relay = await start(['relay/main.ts', '--port', '0', '--data-dir', dataDir, '--ice-server', 'none'], /OpenAI-compatible API at (http:\/\/\S+)\/v1/)
    step = 'asking the relay\'s API'
    const base = relay.match[1]
    const viaRelay = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 })
    expect((await viaRelay.models.list()).data.map(m => m.id)).toEqual(['default'])
    const body = { model: 'default', messages: [{ role: 'user' as const, content: 'The man' }], max_tokens: 12, temperature: 0 }
    const a = await viaRelay.chat.completions.create(body)
    expect(a.usage?.completion_tokens).toBeGreaterThan(0)
    // The API client rides on the embedded peer's libp2p node (cli/api.ts): the relay holds one
    // reservation from its own process, not one per node.
    const metrics = await (await fetch(`${base}/metrics`)).text()
    expect(/^webswarm_relay_reservations (\d+)$/m.exec(metrics)?.[1]).toBe('1')

    step = 'starting webswarm api'
    const api = await start(['web/src/cli/bin.ts', 'api', '--bootstrap', base, '--ice-servers', 'none', '--model', 'models/byte-llama', '--model-id', 'default', '--device', 'cpu', '--port', '0', '--api-key', 'sk-test'], /"url":"(http:\/\/[^"]+)"/)
    step = 'asking webswarm api'
    const viaApi = new OpenAI({ baseURL: api.match[1], apiKey: 'sk-test', maxRetries: 0 })
    const b = await viaApi.chat.completions.create(body)
    expect(b.choices[0].message.content).toBe(a.choices[0].message.content)
    await expect(new OpenAI({ baseURL: api.match[1], apiKey: 'wrong', maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)

    step = 'stopping the processes'
    expect(await stop(api.child)).toBe(0)
    expect(await stop(relay.child)).toBe(0)
    expect(relay.output()).toMatch(/relay: stopped/)
  }, PROCESS_TEST_TIMEOUT_MS)
})
