// `npm run demo`: serves demo/index.html and the browser bundle on http://127.0.0.1:8080
// (a tiny static server, nothing else). The page connects to a broker that must listen on
// a ws:// url:  npm start -- --listen tcp://127.0.0.1:33444 --listen ws://127.0.0.1:33445
// Options: --port N (or PORT), --host H (or HOST; default 127.0.0.1).

import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' } } });
const port = Number(values.port ?? process.env.PORT ?? 8080);
const host = values.host ?? process.env.HOST ?? '127.0.0.1';

const files: Record<string, { path: string; type: string }> = {
  '/': { path: '../demo/index.html', type: 'text/html; charset=utf-8' },
  '/turbomq.browser.js': { path: '../build/browser/turbomq.browser.js', type: 'text/javascript; charset=utf-8' },
  '/turbomq.browser.js.map': { path: '../build/browser/turbomq.browser.js.map', type: 'application/json' },
};
const bundle = fileURLToPath(new URL(files['/turbomq.browser.js']!.path, import.meta.url));
if (!existsSync(bundle)) {
  console.error('demo: build/browser/turbomq.browser.js is missing: run `npm run build` first');
  process.exit(1);
}

const server = http.createServer((req, res) => {
  const file = files[new URL(req.url ?? '/', 'http://x').pathname];
  if (file === undefined || req.method !== 'GET') {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  // Read on every request, so a rebuilt bundle shows up on reload.
  res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' });
  res.end(readFileSync(new URL(file.path, import.meta.url)));
});

server.on('error', (err: NodeJS.ErrnoException) => {
  console.error(`demo: cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'address in use (try --port)' : err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  const { port: bound } = server.address() as AddressInfo;
  console.log(`turbomq demo: http://${host.includes(':') ? `[${host}]` : host}:${bound}/`);
  console.log('the broker must listen on ws, e.g.: npm start -- --listen tcp://127.0.0.1:33444 --listen ws://127.0.0.1:33445');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
