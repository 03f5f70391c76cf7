/**
 * Block servers of this process, by peer id. A client in the same process (the API's client and
 * the embedded peer of `npm start`, cli/api.ts) hands such a server its `infer` requests as
 * message objects (InferenceClient.call): no wire encode / decode and no copies of the hidden
 * states, where the co-located transport (api/colocated.ts) still encodes, structured-clones and
 * decodes every STEP and its reply. The server handles them as it handles the wire's: the same
 * validation, continuous batching with its remote sessions, session budget and ERROR replies. A
 * server leaves the table when it stops, and its peer is then reached over the transport again
 * (where a stopped server fails the request, and the client fails over).
 */
import type { InferMsg } from '../wire/infer.ts'

/** What a client may call in-process: one request in, one reply out (an ERROR reply, never a throw). */
export interface InProcessServer {
  serve: (from: string, msg: InferMsg) => Promise<InferMsg>
}

export class InProcessServers {
  private readonly servers = new Map<string, InProcessServer>()
  /** Requests answered in-process, for tests and /metrics. */
  served = 0

  add (peer: string, server: InProcessServer): void {
    this.servers.set(peer, server)
  }

  /** Removes `server` if it is still the one registered for `peer` (a restarted span registered its successor). */
  remove (peer: string, server: InProcessServer): void {
    if (this.servers.get(peer) === server) this.servers.delete(peer)
  }

  get (peer: string): InProcessServer | undefined {
    return this.servers.get(peer)
  }
}
