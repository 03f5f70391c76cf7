/**
 * e2e helpers: open N tabs of the page (each its own peer) and wait, with bounded timeouts, for
 * them to join, connect directly to each other and share CRDT state. Reused by every net spec.
 */
import { expect, type Browser, type Page } from '@playwright/test'

export interface SwarmTabs {
  pages: Page[]
  /** Peer id of each tab, same order as pages. */
  ids: string[]
  close: () => Promise<void>
}

/** Opens `n` tabs in one browser context and waits until each has joined the swarm. */
export async function openSwarmTabs (browser: Browser, n: number, query = ''): Promise<SwarmTabs> {
  const context = await browser.newContext()
  const pages: Page[] = []
  for (let i = 0; i < n; i++) {
    const page = await context.newPage()
    page.on('console', msg => { if (msg.type() === 'error') console.log(`[tab ${i}] ${msg.text()}`) })
    await page.goto(`/${query}`)
    pages.push(page)
  }
  for (const page of pages) await expect(page.locator('body')).toHaveAttribute('data-net', 'ready')
  const ids = await Promise.all(pages.map(async p => await p.evaluate(() => window.webswarm!.peerId)))
  return { pages, ids, close: async () => { await context.close() } }
}

/**
 * How `page` reaches `peer`: for each open connection, its kind, limits, direction and remote
 * address. Used to assert a link is direct WebRTC and not relayed.
 */
export async function linksTo (page: Page, peer: string): Promise<Array<{ addr: string, limited: boolean, direction: string }>> {
  return await page.evaluate((peer) => window.webswarm!.node.getConnections()
    .filter(c => c.remotePeer.toString() === peer && c.status === 'open')
    .map(c => ({ addr: c.remoteAddr.toString(), limited: c.limits !== undefined, direction: c.direction })), peer)
}

/** Waits until every tab has a direct (unlimited, /webrtc) connection to every other tab. */
export async function waitForFullDirectMesh (tabs: SwarmTabs, timeoutMs = 45_000): Promise<void> {
  for (const [i, page] of tabs.pages.entries()) {
    const others = tabs.ids.filter((_, j) => j !== i)
    await page.waitForFunction((others) => {
      const conns = window.webswarm!.node.getConnections()
      return others.every(o => conns.some(c => c.remotePeer.toString() === o && c.status === 'open' && c.limits === undefined && c.remoteAddr.toString().includes('/webrtc')))
    }, others, { timeout: timeoutMs, polling: 100 })
  }
}
