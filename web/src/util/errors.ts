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
 * `Base` with the fields of `d` fixed, so that one line declares one failure (CONTRIBUTING.md STYLE 9) instead
 * of a class body repeating four fields:
 *
 *   export class ServerBusyError extends declaredError(RemoteReportableError, { name: 'ServerBusyError', errorCode: 'swarm.server-busy', callerFault: false, code: ERROR_CODES.busy }) {}
 *
 * The subclass keeps its own class name (stack traces, `instanceof`); one that carries more (a
 * peer id, suspects) adds a constructor as any subclass does. `declared` holds `d` for tables
 * built from the classes (e.g. the swarm's wire code → class).
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
