/**
 * The base of every typed WebSwarm failure (CONTRIBUTING.md STYLE 9): one class per failure, each with a `name`
 * (its class name, unique across the code base), a stable `errorCode` and whether the caller is at
 * fault. Code that decides what to do with an error (ban a peer, fail over, print one line instead
 * of a stack) asks `hasErrorCode`, never compares class-name strings.
 *
 * Why `errorCode` and not `code`: two wire errors (the stream's RemoteError / HandlerError and the
 * swarm's reportable errors) already carry a numeric `code` that travels on the wire.
 */

/** A stable identifier of a kind of failure: `<layer>.<kebab-case>`, never renamed once shipped. */
export type ErrorCodeString = `${string}.${string}`

export abstract class WebSwarmError extends Error {
  /** Stable identifier of this kind of failure, e.g. `net.malformed-message`. */
  abstract readonly errorCode: ErrorCodeString
  /**
   * True when the input given to the code that threw is wrong (bad arguments, options, files, or
   * bytes a peer sent it): retrying the same input fails again. False when the environment or the
   * other side's state failed (timeouts, unreachable peers, a server's own fault).
   */
  abstract readonly callerFault: boolean
}

/** Whether `e` is a WebSwarm error whose code is one of `codes`. */
export function hasErrorCode (e: unknown, ...codes: ErrorCodeString[]): boolean {
  return e instanceof WebSwarmError && codes.includes(e.errorCode)
}

/** What declares a failure: its class name (unique), stable code and fault, and any field its base leaves abstract. */
interface ErrorDeclaration {
  name: string
  errorCode: ErrorCodeString
  /** Absent where the base derives it (ApiError: from the HTTP status). */
  callerFault?: boolean
}

type AbstractCtor<T> = abstract new (...args: any[]) => T
/** A concrete class: `B`'s instances with D's fields, constructed as `B` is. */
type Declared<B extends AbstractCtor<WebSwarmError>, D> = { readonly declared: D } & (new (...args: ConstructorParameters<B>) => InstanceType<B> & Readonly<Omit<D, 'name'>>)

/**
 * `Base` with the fields of `d` fixed, for a failure that carries more than a message (its own
 * constructor); plain ones go in their folder's {@link declaredErrors} table (CONTRIBUTING.md STYLE 9):
 *
 *   export class PeerTimeoutError extends declaredError(WebSwarmError, { name: 'PeerTimeoutError', errorCode: 'swarm.peer-timeout', callerFault: false }) {
 *     constructor (readonly peer: string, readonly ms: number) { super(`peer ${peer} did not answer within ${ms} ms`) }
 *   }
 *
 * The subclass keeps its own class name (stack traces, `instanceof`). `declared` holds `d` for
 * tables built from the classes (e.g. the swarm's wire code → class).
 */
export function declaredError<B extends AbstractCtor<WebSwarmError>, const D extends ErrorDeclaration> (Base: B, d: D): Declared<B, D> {
  abstract class DeclaredError extends Base {
    static readonly declared = d
    constructor (...args: any[]) {
      super(...args)
      Object.assign(this, d)
    }
  }
  return DeclaredError as unknown as Declared<B, D>
}

/** A failure the caller caused (`callerFault: true`), in a {@link declaredErrors} table; `fields`: any its base leaves abstract. */
export function callerFault<const C extends ErrorCodeString, const F extends object = {}> (errorCode: C, fields?: F): { errorCode: C, callerFault: true } & F {
  return { errorCode, callerFault: true, ...(fields as F) }
}

/** A failure of the environment or the other side (`callerFault: false`), in a {@link declaredErrors} table. */
export function notCallerFault<const C extends ErrorCodeString, const F extends object = {}> (errorCode: C, fields?: F): { errorCode: C, callerFault: false } & F {
  return { errorCode, callerFault: false, ...(fields as F) }
}

/**
 * A folder's failures as one table, class name → code and fault: a class per entry, `Base` with
 * the entry's fields fixed (as {@link declaredError}) and named by its key.
 *
 *   export const { ManifestError, NoProvidersError } = declaredErrors(WebSwarmError, {
 *     ManifestError: callerFault('shard.manifest'),
 *     NoProvidersError: notCallerFault('shard.no-providers')
 *   })
 *
 * An error that carries more (a peer id, a formatted message) stays a class of its own,
 * `extends declaredError(…)`, beside the table. In a type position a table's class is
 * `InstanceType<typeof ManifestError>`.
 */
export function declaredErrors<B extends AbstractCtor<WebSwarmError>, const T extends Readonly<Record<string, Omit<ErrorDeclaration, 'name'>>>> (Base: B, table: T): { readonly [K in keyof T & string]: Declared<B, T[K] & { name: K }> } {
  const out: Record<string, unknown> = {}
  for (const [name, entry] of Object.entries(table)) {
    // A subclass so that the class, not only its instances, bears the name (the table types it as Declared).
    const C = class extends (declaredError(Base, { name, ...entry }) as unknown as new (...args: any[]) => Error) {}
    Object.defineProperty(C, 'name', { value: name })
    out[name] = C
  }
  return out as { readonly [K in keyof T & string]: Declared<B, T[K] & { name: K }> }
}
