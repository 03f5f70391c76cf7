/**
 * The inner-step loop's yield to the event loop must not sleep: a 0 ms timer is 1 ms in Node and
 * 4 ms in a browser's nested timers, and a process that sleeps waits for a core again on a loaded
 * machine (BENCHMARKS.md § Training, compute utilization). A step still lets I/O run.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { cpu } from '../../../web/src/gpu/cpu-backend.ts'
import { parseConfig } from '../../../web/src/model/config.ts'
import { TextDataset } from '../../../web/src/model/data.ts'
import { initModel } from '../../../web/src/model/model.ts'
import { MemoryNetwork } from '../../../web/src/swarm/transport/index.ts'
import { AllReducePeer } from '../../../web/src/swarm/train/allreduce.ts'
import { DiLoCoWorker } from '../../../web/src/swarm/train/worker.ts'
import { ManualClock } from '../../../web/src/util/clock.ts'

const CONFIG = parseConfig({ architectures: ['LlamaForCausalLM'], vocab_size: 256, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 })

afterEach(() => { vi.restoreAllMocks() })

describe('DiLoCoWorker inner steps', () => {
  it('yield to the event loop between steps without a timer, and I/O callbacks still run', async () => {
    const text = 'the quick brown fox jumps over the lazy dog. '.repeat(200)
    const ar = new AllReducePeer(new MemoryNetwork({ seed: 1 }).endpoint('a'), { run: 'r', directory: { expected: () => ['a'] }, clock: new ManualClock() })
    const w = new DiLoCoWorker(initModel(CONFIG, cpu, 1), new TextDataset(new TextEncoder().encode(text)), ar, { innerSteps: 100, seqLen: 16, innerLr: 1e-3, dataSeed: 1 })
    await w.initFromModel()
    const timers = vi.spyOn(globalThis, 'setTimeout')
    let ioRan = 0
    const io = setInterval(() => { ioRan++ }, 0)
    try {
      for (let i = 0; i < 3; i++) await w.tick()
      expect(w.step).toBe(3)
      expect(timers).not.toHaveBeenCalled()
      // Each yield is a full turn of the loop: a due timer (as an incoming message would) runs
      // before the steps are done. setInterval's first 1 ms may not have passed after 3 tiny
      // steps, so give it more turns through the same path.
      for (let i = 0; i < 200 && ioRan === 0; i++) await w.tick()
      expect(ioRan).toBeGreaterThan(0)
    } finally {
      clearInterval(io)
      ar.stop()
      w.dispose()
    }
  })
})
