import { expect, test } from '@playwright/test'
import { linksTo, openSwarmTabs, waitForFullDirectMesh, type SwarmTabs } from './helpers/swarm.ts'

/**
 * Relay + 3 tabs: tabs find each other through the relay, connect over direct WebRTC (not the
 * relay), and share the swarm CRDT. More net e2e cases (e.g. a tensor stream between two tabs)
 * go in this describe block and reuse `tabs` (already fully meshed).
 */
test.describe.serial('swarm of 3 tabs', () => {
  let tabs: SwarmTabs

  test.beforeAll(async ({ browser }) => {
    tabs = await openSwarmTabs(browser, 3)
  })
  test.afterAll(async () => { await tabs?.close() })

  test('tabs connect to each other over direct WebRTC, not through the relay', async () => {
    await waitForFullDirectMesh(tabs)
    for (const [i, page] of tabs.pages.entries()) {
      for (const [j, other] of tabs.ids.entries()) {
        if (i === j) continue
        const links = await linksTo(page, other)
        const direct = links.filter(l => !l.limited && l.addr.includes('/webrtc'))
        expect(direct.length, `tab ${i} → tab ${j}: ${JSON.stringify(links)}`).toBeGreaterThan(0)
        // The accepting side sees the WebRTC peer itself: no relay hop in the address.
        for (const l of direct.filter(l => l.direction === 'inbound')) expect(l.addr).not.toContain('/p2p-circuit')
      }
      // The panel shows the same thing to a human.
      await expect(page.locator('#net-peers tr[data-kind="webrtc"]')).toHaveCount(2)
    }
  })

  test('tabs share the swarm CRDT: signed peer entries and concurrent edits', async () => {
    for (const page of tabs.pages) {
      await page.waitForFunction(async (ids) => {
        const peers = await window.webswarm!.doc.peers()
        return ids.every(id => peers.has(id))
      }, tabs.ids, { timeout: 20_000, polling: 100 })
    }
    // Concurrent writes to one shared map from every tab converge to the same content.
    await Promise.all(tabs.pages.map(async (page, i) => {
      await page.evaluate((i) => { window.webswarm!.doc.map('e2e').set(`tab${i}`, i) }, i)
    }))
    const contents = await Promise.all(tabs.pages.map(async page => {
      await page.waitForFunction(() => window.webswarm!.doc.map('e2e').size === 3, undefined, { timeout: 20_000, polling: 100 })
      return await page.evaluate(() => JSON.stringify(Object.entries(window.webswarm!.doc.map('e2e').toJSON()).sort()))
    }))
    expect(new Set(contents).size).toBe(1)
    await expect(tabs.pages[0].locator('#net-state tbody tr')).toHaveCount(3)
  })
})
