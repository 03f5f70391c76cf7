import { describe, expect, it } from 'vitest'
import type { PeerEntry } from '../../web/src/net/crdt/entries.ts'
import { chooseRole, RUN_WANTS_MEMBERS, type ModelOption, type RoleInputs } from '../../web/src/ui/role-choice.ts'
import { expertCoverage, modelCoverage } from '../../web/src/ui/swarm-summary.ts'

const MB = 1e6
const entry = (peer: string, data: Record<string, unknown>): PeerEntry => ({ peer, seq: 1, expiresAt: Date.now() + 60_000, data })
const serving = (peer: string, model: string, start: number, end: number, blocks: number): PeerEntry =>
  entry(peer, { serving: { model, start, end, blocks, state: 'online', throughput: 1 } })
const hosting = (peer: string, model: string, hosted: string): PeerEntry => entry(peer, { experts: { model, state: 'online', hosted } })

const dense = (id: string, o: Partial<ModelOption> = {}): ModelOption => ({ id, numBlocks: 4, numExperts: 0, maxBlocks: 4, blockBytes: 2 * MB, expertLayerBytes: 0, own: false, ...o })
const moe = (id: string, o: Partial<ModelOption> = {}): ModelOption => dense(id, { numExperts: 4, expertLayerBytes: 3 * MB, ...o })

/** Inputs from live entries, as the page gathers them. */
function inputs (models: ModelOption[], entries: PeerEntry[], o: Partial<RoleInputs> = {}): RoleInputs {
  return {
    models,
    coverage: modelCoverage(entries, new Map(models.map(m => [m.id, m.numBlocks]))),
    experts: expertCoverage(entries),
    demand: new Map(),
    runs: [],
    ...o
  }
}

describe('chooseRole', () => {
  it('the busiest model wins among models with gaps', () => {
    const c = chooseRole(inputs([dense('a', { own: true }), dense('b')], [], { demand: new Map([['b', 3], ['a', 1]]) }))
    expect(c.role).toEqual({ kind: 'blocks', model: 'b', start: 0, end: 2 })
    expect(c.reason).toBe('blocks 0–1 of b: no server (3 peers chatting with it)')
  })

  it('fills gaps before duplicating served blocks, even of a busier model', () => {
    const c = chooseRole(inputs([dense('a'), dense('b')], [serving('p', 'a', 0, 4, 4)], { demand: new Map([['a', 5]]) }))
    expect(c.role).toEqual({ kind: 'blocks', model: 'b', start: 0, end: 2 })
    // Within a model: the window with the most unserved blocks.
    const d = chooseRole(inputs([dense('a')], [serving('p', 'a', 0, 2, 4), serving('q', 'a', 3, 4, 4)]))
    expect(d.role).toEqual({ kind: 'blocks', model: 'a', start: 1, end: 3 })
    expect(d.reason).toBe('blocks 1–2 of a: 1 of them with no server')
  })

  it('finishes the model closest to complete first, then prefers the page\'s own model', () => {
    const c = chooseRole(inputs([dense('a'), dense('b')], [serving('p', 'b', 0, 2, 4)]))
    expect(c.role).toEqual({ kind: 'blocks', model: 'b', start: 2, end: 4 })
    const own = chooseRole(inputs([dense('a'), dense('z', { own: true })], []))
    expect(own.role).toMatchObject({ model: 'z' })
  })

  it('hosts experts when an MoE model\'s blocks are served but experts lack hosts', () => {
    const entries = [serving('p', 'a', 0, 4, 4), serving('q', 'mx', 0, 4, 4), hosting('h', 'mx', '0:0,1,2,3;1:0,1;2:0,1,2,3;3:1,3')]
    const c = chooseRole(inputs([dense('a'), moe('mx')], entries))
    expect(c.role).toEqual({ kind: 'experts', model: 'mx', layer: 1, experts: [2, 3] })
    expect(c.reason).toBe('experts 2,3 of mx (layer 1): no host')
    // While an MoE model has a block gap, its blocks come first.
    const g = chooseRole(inputs([moe('mx')], [serving('q', 'mx', 0, 2, 4)]))
    expect(g.role).toEqual({ kind: 'blocks', model: 'mx', start: 2, end: 4 })
  })

  it('joins a training run that lacks members once every model is served', () => {
    const served = [serving('p', 'a', 0, 4, 4)]
    const runs = [{ id: 'full', members: RUN_WANTS_MEMBERS, bytes: MB }, { id: 'r2', members: 1, bytes: MB }, { id: 'dead', members: 0, bytes: MB }]
    const c = chooseRole(inputs([dense('a')], served, { runs }))
    expect(c.role).toEqual({ kind: 'train', run: 'r2' })
    expect(c.reason).toBe(`join training run r2: 1 live member, it wants ${RUN_WANTS_MEMBERS}`)
    // Without such a run: a second server for the least-served span.
    const d = chooseRole(inputs([dense('a')], [...served, serving('q', 'a', 0, 2, 4)], { runs: runs.filter(r => r.id !== 'r2') }))
    expect(d.role).toEqual({ kind: 'blocks', model: 'a', start: 2, end: 4 })
    expect(d.reason).toContain('the least-served span of the busiest model (1 server per block)')
  })

  it('within the budget: shorter spans, roles that do not fit are skipped, and no fit names the smallest role', () => {
    const c = chooseRole(inputs([dense('a', { maxBlocks: 1 })], [], { budget: 2 * MB }))
    expect(c.role).toEqual({ kind: 'blocks', model: 'a', start: 0, end: 1 })
    const none = chooseRole(inputs([dense('a', { maxBlocks: 0, blockBytes: 5 * MB }), dense('b', { maxBlocks: 0, blockBytes: 4 * MB })], [], { budget: MB, runs: [{ id: 'r', members: 1, bytes: 9 * MB }] }))
    expect(none.role).toBeUndefined()
    expect(none.smallest).toEqual({ what: 'one block of b', bytes: 4 * MB })
    expect(none.reason).toBe('the 1.00 MB budget fits no role: the smallest, one block of b, needs 4.00 MB')
    expect(none.skipped).toEqual(['a: one block needs 5.00 MB, over the 1.00 MB budget', 'b: one block needs 4.00 MB, over the 1.00 MB budget', 'training run r: a member needs 9.00 MB, over the 1.00 MB budget'])
    // A block too big but a run that fits: the run.
    const run = chooseRole(inputs([dense('a', { maxBlocks: 0 })], [], { budget: MB, runs: [{ id: 'r', members: 1, bytes: MB / 2 }] }))
    expect(run.role).toEqual({ kind: 'train', run: 'r' })
  })

  it('says when no model can be loaded, naming why', () => {
    const c = chooseRole(inputs([], [], { unloadable: [{ id: 'big.gguf', reason: 'unsupported architecture' }] }))
    expect(c.role).toBeUndefined()
    expect(c.reason).toBe('no model this tab can load (big.gguf: unsupported architecture)')
  })

  it('is deterministic on ties, whatever the input order', () => {
    const ms = [dense('b'), dense('a'), dense('c')]
    const first = chooseRole(inputs(ms, []))
    expect(first.role).toMatchObject({ model: 'a', start: 0 })
    expect(chooseRole(inputs([...ms].reverse(), []))).toEqual(first)
    const runs = [{ id: 'y', members: 1, bytes: 1 }, { id: 'x', members: 1, bytes: 1 }]
    expect(chooseRole(inputs([], [], { runs })).role).toEqual({ kind: 'train', run: 'x' })
    expect(chooseRole(inputs([], [], { runs: [...runs].reverse() })).role).toEqual({ kind: 'train', run: 'x' })
  })
})
