import { mkdirSync } from 'node:fs'
import { expect, test } from '@playwright/test'

/**
 * Contribute picks its role from the swarm state (web/src/ui/role-choice.ts): with both models
 * the relay lists already served whole — byte-llama (the page's `default`) by one tab,
 * byte-mixtral by another — a third tab pressing Contribute hosts the experts byte-mixtral lacks
 * instead of duplicating blocks, says so, and every tab's map draws it. Tabs compute on the CPU
 * twins (`?device=cpu`). A second test: a training run of one member is joined. Screenshots of
 * the chosen roles go to e2e/artifacts/.
 *
 * Each test's tabs join a swarm of their own (`?swarm=`) with 6 s entries: the roles of tabs
 * closed by another test (or another repeat) must not enter this test's choice, nor theirs.
 */
const ART = 'e2e/artifacts'
const PORT = Number(process.env.E2E_RELAY_PORT ?? 18480)
let swarms = 0
/** The query every tab of one test shares: the CPU twins, short-lived entries, a swarm of the test's own. */
const own = (): string => `device=cpu&entry-ttl=6&swarm=roles-${process.pid}-${Date.now()}-${swarms++}`

test('a third contributor, with every block served, hosts the experts byte-mixtral lacks; the map shows them', async ({ browser }) => {
  test.setTimeout(240_000)
  mkdirSync(ART, { recursive: true })
  const context = await browser.newContext()
  const q = own()
  try {
    const llama = await context.newPage()
    await llama.goto(`/?${q}&serve=0:3`)
    const mixtral = await context.newPage()
    await mixtral.goto(`/?${q}&serve=0:3&model=http://127.0.0.1:${PORT}/models/byte-mixtral`)
    const third = await context.newPage()
    await third.goto(`/?${q}`)
    await expect(llama.locator('#serve-status')).toContainText('serving blocks 0–2 of default', { timeout: 90_000 })
    await expect(mixtral.locator('#serve-status')).toContainText('serving blocks 0–2 of byte-mixtral', { timeout: 90_000 })
    // The third tab sees both models served whole before it chooses.
    for (const m of ['default', 'byte-mixtral']) {
      await expect(third.locator(`#map-models .model[data-model="${m}"] .cell[data-servers="1"]`)).toHaveCount(3, { timeout: 30_000 })
    }
    await third.click('#contribute-button')
    const role = third.locator('#contribute-role')
    await expect(role).toHaveAttribute('data-kind', 'experts', { timeout: 60_000 })
    await expect(role).toContainText('experts 0,1,2,3 of byte-mixtral (layer 0): no host')
    await expect(third.locator('#serve-status')).toContainText('hosting byte-mixtral experts 0,1,2,3 (layer 0)', { timeout: 60_000 })
    // Every tab's map: layer 0 of byte-mixtral has one host per expert.
    const grid = llama.locator('#map-experts .expert-grid[data-model="byte-mixtral"]')
    await expect(grid.locator('tr', { hasText: 'layer 0' }).locator('td.one')).toHaveCount(4, { timeout: 30_000 })
    const thirdId = await third.evaluate(() => window.webswarm!.peerId)
    await expect(llama.locator(`#net-peers tr[data-peer="${thirdId}"]`)).toContainText('hosts byte-mixtral experts (4)')
    await third.screenshot({ path: `${ART}/page-11-role-experts.png`, fullPage: true })
    await llama.screenshot({ path: `${ART}/page-12-map-experts.png`, fullPage: true })
    // Stopping withdraws the role from the map.
    await third.click('#contribute-stop')
    await expect(third.locator('#contribute-role')).toBeHidden()
    await expect(llama.locator(`#net-peers tr[data-peer="${thirdId}"]`)).not.toContainText('hosts', { timeout: 30_000 })
  } finally {
    await context.close()
  }
})

test('with its model served whole and a training run of one member, Contribute joins the run through the Training panel', async ({ browser }) => {
  test.setTimeout(300_000)
  mkdirSync(ART, { recursive: true })
  const context = await browser.newContext()
  const q = own()
  try {
    const server = await context.newPage()
    await server.goto(`/?${q}&serve=0:3`)
    const trainer = await context.newPage()
    await trainer.goto(`/?${q}`)
    const third = await context.newPage()
    // A relay that lists only its default model (so no byte-mixtral blocks or experts to take).
    await third.route('**/models', async r => { await r.fulfill({ json: { default: 'byte-llama', models: [{ name: 'byte-llama', bytes: 1, format: 'safetensors' }] } }) })
    await third.goto(`/?${q}`)
    await expect(server.locator('#serve-status')).toContainText('serving blocks 0–2 of default', { timeout: 90_000 })
    await expect(third.locator('body')).toHaveAttribute('data-net', 'ready', { timeout: 60_000 })
    // The third tab sees the served model before training starts (a training tab competes for the CPU).
    await expect(third.locator('#map-models .model[data-model="default"] .cell[data-servers="1"]')).toHaveCount(3, { timeout: 90_000 })
    await expect(trainer.locator('body')).toHaveAttribute('data-net', 'ready', { timeout: 60_000 })
    await trainer.click('#train-start')
    await expect(trainer.locator('#train-panel .body')).toHaveAttribute('data-training', 'running', { timeout: 90_000 })
    await expect(third.locator('#map-runs .run[data-run="page"]')).toContainText('1 live member', { timeout: 60_000 })
    await third.click('#contribute-button')
    const role = third.locator('#contribute-role')
    await expect(role).toHaveAttribute('data-kind', 'train', { timeout: 60_000 })
    await expect(role).toContainText('join training run page: 1 live member, it wants 2')
    await expect(third.locator('#train-panel .body')).toHaveAttribute('data-training', 'running', { timeout: 120_000 })
    await expect(third.locator('#serve-status')).toContainText('training run page', { timeout: 30_000 })
    await expect(server.locator('#map-runs .run[data-run="page"]')).toContainText('2 live members', { timeout: 60_000 })
    await third.screenshot({ path: `${ART}/page-13-role-training.png`, fullPage: true })
    await third.click('#contribute-stop')
    await expect(third.locator('#train-status')).toHaveText('Stopped.', { timeout: 60_000 })
    await expect(third.locator('#contribute-role')).toBeHidden()
  } finally {
    await context.close()
  }
})
