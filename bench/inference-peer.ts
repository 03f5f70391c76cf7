/**
 * One block server of `npm run bench:inference --procs`, in its own process as real peers are
 * (its own JS thread and WebGPU device). Started by bench/inference.ts with
 *   --relay MULTIADDR --model-dir DIR --model ID --span A:B --device webgpu|cpu --cache-bytes N
 * it joins the relay, serves its span, says `{ ok, id }` over IPC, then runs the parent's commands:
 * `{ op: 'connect', peer }` (a direct connection to the next server, as a warm swarm has) and
 * `{ op: 'drop' }` (the node stops, no goodbye from the server: a death its peers see at once) and
 * `{ op: 'stop' }`. The parent SIGKILLs the process to simulate a death nobody is told of.
 */
import { parseArgs } from 'node:util'
import type { Backend } from '../web/src/gpu/backend.ts'
import { cpu } from '../web/src/gpu/cpu-backend.ts'
import { sourceFrom } from '../web/src/model/source.ts'
import { loadSpanBackend } from '../web/src/swarm/model-backend.ts'
import { ServerRole } from '../web/src/swarm/server/role.ts'
import { joinTestPeer } from '../test/swarm/libp2p-peer.ts'

export type PeerCmd = { op: 'connect', peer: string } | { op: 'drop' } | { op: 'stop' }
export type PeerReply = { ok: true, id?: string } | { ok: false, error: string }

/** Tries at a first WebRTC connection to the next server (set-up through the relay sometimes fails under load). */
const CONNECT_TRIES = 5
const CONNECT_TIMEOUT_MS = 15_000

const { values: a } = parseArgs({ options: { relay: { type: 'string' }, 'model-dir': { type: 'string' }, model: { type: 'string' }, span: { type: 'string' }, blocks: { type: 'string' }, device: { type: 'string' }, 'cache-bytes': { type: 'string' } } })
const reply = (r: PeerReply): void => { process.send?.(r) }

async function main (): Promise<void> {
  const [start, end] = (a.span ?? '').split(':').map(Number)
  const numBlocks = Number(a.blocks)
  const model = a.model ?? ''
  let be: Backend = cpu
  if (a.device !== 'cpu') {
    const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
    be = await GpuBackend.create()
  }
  const p = await joinTestPeer(a.relay ?? '', numBlocks)
  const source = sourceFrom(a['model-dir'] ?? '')
  const role = new ServerRole({
    transport: p.transport, directory: p.directory, model, numBlocks, span: { start, end },
    loadSpan: async (s, e) => await loadSpanBackend(source, be, model, s, e),
    cacheBudgetBytes: Number(a['cache-bytes']), throughput: 100,
    log: l => console.log(`server ${p.transport.self.slice(-6)}: ${l}`)
  })
  await role.start()
  // The bench went away (ended or killed): so does this server.
  process.on('disconnect', () => process.exit(0))
  process.on('message', (m: PeerCmd) => {
    const run = async (): Promise<void> => {
      switch (m.op) {
        case 'connect':
          for (let i = 1; !p.transport.connected(m.peer); i++) {
            try {
              await p.transport.connect(m.peer, CONNECT_TIMEOUT_MS)
            } catch (e) {
              if (i >= CONNECT_TRIES) throw e
            }
          }
          break
        case 'drop':
          await p.node.stop()
          break
        case 'stop':
          await role.stop()
          p.transport.close()
          await p.node.stop()
          reply({ ok: true })
          process.exit(0)
      }
      reply({ ok: true })
    }
    run().catch((e: unknown) => { reply({ ok: false, error: (e as Error).stack ?? String(e) }) })
  })
  reply({ ok: true, id: role.self })
}

main().catch((e: unknown) => {
  reply({ ok: false, error: (e as Error).stack ?? String(e) })
  process.exit(1)
})
