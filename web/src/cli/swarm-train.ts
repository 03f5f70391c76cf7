/**
 * `webswarm train --bootstrap MULTIADDR --run ID [--declare [--config FILE] [--inner-steps H]
 *  [--seq-len T] [--batch B] [--lr LR] [--warmup N] [--steps N [--min-lr LR]] [--beta1 B]
 *  [--beta2 B] [--weight-decay W] [--clip C] [--fragments F] [--seed S] [--codec q8|topk|sparseloco [--ef-decay B]
 *  [--topk-chunk C] [--topk-k K] [--topk-bits B] [--topk-result-bits B]] [--delay-outer | --delay-outer-syncs N]] [--syncs N]
 *  [--device webgpu|cpu [--trainer-thread]]`
 *
 * Joins the swarm through the relay at MULTIADDR and trains run ID with the other peers (DiLoCo,
 * web/src/swarm/train). With --declare the run is declared in the swarm doc if nobody has yet
 * (the Brown corpus; the model of the HF config.json FILE, dense or MoE, trained from scratch —
 * default the tiny byte-level Llama — with the given inner AdamW hyper-parameters; `--steps N`:
 * cosine decay of the inner lr to --min-lr at run step N, else constant); otherwise
 * the peer waits for the declaration. `--codec topk` declares top-k pseudo-gradients (K of every C
 * elements, B-bit values, the owners' mean in --topk-result-bits; codec.ts) instead of q8, `--codec sparseloco` the same with
 * SparseLoCo's error-feedback momentum (β --ef-decay) and a plain outer step;
 * `--delay-outer` the one-step-delayed outer update (a sync lands at the next one, inner steps go on),
 * `--delay-outer-syncs N` the same over N syncs (1–4: a sync lands N later, up to N in flight).
 * `--trainer-thread` (with `--device cpu`) runs the model and its inner steps on a worker thread,
 * leaving this one the network and the syncs (swarm/train/trainer-thread.ts). Prints one line per inner step and per sync; stops after
 * N syncs, at the run's totalSyncs, or on SIGINT/SIGTERM. The peer serves every sync's state as
 * content-addressed shards; a late joiner fetches the newest one from the members at once.
 * If another peer declared the run at the same moment and the swarm kept its declaration, this
 * peer adopts that founding's θ_global (same settings) or starts over as a joiner of it (other
 * settings: RunForkedError), at most MAX_FORK_RESTARTS times.
 */
import { readFile } from 'node:fs/promises'
import { UsageError, int, num, optInt, optNum, required, str, type Flags } from './args.ts'
import { openBackend } from './commands.ts'
import type { RunSpec } from '../swarm/train/run-board.ts'

/** How long to wait for a run declaration to arrive through the CRDT, in ms. */
const DECLARATION_TIMEOUT_MS = 60_000
/**
 * How long to wait for the first exchange of the swarm doc with the relay, ms. Deciding founder
 * vs late joiner on a doc that has not synced yet lets two peers started together both found the
 * run and sync alone: two different θ_global under one run id.
 */
const DOC_SYNC_TIMEOUT_MS = 20_000
/** Restarts as a joiner of the declaration the swarm kept (a concurrent one with other settings won). */
const MAX_FORK_RESTARTS = 3

/**
 * --codec and its parameters → the declaration's compression (checked again by parseRunSpec);
 * `sparseloco` also sets the outer step (run-board.ts runCodecFields), `--ef-decay` overrides its β.
 */
function codecFlags (f: Flags, runCodecFields: typeof import('../swarm/train/run-board.ts').runCodecFields): Pick<import('../swarm/train/run-board.ts').RunSpec, 'compression'> & { outer?: { lr: number, momentum: number } } {
  const codec = required(f, 'codec')
  if (codec === 'q8') return { compression: { kind: 'q8', block: 64 } }
  if (codec !== 'topk' && codec !== 'sparseloco') throw new UsageError(`--codec must be q8, topk or sparseloco, got ${codec}`)
  const preset = runCodecFields(codec)
  const c = preset.compression as { efDecay?: number }
  const efDecay = optNum(f, 'ef-decay') ?? c.efDecay
  return {
    compression: { kind: 'topk', chunk: int(f, 'topk-chunk', 8), k: int(f, 'topk-k', 1), bits: int(f, 'topk-bits', 2), resultBits: int(f, 'topk-result-bits', 2), ...(efDecay === undefined ? {} : { efDecay }) },
    ...(preset.outer === undefined ? {} : { outer: preset.outer })
  }
}

/**
 * --delay-outer / --delay-outer-syncs N → the declaration's delayOuter: false, true (d = 1: N = 1
 * is written as --delay-outer's `true`, the same declaration, which peers that know only
 * true/false read too), or N (parseRunSpec refuses N above MAX_OUTER_DELAY, naming the range).
 */
function delayFlags (f: Flags): boolean | number {
  const n = optInt(f, 'delay-outer-syncs', 1)
  if (n !== undefined && f['delay-outer'] === true) throw new UsageError('give --delay-outer (1 sync) or --delay-outer-syncs N, not both')
  if (n === undefined) return f['delay-outer'] === true
  return n === 1 ? true : n
}

/** The run declaration that `--declare` and its options describe (--config read here), checked; UsageError naming the run otherwise. */
export async function runDeclaration (f: Flags, runId: string): Promise<RunSpec> {
  const { defaultRunSpec, runCodecFields } = await import('../swarm/train/run-board.ts')
  const configFile = str(f, 'config')
  let model: Record<string, unknown> | undefined
  if (configFile !== undefined) {
    try { model = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown> } catch (e) { throw new UsageError(`--config ${configFile}: ${(e as Error).message}`) }
  }
  try {
    const minLr = optNum(f, 'min-lr')
    return defaultRunSpec(runId, {
      ...(model === undefined ? {} : { model }),
      // Defaults: command-table.ts (the optimizer's from TRAINER_DEFAULTS['train --bootstrap']).
      innerSteps: int(f, 'inner-steps', 1), seqLen: int(f, 'seq-len', 1), batchSize: int(f, 'batch', 1),
      innerLr: num(f, 'lr'), warmupSteps: int(f, 'warmup'), decaySteps: int(f, 'steps'),
      ...(minLr === undefined ? {} : { minInnerLr: minLr }),
      beta1: num(f, 'beta1'), beta2: num(f, 'beta2'), weightDecay: num(f, 'weight-decay'), maxGradNorm: num(f, 'clip'),
      fragments: int(f, 'fragments', 1), seed: int(f, 'seed'),
      ...codecFlags(f, runCodecFields), delayOuter: delayFlags(f)
    })
  } catch (e) { throw new UsageError(`run ${runId}: ${(e as Error).message}`) }
}

export async function swarmTrain (f: Flags): Promise<number> {
  const runId = required(f, 'run')
  const quiet = f.quiet === true
  const be = await openBackend(f)
  if (f['trainer-thread'] === true && be.kind !== 'cpu') throw new UsageError(`--trainer-thread runs the model on the CPU: it needs --device cpu (got ${be.kind})`)
  const trainerThread = f['trainer-thread'] === true ? (await import('../swarm/train/trainer-thread-node.ts')).spawnTrainerThread : undefined
  const { joinSwarm, waitForReservation } = await import('../net/index.ts')
  const { brownCorpus } = await import('../model/data.ts')
  const { Libp2pTransport } = await import('../swarm/transport/libp2p.ts')
  const { Libp2pStateShards } = await import('../swarm/transport/shard-store.ts')
  const { RunBoard, TRAIN_MAP } = await import('../swarm/train/run-board.ts')
  const { TrainSession } = await import('../swarm/train/session.ts')
  const { RunForkedError } = await import('../swarm/train/membership.ts')
  // The declaration is checked before joining: a bad flag or config fails fast.
  const declared = f.declare === true ? await runDeclaration(f, runId) : undefined
  const { resolveBootstrap } = await import('./swarm-node.ts')
  const boot = await resolveBootstrap(f)
  // Trainers are dialled over WebRTC signalled through the first relay; the peer reserves on up to two.
  const bootstrap = boot.addrs[0]
  const swarm = await joinSwarm({ bootstrap: boot.addrs, persist: false, iceServers: boot.iceServers, log: quiet ? () => {} : (l) => { process.stderr.write(`${l}\n`) } })
  // Other trainers reach this one over WebRTC signalled through the relay: wait for the reservation.
  await waitForReservation(swarm.node)
  const t0sync = Date.now()
  while (swarm.crdt.stats.syncs === 0 && Date.now() - t0sync < DOC_SYNC_TIMEOUT_MS) await new Promise(resolve => setTimeout(resolve, 100))
  if (swarm.crdt.stats.syncs === 0 && !quiet) process.stderr.write(`train: the swarm doc did not sync with the relay within ${DOC_SYNC_TIMEOUT_MS / 1000} s; going on with what this peer has\n`)
  const board = new RunBoard(() => swarm.doc.map(TRAIN_MAP), runId, { onSourceChange: fn => swarm.doc.onGeneration(fn) })
  const ctl = new AbortController()
  const onSignal = (): void => { ctl.abort(new Error('interrupted')) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let session: import('../swarm/train/session.ts').TrainSession | undefined
  let shards: import('../swarm/transport/shard-store.ts').Libp2pStateShards | undefined
  let transport: import('../swarm/transport/libp2p.ts').Libp2pTransport | undefined
  try {
    if (declared !== undefined) board.declare(declared)
    const t0 = Date.now()
    while (board.spec() === undefined) {
      if (Date.now() - t0 > DECLARATION_TIMEOUT_MS) throw new UsageError(`run ${runId} was not declared in the swarm within ${DECLARATION_TIMEOUT_MS / 1000} s (pass --declare to declare it)`)
      ctl.signal.throwIfAborted()
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    let tokens = 0
    const started = performance.now()
    // Every sync's θ_global ‖ momentum is served as content-addressed shards for late joiners.
    shards = await Libp2pStateShards.start(swarm.node, { relayAddr: bootstrap })
    transport = new Libp2pTransport(swarm.node, { relayAddr: bootstrap })
    const tr = transport
    const log = quiet ? undefined : (l: string): void => { process.stderr.write(`${l}\n`) }
    const start = async (): Promise<import('../swarm/train/session.ts').TrainSession> => await TrainSession.start({
      transport: tr,
      shards,
      board,
      backend: be,
      corpus: async (spec) => spec.corpus.kind === 'text' ? spec.corpus.text : await brownCorpus(),
      log,
      ...(trainerThread !== undefined ? { trainerThread } : {}),
      onStep: (e) => {
        tokens += e.tokens
        if (!quiet) process.stderr.write(`step ${e.step}  loss ${e.loss.toFixed(4)}  ${(tokens / ((performance.now() - started) / 1000)).toFixed(0)} tok/s\n`)
      },
      onSync: (e) => {
        process.stdout.write(JSON.stringify({ sync: e.seq, fragment: e.fragment, members: e.members.length, attempt: e.attempt, hash: e.hash, evalLoss: e.evalLoss, resynced: e.resynced === true, satOut: e.satOut === true }) + '\n')
      }
    })
    session = await start()
    const syncs = optInt(f, 'syncs', 1)
    for (let restarts = 0; ; restarts++) {
      try {
        await session.run(syncs, ctl.signal)
        return 0
      } catch (e) {
        if (!(e instanceof RunForkedError) || ctl.signal.aborted || restarts >= MAX_FORK_RESTARTS) throw e
        log?.(`train: ${e.message}; joining that run now`)
        session.stop()
        session = await start()
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return 130
    throw e
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await session?.published() // the last sync's record (and root) reaches the board before we leave
    session?.stop()
    await shards?.close()
    transport?.close() // pooled channels left open would hold the node's shutdown up
    await swarm.stop()
  }
}
