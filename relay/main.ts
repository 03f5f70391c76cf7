/**
 * `npm run relay` / `npm start`: parse config, start the relay, stop gracefully on SIGINT/SIGTERM
 * (a second signal exits at once). Unhandled promise rejections are logged and counted
 * (`webswarm_relay_unhandled_rejections_total`), not fatal.
 */
import { keepRunningOnUnhandledRejections } from '../web/src/util/process-guard.ts'
import * as path from 'node:path'
import { PortInUseError } from '../web/src/cli/failures.ts'
import type { startRelayApi } from '../web/src/cli/api.ts'
import { HELP, parseConfig, type RelayConfig } from './config.ts'
import { mountHttp } from './http.ts'
import { startRelay, type RelayHandle } from './relay.ts'

type RelayApi = ReturnType<typeof startRelayApi>

/** The API's flags, taken out before the relay's own parser sees them. */
const API_HELP = `
OpenAI-compatible API (/v1 on the same port; web/src/cli/api.ts):
  --no-embedded-peer       Do not start the headless peer that serves every block of the default
                           model                                  [env WEBSWARM_NO_EMBEDDED_PEER=1]
  --api-key <key[,key]>    Require \`Authorization: Bearer <key>\` on /v1  [env WEBSWARM_API_KEY]
  --api-rate-limit <n>     Requests a minute per key / IP (0 = none)          [default 600]
  --no-api                 Serve no /v1 (and no embedded peer)`

interface ApiFlags { api: boolean, embeddedPeer: boolean, apiKeys: string[], ratePerMinute?: number, rest: string[] }

function takeApiFlags (argv: string[]): ApiFlags {
  const out: ApiFlags = { api: true, embeddedPeer: process.env.WEBSWARM_NO_EMBEDDED_PEER !== '1', apiKeys: (process.env.WEBSWARM_API_KEY ?? '').split(',').filter(k => k !== ''), rest: [] }
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].split(/=(.*)/s, 2)
    const value = (): string => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${name} needs a value`)
      return v
    }
    if (name === '--no-embedded-peer') out.embeddedPeer = false
    else if (name === '--no-api') out.api = false
    else if (name === '--api-key') out.apiKeys = value().split(',').filter(k => k !== '')
    else if (name === '--api-rate-limit' || name === '--rate-limit') { // --rate-limit: `webswarm api`'s name for it
      const v = value()
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: '${v}' is not an integer ≥ 0`)
      out.ratePerMinute = n
    } else out.rest.push(argv[i])
  }
  return out
}

async function main (): Promise<void> {
  let config
  let apiFlags: ApiFlags
  try {
    apiFlags = takeApiFlags(process.argv.slice(2))
    config = parseConfig(apiFlags.rest)
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${HELP}${API_HELP}`)
    process.exit(2)
  }
  if (config === null) {
    console.log(`${HELP}${API_HELP}`)
    return
  }
  // Signal handlers first: a SIGTERM that lands while the relay or the API is still starting
  // (the API's dynamic import alone takes seconds on a loaded machine) must shut down cleanly
  // once the start is done, not kill the process by the default action (exit 143, no CRDT flush).
  let signals = 0
  const shutdown = (sig: string): void => {
    if (++signals > 1) {
      console.error(`relay: second ${sig}, exiting without cleanup`)
      process.exit(1)
    }
    console.info(`relay: ${sig} received, shutting down (CRDT flush + compaction)…`)
    started.then(async ({ relay, api }) => {
      // The API's failure to stop must not keep the relay from flushing its CRDT: go on regardless.
      await (api?.stop() ?? Promise.resolve()).catch(() => {})
      await relay.stop()
    }).then(() => {
      console.info('relay: stopped')
      process.exit(0)
    }, (e: Error) => {
      console.error(`relay: shutdown failed: ${e.message}`)
      process.exit(1)
    })
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  // (The handlers only run after this synchronous code, so `started` is set by then.)
  const started = start(config, apiFlags)
  await started
}

async function start (config: RelayConfig, apiFlags: ApiFlags): Promise<{ relay: RelayHandle, api?: RelayApi }> {
  const relay = await startRelay(config)
  // One peer's stray rejection must not take the relay down for everyone (web/src/util/process-guard.ts).
  keepRunningOnUnhandledRejections('relay', () => { relay.metrics.unhandledRejections.inc() })
  // The API is a client of the swarm (web/src/api), mounted on the relay's port; the embedded
  // peer serves the default model under the id the page uses for it ('default').
  const api = apiFlags.api && relay.bootstrapAddrs.length > 0
    ? (await import('../web/src/cli/api.ts')).startRelayApi({
        bootstrapAddr: relay.bootstrapAddrs.find(a => /\/ws\//.test(a)) ?? relay.bootstrapAddrs[0],
        reservationPowBits: relay.admission.opts.reservationPowBits,
        where: path.join(config.modelsDir, config.defaultModel),
        id: 'default',
        embeddedPeer: apiFlags.embeddedPeer,
        apiKeys: apiFlags.apiKeys,
        ratePerMinute: apiFlags.ratePerMinute,
        log: line => console.info(line)
      })
    : undefined
  if (api !== undefined) {
    mountHttp(relay, api)
    void api.ready.then(() => console.info(`relay: OpenAI-compatible API at ${relay.httpUrl}/v1`))
  }
  return { relay, api }
}

main().catch((e: Error) => {
  // A busy port is the user's to fix: one line, no stack.
  console.error(`relay: ${e instanceof PortInUseError ? e.message : e.stack ?? e.message}`)
  process.exit(1)
})
