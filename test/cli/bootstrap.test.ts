/**
 * `--bootstrap MULTIADDR|URL` (repeatable, merged) and `--ice-servers LIST|none` of the swarm commands: a relay's page
 * URL gives its multiaddr and its operator's STUN/TURN list; bad values are usage errors.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { parseConfig } from '../../relay/config.ts'
import { startRelay, type RelayHandle } from '../../relay/relay.ts'
import { UsageError } from '../../web/src/cli/args.ts'
import { resolveBootstrap } from '../../web/src/cli/swarm-node.ts'
import { BootstrapUnreachableError } from '../../web/src/net/errors.ts'
import { parseIceServerList } from '../../web/src/net/ice.ts'

const ADDR = '/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const ADDR2 = '/ip4/127.0.0.1/tcp/2/ws/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
let relay: RelayHandle | undefined
afterAll(async () => { await relay?.stop() })

describe('resolveBootstrap', () => {
  it('takes a multiaddr as is; --ice-servers overrides the defaults', async () => {
    expect(await resolveBootstrap({ bootstrap: ADDR })).toEqual({ addrs: [ADDR], iceServers: undefined })
    expect(await resolveBootstrap({ bootstrap: [ADDR], 'ice-servers': 'none' })).toEqual({ addrs: [ADDR], iceServers: [] })
    expect((await resolveBootstrap({ bootstrap: ADDR, 'ice-servers': 'stun:a.example:3478,turn:u:p@b.example:3478' })).iceServers)
      .toEqual([{ urls: 'stun:a.example:3478' }, { urls: 'turn:b.example:3478', username: 'u', credential: 'p' }])
  })

  it('takes --bootstrap repeated: every relay, in order, once', async () => {
    expect((await resolveBootstrap({ bootstrap: [ADDR, ADDR2, ADDR] })).addrs).toEqual([ADDR, ADDR2])
    await expect(resolveBootstrap({ bootstrap: [ADDR, 'relay.example:8080'] })).rejects.toThrow(/'relay\.example:8080' is not a multiaddr/)
  })

  it('asks a relay URL for /bootstrap: its multiaddr, its peer relays\' and its operator\'s ICE servers', async () => {
    // ADDR2 stands for a peer relay that is down: this relay keeps redialling it in the background.
    relay = await startRelay({ ...parseConfig(['--port', '0', '--ice-server', 'stun:stun.example:3478', '--peer-relay', ADDR2], {})! }, () => {})
    const r = await resolveBootstrap({ bootstrap: [relay.httpUrl, ADDR] })
    expect(r.addrs[0]).toBe(relay.bootstrapAddrs[0])
    expect(r.addrs[0]).toMatch(/\/ws\/p2p\/12D3/)
    // The relay's list merged with the other --bootstrap: both relays it names and the one given.
    expect(r.addrs).toContain(ADDR2)
    expect(r.addrs).toContain(ADDR)
    expect(r.iceServers).toEqual([{ urls: 'stun:stun.example:3478' }])
    // the flag wins over the relay's list; a path already ending in /bootstrap is used as is
    expect((await resolveBootstrap({ bootstrap: `${relay.httpUrl}/bootstrap`, 'ice-servers': 'none' })).iceServers).toEqual([])
  })

  it('refuses bad values with a clear error', async () => {
    await expect(resolveBootstrap({})).rejects.toThrow(UsageError)
    await expect(resolveBootstrap({ bootstrap: '/ip4/127.0.0.1/tcp/1/ws' })).rejects.toThrow(/must end in \/p2p\//)
    await expect(resolveBootstrap({ bootstrap: 'relay.example:8080' })).rejects.toThrow(/not a multiaddr/)
    await expect(resolveBootstrap({ bootstrap: ADDR, 'ice-servers': 'http://x' })).rejects.toThrow(/not a stun:\/stuns:\/turn:\/turns: URL/)
    await expect(resolveBootstrap({ bootstrap: ADDR, 'ice-servers': 'none,stun:a:1' })).rejects.toThrow(UsageError)
    await expect(resolveBootstrap({ bootstrap: 'http://127.0.0.1:1' })).rejects.toThrow(BootstrapUnreachableError)
  })
})

describe('parseIceServerList', () => {
  it('parses lists and none, refuses empty lists', () => {
    expect(parseIceServerList('none')).toEqual([])
    expect(parseIceServerList(' stun:a:1 , stuns:b:2 ')).toEqual([{ urls: 'stun:a:1' }, { urls: 'stuns:b:2' }])
    expect(() => parseIceServerList(' , ')).toThrow(/empty list/)
  })
})
