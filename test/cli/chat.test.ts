/**
 * `generate --chat`'s output (web/src/cli/chat.ts): the transcript's stop text ends the
 * generation, as the API's stop strings do, and none of it is printed.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { printUntilStopText } from '../../web/src/cli/chat.ts'

const ids = (s: string): number[] => [...s].map(c => c.charCodeAt(0))
const decode = (id: number): string => String.fromCharCode(id)

/** A generation of `text`, one character a token, that counts the tokens it produced. */
function generation (text: string): { run: (onToken: (id: number) => void) => Promise<number[]>, produced: () => number } {
  let n = 0
  return {
    run: async onToken => {
      for (const id of ids(text)) { n++; onToken(id) }
      return ids(text)
    },
    produced: () => n
  }
}

describe('printUntilStopText', () => {
  afterEach(() => { vi.restoreAllMocks() })

  it('prints up to the stop text, ends the generation there and returns the tokens up to it', async () => {
    const out: string[] = []
    vi.spyOn(process.stdout, 'write').mockImplementation(s => { out.push(String(s)); return true })
    const g = generation('Hi there\nUser: and more')
    const tokens = await printUntilStopText(['\nUser:'], decode, g.run)
    expect(out.join('')).toBe('Hi there')
    expect(tokens).toEqual(ids('Hi there\nUser:'))
    expect(g.produced()).toBe('Hi there\nUser:'.length) // no token past the stop was generated
  })

  it('without stop text (or printing ids) it prints every token and returns what the generation returns', async () => {
    const out: string[] = []
    vi.spyOn(process.stdout, 'write').mockImplementation(s => { out.push(String(s)); return true })
    expect(await printUntilStopText([], decode, generation('a\nUser: b').run)).toEqual(ids('a\nUser: b'))
    expect(out.join('')).toBe('a\nUser: b')
    out.length = 0
    await printUntilStopText(['\nUser:'], undefined, generation('ab').run)
    expect(out.join('')).toBe('97,98')
  })

  it('a failure of the generation itself still propagates', async () => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
    await expect(printUntilStopText(['\nUser:'], decode, async () => { throw new Error('server gone') })).rejects.toThrow('server gone')
  })
})
