import { expect, type Page } from '@playwright/test'

/** A training run's tabs: their syncs, one founding, identical replicas (e2e/train*.spec.ts). */

/**
 * The tab's syncs in the founding it now trains in. Tabs that press Train at once may each found
 * the run; the losers adopt the kept founding (session.ts healFork), and their syncs from before
 * that are another θ_global's history, not the run's.
 */
export async function syncs (page: Page): Promise<Array<{ seq: number, hash: string, members: number }>> {
  return await page.evaluate(() => {
    const t = window.webswarmTrain
    return (t?.syncs ?? []).filter(s => s.founding === t?.session?.founding).map(s => ({ seq: s.seq, hash: s.hash, members: s.members.length }))
  })
}

export async function waitSyncs (page: Page, n: number, timeoutMs: number): Promise<void> {
  await page.waitForFunction((n) => {
    const t = window.webswarmTrain
    return (t?.syncs ?? []).filter(s => s.founding === t?.session?.founding).length >= n
  }, n, { timeout: timeoutMs, polling: 250 })
}

/** Waits until every tab trains in one founding of the run (concurrent foundings healed). */
export async function oneFounding (pages: Page[], timeoutMs: number): Promise<void> {
  await expect.poll(async () => new Set(await Promise.all(pages.map(async p => await p.evaluate(() => window.webswarmTrain?.session?.founding)))).size, { timeout: timeoutMs }).toBe(1)
}

export function expectIdentical (all: Array<Array<{ seq: number, hash: string }>>): void {
  const by = new Map<number, string>()
  for (const list of all) for (const s of list) {
    const h = by.get(s.seq)
    if (h === undefined) by.set(s.seq, s.hash)
    else expect(s.hash, `sync ${s.seq}`).toBe(h)
  }
}
