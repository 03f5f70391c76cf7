import { describe, expect, it } from 'vitest'
import { advancesCache } from '../../web/src/swarm/client/client.ts'
import { INFER_MESSAGES } from '../../web/src/swarm/wire/infer.ts'

describe('infer requests the transport may resend', () => {
  // A client → server request at a cache position extends the session's cache when it runs: run
  // twice (a resend after the first was written), the second fails on its position and ends the
  // session. STEP_COMMIT (a verifier's second opinion) was once missed here.
  it('never resends a request at a cache position; resends the rest', () => {
    const requests = Object.entries(INFER_MESSAGES).filter(([, m]) => m.dir === 'client → server')
    expect(requests.length).toBeGreaterThan(3)
    for (const [type, m] of requests) {
      expect([type, advancesCache(type as keyof typeof INFER_MESSAGES)]).toEqual([type, 'position' in m.fields])
    }
    expect(advancesCache('stepCommit')).toBe(true)
  })
})
