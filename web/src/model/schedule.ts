export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number
  /** Linear warm-up steps from 0 to lr. @default 0 */
  warmupSteps?: number
  /** Steps of the whole run (cosine reaches minLr at the end). */
  totalSteps: number
  /** Floor of the cosine decay. @default lr / 10 */
  minLr?: number
}

/** Learning rate at step s (1-based): linear warm-up, then cosine decay to minLr. */
export function learningRate (o: ScheduleOptions, s: number): number {
  const warm = o.warmupSteps ?? 0
  const minLr = o.minLr ?? o.lr / 10
  if (s <= warm) return o.lr * s / Math.max(warm, 1)
  const decay = Math.max(o.totalSteps - warm, 1)
  const p = Math.min((s - warm) / decay, 1)
  return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * p))
}
