/**
 * Several shard stores served on one node. SHARD_PROTOCOL has one handler per node, yet a node may
 * hold several independent stores at once (training states, model weights…): each node gets one
 * registry, the handler answers from whichever added store holds the requested root or chunk, and
 * stores come and go without touching the others.
 *
 *   const states = await serveShardStore(node, stateStore)
 *   const weights = await serveShardStore(node, weightStore)
 *   await states.stop()            // weights are still served
 */
import { NetConfigError } from '../errors.ts'
import { SHARD_PROTOCOL, SHARD_REQUEST_LIMITS } from '../protocols.ts'
import { handle, type TensorStreamLimits } from '../stream/index.ts'
import type { StreamNode } from '../stream/rpc.ts'
import type { ShardManifest } from './manifest.ts'
import { answerShardRequest } from './server.ts'
import type { ShardStore } from './store.ts'

/** What serving needs of a store: lookups only. */
export type ShardSource = Pick<ShardStore, 'getManifest' | 'getChunk'>

/** Stores looked up in the order they were added; the first that holds a root or chunk answers. */
export class ShardRegistry implements ShardSource {
  private readonly stores: ShardSource[] = []

  get size (): number { return this.stores.length }
  has (store: ShardSource): boolean { return this.stores.includes(store) }
  add (store: ShardSource): void { if (!this.has(store)) this.stores.push(store) }
  delete (store: ShardSource): boolean {
    const i = this.stores.indexOf(store)
    if (i >= 0) this.stores.splice(i, 1)
    return i >= 0
  }

  getManifest (root: string): ShardManifest | undefined {
    for (const s of this.stores) {
      const m = s.getManifest(root)
      if (m !== undefined) return m
    }
    return undefined
  }

  getChunk (hash: string): Uint8Array | undefined {
    for (const s of this.stores) {
      const c = s.getChunk(hash)
      if (c !== undefined) return c
    }
    return undefined
  }
}

/** One store served on a node; stop() withdraws it (the node keeps serving its other stores). */
export interface ShardServing {
  readonly store: ShardSource
  stop: () => Promise<void>
}

interface NodeShards {
  registry: ShardRegistry
  /** Whether our SHARD_PROTOCOL handler is registered on the node. */
  registered: boolean
  /** The limits the handler was registered with, as a comparable key. */
  limitsKey?: string
  /** Handler (un)registration is async: operations on one node run one after another. */
  queue: Promise<void>
}

const byNode = new WeakMap<StreamNode, NodeShards>()

function entry (node: StreamNode): NodeShards {
  let e = byNode.get(node)
  if (e === undefined) {
    e = { registry: new ShardRegistry(), registered: false, queue: Promise.resolve() }
    byNode.set(node, e)
  }
  return e
}

async function serialize<T> (e: NodeShards, op: () => Promise<T>): Promise<T> {
  const run = e.queue.then(op)
  e.queue = run.then(() => {}, () => {})
  return await run
}

function limitsKey (limits: TensorStreamLimits | undefined): string {
  return JSON.stringify(Object.entries(limits ?? {}).filter(([, v]) => typeof v !== 'function').sort(([a], [b]) => a.localeCompare(b)))
}

/**
 * Serves `store` on `node`'s SHARD_PROTOCOL alongside any store already served there. The first
 * store registers the handler (with `limits`); later ones join it and must pass the same limits
 * or none. The last store's stop() unregisters the handler. Serving a store twice on one node is
 * a NetConfigError.
 */
export async function serveShardStore (node: StreamNode, store: ShardSource, limits?: TensorStreamLimits): Promise<ShardServing> {
  const e = entry(node)
  await serialize(e, async () => {
    if (e.registry.has(store)) throw new NetConfigError('this shard store is already served on this node')
    if (!e.registered) {
      await handle(node, SHARD_PROTOCOL, async (req) => await answerShardRequest(e.registry, req), { ...SHARD_REQUEST_LIMITS, ...limits })
      e.registered = true
      e.limitsKey = limitsKey(limits)
    } else if (limits !== undefined && limitsKey(limits) !== e.limitsKey) {
      throw new NetConfigError(`${SHARD_PROTOCOL} is already served on this node with other limits: one handler serves every store`)
    }
    e.registry.add(store)
  })
  let stopped = false
  return {
    store,
    stop: async () => {
      if (stopped) return
      stopped = true
      await serialize(e, async () => {
        e.registry.delete(store)
        if (e.registry.size > 0 || !e.registered) return
        e.registered = false
        e.limitsKey = undefined
        // Fails only when the node is already stopping, which unregisters every protocol anyway.
        await node.unhandle(SHARD_PROTOCOL).catch(() => {})
      })
    }
  }
}

/** How many stores `node` serves on SHARD_PROTOCOL through this module. */
export function servedShardStoreCount (node: StreamNode): number {
  return byNode.get(node)?.registry.size ?? 0
}

/**
 * Serves `store` on SHARD_PROTOCOL (the original API, kept): now one of possibly several stores
 * on the node. Withdraw it with the returned handle's stop(), not `node.unhandle(SHARD_PROTOCOL)`,
 * which would stop every store of the node.
 */
export async function serveShards (node: StreamNode, store: ShardSource, limits?: TensorStreamLimits): Promise<ShardServing> {
  return await serveShardStore(node, store, limits)
}
