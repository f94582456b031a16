// Browser test harness: finds and launches the system Chromium through playwright-core
// (never a downloaded browser), and serves a test page plus the built bundle from a tiny
// static server on 127.0.0.1 port 0.

import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

export const BUNDLE_PATH = fileURLToPath(new URL('../../build/browser/turbomq.browser.js', import.meta.url));

/** Flags Chromium needs as root in a container, without network chatter of its own. */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** $CHROMIUM_PATH if set (only it), else the first Debian/Ubuntu Chromium found. */
export function findChromium(): string | undefined {
  const fromEnv = process.env.CHROMIUM_PATH;
  const candidates = fromEnv ? [fromEnv] : ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((p) => existsSync(p));
}

/** The launched browser, or why there is none (the suite then skips). */
export async function launchChromium(): Promise<{ browser: Browser } | { skip: string }> {
  const executablePath = findChromium();
  if (executablePath === undefined) return { skip: `no Chromium found at ${process.env.CHROMIUM_PATH || '/usr/bin/chromium or /usr/bin/chromium-browser'} (apt-get install chromium, or set CHROMIUM_PATH)` };
  try {
    return { browser: await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 20_000 }) };
  } catch (err) {
    return { skip: `Chromium at ${executablePath} cannot be launched: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** The test page: imports the bundle and exposes it as window.turbomq. */
const TEST_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>turbomq browser test</title>
<script type="module">
  import * as turbomq from '/turbomq.browser.js';
  window.turbomq = turbomq;
</script>`;

export interface StaticServer {
  url: string;
  close(): Promise<void>;
}

/** Serves / (the test page) and /turbomq.browser.js (the built bundle) on 127.0.0.1:0. */
export async function serveTestPage(): Promise<StaticServer> {
  const bundle = readFileSync(BUNDLE_PATH);
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(TEST_PAGE);
    } else if (path === '/turbomq.browser.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      res.end(bundle);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
