/**
 * Hedged steps (session.ts): a one-token step that a server has not answered by its deadline is
 * re-run on a spare in parallel; the first answer wins. The client's hard timeout is 60 s here,
 * so a test that passes did not wait for it: without hedging these tests would hit vitest's own
 * timeout. No timing is asserted; tokens must equal the no-failure reference in every case.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { InferenceClient } from '../../web/src/swarm/client/client.ts'
import { swarmGenerate } from '../../web/src/swarm/client/generate.ts'
import { StepLatency } from '../../web/src/swarm/client/latency.ts'
import type { InferenceSession } from '../../web/src/swarm/client/session.ts'
import { SwarmArgumentError } from '../../web/src/swarm/errors.ts'
import { MemoryDirectory } from '../../web/src/swarm/records.ts'
import type { SpanStep } from '../../web/src/swarm/server/backend.ts'
import { ServerRole } from '../../web/src/swarm/server/role.ts'
import { MemoryNetwork } from '../../web/src/swarm/transport/memory.ts'
import type { RpcTransport } from '../../web/src/swarm/transport/index.ts'
import { readInfer, writeInfer } from '../../web/src/swarm/wire/infer.ts'
import { BLOCKS, C, fakeEnds, FakeSpanBackend, localGreedy } from './fakes.ts'

/** A fake span whose next forward can be held (a server that stops answering) or delayed. */
class GatedBackend extends FakeSpanBackend {
  /** Holds every forward from now on until release(). */
  private held?: Promise<void>
  private releaseHeld = (): void => {}
  /** Delay of the next forward only, ms. */
  slowOnceMs = 0

  stall (): void {
    this.held = new Promise(resolve => { this.releaseHeld = resolve })
  }

  release (): void {
    this.releaseHeld()
    this.held = undefined
  }

  override async forward (steps: readonly SpanStep[]): Promise<Float32Array[]> {
    if (this.held !== undefined) await this.held
    if (this.slowOnceMs > 0) {
      const ms = this.slowOnceMs
      this.slowOnceMs = 0
      await new Promise(resolve => setTimeout(resolve, ms))
    }
    return await super.forward(steps)
  }
}

const roles: ServerRole[] = []
const backends = new Map<string, GatedBackend>()
afterEach(async () => {
  for (const b of backends.values()) b.release()
  backends.clear()
  for (const r of roles.splice(0)) await r.stop()
})

const PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]
const N = 10
/** The token after which a server misbehaves: the session has measured its steps by then. */
const AT = 4

async function swarm (seed: number, spans: Array<[string, number, number]>, wrap: Record<string, (t: RpcTransport) => RpcTransport> = {}, push = false) {
  const net = new MemoryNetwork({ seed })
  const dir = new MemoryDirectory()
  for (const [peer, start, end] of spans) {
    const role = new ServerRole({
      transport: (wrap[peer] ?? (t => t))(net.endpoint(peer)),
      directory: dir,
      model: 'fake',
      numBlocks: BLOCKS,
      span: { start, end },
      loadSpan: async (s, e) => {
        const b = new GatedBackend('fake', s, e)
        backends.set(peer, b)
        return b
      },
      cacheBudgetBytes: 1 << 20,
      throughput: 100
    })
    await role.start()
    roles.push(role)
  }
  const logs: string[] = []
  const client = new InferenceClient({ transport: net.endpoint('client'), directory: dir, model: 'fake', numBlocks: BLOCKS, hiddenSize: C, timeoutMs: 60_000, hedgeFloorMs: 150, push, log: l => logs.push(l) })
  // The spare is never the first choice: it is there to take over.
  client.rttMs.set('spare', 1e6)
  return { net, client, logs }
}

const THREE: Array<[string, number, number]> = [['s1', 0, 2], ['s2', 2, 4], ['s3', 4, 6], ['spare', 1, 5]]
const sessionsOn = (peer: string): number => roles.find(r => r.self === peer)?.server?.sessions.size ?? -1

describe('hedged steps (fake blocks, memory transport)', () => {
  it('a server that stops answering without closing: the spare takes its blocks, same tokens', async () => {
    const ref = await localGreedy(PROMPT, N)
    for (let seed = 1; seed <= 3; seed++) {
      const { client, logs } = await swarm(seed, THREE)
      let count = 0
      let session: InferenceSession | undefined
      const r = await swarmGenerate(client, fakeEnds, PROMPT, {
        maxNewTokens: N,
        onSession: s => { session = s },
        onToken: () => { if (++count === AT) backends.get(session!.route[1].peer)!.stall() }
      })
      expect(r.tokens, `seed ${seed}`).toEqual(ref)
      expect(r.session.failovers, `seed ${seed}`).toHaveLength(1)
      const ev = r.session.failovers[0]
      expect(ev.peer).toBe('s2')
      expect(ev.error).toMatch(/hedged/)
      expect(ev.replayed).toBe(PROMPT.length + AT - 1)
      expect(r.session.route.map(s => s.peer)).toEqual(['s1', 'spare', 's3'])
      expect(logs.some(l => l.includes('hedging on a spare'))).toBe(true)
      // Still waiting on it (no error, no hard timeout yet): not banned.
      expect(client.bans.isBanned('s2')).toBe(false)
      for (const b of backends.values()) b.release()
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
  })

  it('with push: a stalled server\'s CHAIN is late, the spare runs its blocks while the CHAIN is still awaited and wins, same tokens', async () => {
    const ref = await localGreedy(PROMPT, N)
    for (let seed = 1; seed <= 3; seed++) {
      const { client, logs } = await swarm(seed, THREE, {}, true)
      let count = 0
      const r = await swarmGenerate(client, fakeEnds, PROMPT, {
        maxNewTokens: N,
        onToken: () => { if (++count === AT) backends.get('s2')!.stall() }
      })
      expect(r.tokens, `seed ${seed}`).toEqual(ref)
      expect(r.session.failovers.map(f => f.peer), `seed ${seed}`).toEqual(['s2'])
      expect(r.session.failovers[0].error).toMatch(/hedged/)
      expect(r.session.route.map(s => s.peer)).toEqual(['s1', 'spare', 's3'])
      expect(logs.some(l => l.includes("'s CHAIN at"))).toBe(true)
      for (const b of backends.values()) b.release()
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
  })

  it('with push: a server slow once, same tokens, no ban', async () => {
    const ref = await localGreedy(PROMPT, N)
    const { client } = await swarm(5, THREE, {}, true)
    let count = 0
    const r = await swarmGenerate(client, fakeEnds, PROMPT, {
      maxNewTokens: N,
      onToken: () => { if (++count === AT) backends.get('s2')!.slowOnceMs = 800 }
    })
    expect(r.tokens).toEqual(ref)
    expect(client.bans.isBanned('s2')).toBe(false)
  })

  it('a server that stalls during a later prefill (the next chat turn): hedged like a decode step, same tokens', async () => {
    const ref = await localGreedy(PROMPT, N)
    const { client, logs } = await swarm(7, THREE)
    const first = await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N })
    expect(first.tokens).toEqual(ref)
    expect(client.prefillLatency.estimate('s2')?.samples).toBe(1) // the first prefill measured it
    await first.session.close()
    backends.get('s2')!.stall() // the second generation's prefill finds it stalled
    const r = await swarmGenerate(client, fakeEnds, PROMPT, { maxNewTokens: N })
    expect(r.tokens).toEqual(ref)
    expect(r.session.failovers.map(f => [f.peer, f.replayed])).toEqual([['s2', 0]])
    expect(r.session.failovers[0].error).toMatch(/hedged/)
    expect(r.session.route.map(s => s.peer)).toEqual(['s1', 'spare', 's3'])
    expect(logs.some(l => l.includes('hedging on a spare'))).toBe(true)
  })

  it('a server slow once: whichever answers first, same tokens, the slow server is not banned', async () => {
    const ref = await localGreedy(PROMPT, N)
    for (const spareSlowMs of [0, 3_000]) {
      const { client } = await swarm(2, THREE)
      let count = 0
      const r = await swarmGenerate(client, fakeEnds, PROMPT, {
        maxNewTokens: N,
        onToken: () => {
          if (++count !== AT) return
          backends.get('s2')!.slowOnceMs = 800
          // A spare slower than the original: the original wins and the replacement is dropped.
          backends.get('spare')!.slowOnceMs = spareSlowMs
        }
      })
      expect(r.tokens, `spare slow ${spareSlowMs}`).toEqual(ref)
      expect(client.bans.isBanned('s2')).toBe(false)
      if (spareSlowMs > 0) {
        expect(r.session.failovers).toHaveLength(0)
        expect(r.session.route.map(s => s.peer)).toEqual(['s1', 's2', 's3'])
        await r.session.close()
        // The losing replacement's session was closed (the close is best effort: let it land).
        await vi.waitFor(() => expect(sessionsOn('spare')).toBe(0))
      }
      for (const b of backends.values()) b.release()
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
  })

  it('no spare: the late server is awaited (up to the hard timeout) and answers; no failover, no ban', async () => {
    const ref = await localGreedy(PROMPT, N)
    const { client, logs } = await swarm(3, [['s1', 0, 3], ['s2', 3, 6]])
    let count = 0
    const r = await swarmGenerate(client, fakeEnds, PROMPT, {
      maxNewTokens: N,
      onToken: () => { if (++count === AT) backends.get('s2')!.slowOnceMs = 800 }
    })
    expect(r.tokens).toEqual(ref)
    expect(r.session.failovers).toHaveLength(0)
    expect(client.bans.isBanned('s2')).toBe(false)
    expect(logs.some(l => /hedge of blocks \[3, 6\) failed/.test(l))).toBe(true)
  })

  it('a bad reply arriving late from the server that lost the race is ignored', async () => {
    const ref = await localGreedy(PROMPT, N)
    for (const bad of ['wrong shape', 'wrong position', 'garbage'] as const) {
      let hold = false
      let release = (): void => {}
      // s2's transport: while `hold`, a STEP is held back, then answered with a bad reply.
      const lateBad = (t: RpcTransport): RpcTransport => ({
        self: t.self,
        request: (peer, protocol, body, o) => t.request(peer, protocol, body, o),
        unhandle: (protocol) => t.unhandle(protocol),
        handle: (protocol, handler) => t.handle(protocol, async (from, body) => {
          const m = readInfer(body)
          if (!hold || m.type !== 'step') return await handler(from, body)
          hold = false
          await new Promise<void>(resolve => { release = resolve })
          if (bad === 'garbage') return { meta: { v: 255, t: 1 }, tensors: [] }
          return writeInfer({
            type: 'output',
            session: m.session,
            position: bad === 'wrong position' ? m.position + 5 : m.position,
            hidden: bad === 'wrong shape' ? { shape: [2, C], data: new Float32Array(2 * C) } : { shape: [1, C], data: new Float32Array(C).fill(7) }
          })
        })
      })
      const { client } = await swarm(4, THREE, { s2: lateBad })
      let count = 0
      const r = await swarmGenerate(client, fakeEnds, PROMPT, {
        maxNewTokens: N,
        onToken: () => {
          count++
          if (count === AT) hold = true
          // The spare has taken over by now: the late reply lands mid-generation.
          if (count === AT + 2) release()
        }
      })
      expect(r.tokens, bad).toEqual(ref)
      expect(r.session.failovers.map(f => f.peer), bad).toEqual(['s2'])
      expect(r.session.route.map(s => s.peer), bad).toEqual(['s1', 'spare', 's3'])
      await Promise.all(roles.splice(0).map(x => x.stop()))
    }
  })
})

describe('StepLatency (RFC 6298 deadlines)', () => {
  it('no deadline before a sample; srtt + 4·rttvar after, clamped to [floor, ceiling]', () => {
    const l = new StepLatency(100, 5_000)
    expect(l.deadline('a')).toBeUndefined()
    l.sample('a', 10)
    expect(l.deadline('a')).toBe(100) // 10 + 4 · 5 = 30, below the floor
    for (let i = 0; i < 50; i++) l.sample('a', i % 2 === 0 ? 40 : 400)
    const e = l.estimate('a')!
    expect(l.deadline('a')).toBeCloseTo(Math.min(5_000, e.srtt + 4 * e.rttvar))
    expect(l.deadline('a')).toBeGreaterThan(400)
    l.sample('b', 60_000)
    expect(l.deadline('b')).toBe(5_000)
    l.sample('c', Number.NaN)
    expect(l.deadline('c')).toBeUndefined()
    l.forget('a')
    expect(l.deadline('a')).toBeUndefined()
  })

  it('rejects a floor above the ceiling or not positive', () => {
    expect(() => new StepLatency(0, 10)).toThrow(SwarmArgumentError)
    expect(() => new StepLatency(20, 10)).toThrow(/floor 20 ms, ceiling 10 ms/)
  })
})
