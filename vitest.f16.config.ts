import { defineConfig } from 'vitest/config'

/**
 * The shader-f16 variants' tests (`*.f16.test.ts`), in their own `vitest run`: Dawn takes its
 * Vulkan driver list once per process, and SwiftShader (the default in web/src/gpu/device.ts)
 * has no shader-f16, so these run on Mesa ≥ 25's lavapipe (Debian bookworm-backports
 * mesa-vulkan-drivers), chosen by VK_ICD_FILENAMES, which device.ts respects.
 */
export const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json'

export default defineConfig({
  test: {
    include: ['test/**/*.f16.test.ts'],
    environment: 'node',
    pool: 'forks',
    env: { VK_ICD_FILENAMES: LAVAPIPE_ICD, XDG_RUNTIME_DIR: '/tmp' },
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
