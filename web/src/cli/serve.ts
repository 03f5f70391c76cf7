/**
 * `webswarm serve --model FILE.gguf|DIR|URL --bootstrap MULTIADDR [--blocks A:B] [--experts SPEC|auto
 *  [--expert-layers LAYERS] [--expert-slots N]] [--remote-experts LAYERS] [--num-blocks N]
 *  [--cache-tokens N] [--max-gpu-memory SIZE] [--model-id ID] [--device cpu]`
 *
 * Serves a span of blocks (given, or the least-served window of --num-blocks blocks) and/or hosts
 * MoE experts (`--experts 1:0,1;2:3` = layer 1 experts 0 and 1, layer 2 expert 3; `--experts auto`
 * = the scheduler chooses --expert-slots of them, swarm/moe/placement.ts), announcing them in the
 * DHT and mirroring a summary into the swarm CRDT for the page, until SIGINT/SIGTERM. With
 * --max-gpu-memory the span and its KV cache (--cache-tokens positions) must fit: a given span
 * is refused with the numbers, a chosen one is at most as long as fits anywhere in the model.
 */
import { loadConfig } from '../model/model.ts'
import { sourceFrom } from '../model/source.ts'
import { EXPERT_TIMEOUT_MS, RECORD_REFRESH_MS } from '../swarm/constants.ts'
import { loadSpanBackend } from '../swarm/model-backend.ts'
import { CoSelectionStats } from '../swarm/moe/coselection.ts'
import { MIN_SUMMARY_TOKENS, SUMMARY_PUBLISH_MS } from '../swarm/moe/constants.ts'
import { ExpertRole } from '../swarm/moe/expert-role.ts'
import { loadExpertLayer, measureExpertThroughput } from '../swarm/moe/model-layers.ts'
import { formatPlacement } from '../swarm/moe/placement.ts'
import { RemoteExperts } from '../swarm/moe/remote-experts.ts'
import { affinityFromPeers, summarize } from '../swarm/moe/summary.ts'
import { ServerRole } from '../swarm/server/role.ts'
import { UsageError, int, optInt, required, str, type Flags } from './args.ts'
import { openBackend } from './commands.ts'
import { ModelPlanner, loadProgress, maxGpuMemory, resolveModelArg } from './model-plan.ts'
import { joinSwarmWithDoc, leaveSwarm, modelId, resolveBootstrap } from './swarm-node.ts'

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

/** "1,2" → MoE layers to choose experts from (default: all of the model's). */
export function parseLayers (v: string | undefined, numLayers: number): number[] {
  if (v === undefined) return Array.from({ length: numLayers }, (_, l) => l)
  const out = v.split(',').map(x => x.trim()).filter(x => x !== '').map(Number)
  if (out.length === 0 || !out.every(l => Number.isInteger(l) && l >= 0 && l < numLayers)) throw new UsageError(`--expert-layers: '${v}' is not a list of layers in [0, ${numLayers})`)
  if (new Set(out).size !== out.length) throw new UsageError(`--expert-layers: '${v}' names a layer twice`)
  return out
}

export async function serve (f: Flags): Promise<number> {
  const where = await resolveModelArg(required(f, 'model'))
  const source = sourceFrom(where)
  const config = await loadConfig(source)
  const id = modelId(where, str(f, 'model-id'))
  const log = (l: string): void => { if (f.quiet !== true) process.stderr.write(`${l}\n`) }
  const planner = new ModelPlanner(source, config, maxGpuMemory(f), log)
  const cacheTokens = int(f, 'cache-tokens', 1)
  const spanPlan = { sessions: 1, context: cacheTokens }
  const expertSpec = str(f, 'experts')
  const auto = expertSpec === 'auto'
  // Flags are checked before joining: a typo costs no network set-up.
  if (expertSpec !== undefined && config.numExperts === 0) throw new UsageError('--experts: this model has no MoE layers')
  const hosted = expertSpec === undefined || auto ? undefined : parseExperts(expertSpec, config.numLayers, config.numExperts)
  const expertLayers = parseLayers(str(f, 'expert-layers'), config.numLayers)
  if (!auto && (f['expert-slots'] !== undefined || f['expert-layers'] !== undefined)) throw new UsageError('--expert-slots and --expert-layers go with --experts auto')
  // Only `--experts auto` places experts (a dense model has none: its default of 0 slots is never read).
  const slots = auto ? (optInt(f, 'expert-slots', 1) ?? config.numExperts) : 0
  if (auto && slots > expertLayers.length * config.numExperts) throw new UsageError(`--expert-slots ${slots} exceeds the ${expertLayers.length * config.numExperts} experts of --expert-layers`)
  const blocksSpec = str(f, 'blocks')
  const span = blocksSpec === undefined ? undefined : parseBlocks(blocksSpec, config.numLayers)
  const remoteLayers = new Set((str(f, 'remote-experts') ?? '').split(',').filter(s => s !== '').map(Number))
  for (const l of remoteLayers) if (!(Number.isInteger(l) && l >= 0 && l < config.numLayers)) throw new UsageError(`--remote-experts: layer ${l} is not in [0, ${config.numLayers})`)
  // The span must fit --max-gpu-memory with its KV cache: refused (or shrunk, when the span is ours to choose) before joining.
  const serving = blocksSpec !== undefined || expertSpec === undefined
  if (span !== undefined) await planner.check({ blocks: span, embedding: false, head: false }, spanPlan)
  const numServed = serving && span === undefined ? await planner.blocksThatFit(optInt(f, 'num-blocks', 1) ?? config.numLayers, spanPlan) : config.numLayers

  const be = await openBackend(f)
  const peer = await joinSwarmWithDoc(await resolveBootstrap(f), { numBlocks: config.numLayers, numExperts: config.numExperts }, log)
  // The page's Network and Chat panels read who serves what from the peers map: mirror it there.
  await peer.swarm.setSelf({ agent: 'node', joinedAt: Date.now() })
  const mirror = (patch: Record<string, unknown>): void => { void peer.swarm.updateSelf(patch).catch(e => log(`crdt: mirroring failed: ${(e as Error).message}`)) }
  const stops: Array<() => Promise<void>> = []
  try {
    await startRoles()
  } catch (e) {
    // A role that cannot start (no MoE layer, unreadable weights): leave cleanly, then report.
    for (const s of stops) await s().catch(() => {})
    await leaveSwarm(peer)
    throw e
  }
  process.stdout.write(`${JSON.stringify({ peer: peer.transport.self, model: id })}\n`)

  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  for (const s of stops) await s()
  await leaveSwarm(peer)
  return 0

  async function startRoles (): Promise<void> {
    if (expertSpec !== undefined) {
      const role: ExpertRole = new ExpertRole({
        transport: peer.transport,
        directory: peer.directory,
        model: id,
        hiddenSize: config.hiddenSize,
        numExperts: config.numExperts,
        layers: expertLayers,
        hosted,
        slots,
        loadLayer: async l => {
          const layer = await loadExpertLayer(source, be, id, l)
          role.throughput = await measureExpertThroughput(layer, config.numExperts, config.hiddenSize)
          return layer
        },
        // Co-selection rates published by block servers that route through remote experts.
        affinity: async () => {
          const r = affinityFromPeers(await peer.swarm.doc.peers(), id, config.numLayers, config.numExperts)
          for (const x of r.rejected) log(`co-selection summary of ${x.peer} ignored: ${x.reason}`)
          return r.affinity
        },
        log,
        onAnnounce: () => { mirror({ experts: { model: id, state: role.state, hosted: formatPlacement(role.placement), throughput: Math.round(role.throughput * 10) / 10 } }) }
      })
      await role.start()
      stops.push(async () => { await role.stop() })
    }

    if (serving) {
      // A server whose MoE layers call remote experts runs their router: it counts co-selections
      // (its span's layers) and publishes a summary for peers that place experts.
      let cosel: CoSelectionStats | undefined
      const publish = (): void => { if (cosel !== undefined && cosel.tokens >= MIN_SUMMARY_TOKENS) mirror({ coselection: summarize(cosel, id) }) }
      const role: ServerRole = new ServerRole({
        transport: peer.transport,
        directory: peer.directory,
        model: id,
        numBlocks: config.numLayers,
        span,
        numServed,
        loadSpan: async (s, e) => {
          await planner.check({ blocks: { start: s, end: e }, embedding: false, head: false }, spanPlan)
          cosel = remoteLayers.size === 0 ? undefined : new CoSelectionStats(e - s, config.numExperts, s)
          const load = { config, onProgress: loadProgress(f, `loading blocks ${s}:${e} of ${where}`) }
          return await loadSpanBackend(source, be, id, s, e, remoteLayers.size === 0
            ? {}
            : { coselection: cosel, remoteExperts: { layers: remoteLayers, experts: new RemoteExperts({ transport: peer.transport, directory: peer.directory, model: id, hiddenSize: config.hiddenSize, numExperts: config.numExperts, timeoutMs: EXPERT_TIMEOUT_MS, log }) } }, load)
        },
        cacheBudgetBytes: cacheTokens * config.numLayers * 2 * config.numKvHeads * config.headDim * 4,
        rebalanceMs: blocksSpec === undefined ? RECORD_REFRESH_MS : 0,
        log,
        onAnnounce: () => { mirror({ serving: role.servingEntry() }) }
      })
      await role.start()
      const timer = remoteLayers.size === 0 ? undefined : setInterval(publish, SUMMARY_PUBLISH_MS)
      stops.push(async () => { clearInterval(timer); await role.stop() })
    }
  }
}
