/**
 * A peer in its own process, so tests can SIGKILL it mid-transfer. argv: relay multiaddr.
 * Serves SINK_PROTOCOL: a streaming handler that reads and drops every message. Prints `READY <peerId>`.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { handleStream } from '../../web/src/net/stream/index.ts'
import { startPeer } from './stream-peers.ts'

export const SINK_PROTOCOL = '/webswarm/test-sink/1.0.0'

if (process.argv[1]?.endsWith('stream-child.ts') === true) {
  const node = await startPeer(multiaddr(process.argv[2]))
  await handleStream(node, SINK_PROTOCOL, async (ch) => { for await (const _ of ch) { /* drop */ } })
  process.stdout.write(`READY ${node.peerId.toString()}\n`)
}
