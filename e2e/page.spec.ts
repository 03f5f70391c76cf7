import { cpSync, mkdirSync, rmSync } from 'node:fs'
import AxeBuilder from '@axe-core/playwright'
import { expect, test, type Browser, type Page } from '@playwright/test'
import { openSwarmTabs, type SwarmTabs } from './helpers/swarm.ts'

/**
 * The page as a product, in headless Chromium against the e2e relay (which serves byte-llama as
 * models/default): two tabs press Contribute and pick their blocks themselves, a third chats —
 * the reply streams, Stop ends it — and the swarm map shows the coverage; a closed contributor
 * leaves the map once its entry expires (a 15 s lifetime via ?entry-ttl=). Also the no-WebGPU
 * state with its CPU offer, `?relay=` (unreachable with Retry, and another origin), narrow
 * widths, and an axe accessibility check. Tabs compute on the CPU twins (`?device=cpu`): three
 * SwiftShader tabs would not fit 2 cores. Screenshots of each stage go to e2e/artifacts/.
 */
const ART = 'e2e/artifacts'
/**
 * Entry lifetime, s. Short so the expiry test is quick, but not so short that a tab busy loading
 * its blocks misses a refresh: at 6 s (fresh-clone CI, loaded) the second contributor's choice found
 * the first's entry expired a moment after its map showed it, and took the same span.
 */
const TTL_S = 15
const PORT = Number(process.env.E2E_RELAY_PORT ?? 18480)

async function seriousViolations (page: Page): Promise<string[]> {
  const r = await new AxeBuilder({ page }).analyze()
  return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => `${v.id} (${v.impact ?? '?'}): ${v.help} — ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')}`)
}

test.describe.serial('the page: contribute, chat, swarm map', () => {
  let tabs: SwarmTabs
  test.setTimeout(240_000)

  /** 404 answers to the tabs and their compute workers: a probe for a file the model lacks. */
  const missing: string[] = []

  test.beforeAll(async ({ browser }) => {
    mkdirSync(ART, { recursive: true })
    tabs = await openSwarmTabs(browser, 3, `?device=cpu&entry-ttl=${TTL_S}`)
    tabs.pages[0].context().on('response', r => { if (r.status() === 404) missing.push(`${r.request().method()} ${r.url()}`) })
  })
  test.afterAll(async () => { await tabs?.close() })

  test('two tabs press Contribute and pick spans that cover the model; the map shows it', async () => {
    const [a, b, chat] = tabs.pages
    await a.click('#contribute-button')
    await expect(a.locator('#serve-status')).toContainText(/serving blocks? \d/, { timeout: 60_000 })
    await expect(a.locator('#contribute-facts [data-key="model"]')).toHaveText('default')
    // The second contributor sees the first's blocks and takes the least-served ones.
    // The default model's cells: in CI the relay still lists models earlier specs' tabs serve,
    // whose cells with one server made this wait pass before b had heard of a (session 12).
    await expect(b.locator(`#map-models .model[data-model="default"] .cell[data-servers="1"]`).first()).toBeVisible({ timeout: 30_000 })
    await b.click('#contribute-button')
    await expect(b.locator('#serve-status')).toContainText(/serving blocks? \d/, { timeout: 60_000 })
    const spans = await Promise.all([a, b].map(async p => await p.evaluate(() => window.webswarmChat!.state().serving)))
    const covered = new Set<number>()
    for (const s of spans) for (let i = s!.start; i < s!.end; i++) covered.add(i)
    expect([...covered].sort(), JSON.stringify(spans)).toEqual([0, 1, 2])
    // Every block of byte-llama (3) is served: no red cell in the chat tab's map.
    await expect(chat.locator('#map-models .model[data-model="default"] .cell')).toHaveCount(3)
    await expect(chat.locator('#map-models .model[data-model="default"] .cell.gap')).toHaveCount(0, { timeout: 30_000 })
    await expect(chat.locator(`#net-peers tr[data-peer="${tabs.ids[0]}"]`)).toContainText(/serves default blocks? \d/)
    await expect(a.locator('#contribute-facts [data-key="uptime"]')).not.toHaveText('—')
    // On the CPU twins the panel speaks of the CPU and memory; no step yet, so no throughput to show.
    await expect(a.locator('#contribute-intro')).toContainText('Lend this tab\'s CPU')
    await expect(a.locator('#contribute-facts [data-key="memory"]')).toContainText('planned')
    await expect(a.locator('#contribute-facts [data-key="throughput"]')).toHaveText('not measured yet')
    // Map wording: a proper plural; no step ran yet, so no cell or peer shows a throughput number
    // (the servers' starting guess once read as "1.0 tok/s").
    await expect(chat.locator('#map-summary')).toHaveText(/ \d+ direct links?$/)
    await expect(chat.locator('#map-models .model[data-model="default"] .cell small')).toHaveText(['not measured', 'not measured', 'not measured'])
    await expect(chat.locator(`#net-peers tr[data-peer="${tabs.ids[0]}"]`)).toContainText('throughput not measured yet')
    // Loading blocks in the compute workers asked for no file the model lacks (its safetensors index).
    expect(missing).toEqual([])
    await a.screenshot({ path: `${ART}/page-1-contributing.png`, fullPage: true })
    await chat.screenshot({ path: `${ART}/page-2-map.png`, fullPage: true })
  })

  test('a third tab chats: the reply streams into the conversation, the route is drawn, Stop ends it', async () => {
    const chat = tabs.pages[2]
    await chat.locator('#chat-settings summary').click()
    await chat.fill('#chat-max', '400')
    await chat.fill('#chat-input', 'The swarm')
    await chat.click('#chat-send')
    await expect(chat.locator('#chat-mode')).toContainText('no chat template')
    const reply = chat.locator('#chat-conversation .msg.assistant').last()
    await expect(reply).toHaveAttribute('data-state', 'streaming', { timeout: 60_000 })
    // Streaming: text arrives while the reply is still being generated.
    await expect.poll(async () => (await reply.locator('.text').textContent())?.length ?? 0, { timeout: 90_000 }).toBeGreaterThan(3)
    expect(await chat.evaluate(() => document.body.dataset.chat)).toBe('running')
    await expect(chat.locator('#chat-route .hop')).not.toHaveCount(0)
    await expect(chat.locator('#chat-stats')).toContainText('tokens')
    await chat.screenshot({ path: `${ART}/page-3-streaming.png`, fullPage: true })
    await chat.click('#chat-stop')
    await expect(reply).toHaveAttribute('data-state', 'stopped', { timeout: 30_000 })
    expect(await chat.evaluate(() => document.body.dataset.chat)).toBe('stopped')
    const n = await chat.evaluate(() => window.webswarmChat!.state().tokens)
    expect(n).toBeGreaterThan(0)
    expect(n).toBeLessThan(400)
    await expect(chat.locator('#chat-send')).toBeEnabled()
    // The finished download bar of the embedding and head is gone from above the chat.
    await expect(chat.locator('#model-progress')).toBeHidden()
    // Stopping is not an error: no error notice.
    await expect(chat.locator('#notices .notice.error')).toHaveCount(0)
    // The servers measured their steps: the map shows their throughput, with its unit (a server
    // rewrites its entry at most every 10 s; checked after Stop, so the reply cannot end meanwhile).
    await expect(chat.locator('#map-models .model[data-model="default"] .cell small').first()).toContainText('tok/s', { timeout: 30_000 })
    await chat.screenshot({ path: `${ART}/page-4-stopped.png`, fullPage: true })
  })

  test('a contributor in a background tab warns and says so in the swarm map', async () => {
    const [, b, chat] = tabs.pages
    // Headless tabs stay visible: make the browser's hidden state happen as it does for a real background tab.
    await b.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' })
      document.dispatchEvent(new Event('visibilitychange'))
    })
    await expect(b.locator('#background-warning')).toBeVisible()
    await expect(chat.locator(`#net-peers tr[data-peer="${tabs.ids[1]}"] .badge`)).toHaveText('background', { timeout: 20_000 })
    await b.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' })
      document.dispatchEvent(new Event('visibilitychange'))
    })
    await expect(b.locator('#background-warning')).toBeHidden()
    await expect(chat.locator(`#net-peers tr[data-peer="${tabs.ids[1]}"] .badge`)).toHaveCount(0, { timeout: 20_000 })
  })

  test('no serious accessibility violations (axe), and the page fits a phone width', async () => {
    const chat = tabs.pages[2]
    expect(await seriousViolations(chat)).toEqual([])
    await chat.setViewportSize({ width: 380, height: 800 })
    const overflow = await chat.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    expect(overflow).toBeLessThanOrEqual(1)
    await chat.screenshot({ path: `${ART}/page-5-narrow.png`, fullPage: true })
    await chat.setViewportSize({ width: 1280, height: 900 })
  })

  test('a closed contributor leaves the map once its entry expires; its blocks show as a gap', async () => {
    const [a, , chat] = tabs.pages
    const gone = tabs.ids[0]
    const span = await a.evaluate(() => window.webswarmChat!.state().serving!)
    await expect(chat.locator(`#net-peers tr[data-peer="${gone}"]`)).toHaveCount(1)
    await a.close()
    // Its entry lives TTL_S after its last refresh (every TTL_S / 2); the map re-renders each second.
    await expect(chat.locator(`#net-peers tr[data-peer="${gone}"]`)).toHaveCount(0, { timeout: (TTL_S + 10) * 1000 })
    await expect(chat.locator(`#net-state tr[data-peer="${gone}"]`)).toHaveCount(0)
    // Blocks only it served are now red (the other contributor may share some of them).
    const others = await tabs.pages[1].evaluate(() => window.webswarmChat!.state().serving!)
    const orphaned = Array.from({ length: span.end - span.start }, (_, i) => span.start + i).filter(b => b < others.start || b >= others.end)
    for (const blk of orphaned) await expect(chat.locator(`#map-models .model[data-model="default"] .cell[data-block="${blk}"]`)).toHaveClass(/gap/)
    await chat.screenshot({ path: `${ART}/page-6-after-expiry.png`, fullPage: true })
  })
})

/**
 * What a tab logs as errors while it loads `query`, through reading the model and its tokenizer:
 * each 404 answer (the browser logs "Failed to load resource" for it) and each console error.
 */
async function loadErrors (browser: Browser, query: string): Promise<string[]> {
  const context = await browser.newContext()
  try {
    const page = await context.newPage()
    const errors: string[] = []
    page.on('response', r => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`) })
    page.on('console', m => { if (m.type() === 'error') errors.push(`console: ${m.text()}`) })
    await page.goto(`/${query}`)
    await expect(page.locator('body')).toHaveAttribute('data-net', 'ready', { timeout: 60_000 })
    // The chat's mode line is drawn once the tokenizer is read (the model's optional files probed).
    await expect(page.locator('#chat-mode')).toHaveAttribute('data-template', /true|false/, { timeout: 60_000 })
    expect(await page.evaluate(() => window.webswarmPage!.modelStatus.state)).toBe('ready')
    return errors
  } finally {
    await context.close()
  }
}

test('loading the page asks for no file the model lacks: no 404 answer, no console error (default model and a relay folder)', async ({ browser }) => {
  expect(await loadErrors(browser, '?device=cpu')).toEqual([])
  // tiny-mixtral has neither tokenizer.json nor model.safetensors.index.json; the relay serves it from models/.
  const name = `e2e-tiny-mixtral-${process.pid}`
  mkdirSync(`models/${name}`)
  try {
    for (const f of ['config.json', 'model.safetensors']) cpSync(`test/fixtures/tiny-mixtral/${f}`, `models/${name}/${f}`)
    expect(await loadErrors(browser, `?device=cpu&model=./models/${name}`)).toEqual([])
  } finally {
    rmSync(`models/${name}`, { recursive: true, force: true })
  }
})

test('without WebGPU: the chat takes the CPU by itself and says so; Contribute offers the CPU explicitly; the page still joins the swarm', async ({ page }) => {
  await page.addInitScript(() => { Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }) })
  await page.goto('/')
  await expect(page.locator('#gpu-error')).toContainText('WebGPU is not available')
  await expect(page.locator('#status-device')).toContainText('none')
  // The chat needs only the small embedding and head: on the CPU, with a calm note, before any message.
  await expect(page.locator('#chat-device')).toContainText('the chat computes its embedding and head on the CPU')
  expect(await page.evaluate(async () => (await window.webswarmPage!.chatBackend()).kind)).toBe('cpu')
  await expect(page.locator('#notices .notice.error')).toHaveCount(0)
  // The page in this state is accessible too (#chat-route once carried a prohibited aria-label).
  expect(await seriousViolations(page)).toEqual([])
  // Contributing before choosing says what to do instead of failing obscurely.
  await page.waitForFunction(() => document.body.dataset.net === 'ready', null, { timeout: 60_000 })
  await page.click('#contribute-button')
  await expect(page.locator('#notices .notice.error')).toContainText('no WebGPU')
  await page.screenshot({ path: `${ART}/page-7-no-webgpu.png`, fullPage: true })
  await page.click('#use-cpu')
  await expect(page.locator('#status-device')).toContainText('CPU')
  expect(await page.evaluate(async () => (await window.webswarmPage!.backend()).kind)).toBe('cpu')
})

test('?relay= an unreachable relay: one notice naming it, with Retry, and Send disabled saying why; ?relay= another origin: joins through it', async ({ page }) => {
  await page.goto('/?relay=http://127.0.0.1:9/&device=cpu')
  const notice = page.locator('#notices #relay-notice')
  await expect(notice).toContainText('The relay at http://127.0.0.1:9/ could not be reached')
  await expect(page.locator('#net-error')).toContainText('relay is unreachable')
  await expect(page.locator('#status-swarm')).toContainText('unreachable')
  // The unreadable model (it comes from that relay) is the same cause: one notice, not two.
  await expect(page.locator('#notices .notice.error')).toHaveCount(1)
  // Nothing can work: Send is disabled and says why, instead of failing after a message.
  await expect(page.locator('#chat-send')).toBeDisabled()
  await expect(page.locator('#chat-send')).toHaveAccessibleDescription(/Send waits for the relay at http:\/\/127\.0\.0\.1:9\/, which could not be reached/)
  await expect(page.locator('#chat-blocked')).toBeVisible()
  await page.screenshot({ path: `${ART}/page-8-relay-unreachable.png`, fullPage: true })
  await notice.locator('#relay-retry').click()
  // The retry ran (a second join failed) and the notice is back with its Retry.
  await expect.poll(async () => await page.evaluate(() => window.webswarmPage!.logLines.filter(l => l.includes('join failed')).length)).toBe(2)
  await expect(notice).toContainText('could not be reached')
  await expect(notice.locator('#relay-retry')).toBeEnabled()
  await expect(page.locator('#chat-send')).toBeDisabled()
  // The same static page joining a relay on another origin (the relay sends CORS headers).
  await page.goto(`/?relay=http://localhost:${PORT}/&device=cpu`)
  await page.waitForFunction(() => document.body.dataset.net === 'ready', null, { timeout: 60_000 })
  await expect(page.locator('#net-info [data-key="relay"]')).toContainText(`localhost:${PORT}`)
  // Models come from the relay too.
  expect(await page.evaluate(() => window.webswarmPage!.params.modelUrl)).toBe(`http://localhost:${PORT}/models/default`)
})

test('a GPU-memory budget too small for any block: the notice says so and what one block needs', async ({ page }) => {
  await page.goto('/?device=cpu&max-gpu-memory=1MB')
  await page.waitForFunction(() => document.body.dataset.net === 'ready', null, { timeout: 60_000 })
  await expect(page.locator('#contribute-budget')).toHaveValue(/1(\.00)?MB/)
  await page.click('#contribute-button')
  const notice = page.locator('#notices .notice.error')
  // ?device=cpu: the budget is of memory, not of a GPU's.
  await expect(notice).toContainText('Not enough memory for any span')
  await expect(notice).toContainText('to serve one block')
  await expect(page.locator('#contribute-button')).toBeEnabled()
  await page.screenshot({ path: `${ART}/page-9-budget-too-small.png`, fullPage: true })
})

test('WebGPU in the compute worker: a tab serves every block from its worker on the GPU; another tab chats through it', async ({ browser }) => {
  test.setTimeout(180_000)
  const context = await browser.newContext()
  try {
    const gpuTab = await context.newPage()
    await gpuTab.goto('/?serve=0:3')
    const chat = await context.newPage()
    await chat.goto('/?device=cpu')
    await expect(gpuTab.locator('#serve-status')).toContainText('serving blocks 0–2 of default', { timeout: 120_000 })
    const device = gpuTab.locator('#contribute-facts [data-key="device"]')
    await expect(device).toContainText('GPU')
    await expect(device).toContainText('in a Web Worker')
    // The adapter row predicts no speed: the benchmark measures it.
    await expect(gpuTab.locator('#gpu-info')).not.toContainText('expect')
    await chat.waitForFunction(() => document.body.dataset.net === 'ready', null, { timeout: 60_000 })
    const tokens = await chat.evaluate(async () => await window.webswarmChat!.generate('The ', 6))
    expect(tokens.length).toBeGreaterThan(0)
    const gpuPeer = await gpuTab.evaluate(() => window.webswarm!.peerId)
    expect((await chat.evaluate(() => window.webswarmChat!.state().route)).map(h => h.peer)).toEqual([gpuPeer])
    await expect.poll(async () => Number(await gpuTab.locator('#contribute-facts [data-key="tokens served"]').textContent()), { timeout: 10_000 }).toBeGreaterThan(0)
    await gpuTab.screenshot({ path: `${ART}/page-10-gpu-worker.png`, fullPage: true })
  } finally {
    await context.close()
  }
})
