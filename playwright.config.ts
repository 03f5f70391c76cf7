import { defineConfig } from '@playwright/test'
import * as os from 'node:os'
import * as path from 'node:path'

/**
 * e2e: one relay (serving the built page from dist/) and tabs of one headless Chromium.
 * `npx playwright install` cannot download browsers here: we use Debian's /usr/bin/chromium.
 * The relay gets a fresh data dir per run and no STUN server (everything is on 127.0.0.1).
 */
const PORT = Number(process.env.E2E_RELAY_PORT ?? 18480)
const DATA_DIR = path.join(os.tmpdir(), `webswarm-e2e-${process.pid}`)

export default defineConfig({
  testDir: 'e2e',
  // Tabs also run the GPU self-test on SwiftShader, which competes for 2 cores with WebRTC setup.
  timeout: 90_000,
  expect: { timeout: 20_000 },
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--enable-unsafe-webgpu',
        // Plain host candidates instead of mDNS names, which nothing resolves in a container.
        '--disable-features=WebRtcHideLocalIpsWithMdns',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run'
      ]
    }
  },
  webServer: {
    // No API client or embedded peer: the inference test routes through the tabs it serves from
    // and closes, and the mesh tests count the tabs' peers.
    command: `tsx relay/main.ts --host 127.0.0.1 --port ${PORT} --data-dir ${DATA_DIR} --ice-server none --no-api`,
    url: `http://127.0.0.1:${PORT}/health`,
    // Tabs also run the GPU self-test on SwiftShader, which competes for 2 cores with WebRTC setup.
  timeout: 90_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe'
  }
})
