import type { GpuBackend } from '../gpu-backend.ts'
import { Rng } from '../../util/rng.ts'
import { matmul, matmulNaive, type MatmulConfig } from './matmul.ts'

/**
 * A square-matmul micro-benchmark that runs in the browser (the join page) and in Node
 * (bench/kernels.ts). No bench/ or node: imports here.
 *
 *   const { gflops } = await benchMatmul(gpu, 512, 3)
 */

/** FLOPs of an (M, K)·(K, N) product: one multiply and one add per term. */
export function matmulFlops (M: number, N: number, K: number): number {
  return 2 * M * N * K
}

export interface BenchMatmulOptions {
  /** 'ours' = `matmul` with the builder's choice (or `config`); 'naive' = shaders/matmul_naive.wgsl. @default 'ours' */
  kernel?: 'ours' | 'naive'
  /** Forces a configuration of `matmul` (variant sweeps). */
  config?: MatmulConfig
  /** Seed of the random inputs. @default 1 */
  seed?: number
}

export interface BenchMatmulResult {
  /** 2n³ / mean seconds per product. */
  gflops: number
  /** Mean milliseconds per product. */
  ms: number
}

/**
 * Times `reps` (n × n)·(n × n) products after one warm-up (pipeline compile, buffer pool);
 * the clock stops when the device has finished all of them.
 */
export async function benchMatmul (gpu: GpuBackend, n: number, reps: number, opts: BenchMatmulOptions = {}): Promise<BenchMatmulResult> {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(reps) || reps < 1) throw new RangeError(`benchMatmul: n and reps must be positive integers, got n=${n}, reps=${reps}`)
  const rng = new Rng(opts.seed ?? 1)
  const a = gpu.tensor(rng.uniform(n * n), [n, n])
  const b = gpu.tensor(rng.uniform(n * n), [n, n])
  const run = (): void => {
    const c = opts.kernel === 'naive' ? matmulNaive(a, b) : matmul(a, b, { config: opts.config })
    c.dispose()
  }
  try {
    run()
    await gpu.sync()
    const t0 = performance.now()
    for (let i = 0; i < reps; i++) run()
    await gpu.sync()
    const ms = (performance.now() - t0) / reps
    return { gflops: matmulFlops(n, n, n) / (ms * 1e6), ms }
  } finally {
    a.dispose()
    b.dispose()
  }
}
