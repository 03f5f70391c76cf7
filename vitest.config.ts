import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // shader-f16 tests need another Vulkan driver, hence another process: vitest.f16.config.ts
    exclude: ['test/**/*.f16.test.ts', '**/node_modules/**'],
    environment: 'node',
    pool: 'forks',
    // Software WebGPU (SwiftShader) and libp2p start-up are slow on 2 cores.
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
