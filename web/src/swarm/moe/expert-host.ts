/**
 * The `expert` protocol's server side (Learning@home's expert host): runs the experts of MoE
 * layers it hosts on token rows other peers send, one batched call per caller and layer.
 */
import { EXPERT_PROTOCOL } from '../constants.ts'
import { ExpertNotHostedError, reportable, ServerInternalError, TensorShapeError } from '../errors.ts'
import type { RpcTransport, TensorMessage } from '../transport/index.ts'
import { readExpert, writeExpert, type ExpertRows } from '../wire/expert.ts'

/** Computes experts of one layer: each item's rows (N, C) → (N, C). One call may batch several experts. */
export interface ExpertRunner {
  readonly model: string
  readonly hiddenSize: number
  /** layer → experts hosted. */
  readonly hosted: ReadonlyMap<number, ReadonlySet<number>>
  run (layer: number, items: ReadonlyArray<{ expert: number, rows: Float32Array, count: number }>): Promise<Float32Array[]>
}

export interface ExpertHostOptions {
  transport: RpcTransport
  runner: ExpertRunner
  /** Where refused calls are reported. @default console.warn */
  log?: (line: string) => void
}

export class ExpertHost {
  readonly stats = { calls: 0, rows: 0, errors: 0 }
  private readonly log: (line: string) => void

  constructor (private readonly opts: ExpertHostOptions) {
    this.log = opts.log ?? (l => console.warn(l))
  }

  start (): void {
    this.opts.transport.handle(EXPERT_PROTOCOL, (from, body) => this.handle(from, body))
  }

  stop (): void {
    this.opts.transport.unhandle(EXPERT_PROTOCOL)
  }

  async handle (from: string, body: TensorMessage): Promise<TensorMessage> {
    try {
      const m = readExpert(body)
      if (m.type !== 'call') throw new ExpertNotHostedError(`expert: a host does not accept '${m.type}' messages`)
      const r = this.opts.runner
      if (m.model !== r.model) throw new ExpertNotHostedError(`this peer hosts experts of ${r.model}, not ${m.model}`)
      const hosted = r.hosted.get(m.layer)
      const seen = new Set<number>()
      for (const it of m.items) {
        if (hosted?.has(it.expert) !== true) throw new ExpertNotHostedError(`layer ${m.layer} expert ${it.expert} is not hosted here (hosted: ${[...(hosted ?? [])].join(', ') || 'none'})`)
        if (seen.has(it.expert)) throw new TensorShapeError(`expert ${it.expert} named twice in one call`)
        seen.add(it.expert)
        if (it.rows.shape[1] !== r.hiddenSize) throw new TensorShapeError(`rows of expert ${it.expert} must be (N, ${r.hiddenSize}), got [${it.rows.shape.join(', ')}]`)
        for (const v of it.rows.data) if (!Number.isFinite(v)) throw new TensorShapeError(`rows of expert ${it.expert} hold NaN or infinite values`)
      }
      let outs: Float32Array[]
      try {
        outs = await r.run(m.layer, m.items.map(it => ({ expert: it.expert, rows: it.rows.data, count: it.rows.shape[0] })))
      } catch (e) {
        throw new ServerInternalError(`expert forward failed: ${(e as Error).message}`)
      }
      this.stats.calls++
      const items: ExpertRows[] = m.items.map((it, i) => ({ expert: it.expert, rows: { shape: it.rows.shape, data: outs[i] } }))
      for (const it of m.items) this.stats.rows += it.rows.shape[0]
      return writeExpert({ type: 'result', items })
    } catch (e) {
      const { error: err, code } = reportable(e)
      this.stats.errors++
      this.log(`expert: refused call from ${from}: ${err.name}: ${err.message}`)
      return writeExpert({ type: 'error', code, message: err.message })
    }
  }
}
