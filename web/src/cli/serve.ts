/**
 * `webswarm serve --model DIR|URL --bootstrap MULTIADDR [--blocks A:B] [--experts SPEC]
 *  [--remote-experts LAYERS] [--num-blocks N] [--cache-tokens N] [--model-id ID] [--device cpu]`
 *
 * Serves a span of blocks (given, or the least-served window of --num-blocks blocks) and/or hosts
 * MoE experts (`--experts 1:0,1;2:3` = layer 1 experts 0 and 1, layer 2 expert 3), announcing
 * them in the DHT, until SIGINT/SIGTERM.
 */
import { loadConfig } from '../model/model.ts'
import { sourceFrom } from '../model/source.ts'
import { EXPERT_TIMEOUT_MS, RECORD_REFRESH_MS, RECORD_TTL_MS } from '../swarm/constants.ts'
import { loadExpertRunner, loadSpanBackend } from '../swarm/model-backend.ts'
import { ExpertHost } from '../swarm/moe/expert-host.ts'
import { RemoteExperts } from '../swarm/moe/remote-experts.ts'
import { ServerRole } from '../swarm/server/role.ts'
import { UsageError, int, required, str, type Flags } from './args.ts'
import { openBackend } from './commands.ts'
import { joinSwarm, leaveSwarm, modelId } from './swarm-node.ts'

/** KV-cache positions a server offers by default: a few chat sessions of the tiny models. */
const DEFAULT_CACHE_TOKENS = 4096

/** "A:B" → [A, B) */
export function parseBlocks (v: string, numBlocks: number): { start: number, end: number } {
  const m = /^(\d+):(\d+)$/.exec(v)
  if (m === null) throw new UsageError(`--blocks: '${v}' is not A:B`)
  const start = Number(m[1])
  const end = Number(m[2])
  if (start >= end || end > numBlocks) throw new UsageError(`--blocks ${v}: need 0 ≤ A < B ≤ ${numBlocks}`)
  return { start, end }
}

/** "1:0,1;2:3" → layer → experts */
export function parseExperts (v: string, numLayers: number, numExperts: number): Map<number, Set<number>> {
  const out = new Map<number, Set<number>>()
  for (const part of v.split(';').filter(p => p !== '')) {
    const m = /^(\d+):(\d+(?:,\d+)*)$/.exec(part.trim())
    if (m === null) throw new UsageError(`--experts: '${part}' is not LAYER:E,E,...`)
    const layer = Number(m[1])
    if (layer >= numLayers) throw new UsageError(`--experts: layer ${layer} ≥ ${numLayers}`)
    const es = m[2].split(',').map(Number)
    for (const e of es) if (e >= numExperts) throw new UsageError(`--experts: expert ${e} ≥ ${numExperts}`)
    out.set(layer, new Set(es))
  }
  if (out.size === 0) throw new UsageError('--experts names no experts')
  return out
}

export async function serve (f: Flags): Promise<number> {
  const where = required(f, 'model')
  const source = sourceFrom(where)
  const config = await loadConfig(source)
  const id = modelId(where, str(f, 'model-id'))
  const be = await openBackend(f)
  const peer = await joinSwarm(required(f, 'bootstrap'), { numBlocks: config.numLayers, numExperts: config.numExperts })
  const log = (l: string): void => { if (f.quiet !== true) process.stderr.write(`${l}\n`) }
  const stops: Array<() => Promise<void>> = []

  const expertSpec = str(f, 'experts')
  if (expertSpec !== undefined) {
    if (config.numExperts === 0) throw new UsageError('--experts: this model has no MoE layers')
    const hosted = parseExperts(expertSpec, config.numLayers, config.numExperts)
    const runner = await loadExpertRunner(source, be, id, hosted)
    const host = new ExpertHost({ transport: peer.transport, runner, log })
    host.start()
    let version = 0
    const announce = async (): Promise<void> => {
      for (const [layer, es] of hosted) {
        await peer.directory.announceExperts({ peer: peer.transport.self, model: id, layer, experts: [...es], throughput: 1, version: ++version, expiresAt: Date.now() + RECORD_TTL_MS })
      }
    }
    await announce()
    const timer = setInterval(() => { void announce().catch(e => log(`expert announce failed: ${(e as Error).message}`)) }, RECORD_REFRESH_MS)
    stops.push(async () => { clearInterval(timer); host.stop() })
    log(`hosting experts ${expertSpec} of ${id}`)
  }

  const blocksSpec = str(f, 'blocks')
  if (blocksSpec !== undefined || expertSpec === undefined) {
    const remoteLayers = str(f, 'remote-experts')
    const layers = new Set((remoteLayers ?? '').split(',').filter(s => s !== '').map(Number))
    const role = new ServerRole({
      transport: peer.transport,
      directory: peer.directory,
      model: id,
      numBlocks: config.numLayers,
      span: blocksSpec === undefined ? undefined : parseBlocks(blocksSpec, config.numLayers),
      numServed: int(f, 'num-blocks', config.numLayers, 1),
      loadSpan: async (s, e) => await loadSpanBackend(source, be, id, s, e, layers.size === 0
        ? {}
        : { remoteExperts: { layers, experts: new RemoteExperts({ transport: peer.transport, directory: peer.directory, model: id, hiddenSize: config.hiddenSize, numExperts: config.numExperts, timeoutMs: EXPERT_TIMEOUT_MS, log }) } }),
      cacheBudgetBytes: int(f, 'cache-tokens', DEFAULT_CACHE_TOKENS, 1) * config.numLayers * 2 * config.numKvHeads * config.headDim * 4,
      rebalanceMs: blocksSpec === undefined ? RECORD_REFRESH_MS : 0,
      log
    })
    await role.start()
    stops.push(async () => { await role.stop() })
  }
  process.stdout.write(`${JSON.stringify({ peer: peer.transport.self, model: id })}\n`)

  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  for (const s of stops) await s()
  await leaveSwarm(peer)
  return 0
}
