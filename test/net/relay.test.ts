import { afterAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs/promises'
import * as http from 'node:http'
import * as https from 'node:https'
import * as os from 'node:os'
import * as path from 'node:path'
import * as Y from 'yjs'
import { HELP, parseConfig, type RelayConfig } from '../../relay/config.ts'
import { CrdtStore } from '../../relay/crdt-store.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { NetConfigError } from '../../web/src/net/errors.ts'
import { DEFAULT_ROTATION_POLICY } from '../../web/src/net/crdt/generation.ts'
import { joinSwarm, type Swarm } from '../../web/src/net/index.ts'
import { until } from './peers-harness.ts'
import { execTs, spawnTs } from '../helpers/spawn-ts.ts'

/**
 * Watchdog of every wait on the relay process, its HTTP answers and its peers, ms. Real processes
 * and sockets run on real time, so a bound only has to stay far beyond any load: idle, each of
 * these takes well under a second to a few seconds; on the 2-core machine beside two CPU burners
 * and other jobs, 5–20 s bounds were hit. A passing run never waits for it.
 */
const WATCHDOG_MS = 120_000
/** Per test: several such waits in a row. */
const TEST_MS = 600_000

const tmpDirs: string[] = []
async function tmp (): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'webswarm-relay-test-'))
  tmpDirs.push(d)
  return d
}
afterAll(async () => { for (const d of tmpDirs) await fs.rm(d, { recursive: true, force: true }) })

const quiet = (): void => {}

describe('relay config', () => {
  it('reads flags, then env, then defaults; --help; typed errors for bad values', () => {
    const c = parseConfig(['--port', '9000', '--announce', '/dns4/x.example/tcp/443/tls/ws', '--announce', '/ip4/1.2.3.4/tcp/9000/ws', '--relay-data', '--swarm', 'a', '--swarm', 'b'], { HOST: '0.0.0.0', PORT: '1' })!
    expect(c.port).toBe(9000)
    expect(c.host).toBe('0.0.0.0')
    expect(c.announce).toHaveLength(2)
    expect(c.relayData).toBe(true)
    expect(c.swarms).toEqual(['a', 'b'])
    const e = parseConfig([], { PORT: '7000', ICE_SERVERS: 'stun:s.example:3478,turn:u:p@t.example:3478', RELAY_DATA_LIMIT: '1048576' })!
    expect(e.port).toBe(7000)
    expect(e.iceServers).toEqual([{ urls: 'stun:s.example:3478' }, { urls: 'turn:t.example:3478', username: 'u', credential: 'p' }])
    expect(e.relayDataLimitBytes).toBe(1048576n)
    expect(parseConfig(['--ice-server', 'none'], {})!.iceServers).toEqual([])
    expect(parseConfig(['--help'], {})).toBeNull()
    for (const flag of ['--port', '--announce', '--tls-cert', '--relay-data', '--data-dir', '--swarm', '--ice-server', '--max-reservations', '--relay-data-limit', '--relay-duration', '--compact-interval']) expect(HELP).toContain(flag)
    expect(() => parseConfig(['--port', 'x'], {})).toThrow(NetConfigError)
    // Shorter than libp2p's 30 s minimum refresh delay: peers would sit unreserved (NO_RESERVATION).
    expect(() => parseConfig(['--reservation-ttl', '20000'], {})).toThrow(/--reservation-ttl.*60000/)
    expect(parseConfig(['--reservation-ttl', '60000'], {})!.reservationTtlMs).toBe(60000)
    expect(() => parseConfig(['--tls-cert', 'a.pem'], {})).toThrow(/go together/)
    expect(() => parseConfig(['--swarm', 'Bad Name'], {})).toThrow(NetConfigError)
    expect(() => parseConfig(['--ice-server', 'http://x'], {})).toThrow(/stun/)
    expect(() => parseConfig(['--nope'], {})).toThrow()
    expect(HELP).toContain('--generation-min-history')
    expect(parseConfig([], {})!.generationPolicy).toEqual(DEFAULT_ROTATION_POLICY)
    expect(parseConfig(['--generation-min-history', '0', '--generation-every', '120000'], {})!.generationPolicy).toMatchObject({ minHistoryBytes: 0, everyMs: 120_000 })
    expect(parseConfig([], { GENERATION_MIN_HISTORY: '512' })!.generationPolicy.minHistoryBytes).toBe(512)
    expect(() => parseConfig(['--generation-every', '1000'], {})).toThrow(/--generation-every.*60000/)
    expect(() => parseConfig(['--generation-min-history', '-1'], {})).toThrow(/--generation-min-history/)
  })

  it('--ice-servers (the CLI\'s spelling, documented) and --ice-server both take comma lists and repeat', () => {
    expect(parseConfig(['--ice-servers', 'stun:a.example:1,stun:b.example:2'], {})!.iceServers).toEqual([{ urls: 'stun:a.example:1' }, { urls: 'stun:b.example:2' }])
    expect(parseConfig(['--ice-servers', 'stun:a.example:1', '--ice-server', 'stun:b.example:2'], {})!.iceServers).toHaveLength(2)
    expect(parseConfig(['--ice-servers', 'none'], {})!.iceServers).toEqual([])
    expect(HELP).toContain('--ice-servers <url,…>')
  })
})

describe('CrdtStore', () => {
  it('replays fsynced updates after a crash, drops a torn tail, and compacts to one record', async () => {
    const dir = await tmp()
    const doc = new Y.Doc()
    const store = await CrdtStore.open(dir, 's', doc, { compactIntervalMs: 0, log: quiet })
    for (let i = 0; i < 20; i++) doc.getMap('m').set(`k${i}`, i)
    await store.flush()
    expect(store.stats.records).toBe(20)
    // "Crash": no close(), a half-written record at the end of the file.
    await fs.appendFile(store.file, Buffer.from([200, 0, 0, 0, 1, 2, 3]))
    const logs: string[] = []
    const doc2 = new Y.Doc()
    const store2 = await CrdtStore.open(dir, 's', doc2, { compactIntervalMs: 0, log: l => logs.push(l) })
    expect(doc2.getMap('m').toJSON()).toEqual(doc.getMap('m').toJSON())
    expect(store2.stats.tornRecords).toBe(1)
    expect(logs.join()).toMatch(/torn\/corrupt tail/)
    // A corrupted byte inside a record is caught by its crc.
    doc2.getMap('m').set('after', true)
    await store2.close()
    expect(store2.stats.records).toBe(1) // close() compacts
    const bytes = await fs.readFile(store2.file)
    bytes[bytes.length - 1] ^= 0xff
    await fs.writeFile(store2.file, bytes)
    const doc3 = new Y.Doc()
    const store3 = await CrdtStore.open(dir, 's', doc3, { compactIntervalMs: 0, log: quiet })
    expect(store3.stats.tornRecords).toBe(1)
    expect(doc3.getMap('m').size).toBe(0)
    await store3.close({ compact: false })
    await store.close({ compact: false }).catch(() => {})
  })
})

async function get (url: string): Promise<Response> {
  return await fetch(url, { signal: AbortSignal.timeout(WATCHDOG_MS) })
}

describe('relay process: HTTP, identity, restart with peers', { timeout: TEST_MS }, () => {
  let relay: RelayHandle | undefined
  const swarms: Swarm[] = []
  afterAll(async () => {
    for (const s of swarms) await s.stop()
    await relay?.stop()
  })

  it('serves /health, /bootstrap, /metrics and the page on the websocket port; keeps its identity; peers reconnect after a restart and nothing acknowledged is lost', async () => {
    const dataDir = await tmp()
    const staticDir = await tmp()
    await fs.writeFile(path.join(staticDir, 'index.html'), '<!doctype html><title>t</title>')
    const base: RelayConfig = { ...parseConfig(['--port', '0', '--ice-server', 'none'], {})!, dataDir, staticDir }
    relay = await startRelay(base, quiet)
    const port = Number(new URL(relay.httpUrl).port)
    const firstId = relay.node.peerId.toString()

    const health = await (await get(`${relay.httpUrl}/health`)).json() as Record<string, any>
    expect(health.peerId).toBe(firstId)
    expect(health.addrs[0]).toContain(`/tcp/${port}/ws/p2p/${firstId}`)
    expect(health).toHaveProperty('connections')
    expect(health).toHaveProperty('reservations', 0)
    expect(health.swarms.default).toBeDefined()
    const boot = await (await get(`${relay.httpUrl}/bootstrap`)).json() as Record<string, any>
    expect(boot.multiaddrs[0]).toBe(`/ip4/127.0.0.1/tcp/${port}/ws/p2p/${firstId}`)
    expect(boot.iceServers).toEqual([])
    // Behind a TLS proxy: the address derived from the request is wss on the proxy's port.
    const proxied = JSON.parse(await new Promise<string>((resolve, reject) => {
      http.get(`${relay!.httpUrl}/bootstrap`, { headers: { 'x-forwarded-proto': 'https', host: 'relay.example.com' }, timeout: WATCHDOG_MS }, res => {
        let b = ''
        res.on('data', (c: Buffer) => { b += c.toString() })
        res.on('end', () => { resolve(b) })
      }).on('error', reject)
    })) as Record<string, any>
    expect(proxied.multiaddrs[0]).toBe(`/dns/relay.example.com/tcp/443/tls/ws/p2p/${firstId}`)
    expect(await (await get(`${relay.httpUrl}/`)).text()).toContain('<title>t</title>')
    expect((await get(`${relay.httpUrl}/%2e%2e/%2e%2e/etc/passwd`)).status).toBeGreaterThanOrEqual(400)
    expect((await get(`${relay.httpUrl}/nope.js`)).status).toBe(404)

    // Four peers join through the relay and write concurrently.
    for (let i = 0; i < 4; i++) {
      swarms.push(await joinSwarm({ bootstrap: boot.multiaddrs, iceServers: [], targetPeers: 0, log: quiet }))
    }
    await Promise.all(swarms.map(async s => { await s.peers.ready(WATCHDOG_MS) }))
    await Promise.all(swarms.map(async (s, i) => {
      await s.setSelf({ n: i })
      s.doc.map('runs').set(`r${i}`, { round: i })
    }))
    const relayDoc = relay.swarms.get('default')!.sdoc
    await until('relay has every entry', async () => (await relayDoc.peers()).size === 4 && relayDoc.map('runs').size === 4, WATCHDOG_MS)
    await relay.swarms.get('default')!.store.flush()

    const metrics = await (await get(`${relay.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/webswarm_relay_reservations 4/)
    expect(metrics).toMatch(/webswarm_crdt_peers\{swarm="default"\} 4/)
    expect(metrics).toMatch(/webswarm_crdt_doc_bytes\{swarm="default"\} \d+/)
    expect(metrics).toMatch(/webswarm_relay_connections\{kind="websocket"\} 4/)
    expect(metrics).toMatch(/webswarm_dht_records \d+/)
    expect(metrics).toMatch(/webswarm_relay_relayed_bytes_total \d+/)

    // Restart on the same port. While it is down, peers keep editing (only locally).
    await relay.stop()
    swarms[1].doc.map('runs').set('during-outage', true)
    await swarms[2].setSelf({ n: 2, outage: true })
    relay = await startRelay({ ...base, port }, quiet)
    expect(relay.node.peerId.toString()).toBe(firstId)
    const restored = relay.swarms.get('default')!.sdoc
    // From disk alone, before any peer is back: everything acknowledged before the restart.
    expect((await restored.peers()).size).toBe(4)
    expect(restored.map('runs').size).toBe(4)

    // Peers reconnect with backoff, re-reserve, and the doc converges everywhere.
    await until('peers reconnected', () => swarms.every(s => s.peers.relayConnected), WATCHDOG_MS)
    await Promise.all(swarms.map(async s => { await s.peers.ready(WATCHDOG_MS) }))
    const done = async (): Promise<boolean> => {
      for (const d of [restored, ...swarms.map(s => s.doc)]) {
        if (d.map('runs').get('during-outage') !== true) return false
        if ((await d.peers()).get(swarms[2].peerId)?.data.outage !== true) return false
      }
      return true
    }
    await until('convergence after relay restart', done, WATCHDOG_MS)
    expect(restored.map('runs').size).toBe(5)
  })
})

describe('relay process lifecycle', { timeout: TEST_MS }, () => {
  it('serves https and announces /tls/ws on one port with --tls-cert/--tls-key', async () => {
    const dir = await tmp()
    const cert = path.join(dir, 'cert.pem')
    const key = path.join(dir, 'key.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
    const relay = await startRelay({ ...parseConfig(['--port', '0', '--ice-server', 'none', '--tls-cert', cert, '--tls-key', key], {})!, dataDir: dir, staticDir: dir }, quiet)
    try {
      expect(relay.httpUrl).toMatch(/^https:/)
      expect(relay.bootstrapAddrs[0]).toMatch(/\/tls\/ws\/p2p\//)
      const body = await new Promise<string>((resolve, reject) => {
        https.get(`${relay.httpUrl}/health`, { rejectUnauthorized: false, timeout: WATCHDOG_MS }, res => {
          let b = ''
          res.on('data', (c: Buffer) => { b += c.toString() })
          res.on('end', () => { resolve(b) })
        }).on('error', reject)
      })
      expect(JSON.parse(body).peerId).toBe(relay.node.peerId.toString())
    } finally {
      await relay.stop()
    }
  })

  it('npm run relay on a busy port: one line naming the port and how to choose another, exit 1', async () => {
    const busy = http.createServer()
    await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve))
    const port = (busy.address() as import('node:net').AddressInfo).port
    try {
      const child = spawnTs('relay/main.ts', ['--port', String(port), '--data-dir', await tmp(), '--ice-servers', 'none', '--no-api'])
      let err = ''
      child.stderr.on('data', (c: Buffer) => { err += c.toString() })
      const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
      expect(code).toBe(1)
      expect(err).toBe(`relay: port ${port} on 127.0.0.1 is already in use (another relay, API or program listens there); choose another: PORT=9000 npm start, or npm run relay -- --port 9000\n`)
    } finally {
      busy.close()
    }
  })

  it('npm run relay: --help documents every flag; SIGTERM flushes, compacts and exits 0', async () => {
    const help = execTs('relay/main.ts', ['--help'])
    expect(help).toContain('--relay-data')
    const dataDir = await tmp()
    // --no-embedded-peer: this test counts the swarm's peers (the embedded one would be one more).
    const child = spawnTs('relay/main.ts', ['--port', '0', '--data-dir', dataDir, '--ice-server', 'none', '--compact-interval', '0', '--no-embedded-peer'])
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.stderr.on('data', (c: Buffer) => { out += c.toString() })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => { resolve(code) }))
    try {
      await until('relay listening', () => /page \+ \/health .* at (http:\/\/\S+)/.test(out), 2 * WATCHDOG_MS, 100)
      const url = /at (http:\/\/\S+)/.exec(out)![1]
      const boot = await (await get(`${url}/bootstrap`)).json() as { multiaddrs: string[] }
      const s = await joinSwarm({ bootstrap: boot.multiaddrs, iceServers: [], targetPeers: 0, log: quiet })
      await s.peers.ready(WATCHDOG_MS)
      // main.ts counts unhandled rejections instead of dying of them (process-guard.test.ts shows the guard keeps a process up)
      expect(await (await get(`${url}/metrics`)).text()).toMatch(/^webswarm_relay_unhandled_rejections_total 0$/m)
      await s.setSelf({ before: 'sigterm' })
      await until('relay stored the entry', async () => {
        const h = await (await get(`${url}/health`)).json() as { swarms: { default: { peers: number } } }
        return h.swarms.default.peers === 1
      }, WATCHDOG_MS)
      await s.stop()
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(out).toMatch(/SIGTERM received/)
      expect(out).toMatch(/relay: stopped/)
      // Compacted on shutdown: one snapshot record holding the entry.
      const doc = new Y.Doc()
      const store = await CrdtStore.open(path.join(dataDir, 'crdt'), 'default', doc, { compactIntervalMs: 0, log: quiet })
      expect(store.stats.records).toBe(1)
      expect(doc.getMap('peers').size).toBe(1)
      await store.close({ compact: false })
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})
