import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    // Software WebGPU (SwiftShader) and libp2p start-up are slow on 2 cores.
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
