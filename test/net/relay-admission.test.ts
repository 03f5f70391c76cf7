/**
 * The relay's per-IP and total connection caps count connections from the moment the gater lets
 * them in (relay/limits.ts): a burst of concurrent dials from one IP, all at the gate before any
 * handshake finishes, gets exactly the cap through. Pending handshakes that never open stop
 * counting after libp2p's upgrade timeout; closed connections free their slot.
 */
import type { Libp2p, MultiaddrConnection } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { RelayAdmission } from '../../relay/limits.ts'

const maConn = (ip: string, port: number): MultiaddrConnection => ({ remoteAddr: multiaddr(`/ip4/${ip}/tcp/${port}/ws`) }) as unknown as MultiaddrConnection

/** What attach() uses of a libp2p node: its events and handle(). */
function fakeNode (): { node: Libp2p, emit: (type: 'connection:open' | 'connection:close', ip: string, direction?: 'inbound' | 'outbound') => void } {
  const events = new EventTarget()
  const node = { peerId: { toString: () => '12D3KooWrelay' }, addEventListener: events.addEventListener.bind(events), handle: async () => {} } as unknown as Libp2p
  const emit = (type: 'connection:open' | 'connection:close', ip: string, direction: 'inbound' | 'outbound' = 'inbound'): void => {
    events.dispatchEvent(new CustomEvent(type, { detail: { remoteAddr: multiaddr(`/ip4/${ip}/tcp/1/ws`), direction } }))
  }
  return { node, emit }
}

describe('relay admission counts connections from the gate, not from the finished handshake', () => {
  it('12 concurrent dials from one IP with a cap of 4: 4 let in, 8 refused, and still 4 once they open', async () => {
    let t = 0
    const refused: string[] = []
    const adm = new RelayAdmission({ maxConnsPerIp: 4, reservationPowBits: 0, maxStamped: 8, onRefused: r => refused.push(r), now: () => t })
    const { node, emit } = fakeNode()
    await adm.attach(node)
    const gate = (ip: string, i: number): boolean => !adm.gater.denyInboundConnection!(maConn(ip, 1000 + i)) as boolean
    const admitted = Array.from({ length: 12 }, (_, i) => gate('10.0.0.1', i)).filter(Boolean).length
    expect(admitted).toBe(4)
    expect(refused).toEqual(Array(8).fill('ip-connections'))
    expect(gate('10.0.0.2', 0)).toBe(true) // another IP has its own count
    for (let i = 0; i < 4; i++) emit('connection:open', '10.0.0.1')
    expect(adm.connectionsFrom('10.0.0.1')).toBe(4)
    expect(gate('10.0.0.1', 20)).toBe(false)
    emit('connection:close', '10.0.0.1')
    expect(gate('10.0.0.1', 21)).toBe(true)
    // That one never finishes its handshake: after the upgrade timeout its slot is free again.
    expect(gate('10.0.0.1', 22)).toBe(false)
    t += 10_000
    expect(gate('10.0.0.1', 23)).toBe(true)
  })

  it('the total cap counts pending handshakes too; outbound connections do not consume pending slots', async () => {
    const refused: string[] = []
    const adm = new RelayAdmission({ maxConnsPerIp: 0, maxConnections: 3, reservationPowBits: 0, maxStamped: 8, onRefused: r => refused.push(r), now: () => 0 })
    const { node, emit } = fakeNode()
    await adm.attach(node)
    const results = Array.from({ length: 5 }, (_, i) => adm.gater.denyInboundConnection!(maConn(`10.0.1.${i}`, 1)))
    expect(results).toEqual([false, false, false, true, true])
    expect(refused).toEqual(['connections-full', 'connections-full'])
    emit('connection:open', '10.0.2.9', 'outbound') // the relay dialling a peer relay
    emit('connection:open', '10.0.1.0')
    expect(adm.openConnections).toBe(2)
    expect(adm.gater.denyInboundConnection!(maConn('10.0.1.7', 1))).toBe(true) // 2 open + 2 pending
  })
})
