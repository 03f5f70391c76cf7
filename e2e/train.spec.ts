import { expect, test } from '@playwright/test'
import { openSwarmTabs, waitForFullDirectMesh, type SwarmTabs } from './helpers/swarm.ts'
import { expectIdentical, oneFounding, syncs, waitSyncs } from './helpers/train.ts'

/**
 * Relay + 3 tabs train one run together (DiLoCo, CPU twins in the page for speed on SwiftShader
 * machines): the loss chart fills, every tab holds the same θ_global after each sync; one tab
 * closes mid-run, the other two go on and stay identical; a fourth tab joins late, fetches
 * θ_global ‖ momentum as content-addressed shards from them, and holds their θ_global exactly.
 */
const RUN = 'e2e-train'

test.describe.serial('training with 3 tabs', () => {
  let tabs: SwarmTabs
  test.beforeAll(async ({ browser }) => {
    tabs = await openSwarmTabs(browser, 3, `?device=cpu&run=${RUN}`)
    // E2E_TRAIN_LOG=1: the tabs' training log lines (joins, resyncs, refused states) on stdout
    if (process.env.E2E_TRAIN_LOG !== undefined) tabs.pages.forEach((p, i) => { p.on('console', m => { if (m.type() === 'info') console.log(`[tab ${i}] ${new Date().toISOString().slice(11, 19)} ${m.text()}`) }) })
    await waitForFullDirectMesh(tabs)
  })
  test.afterAll(async () => { await tabs?.close() })

  test('3 tabs train together; the chart shows points; a tab closes and the others go on identical', async () => {
    test.setTimeout(480_000)
    // all at once: a tab that starts after the others' first syncs joins late (covered below)
    await Promise.all(tabs.pages.map(async page => { await page.click('#train-start') }))
    for (const page of tabs.pages) await expect(page.locator('#train-panel .body')).toHaveAttribute('data-training', 'running', { timeout: 60_000 })
    await oneFounding(tabs.pages, 120_000)
    for (const page of tabs.pages) await waitSyncs(page, 2, 120_000)
    // A tab whose own founding lost (the three pressed Train at once) rejoins the kept one a sync or
    // two later, so the first syncs may have 2 members (the fresh-clone CI of session 13 took its
    // snapshot then): wait for one with all three.
    await expect.poll(async () => (await Promise.all(tabs.pages.map(syncs))).flat().some(s => s.members === 3), { timeout: 120_000 }).toBe(true)
    const before = await Promise.all(tabs.pages.map(syncs))
    expectIdentical(before)
    for (const page of tabs.pages) {
      await expect.poll(async () => Number(await page.locator('#train-loss-chart').getAttribute('data-points') ?? 0), { timeout: 20_000 }).toBeGreaterThan(0)
      await expect(page.locator('#train-loss-chart canvas')).toHaveCount(1)
      // throughput (tokens/s, MB sent/received) and the round timeline (members, attempt) are plots too
      for (const id of ['#train-rate-chart', '#train-rounds-chart']) {
        await expect.poll(async () => Number(await page.locator(id).getAttribute('data-points') ?? 0), { timeout: 20_000 }).toBeGreaterThan(0)
        await expect(page.locator(`${id} canvas`)).toHaveCount(1)
      }
    }
    // close one tab mid-run
    const [a, b, c] = tabs.pages
    // (counts per tab: a tab that started late, after the first tab's early syncs, has fewer)
    const [doneA, doneB] = [(await syncs(a)).length, (await syncs(b)).length]
    await c.close()
    await waitSyncs(a, doneA + 2, 150_000)
    await waitSyncs(b, doneB + 2, 150_000)
    const after = await Promise.all([a, b].map(syncs))
    expectIdentical(after)
    expect(after[0].at(-1)!.members).toBe(2)
    // the closed tab is off the dashboard's member count (its pagehide leave, or its heartbeat going stale within 60 s)
    for (const p of [a, b]) await expect(p.locator('#train-panel [data-key="members"]')).toHaveText(/^2 live/, { timeout: 90_000 })
    const hashes = await Promise.all([a, b].map(async p => await p.evaluate(() => window.webswarmTrain!.hash)))
    // both at the same sync → same hash (one may be a sync ahead; compare the common last one)
    const lastCommon = Math.min(after[0].at(-1)!.seq, after[1].at(-1)!.seq)
    expect(after[0].find(s => s.seq === lastCommon)!.hash).toBe(after[1].find(s => s.seq === lastCommon)!.hash)
    expect(hashes.every(h => h.length === 64)).toBe(true)

    // a late joiner: θ_global ‖ momentum as shards from the two trainers (over WebRTC), identical
    // to what they hold for that sync
    const late = await a.context().newPage()
    late.on('console', msg => { if (msg.type() === 'error' || (process.env.E2E_TRAIN_LOG !== undefined && msg.type() === 'info')) console.log(`[late tab] ${msg.text()}`) })
    await late.goto(`/?device=cpu&run=${RUN}`)
    await expect(late.locator('body')).toHaveAttribute('data-net', 'ready', { timeout: 60_000 })
    await late.click('#train-start')
    await expect(late.locator('#train-panel .body')).toHaveAttribute('data-training', 'running', { timeout: 90_000 })
    const fetched = await late.evaluate(() => {
      const f = window.webswarmTrain?.session?.lastFetch
      return f === undefined ? undefined : { via: f.via, seq: f.seq, hash: f.hash, from: [...f.fetchedFrom.keys()] }
    })
    expect(fetched?.via).toBe('shards')
    expect(fetched?.from.length).toBeGreaterThanOrEqual(1)
    expect(tabs.ids.slice(0, 2)).toEqual(expect.arrayContaining(fetched!.from))
    expect((await syncs(a)).find(s => s.seq === fetched!.seq)?.hash).toBe(fetched!.hash)
  })
})
