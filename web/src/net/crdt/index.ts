/**
 * Swarm state: one Yjs doc per swarm, synced over `/webswarm/crdt-sync/2.0.0` at connect and over
 * gossipsub afterwards; the `peers` map holds entries signed by their owners. Relays start a fresh
 * doc generation now and then (generation.ts), so the doc's size tracks the live swarm.
 *
 * @example
 * ```ts
 * const sdoc = new SwarmDoc('default', node.peerId.toString(), privateKey)
 * const sync = new CrdtSync(node, sdoc)
 * await sync.start()
 * await sdoc.setSelf({ gflops: 12, roles: ['blocks:0-3'] })
 * for (const [id, e] of await sdoc.peers()) console.log(id, e.data)
 * ```
 */
export { SwarmDoc, REMOTE_ORIGIN, type ApplyResult, type GenerationListener } from './swarm-doc.ts'
export { CrdtSync, encodeSyncFrame, decodeSyncFrame, SYNC_STEP1, SYNC_STEP2, GOSSIP_UPDATE, GOSSIP_AWARENESS, GOSSIP_GEN_UPDATE, ANTI_ENTROPY_INTERVAL_MS, PRUNE_INTERVAL_MS, type CrdtSyncInit, type SyncFrame } from './sync.ts'
export { PEERS_MAP, EVIDENCE_MAP, SIGNED_MAPS, PEER_ENTRY_TTL_MS, signEntry, verifyEntry, type PeerEntry, type RawEntry } from './entries.ts'
export { GENESIS, GENERATION_EPOCH_MS, DEFAULT_ROTATION_POLICY, compareGenerations, formatGeneration, rotationPolicy, type Generation, type RotationPolicy } from './generation.ts'
