/**
 * A GGUF model over content-addressed shards: published as header + one piece per tensor, a peer
 * loads a span of blocks from other peers' shards and computes what a load from the file does,
 * moving only the header's and the span's bytes; a provider serving a corrupt chunk is dropped
 * (the chunk named in the log) and the chunk comes from another provider.
 */
import { describe, expect, it } from 'vitest'
import { cpu } from '../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../web/src/model/config.ts'
import { GGML } from '../../web/src/model/gguf/ggml-types.ts'
import { loadBlocks, loadModel } from '../../web/src/model/model.ts'
import { blobSource, withFile, type ModelSource } from '../../web/src/model/source.ts'
import {
  chunkCount, chunkHash, decodePieceIndex, encodePieceIndex, MemoryDirectory, MemoryShardStore, NoProvidersError, PieceIndexError, publishPieces, serveShardStore,
  type ShardSource
} from '../../web/src/net/shard/index.ts'
import { GGUF_HEADER_PIECE, ggufShardSource, publishGguf } from '../../web/src/swarm/gguf-shards.ts'
import { modelGguf } from '../model/gguf-helpers.ts'
import { randomIds, randomWeights } from '../model/helpers.ts'
import { memoryNetwork } from '../net/stream-harness.ts'

const FILE = 'tiny.gguf'
/** Small chunks, so every weight piece spans several of them. */
const CHUNK = 512
/** Q8_0 rows need K % 32 == 0: hidden 64, intermediate 96. */
const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 37, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, rope_theta: 10000, rms_norm_eps: 1e-5 })
const IDS = randomIds(6, CONFIG.vocabSize, 7)

function fileSource (bytes: Uint8Array): ModelSource {
  return withFile(blobSource(new Map([[FILE, new Blob([bytes.slice()])]])), FILE)
}

/** Serves `store` through a wrapper that counts chunk bytes sent and may answer differently per chunk. */
function counted (store: MemoryShardStore, chunk?: (hash: string, bytes: Uint8Array | undefined) => Uint8Array | undefined): ShardSource & { sent: number } {
  const s = {
    sent: 0,
    getManifest: (root: string) => store.getManifest(root),
    getChunk: (hash: string) => {
      const c = chunk === undefined ? store.getChunk(hash) : chunk(hash, store.getChunk(hash))
      if (c !== undefined) s.sent += c.byteLength
      return c
    }
  }
  return s
}

async function setup () {
  const bytes = await modelGguf(CONFIG, randomWeights(CONFIG, 3, 0.08), { type: GGML.Q8_0 })
  const nodes = await memoryNetwork(4)
  const dir = new MemoryDirectory()
  const pubStore = new MemoryShardStore()
  const { root, index } = await publishGguf(pubStore, FILE, bytes, { chunkBytes: CHUNK })
  // Reference: the file itself, whole model and the first block span.
  const ref = await loadModel(fileSource(bytes), cpu)
  const first = await loadBlocks(fileSource(bytes), cpu, { start: 0, end: 1 })
  const want = await ref.logits(IDS).readF32()
  /** Logits with block 1 from `source` (the ends and block 0 from the file). */
  const logitsWith = async (source: ModelSource): Promise<Float32Array> => {
    const second = await loadBlocks(source, cpu, { start: 1, end: 2 })
    const h0 = first.forward(ref.embedding.forward(IDS), undefined, 0)
    return await ref.head.forward(second.forward(h0, undefined, 0)).readF32()
  }
  return { bytes, nodes, dir, pubStore, root, index, want, logitsWith }
}

describe('GGUF over content-addressed shards', () => {
  it('pieces tile the file: the header, then one per tensor; a bad index is refused', async () => {
    const { bytes, index, root } = await setup()
    expect(index.file).toBe(FILE)
    expect(index.size).toBe(bytes.byteLength)
    expect(index.pieces[0].name).toBe(GGUF_HEADER_PIECE)
    expect(index.pieces.map(p => p.name)).toContain('blk.1.attn_q.weight')
    expect(decodePieceIndex(encodePieceIndex(index))).toEqual(index)
    // Published piece by piece from a ModelSource (never the whole file in one read): the same root.
    const reads: number[] = []
    const src = fileSource(bytes)
    const { root: fromSource } = await publishGguf(new MemoryShardStore(), FILE, { ...src, read: async (f, o, n) => { reads.push(n); return await src.read(f, o, n) } }, { chunkBytes: CHUNK })
    expect(fromSource).toBe(root)
    expect(Math.max(...reads.slice(1))).toBeLessThan(bytes.byteLength / 2) // after the header's first read
    const gap = { ...index, pieces: index.pieces.filter((_, i) => i !== 3) }
    expect(() => encodePieceIndex(gap)).toThrow(PieceIndexError)
    expect(() => decodePieceIndex(new TextEncoder().encode('{"format":"webswarm-pieces/1","file":"a.gguf","size":1,"pieces":[]}'))).toThrow(/cover 0 bytes of a 1-byte file/)
    // An index that is not a GGUF's is refused by the GGUF source.
    const store = new MemoryShardStore()
    const { root: binRoot } = await publishPieces(store, 'x.bin', new Uint8Array(10), [{ name: 'all', offset: 0, length: 10 }])
    const [a, b] = await memoryNetwork(2)
    const dir = new MemoryDirectory()
    await serveShardStore(a, store)
    await dir.forPeer(a.peerId).provide(binRoot)
    await expect(ggufShardSource(b, binRoot, { directory: dir.forPeer(b.peerId), store: new MemoryShardStore() })).rejects.toThrow(/names 'x.bin', not a .gguf file/)
  })

  it('a peer loads blocks [1, 2) from shards: the same logits as from the file, only the index, header and block 1 transferred; it then serves them itself', async () => {
    const { nodes: [pub, peer, late], dir, pubStore, root, index, want, logitsWith } = await setup()
    const served = counted(pubStore)
    await serveShardStore(pub, served)
    await dir.forPeer(pub.peerId).provide(root)

    const mine = new MemoryShardStore()
    const peerDir = dir.forPeer(peer.peerId)
    let lookups = 0
    const counting = { provide: peerDir.provide, findProviders: async (r: string, o?: { limit?: number }) => { lookups++; return await peerDir.findProviders(r, o) } }
    const { source, pieces } = await ggufShardSource(peer, root, { directory: counting, store: mine, log: () => {}, providersTtlMs: Infinity })
    expect(Array.from(await logitsWith(source))).toEqual(Array.from(want))
    expect(lookups).toBe(2) // the index's, then one shared by every piece (not one per tensor)

    const span = index.pieces.filter(p => p.name.startsWith('blk.1.'))
    const header = index.pieces[0]
    expect([...pieces.fetched.keys()].sort()).toEqual([GGUF_HEADER_PIECE, ...span.map(p => p.name)].sort())
    const spanBytes = span.reduce((a, p) => a + p.length, 0)
    expect(served.sent).toBe(encodePieceIndex(index).byteLength + header.length + spanBytes)
    expect(served.sent).toBeLessThan(index.size * 0.6)

    // The peer now provides what it fetched: with the publisher gone, a late peer loads block 1 from it…
    await serveShardStore(peer, mine)
    await dir.forPeer(peer.peerId).provide(root)
    dir.remove(pub.peerId)
    const fromPeer = await ggufShardSource(late, root, { directory: dir.forPeer(late.peerId), store: new MemoryShardStore(), log: () => {} })
    expect(Array.from(await logitsWith(fromPeer.source))).toEqual(Array.from(want))
    // …but not block 0, which nobody left holds.
    await expect(loadBlocks(fromPeer.source, cpu, { start: 0, end: 1 })).rejects.toBeInstanceOf(NoProvidersError)
  })

  it('the whole model loads from shards with loadModel (config from the header): the file\'s logits, every byte moved once', async () => {
    const { nodes: [pub, peer], dir, pubStore, root, index, want } = await setup()
    const served = counted(pubStore)
    await serveShardStore(pub, served)
    await dir.forPeer(pub.peerId).provide(root)
    const { source } = await ggufShardSource(peer, root, { directory: dir.forPeer(peer.peerId), store: new MemoryShardStore(), log: () => {} })
    const m = await loadModel(source, cpu)
    expect(m.config.numLayers).toBe(CONFIG.numLayers)
    expect(m.params.get('model.layers.1.mlp.down_proj.weight')?.dtype).toBe('q8_0')
    expect(Array.from(await m.logits(IDS).readF32())).toEqual(Array.from(want))
    expect(served.sent).toBe(encodePieceIndex(index).byteLength + index.size)
  })

  it('a corrupt chunk is refused, naming it and its provider, and fetched from another provider', async () => {
    const { bytes, nodes: [pub, other, peer], dir, pubStore, root, index, want, logitsWith } = await setup()
    // The same bytes published elsewhere give the same root: content addressing.
    const otherStore = new MemoryShardStore()
    expect((await publishGguf(otherStore, FILE, bytes, { chunkBytes: CHUNK })).root).toBe(root)

    const victim = index.pieces.find(p => p.name === 'blk.1.ffn_down.weight')
    if (victim === undefined) throw new Error('no blk.1.ffn_down.weight piece')
    const m = pubStore.getManifest(victim.root)
    if (m === undefined) throw new Error('victim manifest missing')
    const k = chunkCount(m) - 1
    const bad = chunkHash(m, k)
    let pubSentBad = false
    // The publisher flips a bit of that chunk; the other provider holds it back until the
    // publisher has been asked, so the corrupt copy is met whatever order requests go in.
    await serveShardStore(pub, counted(pubStore, (hash, c) => {
      if (hash !== bad || c === undefined) return c
      pubSentBad = true
      const x = c.slice()
      x[0] ^= 1
      return x
    }))
    await serveShardStore(other, counted(otherStore, (hash, c) => hash === bad && !pubSentBad ? undefined : c))
    await dir.forPeer(pub.peerId).provide(root)
    await dir.forPeer(other.peerId).provide(root)

    const log: string[] = []
    const { source } = await ggufShardSource(peer, root, { directory: dir.forPeer(peer.peerId), store: new MemoryShardStore(), log: (l) => log.push(l) })
    expect(Array.from(await logitsWith(source))).toEqual(Array.from(want))
    expect(pubSentBad).toBe(true)
    const refusal = log.find(l => l.includes(`chunk ${k} from ${pub.peerId.toString()} hashes to`))
    expect(refusal, log.join('\n')).toBeDefined()
    expect(refusal).toContain(`expected ${bad.slice(0, 12)}`)
    expect(refusal).toContain(`dropping provider ${pub.peerId.toString()} for ${victim.root.slice(0, 12)}`)
  })
})
