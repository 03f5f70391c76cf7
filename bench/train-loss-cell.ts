/**
 * One run of bench:train's loss comparison (train-loss.ts `Cell`) in a process of its own, for
 * `--jobs N`: reads `{ o, c, device }` as JSON on stdin, writes the run's result as one JSON line.
 */
import { text } from 'node:stream/consumers'
import type { Backend } from '../web/src/gpu/backend.ts'
import { runCell, type Cell, type LossOptions } from './train-loss.ts'

async function backend (device: string): Promise<Backend> {
  if (device === 'cpu') return (await import('../web/src/gpu/cpu-backend.ts')).cpu
  const { GpuBackend } = await import('../web/src/gpu/gpu-backend.ts')
  return await GpuBackend.create()
}

const { o, c, device } = JSON.parse(await text(process.stdin)) as { o: LossOptions, c: Cell, device: string }
const r = await runCell(o, await backend(device), c)
process.stdout.write(JSON.stringify(r) + '\n')
process.exit(0) // a DiLoCo run's MemoryNetwork timers may outlive it
