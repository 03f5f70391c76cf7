import { defineConfig } from 'vite'

/**
 * The page lives in web/ and is built to dist/, which the relay serves (`npm start`).
 * Shaders are imported from ../shaders at build time (never fetched from the network).
 */
export default defineConfig({
  root: 'web',
  base: './',
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096
  },
  // The compute worker (web/src/ui/compute) imports lazily (GPU vs CPU backend): ES-module workers
  // allow that; the default iife format cannot split code.
  worker: { format: 'es' },
  server: {
    fs: { allow: ['..'] }
  }
})
