import { copyFileSync, readFileSync, rmSync } from 'node:fs'
import { expect, test } from '@playwright/test'
import { openSwarmTabs, waitForCoverage, type SwarmTabs } from './helpers/swarm.ts'

/**
 * A GGUF model served by the relay's --models-dir (its default, `models/`; the fixture is copied
 * there for this spec and removed after): two tabs opened with `?model=<relay URL of the .gguf>`
 * serve blocks [0, 1) and [1, 2) with the weights kept Q8_0, a third generates through them, and
 * its greedy tokens equal its own single-peer run of the same file. Tabs compute on the CPU twins.
 */
const FIXTURE = 'test/fixtures/gguf/tiny-llama-q8_0.gguf'
const NAME = `e2e-gguf-${process.pid}.gguf`
const SERVED = `models/${NAME}`
const prompt = (JSON.parse(readFileSync('test/fixtures/tiny-llama/reference.json', 'utf8')) as { prompt: number[] }).prompt
const N = 12

test.describe.serial('a GGUF served by the relay', () => {
  let tabs: SwarmTabs
  test.setTimeout(180_000)

  test.beforeAll(async ({ browser }) => {
    copyFileSync(FIXTURE, SERVED)
    tabs = await openSwarmTabs(browser, 3, `?model=./models/${NAME}&device=cpu`)
  })
  test.afterAll(async () => {
    await tabs?.close()
    rmSync(SERVED, { force: true })
  })

  test('two tabs serve its blocks from the relay URL; a third generates through them: greedy equals its local run', async ({ request }) => {
    const head = await request.head(`/models/${NAME}`)
    expect(head.status()).toBe(200)
    expect(Number(head.headers()['content-length'])).toBe(readFileSync(FIXTURE).byteLength)
    const [s0, s1, chat] = tabs.pages
    const spans = await Promise.all([s0, s1].map(async (p, i) => await p.evaluate(async (spec) => await window.webswarmChat!.serve(spec), ['0:1', '1:2'][i])))
    expect(spans).toEqual([{ start: 0, end: 1 }, { start: 1, end: 2 }])
    await expect(s1.locator('#serve-status')).toContainText(`serving block 1 of ${NAME}`)
    await waitForCoverage(chat, NAME, 2)
    const local = await chat.evaluate(async ([p, n]) => await window.webswarmChat!.localGenerate(p as number[], n as number, { stopTokens: [] }), [prompt, N] as const)
    expect(local).toHaveLength(N)
    const remote = await chat.evaluate(async ([p, n]) => await window.webswarmChat!.generate(p as number[], n as number, { stopTokens: [] }), [prompt, N] as const)
    expect(remote).toEqual(local)
    const route = await chat.evaluate(() => window.webswarmChat!.state().route)
    expect(route.map(h => h.peer).sort()).toEqual([tabs.ids[0], tabs.ids[1]].sort())
  })
})
