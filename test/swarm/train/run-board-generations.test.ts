/**
 * RunBoard.watch across doc generations (net/crdt/generation.ts): a swarm doc starts a fresh Y.Doc
 * now and then, so a board built on `() => doc.map('train')` sees a new map. A watch that kept
 * observing the first map — a run's all-reduce watches its directory for the whole run — missed
 * every member and record written after a rotation, and unwatching called unobserve on the new map
 * ("[yjs] Tried to remove event handler that doesn't exist.", seen in e2e train runs against a relay
 * that rotates every minute, one of which stalled).
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import { RunBoard, TRAIN_MAP } from '../../../web/src/swarm/train/run-board.ts'

/** A stand-in for SwarmDoc's generations: `rotate()` swaps in a fresh doc and tells the listeners. */
class Generations {
  doc = new Y.Doc()
  private readonly listeners = new Set<() => void>()
  map = (): Y.Map<unknown> => this.doc.getMap(TRAIN_MAP)
  onGeneration = (fn: () => void): (() => void) => {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  rotate (): void {
    const fresh = new Y.Doc()
    // The seed carries the live entries, as buildSeed() does.
    fresh.transact(() => { for (const [k, v] of this.map().entries()) fresh.getMap(TRAIN_MAP).set(k, v) })
    this.doc = fresh
    for (const fn of this.listeners) fn()
  }
}

afterEach(() => { vi.restoreAllMocks() })

describe('RunBoard.watch across doc generations', () => {
  it('follows the new map after a rotation, reports the rotation, and unwatches cleanly', () => {
    const gens = new Generations()
    const board = new RunBoard(gens.map, 'rot', { onSourceChange: gens.onGeneration })
    const errors = vi.spyOn(console, 'error')
    let changes = 0
    const unwatch = board.watch(() => { changes++ })
    gens.map().set('member/rot/a', 1)
    expect(changes).toBe(1)

    gens.rotate()
    expect(changes).toBe(2) // the rotation itself: the board's contents are the new map's now
    gens.map().set('member/rot/b', 1)
    expect(changes).toBe(3) // a write after the rotation (the old watch never saw it)

    unwatch()
    unwatch() // an owner stopped twice (AllReducePeer.stop()) unwatches twice
    gens.map().set('member/rot/c', 1)
    gens.rotate()
    expect(changes).toBe(3)
    expect(errors).not.toHaveBeenCalled()
  })

  it('without onSourceChange a board over one map watches that map, as before', () => {
    const doc = new Y.Doc()
    const board = new RunBoard(doc.getMap(TRAIN_MAP), 'one')
    let changes = 0
    const unwatch = board.watch(() => { changes++ })
    doc.getMap(TRAIN_MAP).set('member/one/a', 1)
    const errors = vi.spyOn(console, 'error')
    unwatch()
    unwatch()
    doc.getMap(TRAIN_MAP).set('member/one/b', 1)
    expect(changes).toBe(1)
    expect(errors).not.toHaveBeenCalled()
  })
})
