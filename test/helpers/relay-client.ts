/**
 * What the relay tests and the flood bench use to poke a real relay from outside: a bare libp2p
 * client (websockets, optionally listening on the relay's circuit, no swarm services) and a reader
 * of one counter from the relay's `/metrics`.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'

/** A client with `key` (fresh if none), listening on `listen` (e.g. `<relay>/p2p-circuit` to ask for a reservation). */
export async function bareRelayClient (key?: PrivateKey, listen: string[] = []): Promise<Libp2p> {
  return await createLibp2p({
    privateKey: key ?? await generateKeyPair('Ed25519'),
    addresses: { listen },
    transports: [webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify() }
  })
}

/** The value of the `/metrics` sample named exactly `line` (name with labels), 0 when absent. */
export async function relayMetric (httpUrl: string, line: string, timeoutMs?: number): Promise<number> {
  const res = await fetch(`${httpUrl}/metrics`, timeoutMs === undefined ? {} : { signal: AbortSignal.timeout(timeoutMs) })
  const hit = (await res.text()).split('\n').find(l => l.startsWith(line + ' '))
  return hit === undefined ? 0 : Number(hit.slice(line.length + 1))
}
