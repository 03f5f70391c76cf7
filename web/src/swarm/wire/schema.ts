/**
 * Declared message schemas for the swarm's binary protocols (`infer`, `expert`): each message is
 * declared once, as data — its type byte, direction and fields in wire order with their caps —
 * and the encoder, the decoder, the message types and PROTOCOL.md's message table all come from
 * that declaration (STYLE 10: the grammar is written once; `renderTable` prints it).
 *
 *   const SCHEMA = defineMessages({ close: { code: 5, dir: 'client → server', fields: { session: str() } } })
 *   type Msg = MessageOf<typeof SCHEMA>                        // { type: 'close', session: string }
 *   const codec = messageCodec(PROTOCOL_ID, 1, SCHEMA)
 *   codec.read(codec.write({ type: 'close', session: 's' }))
 *
 * Wire form of a message: `version:u8 type:u8` then its fields in declaration order:
 * string = varint length + UTF-8 (≤ MAX_STRING_BYTES, bytes.ts); varint = unsigned LEB128; milli = a
 * non-negative number × 1000 as a varint (no float parsing of peer data); tensor = inline f32
 * tensor (bytes.ts); list = varint count + that many records; oneOf = u8 tag + that case's
 * fields; optional = u8 0 | u8 1 + its fields.
 */
import { MAX_MESSAGE_BYTES } from '../constants.ts'
import { MalformedMessageError, MessageTooLargeError } from '../errors.ts'
import { ByteReader, ByteWriter, type WireTensor } from './bytes.ts'

// ---------------------------------------------------------------- field kinds

interface Labelled {
  /** The field's name in error messages, when not its key. */
  label?: string
}
export interface StringField extends Labelled { kind: 'string', nonEmpty: boolean }
export interface VarintField extends Labelled { kind: 'varint', min: number, max: number }
export interface MilliField extends Labelled { kind: 'milli' }
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
export type Field = StringField | VarintField | MilliField | TensorField | ListField | OneOfField | OptionalField
export type Fields = Readonly<Record<string, Field>>

/** A UTF-8 string of ≤ MAX_STRING_BYTES bytes. */
export const str = (o: Labelled & { nonEmpty?: boolean } = {}): StringField => ({ ...o, kind: 'string', nonEmpty: o.nonEmpty ?? false })
/** An unsigned integer in [min, max]. */
export const varint = (max = Number.MAX_SAFE_INTEGER, o: Labelled & { min?: number } = {}): VarintField => ({ ...o, kind: 'varint', min: o.min ?? 0, max })
/** A non-negative number with three decimals, as milli-units in a varint. */
export const milli = (o: Labelled = {}): MilliField => ({ ...o, kind: 'milli' })
/** An f32 tensor of rank ≤ MAX_TENSOR_RANK holding ≤ MAX_MESSAGE_BYTES / 4 values. */
export const tensor = (o: Omit<TensorField, 'kind'> = {}): TensorField => ({ ...o, kind: 'tensor' })
/** At most `max` records of `of`. */
export const list = <O extends Fields>(max: number, of: O, o: Labelled = {}): ListField<O> => ({ ...o, kind: 'list', max, of })
/** One of several field sets, picked by a u8 tag. */
export const oneOf = <C extends Record<number, Fields>>(cases: C, o: Labelled = {}): OneOfField<C> => ({ ...o, kind: 'oneOf', cases })
/** A field set that may be absent (u8 0 / 1). */
export const optional = <O extends Fields>(of: O, o: Labelled = {}): OptionalField<O> => ({ ...o, kind: 'optional', of })

// ---------------------------------------------------------------- messages and their types

export interface MessageSpec {
  /** The type byte. */
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
    if (codes.has(m.code) || m.code < 0 || m.code > 255) throw new RangeError(`message ${name}: type byte ${m.code} is taken or outside 0…255`)
    codes.add(m.code)
  }
  return schema
}

type Simplify<T> = { [K in keyof T]: T[K] } & {}
type ValueOf<F> =
  F extends StringField ? string
    : F extends VarintField | MilliField ? number
      : F extends TensorField ? WireTensor
        : F extends ListField<infer O> ? Array<RecordOf<O>>
          : F extends OneOfField<infer C> ? { [K in keyof C]: C[K] extends Fields ? RecordOf<C[K]> : never }[keyof C]
            : F extends OptionalField<infer O> ? RecordOf<O>
              : never
/** The value a field set decodes to; optional fields become optional properties. */
export type RecordOf<O extends Fields> = Simplify<
  { -readonly [K in keyof O as O[K] extends OptionalField ? never : K]: ValueOf<O[K]> } &
  { -readonly [K in keyof O as O[K] extends OptionalField ? K : never]?: ValueOf<O[K]> }
>
/** The union of a schema's messages, each tagged with its `type` (the key it is declared under). */
export type MessageOf<S extends Schema> = { [K in keyof S & string]: Simplify<{ type: K } & RecordOf<S[K]['fields']>> }[keyof S & string]

/** Checks a decoded message beyond its fields' own caps: a problem's description, or undefined. */
export type Checks<M extends { type: string }> = { [K in M['type']]?: (m: Extract<M, { type: K }>) => string | undefined }

// ---------------------------------------------------------------- codec

/** Values one tensor may hold at most: what fits in one message. */
const MAX_TENSOR_VALUES = MAX_MESSAGE_BYTES / 4
/** Throughput and other `milli` fields: three decimals. */
const MILLI = 1000

type Rec = Record<string, unknown>

function writeFields (w: ByteWriter, fields: Fields, v: Rec): void {
  for (const [key, f] of Object.entries(fields)) {
    const x = v[key]
    switch (f.kind) {
      case 'string': w.string(x as string); break
      case 'varint': w.varint(x as number); break
      case 'milli': w.varint(Math.round((x as number) * MILLI)); break
      case 'tensor': w.tensor(x as WireTensor); break
      case 'list': {
        const items = x as Rec[]
        if (items.length > f.max) throw new MessageTooLargeError(`${f.label ?? key}: ${items.length} entries exceed ${f.max}`)
        w.varint(items.length)
        for (const it of items) writeFields(w, f.of, it)
        break
      }
      case 'oneOf': {
        const tag = Object.entries(f.cases).find(([, c]) => Object.keys(c).every(k => k in (x as Rec)))
        if (tag === undefined) throw new RangeError(`${f.label ?? key}: value matches no case`)
        writeFields(w.u8(Number(tag[0])), tag[1], x as Rec)
        break
      }
      case 'optional':
        if (x === undefined) w.u8(0)
        else writeFields(w.u8(1), f.of, x as Rec)
        break
    }
  }
}

function readFields (r: ByteReader, fields: Fields, msg: string, protocol: string): Rec {
  const out: Rec = {}
  const bad = (detail: string): never => { throw new MalformedMessageError(protocol, `${msg}: ${detail}`) }
  for (const [key, f] of Object.entries(fields)) {
    const label = f.label ?? key
    switch (f.kind) {
      case 'string': {
        const s = r.str(label)
        if (f.nonEmpty && s === '') bad(`empty ${label}`)
        out[key] = s
        break
      }
      case 'varint': {
        const v = r.varuint(label, f.max)
        if (v < f.min) bad(`${label} must be ≥ ${f.min}`)
        out[key] = v
        break
      }
      case 'milli': out[key] = r.varuint(label) / MILLI; break
      case 'tensor': {
        const t = r.tensor(label, MAX_TENSOR_VALUES)
        if (f.rank !== undefined && t.shape.length !== f.rank) bad(`${label}: expected rank ${f.rank}, got [${t.shape.join(', ')}]`)
        if (f.maxRows !== undefined && t.shape[0] > f.maxRows) bad(`${label}: ${t.shape[0]} rows exceed ${f.maxRows}`)
        out[key] = t
        break
      }
      case 'list': {
        const n = r.varuint(`${label} count`, f.max)
        const items: Rec[] = []
        for (let i = 0; i < n; i++) items.push(readFields(r, f.of, msg, protocol))
        out[key] = items
        break
      }
      case 'oneOf': {
        const tag = r.u8(label)
        const c = (f.cases as Record<number, Fields>)[tag]
        if (c === undefined) bad(`unknown ${label} ${tag}`)
        out[key] = readFields(r, c, msg, protocol)
        break
      }
      case 'optional': {
        const has = r.u8(label)
        if (has > 1) bad(`${label} byte must be 0 or 1, got ${has}`)
        if (has === 1) out[key] = readFields(r, f.of, msg, protocol)
        break
      }
    }
  }
  return out
}

export interface MessageCodec<M extends { type: string }> {
  write (m: M): Uint8Array
  /** Decodes one message; MalformedMessageError / MessageTooLargeError on anything off-grammar. */
  read (bytes: Uint8Array): M
}

/** The encoder/decoder of `schema` under `protocol` (for error messages) and wire `version`. */
export function messageCodec<S extends Schema> (protocol: string, version: number, schema: S, checks: Checks<MessageOf<S>> = {}): MessageCodec<MessageOf<S>> {
  const byCode = new Map(Object.entries(schema).map(([name, m]) => [m.code, { name, m }]))
  return {
    write (msg) {
      const spec = schema[msg.type]
      const w = new ByteWriter().u8(version).u8(spec.code)
      writeFields(w, spec.fields, msg as unknown as Rec)
      return w.finish()
    },
    read (bytes) {
      const r = new ByteReader(bytes, protocol)
      const v = r.u8('version')
      if (v !== version) throw new MalformedMessageError(protocol, `unsupported version ${v} (expected ${version})`)
      const code = r.u8('type')
      const hit = byCode.get(code)
      if (hit === undefined) throw new MalformedMessageError(protocol, `unknown message type ${code}`)
      const m = { type: hit.name, ...readFields(r, hit.m.fields, hit.name, protocol) } as MessageOf<S>
      const check = (checks as Record<string, ((m: MessageOf<S>) => string | undefined) | undefined>)[hit.name]
      const problem = check?.(m)
      if (problem !== undefined) throw new MalformedMessageError(protocol, `${hit.name}: ${problem}`)
      r.end()
      return m
    }
  }
}

// ---------------------------------------------------------------- the written grammar

/** `infoOk` → `INFO_OK`. */
export function wireName (key: string): string {
  return key.replace(/[A-Z]/g, c => `_${c}`).toUpperCase()
}

function renderFields (fields: Fields): string {
  return Object.entries(fields).map(([key, f]) => {
    switch (f.kind) {
      case 'string': return `${key}:string${f.nonEmpty ? '(non-empty)' : ''}`
      case 'varint': return `${key}:varint${f.min > 0 || f.max < Number.MAX_SAFE_INTEGER ? `[${f.min}…${f.max < Number.MAX_SAFE_INTEGER ? f.max : ''}]` : ''}`
      case 'milli': return `${key}:milli`
      case 'tensor': return `${key}:tensor${f.rank !== undefined ? `(rank ${f.rank}${f.maxRows !== undefined ? `, ≤ ${f.maxRows} rows` : ''})` : ''}`
      case 'list': return `${key}:list[≤ ${f.max}](${renderFields(f.of)})`
      case 'oneOf': return `${key}:(${Object.entries(f.cases).map(([tag, c]) => `${tag} ${renderFields(c)}`).join(' \\| ')})`
      case 'optional': return `${key}:(0 \\| 1 ${renderFields(f.of)})`
    }
  }).join(' ')
}

/** PROTOCOL.md's message table of `schema` (a test checks the document holds exactly this). */
export function renderTable (schema: Schema): string {
  const rows = Object.entries(schema).map(([key, m]) =>
    `| ${m.code} | ${wireName(key)} | ${m.dir} | ${renderFields(m.fields) || '—'} | ${m.note ?? ''} |`)
  return ['| type | name | direction | fields, in wire order | note |', '|---|---|---|---|---|', ...rows].join('\n')
}
