/**
 * Prometheus metrics of the relay (prom-client, own registry). Gauges are computed at scrape time
 * from live state; counters are incremented where the event happens.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import * as Y from 'yjs'
import type { ModelServeStats } from './models.ts'
import type { RelayHandle } from './relay.ts'
import { connectionCounts } from './relay.ts'

export class RelayMetrics {
  readonly registry = new Registry()
  readonly relayedBytes = new Counter({ name: 'webswarm_relay_relayed_bytes_total', help: 'Bytes through circuit relay HOP streams, both directions', registers: [this.registry] })
  readonly circuits = new Counter({ name: 'webswarm_relay_circuits_total', help: 'Circuit relay HOP streams opened', registers: [this.registry] })
  readonly refused = new Counter({ name: 'webswarm_relay_refused_total', help: 'Connections, reservations and identity stamps the relay refused (relay/limits.ts), by reason', labelNames: ['reason'], registers: [this.registry] })
  readonly unhandledRejections = new Counter({ name: 'webswarm_relay_unhandled_rejections_total', help: 'Promise rejections nobody handled (logged; the relay kept running)', registers: [this.registry] })
  /** What /models/ has sent (read at scrape time below). */
  readonly modelServe: ModelServeStats = { bytesSent: 0, requests: 0 }
  private handle?: RelayHandle

  constructor () {
    collectDefaultMetrics({ register: this.registry, prefix: 'webswarm_relay_process_' })
    const self = this
    new Gauge({
      name: 'webswarm_relay_connections', help: 'Open connections by kind', labelNames: ['kind'], registers: [this.registry],
      collect () {
        if (self.handle === undefined) return
        for (const [kind, n] of Object.entries(connectionCounts(self.handle.node))) this.set({ kind }, n)
      }
    })
    new Gauge({
      name: 'webswarm_relay_model_bytes_sent_total', help: 'Body bytes of model files sent under /models/ (whole files and ranges)', registers: [this.registry],
      collect () { this.set(self.modelServe.bytesSent) }
    })
    new Gauge({
      name: 'webswarm_relay_model_requests_total', help: 'GET/HEAD answers for model files under /models/', registers: [this.registry],
      collect () { this.set(self.modelServe.requests) }
    })
    new Gauge({
      name: 'webswarm_relay_reservations', help: 'Live circuit relay reservations', registers: [this.registry],
      collect () { if (self.handle !== undefined) this.set(self.handle.node.services.relay.reservations.size) }
    })
    new Gauge({
      name: 'webswarm_dht_records', help: 'DHT value records held by this node', registers: [this.registry],
      async collect () {
        if (self.handle === undefined) return
        this.set(await countDhtRecords(self.handle))
      }
    })
    new Gauge({
      name: 'webswarm_crdt_doc_bytes', help: 'Encoded size of the swarm CRDT doc', labelNames: ['swarm'], registers: [this.registry],
      collect () {
        for (const [name, s] of self.handle?.swarms ?? []) this.set({ swarm: name }, Y.encodeStateAsUpdate(s.sdoc.doc).length)
      }
    })
    new Gauge({
      name: 'webswarm_crdt_updates_total', help: 'CRDT updates persisted since start', labelNames: ['swarm'], registers: [this.registry],
      collect () {
        for (const [name, s] of self.handle?.swarms ?? []) this.set({ swarm: name }, s.store.stats.appended)
      }
    })
    new Gauge({
      name: 'webswarm_crdt_rejected_total', help: 'Remote CRDT updates/frames refused (forged, malformed)', labelNames: ['swarm'], registers: [this.registry],
      collect () {
        for (const [name, s] of self.handle?.swarms ?? []) this.set({ swarm: name }, s.sync.stats.rejected)
      }
    })
    new Gauge({
      name: 'webswarm_crdt_refused_total', help: 'Remote CRDT updates refused by a flood limit: pow (a peers entry without a valid identity stamp), size (an oversized value), doc-size (the doc at its size cap), rate (a peer over its message/byte rate), generation (an update or sync frame of another doc generation, crdt/generation.ts)', labelNames: ['swarm', 'reason'], registers: [this.registry],
      collect () {
        for (const [name, s] of self.handle?.swarms ?? []) {
          this.set({ swarm: name, reason: 'pow' }, s.sdoc.refusedPow)
          this.set({ swarm: name, reason: 'size' }, s.sdoc.refusedSize)
          this.set({ swarm: name, reason: 'doc-size' }, s.sdoc.refusedDocSize)
          this.set({ swarm: name, reason: 'rate' }, s.sync.stats.rateLimited)
          this.set({ swarm: name, reason: 'generation' }, s.sdoc.refusedGeneration)
        }
      }
    })
    new Gauge({
      name: 'webswarm_crdt_peers', help: 'Valid entries in the swarm peers map', labelNames: ['swarm'], registers: [this.registry],
      async collect () {
        for (const [name, s] of self.handle?.swarms ?? []) this.set({ swarm: name }, (await s.sdoc.peers()).size)
      }
    })
  }

  bind (handle: RelayHandle): void {
    this.handle = handle
  }
}

/** Value records in the node's datastore under kad-dht's record prefix. */
export async function countDhtRecords (handle: RelayHandle): Promise<number> {
  const ds = (handle.node as unknown as { components?: { datastore?: { queryKeys: (q: { prefix: string }) => AsyncIterable<unknown> } } }).components?.datastore
  if (ds === undefined) return 0
  let n = 0
  for await (const _ of ds.queryKeys({ prefix: '/dht/record' })) n++
  return n
}
