/**
 * `npm run relay` / `npm start`: parse config, start the relay, stop gracefully on SIGINT/SIGTERM
 * (a second signal exits at once). Unhandled promise rejections are logged and counted
 * (`webswarm_relay_unhandled_rejections_total`), not fatal.
 */
import { keepRunningOnUnhandledRejections } from '../web/src/util/process-guard.ts'
import { HELP, parseConfig } from './config.ts'
import { startRelay } from './relay.ts'

async function main (): Promise<void> {
  let config
  try {
    config = parseConfig(process.argv.slice(2))
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${HELP}`)
    process.exit(2)
  }
  if (config === null) {
    console.log(HELP)
    return
  }
  const relay = await startRelay(config)
  // One peer's stray rejection must not take the relay down for everyone (web/src/util/process-guard.ts).
  keepRunningOnUnhandledRejections('relay', () => { relay.metrics.unhandledRejections.inc() })
  let signals = 0
  const shutdown = (sig: string): void => {
    if (++signals > 1) {
      console.error(`relay: second ${sig}, exiting without cleanup`)
      process.exit(1)
    }
    console.info(`relay: ${sig} received, shutting down (CRDT flush + compaction)…`)
    relay.stop().then(() => {
      console.info('relay: stopped')
      process.exit(0)
    }, (e: Error) => {
      console.error(`relay: shutdown failed: ${e.message}`)
      process.exit(1)
    })
  }
  process.on('SIGINT', () => { shutdown('SIGINT') })
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
}

main().catch((e: Error) => {
  console.error(`relay: ${e.stack ?? e.message}`)
  process.exit(1)
})
