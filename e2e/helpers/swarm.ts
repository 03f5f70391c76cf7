/**
 * e2e helpers: open N tabs of the page (each its own peer) and wait, with bounded timeouts, for
 * them to join, connect directly to each other and share CRDT state. Reused by every net spec.
 */
import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test'

export interface SwarmTabs {
  pages: Page[]
  /** Peer id of each tab, same order as pages. */
  ids: string[]
  close: () => Promise<void>
  /** Each tab's recent console lines (all levels, newest last), printed when a wait times out. */
  logs: string[][]
}

/**
 * libp2p debug namespaces to turn on in every tab (weald reads localStorage.debug), e.g.
 * `E2E_LIBP2P_DEBUG='libp2p:webrtc*'`: their lines go to the failure report.
 */
const LIBP2P_DEBUG = process.env.E2E_LIBP2P_DEBUG
/** Console lines kept per tab for a failure report (more with libp2p's debug lines on). */
const KEPT_LOG_LINES = LIBP2P_DEBUG === undefined ? 400 : 20_000

/** Opens `n` tabs in one browser context and waits until each has joined the swarm. */
export async function openSwarmTabs (browser: Browser, n: number, query = ''): Promise<SwarmTabs> {
  const context = await browser.newContext()
  if (LIBP2P_DEBUG !== undefined) await context.addInitScript((ns) => { localStorage.setItem('debug', ns) }, LIBP2P_DEBUG)
  const tabs: SwarmTabs = { pages: [], ids: [], logs: [], close: async () => { await context.close() } }
  const t0 = Date.now()
  for (let i = 0; i < n; i++) await openTab(tabs, context, query, t0)
  for (const page of tabs.pages) await expect(page.locator('body')).toHaveAttribute('data-net', 'ready')
  tabs.ids.push(...await Promise.all(tabs.pages.map(async p => await p.evaluate(() => window.webswarm!.peerId))))
  return tabs
}

/** Opens one more tab of `tabs` (its own query, e.g. another device), waits until it has joined, and keeps its console. */
export async function addSwarmTab (tabs: SwarmTabs, query: string): Promise<Page> {
  const page = await openTab(tabs, tabs.pages[0].context(), query, Date.now())
  await expect(page.locator('body')).toHaveAttribute('data-net', 'ready')
  tabs.ids.push(await page.evaluate(() => window.webswarm!.peerId))
  return page
}

async function openTab (tabs: SwarmTabs, context: BrowserContext, query: string, t0: number): Promise<Page> {
  const i = tabs.pages.length
  const page = await context.newPage()
  const kept: string[] = []
  tabs.logs.push(kept)
  page.on('console', msg => {
    if (msg.type() === 'error' && LIBP2P_DEBUG === undefined) console.log(`[tab ${i}] ${msg.text()}`)
    kept.push(`+${((Date.now() - t0) / 1000).toFixed(1)}s ${msg.type()}: ${msg.text()}`)
    if (kept.length > KEPT_LOG_LINES) kept.shift()
  })
  await page.goto(`/${query}`)
  tabs.pages.push(page)
  return page
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
    try {
      await page.waitForFunction((others) => {
        const conns = window.webswarm!.node.getConnections()
        return others.every(o => conns.some(c => c.remotePeer.toString() === o && c.status === 'open' && c.limits === undefined && c.remoteAddr.toString().includes('/webrtc')))
      }, others, { timeout: timeoutMs, polling: 100 })
    } catch (e) {
      await reportMesh(tabs, `tab ${i} lacks a direct link`)
      throw e
    }
  }
}

/** Prints every tab's links, known peers and recent console: what a mesh that did not form needs to be diagnosed. */
export async function reportMesh (tabs: SwarmTabs, why: string): Promise<void> {
  console.log(`--- mesh report (${why}); tabs: ${tabs.ids.join(', ')}`)
  for (const [i, page] of tabs.pages.entries()) {
    const state = await page.evaluate(() => {
      const ws = window.webswarm!
      return {
        known: ws.swarm.peers.knownPeers(),
        direct: ws.swarm.peers.directPeers(),
        conns: ws.node.getConnections().map(c => `${c.remotePeer.toString()} ${c.direction} ${c.status}${c.limits === undefined ? '' : ' limited'} ${c.remoteAddr.toString()}`)
      }
    }).catch((e: Error) => ({ error: e.message }))
    console.log(`[tab ${i}] ${tabs.ids[i]} state: ${JSON.stringify(state, null, 1)}`)
    for (const line of tabs.logs[i]) console.log(`[tab ${i}] ${line}`)
  }
}

/**
 * Waits until `page`'s swarm map shows every one of `model`'s `numBlocks` blocks served: a
 * server's announcement reaches other tabs through the CRDT a moment after its serve() resolves,
 * and a client that plans before then finds no route (NoRouteError).
 */
export async function waitForCoverage (page: Page, model: string, numBlocks: number, timeoutMs = 30_000): Promise<void> {
  const cells = page.locator(`#map-models .coverage-bar[data-model="${model}"] .cell`)
  await expect(cells).toHaveCount(numBlocks, { timeout: timeoutMs })
  await expect(page.locator(`#map-models .coverage-bar[data-model="${model}"] .cell[data-servers="0"]`)).toHaveCount(0, { timeout: timeoutMs })
}
