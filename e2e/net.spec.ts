import { expect, test } from '@playwright/test'
import { linksTo, openSwarmTabs, waitForFullDirectMesh, type SwarmTabs } from './helpers/swarm.ts'

/**
 * Relay + 3 tabs: tabs find each other through the relay, connect over direct WebRTC (not the
 * relay), and share the swarm CRDT. More net e2e cases (e.g. a tensor stream between two tabs)
 * go in this describe block and reuse `tabs` (already fully meshed).
 */
test('a tab mints its identity stamps in Web Workers, off the page thread', async ({ browser }) => {
  // The e2e relay asks a stamp before a reservation (on by default), and the swarm doc one in each
  // peers entry: net/pow-offthread.ts mints each in a worker of its own.
  const context = await browser.newContext()
  const page = await context.newPage()
  const workers: string[] = []
  page.on('worker', w => { workers.push(w.url()) })
  await page.goto('/')
  await expect(page.locator('body')).toHaveAttribute('data-net', 'ready')
  await expect.poll(() => workers.filter(u => u.includes('pow-worker')).length, { message: JSON.stringify(workers), timeout: 20_000 }).toBe(2)
  await context.close()
})

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
    // Each tab's signed entry is shown (other specs' earlier tabs may still be listed until their entries expire).
    for (const id of tabs.ids) await expect(tabs.pages[0].locator(`#net-state tbody tr[data-peer="${id}"]`)).toHaveCount(1)
    // Browsers keep the doc in IndexedDB (y-indexeddb), one database per swarm.
    const dbs = await tabs.pages[0].evaluate(async () => (await indexedDB.databases()).map(d => d.name))
    expect(dbs).toContain('webswarm-crdt-default')
  })

  test('two tabs exchange a framed tensor stream over their direct link (hash checked)', async () => {
    const protocol = '/webswarm/e2e-echo/1.0.0'
    const [client, server] = tabs.pages
    await server.evaluate(async (protocol) => {
      const ws = window.webswarm!
      await ws.tensors.handle(ws.node, protocol, async (req) => req, { maxMessageBytes: 8 * 1024 * 1024 })
    }, protocol)
    const result = await client.evaluate(async ({ protocol, peer }) => {
      const ws = window.webswarm!
      const n = 512 * 1024 // f32 elements: 2 MiB, 128 WebRTC messages
      const x = new Float32Array(n)
      for (let i = 0; i < n; i++) x[i] = Math.sin(i) * 1000
      const data = new Uint8Array(x.buffer)
      const hex = async (b: Uint8Array): Promise<string> => [...new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array(b)))].map(v => v.toString(16).padStart(2, '0')).join('')
      const target = ws.node.getConnections().find(c => c.remotePeer.toString() === peer && c.limits === undefined)!
      const t0 = performance.now()
      const res = await ws.tensors.call(ws.node, target.remotePeer, protocol, {
        meta: { op: 'echo' },
        tensors: [{ name: 'x', dtype: 'f32', shape: [512, 1024], data }]
      }, { timeoutMs: 30_000 })
      const ms = performance.now() - t0
      const back = res.tensors[0]
      return { sent: await hex(data), got: await hex(back.data), shape: back.shape, dtype: back.dtype, meta: res.meta, ms, via: target.remoteAddr.toString() }
    }, { protocol, peer: tabs.ids[1] })
    expect(result.got).toBe(result.sent)
    expect(result.shape).toEqual([512, 1024])
    expect(result.dtype).toBe('f32')
    expect(result.meta).toEqual({ op: 'echo' })
    expect(result.via).toContain('/webrtc')
    console.log(`2 MiB echo between tabs over direct WebRTC: ${result.ms.toFixed(0)} ms (${(2 * 2 / (result.ms / 1000)).toFixed(1)} MB/s both ways)`)
  })
})
