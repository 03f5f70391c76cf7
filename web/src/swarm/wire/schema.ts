/**
 * Declared message schemas for the swarm's protocols (`infer`, `expert`, `allreduce`): each message is declared
 * once, as data — its type code, direction and fields with their caps — and the encoder, the
 * decoder, the message types and PROTOCOL.md's message table all come from that declaration
 * (CONTRIBUTING.md STYLE 10: the grammar is written once; `renderTable` prints it).
 *
 *   const SCHEMA = defineMessages({ close: { code: 5, dir: 'client → server', fields: { session: str() } } })
 *   type Msg = MessageOf<typeof SCHEMA>                        // { type: 'close', session: string }
 *   const codec = messageCodec(INFER, 2, SCHEMA)                // INFER: its net/protocols.ts declaration
 *   codec.read(codec.write({ type: 'close', session: 's' }))
 *
 * Wire form: one message of the framed tensor stream (net/stream, one tensor codec for the whole
 * code base). Its JSON metadata holds `v` (the version), `t` (the type code) and every field but
 * tensors: string = JSON string (≤ MAX_STRING_BYTES of UTF-8); varint = JSON integer; milli = a
 * non-negative number × 1000 as an integer (no float parsing of peer data); list = JSON array of
 * records; oneOf = a record with its case number under `case`; optional = the record, or absent;
 * real = a finite JSON number ≥ 0; strings = JSON array of strings. Each tensor field travels as
 * the stream's own typed tensor (f32), named by its path in the message (`hidden`,
 * `input.hidden`, `items.2.rows`); a bytes field as a u8 tensor [length] under its name. The stream checks sizes and byte counts
 * before anything is allocated; this decoder checks every field against its declaration, and
 * refuses unknown fields and tensors.
 */
import { MAX_MESSAGE_BYTES, MAX_STRING_BYTES, MAX_TENSOR_RANK } from '../constants.ts'
import { MalformedMessageError, MessageTooLargeError, SwarmArgumentError } from '../errors.ts'
import type { JsonValue, NamedTensor, TensorMessage } from '../../net/stream/index.ts'
import type { SwarmProtocolSpec } from '../../net/protocols.ts'

/** A dense row-major tensor as the swarm roles hold it: f32 values with their shape. */
export interface WireTensor {
  shape: number[]
  data: Float32Array
}

// ---------------------------------------------------------------- field kinds

interface Labelled {
  /** The field's name in error messages, when not its key. */
  label?: string
  /** A few words for PROTOCOL.md's table, when the kind and bounds do not say it all. */
  note?: string
}
export interface StringField extends Labelled {
  kind: 'string'
  nonEmpty: boolean
  /** Most UTF-8 bytes (MessageTooLargeError beyond). */
  maxBytes: number
  /** Most characters (UTF-16 code units), if capped tighter than the bytes. */
  maxChars?: number
}
export interface VarintField extends Labelled { kind: 'varint', min: number, max: number }
export interface MilliField extends Labelled { kind: 'milli' }
export interface RealField extends Labelled { kind: 'real' }
export interface StringsField extends Labelled {
  kind: 'strings'
  max: number
  /** Most characters of each (non-empty) string. */
  maxChars: number
  /** Strictly increasing (sorted, no duplicates) and non-empty: a member list. */
  sorted: boolean
}
export interface BytesField extends Labelled { kind: 'bytes', max: number }
export interface TensorField extends Labelled {
  kind: 'tensor'
  /** Required rank, if any (e.g. 2 for (N, C) rows). */
  rank?: number
  /** Most rows (dimension 0), if capped. */
  maxRows?: number
}
export interface ListField<O extends Fields = Fields> extends Labelled { kind: 'list', max: number, of: O }
export interface OneOfField<C extends Record<number, Fields> = Record<number, Fields>> extends Labelled { kind: 'oneOf', cases: C }
export interface OptionalField<O extends Fields = Fields> extends Labelled { kind: 'optional', of: O }
type Field = StringField | VarintField | MilliField | RealField | StringsField | BytesField | TensorField | ListField | OneOfField | OptionalField
export type Fields = Readonly<Record<string, Field>>

/** A UTF-8 string of ≤ maxBytes (default MAX_STRING_BYTES) bytes and ≤ maxChars characters. */
export const str = (o: Labelled & { nonEmpty?: boolean, maxBytes?: number, maxChars?: number } = {}): StringField => ({ ...o, kind: 'string', nonEmpty: o.nonEmpty ?? false, maxBytes: o.maxBytes ?? MAX_STRING_BYTES })
/** An integer in [min, max] (min defaults to 0). */
export const varint = (max = Number.MAX_SAFE_INTEGER, o: Labelled & { min?: number } = {}): VarintField => ({ ...o, kind: 'varint', min: o.min ?? 0, max })
/** A non-negative number with three decimals, as integer milli-units. */
export const milli = (o: Labelled = {}): MilliField => ({ ...o, kind: 'milli' })
/** A finite number ≥ 0, as sent (a norm: no rounding, unlike milli). */
export const real = (o: Labelled = {}): RealField => ({ ...o, kind: 'real' })
/** At most `max` non-empty strings of ≤ maxChars characters; `sorted`: strictly increasing and non-empty. */
export const strings = (max: number, o: Labelled & { maxChars: number, sorted?: boolean }): StringsField => ({ ...o, kind: 'strings', max, sorted: o.sorted ?? false })
/** At most `max` bytes, sent as a u8 tensor and read as a view of it (no copy). */
export const bytes = (max: number, o: Labelled = {}): BytesField => ({ ...o, kind: 'bytes', max })
/** An f32 tensor of rank ≤ MAX_TENSOR_RANK (its bytes count against the message's size cap). */
export const tensor = (o: Omit<TensorField, 'kind'> = {}): TensorField => ({ ...o, kind: 'tensor' })
/** At most `max` records of `of`. */
export const list = <O extends Fields>(max: number, of: O, o: Labelled = {}): ListField<O> => ({ ...o, kind: 'list', max, of })
/** One of several field sets, picked by its case number. */
export const oneOf = <C extends Record<number, Fields>>(cases: C, o: Labelled = {}): OneOfField<C> => ({ ...o, kind: 'oneOf', cases })
/** A field set that may be absent. */
export const optional = <O extends Fields>(of: O, o: Labelled = {}): OptionalField<O> => ({ ...o, kind: 'optional', of })

// ---------------------------------------------------------------- messages and their types

interface MessageSpec {
  /** The type code (`t` in the metadata). */
  code: number
  /** Who sends it to whom, for the table. */
  dir: string
  fields: Fields
  /** One line for the table, when the fields do not say it all. */
  note?: string
}
export type Schema = Readonly<Record<string, MessageSpec>>

/** Declares a schema, keeping its literal types (for MessageOf). */
export function defineMessages<const S extends Schema> (schema: S): S {
  const codes = new Set<number>()
  for (const [name, m] of Object.entries(schema)) {
    if (codes.has(m.code) || m.code < 0 || m.code > 255) throw new SwarmArgumentError(`message ${name}: type code ${m.code} is taken or outside 0…255`)
    codes.add(m.code)
    if ('v' in m.fields || 't' in m.fields) throw new SwarmArgumentError(`message ${name}: the field names v and t are the envelope's`)
  }
  return schema
}

/** Most tensors one message of `schema` can carry: what the transport lets a channel's message hold. */
export function maxTensorsOf (schema: Schema): number {
  const count = (fields: Fields): number => Object.values(fields).reduce((n, f) => {
    switch (f.kind) {
      case 'tensor': case 'bytes': return n + 1
      case 'list': return n + f.max * count(f.of)
      case 'oneOf': return n + Math.max(0, ...Object.values(f.cases).map(count))
      case 'optional': return n + count(f.of)
      default: return n
    }
  }, 0)
  return Math.max(0, ...Object.values(schema).map(m => count(m.fields)))
}

type Simplify<T> = { [K in keyof T]: T[K] } & {}
type ValueOf<F> =
  F extends StringField ? string
    : F extends VarintField | MilliField | RealField ? number
      : F extends StringsField ? string[]
        : F extends BytesField ? Uint8Array
          : F extends TensorField ? WireTensor
            : F extends ListField<infer O> ? Array<RecordOf<O>>
              : F extends OneOfField<infer C> ? { [K in keyof C]: C[K] extends Fields ? RecordOf<C[K]> : never }[keyof C]
                : F extends OptionalField<infer O> ? RecordOf<O>
                  : never
/** The value a field set decodes to; optional fields become optional properties. */
type RecordOf<O extends Fields> = Simplify<
  { -readonly [K in keyof O as O[K] extends OptionalField ? never : K]: ValueOf<O[K]> } &
  { -readonly [K in keyof O as O[K] extends OptionalField ? K : never]?: ValueOf<O[K]> }
>
/** The union of a schema's messages, each tagged with its `type` (the key it is declared under). */
export type MessageOf<S extends Schema> = { [K in keyof S & string]: Simplify<{ type: K } & RecordOf<S[K]['fields']>> }[keyof S & string]

/** Checks a decoded message beyond its fields' own caps: a problem's description, or undefined. */
export type Checks<M extends { type: string }> = { [K in M['type']]?: (m: Extract<M, { type: K }>) => string | undefined }

// ---------------------------------------------------------------- codec

/** Throughput and other `milli` fields: three decimals. */
const MILLI = 1000
/** The metadata key of a oneOf's case number. */
const CASE = 'case'

type Rec = Record<string, unknown>
type JsonRec = { [key: string]: JsonValue }

const utf8 = new TextEncoder()

/** Collects a message's tensors while its fields are written, and counts their bytes. */
class TensorSink {
  readonly tensors: NamedTensor[] = []
  private bytes = 0

  add (name: string, t: WireTensor): void {
    const n = t.shape.reduce((a, b) => a * b, 1)
    if (n !== t.data.length) throw new SwarmArgumentError(`tensor ${name}: shape [${t.shape.join(', ')}] holds ${n} values, data has ${t.data.length}`)
    if (t.shape.length > MAX_TENSOR_RANK) throw new SwarmArgumentError(`tensor ${name}: rank ${t.shape.length} exceeds ${MAX_TENSOR_RANK}`)
    this.bytes += n * 4
    if (this.bytes > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(`message would exceed ${MAX_MESSAGE_BYTES} bytes of tensors`)
    this.tensors.push({ name, dtype: 'f32', shape: t.shape.slice(), data: new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4) })
  }

  /** `data` itself, not a copy: a sender may fill it after the message is written (allocMsg). */
  addBytes (name: string, data: Uint8Array, max: number): void {
    if (data.byteLength > max) throw new MessageTooLargeError(`${name} of ${data.byteLength} bytes exceeds ${max}`)
    this.bytes += data.byteLength
    if (this.bytes > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(`message would exceed ${MAX_MESSAGE_BYTES} bytes of tensors`)
    this.tensors.push({ name, dtype: 'u8', shape: [data.byteLength], data })
  }
}

function writeFields (fields: Fields, v: Rec, path: string, sink: TensorSink): JsonRec {
  const out: JsonRec = {}
  for (const [key, f] of Object.entries(fields)) {
    const x = v[key]
    const label = f.label ?? key
    switch (f.kind) {
      case 'string': {
        const n = utf8.encode(x as string).byteLength
        if (n > f.maxBytes) throw new MessageTooLargeError(`${label}: string of ${n} bytes exceeds ${f.maxBytes}`)
        out[key] = x as string
        break
      }
      case 'varint':
        // Negative only where the field allows it; the reader checks the declared bounds.
        if (!Number.isSafeInteger(x) || (x as number) < Math.min(0, f.min)) throw new SwarmArgumentError(`${label}: ${String(x)} is not a safe integer ≥ ${Math.min(0, f.min)}`)
        out[key] = x as number
        break
      case 'milli': out[key] = Math.round((x as number) * MILLI); break
      case 'real': out[key] = x as number; break
      case 'strings': {
        const items = x as string[]
        if (items.length > f.max) throw new MessageTooLargeError(`${label}: ${items.length} entries exceed ${f.max}`)
        out[key] = items.slice()
        break
      }
      case 'bytes': sink.addBytes(path + key, x as Uint8Array, f.max); break
      case 'tensor': sink.add(path + key, x as WireTensor); break
      case 'list': {
        const items = x as Rec[]
        if (items.length > f.max) throw new MessageTooLargeError(`${label}: ${items.length} entries exceed ${f.max}`)
        out[key] = items.map((it, i) => writeFields(f.of, it, `${path}${key}.${i}.`, sink))
        break
      }
      case 'oneOf': {
        const tag = Object.entries(f.cases).find(([, c]) => Object.keys(c).every(k => k in (x as Rec)))
        if (tag === undefined) throw new SwarmArgumentError(`${label}: value matches no case`)
        out[key] = { [CASE]: Number(tag[0]), ...writeFields(tag[1], x as Rec, `${path}${key}.`, sink) }
        break
      }
      case 'optional':
        if (x !== undefined) out[key] = writeFields(f.of, x as Rec, `${path}${key}.`, sink)
        break
    }
  }
  return out
}

/** Reads one message's fields from its metadata and tensors, consuming each tensor it names. */
class FieldReader {
  constructor (private readonly protocol: string, private readonly msg: string, private readonly tensors: Map<string, NamedTensor>) {}

  bad (detail: string): never {
    throw new MalformedMessageError(this.protocol, `${this.msg}: ${detail}`)
  }

  record (x: unknown, what: string): Rec {
    if (x === null || typeof x !== 'object' || Array.isArray(x)) this.bad(`${what} must be a record`)
    return x as Rec
  }

  fields (fields: Fields, rec: Rec, path: string, skip: readonly string[] = []): Rec {
    for (const k of Object.keys(rec)) if (!(k in fields) && !skip.includes(k)) this.bad(`unknown field ${path}${k}`)
    const out: Rec = {}
    for (const [key, f] of Object.entries(fields)) {
      const label = f.label ?? key
      const x = rec[key]
      if (x === undefined && f.kind !== 'tensor' && f.kind !== 'bytes' && f.kind !== 'optional') this.bad(`missing ${label}`)
      switch (f.kind) {
        case 'string': {
          if (typeof x !== 'string') this.bad(`${label} must be a string`)
          const n = utf8.encode(x).byteLength
          if (n > f.maxBytes) throw new MessageTooLargeError(`${this.protocol}: ${this.msg}: ${label} of ${n} bytes exceeds ${f.maxBytes}`)
          if (f.maxChars !== undefined && x.length > f.maxChars) this.bad(`${label} must be a string of ≤ ${f.maxChars} characters`)
          if (f.nonEmpty && x === '') this.bad(`empty ${label}`)
          out[key] = x
          break
        }
        case 'real':
          if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) this.bad(`${label} must be a finite number ≥ 0, got ${String(x)}`)
          out[key] = x
          break
        case 'strings': {
          if (!Array.isArray(x) || x.length > f.max) this.bad(`${label} must be a list of ≤ ${f.max} strings`)
          for (const s of x) if (typeof s !== 'string' || s.length === 0 || s.length > f.maxChars) this.bad(`${label} holds an empty, non-string or over-${f.maxChars}-character entry`)
          if (f.sorted) {
            for (let i = 1; i < x.length; i++) if (!((x[i - 1] as string) < (x[i] as string))) this.bad(`${label} must be sorted and without duplicates`)
            if (x.length === 0) this.bad(`${label} is empty`)
          }
          out[key] = x
          break
        }
        case 'bytes':
          if (x !== undefined) this.bad(`${label} is a tensor, not metadata`)
          out[key] = this.bytes(path + key, label, f)
          break
        case 'varint':
          if (!Number.isSafeInteger(x)) this.bad(`${label} must be an integer`)
          if ((x as number) > f.max) this.bad(`${label} = ${String(x)} exceeds ${f.max}`)
          if ((x as number) < f.min) this.bad(`${label} must be ≥ ${f.min}`)
          out[key] = x
          break
        case 'milli':
          if (!Number.isSafeInteger(x) || (x as number) < 0) this.bad(`${label} must be a non-negative integer of milli-units`)
          out[key] = (x as number) / MILLI
          break
        case 'tensor':
          if (x !== undefined) this.bad(`${label} is a tensor, not metadata`)
          out[key] = this.tensor(path + key, label, f)
          break
        case 'list': {
          if (!Array.isArray(x)) this.bad(`${label} must be a list`)
          if (x.length > f.max) this.bad(`${label} count = ${x.length} exceeds ${f.max}`)
          out[key] = x.map((it, i) => this.fields(f.of, this.record(it, `${label} ${i}`), `${path}${key}.${i}.`))
          break
        }
        case 'oneOf': {
          const r = this.record(x, label)
          const tag = r[CASE]
          const c = typeof tag === 'number' ? (f.cases as Record<number, Fields>)[tag] : undefined
          if (c === undefined) this.bad(`unknown ${label} ${String(tag)}`)
          out[key] = this.fields(c, r, `${path}${key}.`, [CASE])
          break
        }
        case 'optional':
          if (x !== undefined) out[key] = this.fields(f.of, this.record(x, label), `${path}${key}.`)
          break
      }
    }
    return out
  }

  private bytes (name: string, label: string, f: BytesField): Uint8Array {
    const t = this.tensors.get(name)
    if (t === undefined) this.bad(`missing tensor ${name}`)
    this.tensors.delete(name)
    if (t.dtype !== 'u8' || t.shape.length !== 1 || t.shape[0] !== t.data.byteLength) this.bad(`${label} must be u8 [bytes], got ${t.dtype} [${t.shape.join(', ')}]`)
    if (t.data.byteLength > f.max) this.bad(`${label} of ${t.data.byteLength} bytes exceeds ${f.max}`)
    // A view, not a copy (unlike f32, whose view may be unaligned): bytes are read in place, and
    // message bodies are never written after they are received or sent.
    return t.data
  }

  private tensor (name: string, label: string, f: TensorField): WireTensor {
    const t = this.tensors.get(name)
    if (t === undefined) this.bad(`missing tensor ${name}`)
    this.tensors.delete(name)
    if (t.dtype !== 'f32') this.bad(`${label}: unsupported dtype ${t.dtype} (only f32)`)
    if (t.shape.length > MAX_TENSOR_RANK) this.bad(`${label}: rank ${t.shape.length} exceeds ${MAX_TENSOR_RANK}`)
    if (f.rank !== undefined && t.shape.length !== f.rank) this.bad(`${label}: expected rank ${f.rank}, got [${t.shape.join(', ')}]`)
    if (f.maxRows !== undefined && t.shape[0] > f.maxRows) this.bad(`${label}: ${t.shape[0]} rows exceed ${f.maxRows}`)
    const n = t.shape.reduce((a, b) => a * b, 1)
    if (t.data.byteLength !== n * 4) this.bad(`${label}: ${t.data.byteLength} bytes do not hold f32 [${t.shape.join(', ')}]`)
    // A copy: the bytes may be unaligned for a Float32Array view, and a message handed over in
    // process (a server pushing to its own next hop) must not alias the sender's buffer.
    const data = new Float32Array(t.data.slice().buffer)
    return { shape: t.shape.slice(), data }
  }
}

export interface MessageCodec<M extends { type: string }> {
  write (m: M): TensorMessage
  /** Decodes one message; MalformedMessageError / MessageTooLargeError on anything off-grammar. */
  read (message: TensorMessage): M
}

/**
 * The encoder/decoder of `schema` under the protocol `spec` declares (its id names it in errors;
 * the writer refuses metadata over its maxMetaBytes, which the receiving stream would refuse) and
 * wire `version`.
 */
export function messageCodec<S extends Schema> (spec: SwarmProtocolSpec, version: number, schema: S, checks: Checks<MessageOf<S>> = {}): MessageCodec<MessageOf<S>> {
  const protocol = spec.id
  const byCode = new Map(Object.entries(schema).map(([name, m]) => [m.code, { name, m }]))
  return {
    write (msg) {
      const m = schema[msg.type]
      const sink = new TensorSink()
      const meta = { v: version, t: m.code, ...writeFields(m.fields, msg as unknown as Rec, '', sink) }
      const metaBytes = utf8.encode(JSON.stringify(meta)).byteLength
      if (metaBytes > spec.maxMetaBytes) throw new MessageTooLargeError(`${protocol}: ${msg.type}'s fields take ${metaBytes} bytes of metadata, more than ${spec.maxMetaBytes}`)
      return { meta, tensors: sink.tensors }
    },
    read (message) {
      const meta: Rec = message.meta ?? {}
      const v = meta.v
      if (v !== version) throw new MalformedMessageError(protocol, `unsupported version ${String(v)} (expected ${version})`)
      const hit = typeof meta.t === 'number' ? byCode.get(meta.t) : undefined
      if (hit === undefined) throw new MalformedMessageError(protocol, `unknown message type ${String(meta.t)}`)
      const tensors = new Map(message.tensors.map(t => [t.name, t]))
      if (tensors.size !== message.tensors.length) throw new MalformedMessageError(protocol, `${hit.name}: a tensor name is repeated`)
      const r = new FieldReader(protocol, hit.name, tensors)
      const m = { type: hit.name, ...r.fields(hit.m.fields, meta, '', ['v', 't']) } as MessageOf<S>
      for (const name of tensors.keys()) r.bad(`unexpected tensor ${name}`)
      const check = (checks as Record<string, ((m: MessageOf<S>) => string | undefined) | undefined>)[hit.name]
      const problem = check?.(m)
      if (problem !== undefined) throw new MalformedMessageError(protocol, `${hit.name}: ${problem}`)
      return m
    }
  }
}

// ---------------------------------------------------------------- the written grammar

/** `infoOk` → `INFO_OK`; `READY` stays. */
function wireName (key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

function renderFields (fields: Fields): string {
  return Object.entries(fields).map(([key, f]) => renderField(key, f) + (f.note === undefined ? '' : ` (${f.note})`)).join(' ')
}

function renderField (key: string, f: Field): string {
  switch (f.kind) {
    case 'string': return `${key}:string${f.nonEmpty ? '(non-empty)' : ''}${f.maxChars !== undefined ? `(≤ ${f.maxChars} chars)` : f.maxBytes !== MAX_STRING_BYTES ? `(≤ ${f.maxBytes} bytes)` : ''}`
    case 'varint': return `${key}:int${f.min !== 0 || f.max < Number.MAX_SAFE_INTEGER ? `[${f.min}…${f.max < Number.MAX_SAFE_INTEGER ? f.max : ''}]` : ''}`
    case 'milli': return `${key}:milli`
    case 'real': return `${key}:number(finite ≥ 0)`
    case 'strings': return `${key}:string[≤ ${f.max}](each 1…${f.maxChars} chars${f.sorted ? '; sorted, unique, non-empty' : ''})`
    case 'bytes': return `${key}:u8 tensor(≤ ${f.max} bytes)`
    case 'tensor': return `${key}:f32 tensor${f.rank !== undefined ? `(rank ${f.rank}${f.maxRows !== undefined ? `, ≤ ${f.maxRows} rows` : ''})` : ''}`
    case 'list': return `${key}:list[≤ ${f.max}](${renderFields(f.of)})`
    case 'oneOf': return `${key}:(${Object.entries(f.cases).map(([tag, c]) => `case ${tag} ${renderFields(c)}`).join(' \\| ')})`
    case 'optional': return `${key}?:(${renderFields(f.of)})`
  }
}

/** PROTOCOL.md's message table of `schema` (a test checks the document holds exactly this). */
export function renderTable (schema: Schema): string {
  const rows = Object.entries(schema).map(([key, m]) =>
    `| ${m.code} | ${wireName(key)} | ${m.dir} | ${renderFields(m.fields) || '—'} | ${m.note ?? ''} |`)
  return ['| t | name | direction | fields (tensors: typed tensors named by their path) | note |', '|---|---|---|---|---|', ...rows].join('\n')
}
