/**
 * ReservationKeeper (web/src/net/reservation-keeper.ts) on a ManualClock: when a relay dies the
 * surviving relays are asked for a reservation at once and in parallel, and a failed ask is
 * retried within seconds (not after PeerManager's 30 s hang-up, libp2p's one ask per connection).
 */
import { describe, expect, it } from 'vitest'
import { RETRY_INITIAL_MS, ReservationKeeper } from '../../web/src/net/reservation-keeper.ts'
import { ManualClock } from '../../web/src/util/clock.ts'

/** A fake relay set: who is connected, who holds our reservation, and the asks made (each settled by hand). */
function relays (connected: string[], held: string[]) {
  const state = { connected: [...connected], held: new Set(held) }
  const asks: Array<{ id: string, at: number, ok: () => void, fail: (why: string) => void }> = []
  const clock = new ManualClock(0)
  const keeper = new ReservationKeeper({
    want: 2,
    clock,
    connected: () => state.connected,
    held: () => state.held,
    reserve: async (id) => await new Promise<void>((resolve, reject) => {
      asks.push({ id, at: clock.now(), ok: () => { state.held.add(id); resolve() }, fail: (why) => { reject(new Error(why)) } })
    })
  })
  return { state, asks, clock, keeper }
}

/** Lets settled asks' callbacks run. */
async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

describe('ReservationKeeper', () => {
  it('asks the surviving relay at once when a relay with our reservation dies, and nothing while enough are held', () => {
    const { state, asks, keeper } = relays(['a', 'b', 'c'], ['a', 'b'])
    keeper.poke()
    expect(asks).toEqual([])
    state.connected = ['b', 'c']
    state.held.delete('a')
    keeper.poke()
    expect(asks.map(x => [x.id, x.at])).toEqual([['c', 0]])
    keeper.poke() // the ask in flight counts: no second ask
    expect(asks).toHaveLength(1)
  })

  it('asks every relay it needs in parallel, not one after another', () => {
    const { asks, keeper } = relays(['b', 'c'], [])
    keeper.poke()
    expect(asks.map(x => x.id)).toEqual(['b', 'c'])
    expect(asks.every(x => x.at === 0)).toBe(true)
  })

  it('retries a failed ask after 1 s, then 2 s, and stops once held', async () => {
    const { asks, clock, keeper } = relays(['b', 'c'], ['b'])
    keeper.poke()
    asks[0].fail('reservation failed with status PERMISSION_DENIED')
    await settle()
    keeper.poke() // a maintenance tick before the backoff is over: no ask
    expect(asks).toHaveLength(1)
    clock.advance(RETRY_INITIAL_MS)
    expect(asks.map(x => [x.id, x.at])).toEqual([['c', 0], ['c', 1000]])
    asks[1].fail('The operation was aborted due to timeout')
    await settle()
    clock.advance(1_999)
    expect(asks).toHaveLength(2)
    clock.advance(1)
    expect(asks).toHaveLength(3)
    asks[2].ok()
    await settle()
    clock.advance(60_000)
    keeper.poke()
    expect(asks).toHaveLength(3)
  })

  it('forgets a relay\'s failures when it reconnects, and stops asking once stopped', async () => {
    const { state, asks, clock, keeper } = relays(['b', 'c'], ['b'])
    keeper.poke()
    asks[0].fail('timeout')
    await settle()
    state.connected = ['b'] // c drops and comes back: asked at once, not after its backoff
    keeper.poke()
    state.connected = ['b', 'c']
    keeper.poke()
    expect(asks.map(x => [x.id, x.at])).toEqual([['c', 0], ['c', 0]])
    asks[1].fail('timeout')
    await settle()
    keeper.stop()
    clock.advance(60_000)
    keeper.poke()
    expect(asks).toHaveLength(2)
  })
})
