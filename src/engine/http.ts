// The monitoring endpoint (`--http URL`, engine option `http`), served by the engine's main
// thread with node:http. Read-only and small on purpose; like NATS's monitoring port it has
// no authentication, so it binds where it is told (127.0.0.1 in the examples):
//   GET /healthz   200 while the process serves (it answers at all)
//   GET /readyz    200 once every worker listens and recovery is done; 503 before, and
//                  while stopping or replacing a worker (the body says what it waits for)
//   GET /metrics   Prometheus text format (src/engine/prometheus.ts)
//   GET /stats     the broker's statistics as JSON (src/engine/stats.ts EngineStats)
// HEAD works for each; other methods get 405, other paths 404.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './options.ts';

export interface HttpSpec {
  host: string;
  port: number;
}

export interface MonitoringRoutes {
  readiness(): { ready: boolean; waitingFor: string[] };
  metrics(): Promise<{ contentType: string; body: string }>;
  stats(): Promise<unknown>;
}

export interface MonitoringServer {
  /** http://host:port with the real port. */
  readonly url: string;
  close(): Promise<void>;
}

export function formatHttpUrl(spec: HttpSpec): string {
  return `http://${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
}

/** Listens on spec (port 0 picks a free one); rejects with EADDRINUSE and the like. */
export function listenHttp(spec: HttpSpec, routes: MonitoringRoutes, logger: Logger): Promise<MonitoringServer> {
  const server = http.createServer((req, res) => {
    void handle(req, res, routes).catch((err: Error) => {
      logger.error({ err, path: req.url }, 'monitoring request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${err.message}\n`);
      else res.destroy();
    });
  });
  // Monitoring requests are tiny: bound how long a slow or silent client may hold a socket.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: spec.host, port: spec.port, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', (err) => logger.error({ err }, 'monitoring server error'));
      const port = (server.address() as AddressInfo).port;
      resolve({
        url: formatHttpUrl({ host: spec.host, port }),
        close: () => new Promise((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      });
    });
  });
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, routes: MonitoringRoutes): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const known = path === '/healthz' || path === '/readyz' || path === '/metrics' || path === '/stats';
  if (!known) return send(res, 404, 'text/plain; charset=utf-8', 'not found: try /healthz, /readyz, /metrics or /stats\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  switch (path) {
    case '/healthz':
      return send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
    case '/readyz': {
      const { ready, waitingFor } = routes.readiness();
      return ready
        ? send(res, 200, 'text/plain; charset=utf-8', 'ready\n')
        : send(res, 503, 'text/plain; charset=utf-8', `not ready: ${waitingFor.join(', ')}\n`);
    }
    case '/metrics': {
      const { contentType, body } = await routes.metrics();
      return send(res, 200, contentType, body);
    }
    default:
      return send(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(await routes.stats())}\n`);
  }
}
