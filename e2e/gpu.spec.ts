import { expect, test } from '@playwright/test'

/**
 * The page's GPU panel in headless Chromium (WebGPU on SwiftShader): every kernel family's WGSL
 * runs in the browser against its CPU twin, then the matmul micro-benchmark. Without WebGPU the
 * page says why and the rest of it keeps working.
 */
test('the page finds the adapter, passes the kernel self-test and measures matmul GFLOP/s', async ({ page }) => {
  await page.goto('/')
  await page.waitForFunction(() => document.body.dataset.bench === 'done' || document.body.dataset.gpu === 'missing', null, { timeout: 80_000 })
  expect(await page.evaluate(() => document.body.dataset.gpu)).toBe('ready')
  await expect(page.locator('#gpu-info')).toContainText('adapter')
  const rows = page.locator('#selftest tr[data-ok]')
  expect(await rows.count()).toBeGreaterThanOrEqual(10)
  expect(await page.locator('#selftest tr[data-ok="false"]').count(), await rows.allTextContents().then(t => t.join('\n'))).toBe(0)
  expect(await page.evaluate(() => document.body.dataset.selftest)).toBe('pass')
  const gflops = Number(await page.locator('#gpu-bench').getAttribute('data-gflops'))
  expect(gflops).toBeGreaterThan(0)
  await page.screenshot({ path: 'e2e/artifacts/gpu-panel.png', fullPage: true })
})

test('without WebGPU the page says so and still joins the swarm', async ({ page }) => {
  await page.addInitScript(() => { Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }) })
  await page.goto('/')
  await expect(page.locator('#gpu-error')).toContainText('WebGPU is not available in this browser')
  expect(await page.evaluate(() => document.body.dataset.gpu)).toBe('missing')
  await page.waitForFunction(() => document.body.dataset.net === 'ready', null, { timeout: 60_000 })
})
