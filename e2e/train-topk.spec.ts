import { expect, test } from '@playwright/test'
import { addSwarmTab, openSwarmTabs, waitForFullDirectMesh, type SwarmTabs } from './helpers/swarm.ts'
import { expectIdentical, oneFounding, syncs, waitSyncs } from './helpers/train.ts'

/**
 * A run declared with SparseLoCo's codec (`?train-codec=sparseloco`: top-4 of 256 in 2 bits,
 * error-feedback momentum, plain outer step) trains across 3 tabs: two on the CPU twins, one on
 * the page's WebGPU (SwiftShader here), whose error feedback runs on the topk_ef kernel. Every
 * tab holds the same θ_global after every sync.
 */
const RUN = 'e2e-sparseloco'
const QUERY = `?run=${RUN}&train-codec=sparseloco`

test.describe.serial('a top-k run across tabs', () => {
  let tabs: SwarmTabs
  test.beforeAll(async ({ browser }) => {
    tabs = await openSwarmTabs(browser, 2, `${QUERY}&device=cpu`)
    await addSwarmTab(tabs, QUERY) // the page's own device: WebGPU
    await waitForFullDirectMesh(tabs)
  })
  test.afterAll(async () => { await tabs?.close() })

  test('3 tabs (one on WebGPU) train with the top-k codec and stay bit-identical', async () => {
    test.setTimeout(420_000)
    await Promise.all(tabs.pages.map(async page => { await page.click('#train-start') }))
    for (const page of tabs.pages) await expect(page.locator('#train-panel .body')).toHaveAttribute('data-training', 'running', { timeout: 90_000 })
    await oneFounding(tabs.pages, 120_000)
    for (const page of tabs.pages) await waitSyncs(page, 3, 240_000)
    const declared = await Promise.all(tabs.pages.map(async p => await p.evaluate(() => {
      const s = window.webswarmTrain?.session
      return { compression: s?.spec.compression, outer: s?.spec.outer, device: s?.worker.model.backend.kind }
    })))
    for (const d of declared) {
      expect(d.compression).toEqual({ kind: 'topk', chunk: 256, k: 4, bits: 2, resultBits: 4, efDecay: 0.95 })
      expect(d.outer?.momentum).toBe(0)
    }
    expect(declared.map(d => d.device)).toEqual(['cpu', 'cpu', 'webgpu'])
    // A tab whose own founding lost rejoins the kept one a sync or two later (e2e/train.spec.ts).
    await expect.poll(async () => (await Promise.all(tabs.pages.map(syncs))).flat().some(s => s.members === 3), { timeout: 120_000 }).toBe(true)
    expectIdentical(await Promise.all(tabs.pages.map(syncs)))
  })
})
