/**
 * Child of process-guard.test.ts: with `guard` as its argument it installs the guard, then rejects
 * a promise nobody handles and says whether it is still alive 200 ms later.
 */
import { keepRunningOnUnhandledRejections } from '../../web/src/util/process-guard.ts'

if (process.argv[2] === 'guard') keepRunningOnUnhandledRejections('child')
void Promise.reject(new Error('stray rejection on a closed peer connection'))
setTimeout(() => { console.log('alive'); process.exit(0) }, 200)
