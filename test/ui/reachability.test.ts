import { describe, expect, it } from 'vitest'
import type { ModelStatus, SwarmStatus } from '../../web/src/ui/context.ts'
import { unreachableText } from '../../web/src/ui/reachability.ts'

const relayUrl = 'http://127.0.0.1:9999/'
const own = { relayUrl, modelUrl: `${relayUrl}models/default` }
const other = { relayUrl, modelUrl: 'https://models.example.org/byte-llama' }
const down: SwarmStatus = { state: 'error', reason: 'Failed to fetch' }
const joined = { state: 'joined' } as unknown as SwarmStatus
const unread: ModelStatus = { state: 'error', reason: 'Failed to fetch' }
const read = { state: 'ready' } as unknown as ModelStatus

describe('the reachability notice', () => {
  it('the relay down, the model from it: one sentence naming the relay URL', () => {
    expect(unreachableText(own, down, unread)).toBe(`The relay at ${relayUrl} could not be reached (Failed to fetch). Chat and Contribute need it.`)
    // Before the model read fails too, the same sentence (no second notice when it does).
    expect(unreachableText(own, down, { state: 'reading' })).toBe(unreachableText(own, down, unread))
  })

  it('the model unreadable from the relay that is up, or from elsewhere: names which', () => {
    expect(unreachableText(own, joined, unread)).toContain(`The relay at ${relayUrl} did not give the model models/default`)
    expect(unreachableText(other, joined, unread)).toContain('The model at https://models.example.org/byte-llama could not be read (Failed to fetch)')
    expect(unreachableText(other, down, unread)).toContain('could not be read either')
  })

  it('nothing when everything is reached or still being tried', () => {
    expect(unreachableText(own, joined, read)).toBeUndefined()
    expect(unreachableText(own, { state: 'joining' }, { state: 'reading' })).toBeUndefined()
  })
})
