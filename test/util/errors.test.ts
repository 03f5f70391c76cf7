import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { callerFault, declaredErrors, hasErrorCode, notCallerFault, WebSwarmError } from '../../web/src/util/errors.ts'
import * as netErrors from '../../web/src/net/errors.ts'
import * as streamErrors from '../../web/src/net/stream/errors.ts'
import * as shardErrors from '../../web/src/net/shard/errors.ts'
import * as swarmErrors from '../../web/src/swarm/errors.ts'
import * as trainErrors from '../../web/src/swarm/train/errors.ts'
import { UsageError } from '../../web/src/cli/args.ts'
import { exitStatusOf, isExpectedFailure } from '../../web/src/cli/failures.ts'
import * as gpuErrors from '../../web/src/gpu/errors.ts'
import * as modelErrors from '../../web/src/model/errors.ts'
import * as ggufErrors from '../../web/src/model/gguf/errors.ts'
import { ConfigError } from '../../web/src/model/errors.ts'

/** Every exported class of the error modules that extends WebSwarmError. */
const classes = [netErrors, streamErrors, shardErrors, swarmErrors, trainErrors, gpuErrors, modelErrors, ggufErrors, { UsageError }]
  .flatMap(m => Object.values(m))
  .filter((v): v is abstract new (...a: never[]) => WebSwarmError => typeof v === 'function' && v.prototype instanceof WebSwarmError)
// RemoteReportableError is abstract (TypeScript makes every concrete class declare errorCode and callerFault).
const unique = [...new Set(classes)].filter(c => c !== swarmErrors.RemoteReportableError)

/** One instance of each concrete class (constructors take at most a few strings or numbers, or shapes). */
function instances (): WebSwarmError[] {
  const out: WebSwarmError[] = []
  for (const C of unique) {
    const args = C === modelErrors.TensorShapeMismatchError ? ['a', [1], [2]] : ['a', 'b', 'c']
    out.push(new (C as unknown as new (...a: unknown[]) => WebSwarmError)(...args))
  }
  return out
}

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap(f => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : []
  })
}

describe('one error hierarchy', () => {
  it('every error class of net/, swarm/, cli/, gpu/, model/ extends WebSwarmError with a unique name and a unique stable code', () => {
    const errs = instances().filter(e => Object.getPrototypeOf(e).constructor !== WebSwarmError)
    expect(errs.length).toBeGreaterThan(55)
    for (const m of [gpuErrors, modelErrors, ggufErrors]) for (const [k, v] of Object.entries(m)) expect(typeof v === 'function' && v.prototype instanceof WebSwarmError, k).toBe(true)
    const names = errs.map(e => e.name)
    const codes = errs.map(e => e.errorCode)
    expect(new Set(names).size).toBe(names.length)
    expect(new Set(codes).size).toBe(codes.length)
    for (const e of errs) {
      expect(e.errorCode, e.name).toMatch(/^[a-z]+\.[a-z][a-z0-9-]*$/)
      expect(typeof e.callerFault, e.name).toBe('boolean')
      expect(e.name, 'name is the class name').toBe(Object.getPrototypeOf(e).constructor.name)
    }
  })

  it('no two error classes of net/, swarm/, cli/, util/, gpu/, model/, relay/ share a name (the duplicate MalformedMessageError / LimitExceededError are gone)', () => {
    const seen = new Map<string, string>()
    const dupes: string[] = []
    for (const f of ['web/src/net', 'web/src/swarm', 'web/src/cli', 'web/src/util', 'web/src/gpu', 'web/src/model', 'relay'].flatMap(sources)) {
      // A class of its own, or an entry of a folder's declaredErrors table.
      for (const m of readFileSync(f, 'utf8').matchAll(/^(?:export )?(?:abstract )?class (\w+Error) |^ {2}(\w+Error): \w+\('/gm)) {
        const name = m[1] ?? m[2]
        if (seen.has(name)) dupes.push(`${name}: ${seen.get(name)} and ${f}`)
        seen.set(name, f)
      }
    }
    expect(dupes).toEqual([])
  })

  it('a declaredErrors table makes one class per entry, named by its key, with its code, fault and fields', () => {
    abstract class Coded extends WebSwarmError { abstract readonly code: number }
    const { AError, BError } = declaredErrors(Coded, { AError: callerFault('t.a', { code: 7 }), BError: notCallerFault('t.b', { code: 8 }) })
    const a = new AError('first')
    expect([a.name, AError.name, a.errorCode, a.callerFault, a.code, a.message]).toEqual(['AError', 'AError', 't.a', true, 7, 'first'])
    expect(a).toBeInstanceOf(Coded)
    expect(a).not.toBeInstanceOf(BError)
    expect([new BError('x').callerFault, BError.declared]).toEqual([false, { name: 'BError', errorCode: 't.b', callerFault: false, code: 8 }])
    expect(String(a.stack).split('\n')[0]).toBe('AError: first')
  })

  it('the net, stream and swarm layers throw the same MalformedMessageError and LimitExceededError', () => {
    expect(swarmErrors.MalformedMessageError).toBe(netErrors.MalformedMessageError)
    expect(streamErrors.LimitExceededError).toBe(netErrors.LimitExceededError)
    expect(new netErrors.MalformedMessageError('/p/1.0.0', 'x').message).toBe('/p/1.0.0: malformed message: x')
    expect(new netErrors.MalformedMessageError('just the detail').message).toBe('just the detail')
    expect(swarmErrors.reportable(new netErrors.MalformedMessageError('bad')).code).toBe(swarmErrors.ERROR_CODES.malformed)
    expect(swarmErrors.reportable(new Error('boom'))).toMatchObject({ code: swarmErrors.ERROR_CODES.internal, error: { name: 'ServerInternalError', message: 'boom' } })
    expect(swarmErrors.errorFromWire(swarmErrors.ERROR_CODES.malformed, 'm')).toBeInstanceOf(netErrors.MalformedMessageError)
  })

  it('checks go by code: hasErrorCode, isPeerFault, the CLI', () => {
    expect(hasErrorCode(new netErrors.LimitExceededError('x'), 'net.limit-exceeded')).toBe(true)
    expect(hasErrorCode(new Error('x'), 'net.limit-exceeded')).toBe(false)
    expect(streamErrors.isPeerFault(new netErrors.LimitExceededError('x'))).toBe(true)
    expect(streamErrors.isPeerFault(new streamErrors.StreamTimeoutError('x'))).toBe(false)
    expect(isExpectedFailure(new UsageError('x'))).toBe(true)
    expect(exitStatusOf(new UsageError('x'))).toBe(2)
    expect(isExpectedFailure(new ConfigError('f', 'd'))).toBe(true)
    expect(exitStatusOf(new ConfigError('f', 'd'))).toBe(1)
    expect(isExpectedFailure(new gpuErrors.NoWebGpuError('no adapter'))).toBe(true)
    expect(isExpectedFailure(new gpuErrors.SplitTensorError('op', 'd'))).toBe(true)
    expect(isExpectedFailure(new modelErrors.UnsupportedDTypeError('q3_k'))).toBe(true)
    expect(isExpectedFailure(new ggufErrors.GgufMetadataError('general.architecture', 'is required'))).toBe(true)
    expect(isExpectedFailure(new gpuErrors.DeviceError('lost'))).toBe(false)
    // A bug (or a look-alike with the right name) still prints its stack.
    const fake = new Error('x')
    fake.name = 'UsageError'
    expect(isExpectedFailure(fake)).toBe(false)
    expect(isExpectedFailure(new TypeError('x'))).toBe(false)
  })
})

describe('swallowed promises', () => {
  it('every `.catch(() => {})` / `.catch(() => undefined)` in net/, swarm/, cli/, relay/ says why (a comment on its line or the line above)', () => {
    const silent: string[] = []
    for (const f of ['web/src/net', 'web/src/swarm', 'web/src/cli', 'relay'].flatMap(sources)) {
      const lines = readFileSync(f, 'utf8').split('\n')
      lines.forEach((line, i) => {
        if (!/\.catch\(\(\) => (\{\s*\}|undefined)\)/.test(line)) return
        const commented = line.includes('//') || /^\s*(\/\/|\*)/.test(lines[i - 1] ?? '') || /^\s*\/\*\*.*\*\/\s*$/.test(lines[i - 1] ?? '')
        if (!commented) silent.push(`${f}:${i + 1}: ${line.trim()}`)
      })
    }
    expect(silent).toEqual([])
  })
})
