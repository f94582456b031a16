// Engine options: every setting with its default, merged in one place.

import os from 'node:os';
import { DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes } from '../protocol.ts';
import { TurboError } from '../errors.ts';

export const DEFAULT_URL = 'tcp://127.0.0.1:33444';

export interface EngineOptions {
  /** Worker threads, each listening on the same port. Default: one per core. */
  threads?: number;
  /** Largest message accepted, in bytes. Default 1 MiB. */
  maxMessageBytes?: number;
  /** Largest frame accepted (a pushMany batch), in bytes. Default max(maxMessageBytes + 1 KiB, 8 MiB). */
  maxFrameBytes?: number;
  /** Open connections per worker thread. Default 10,000. */
  maxConnectionsPerThread?: number;
  /** Subscriptions per connection. Default 1,024. */
  maxSubscriptions?: number;
  /** Parked pops per connection. Default 65,536. */
  maxParkedPops?: number;
  /** Extra listen urls (tcp:// or ws://), besides the constructor's url. */
  listen?: string[];
  /** WebSocket: Origin values browsers may connect from; `*` allows any. Default: loopback origins only (localhost, 127.0.0.1, [::1], any port). Clients that send no Origin (not browsers) are always accepted. */
  allowedOrigins?: string[];
  /** Initial shared memory, in MiB (it grows as needed). Default 4. */
  initialMemoryMiB?: number;
  /**
   * Most memory stored messages may take, in MiB (at most 4096: the shared memory is a
   * Wasm32 memory). When it is full, pushes fail with ERR_NO_MEMORY and store nothing,
   * connections stay usable, and pops make room again. Default 4096.
   */
  maxMemoryMiB?: number;
  /**
   * Monitoring endpoint, e.g. `http://127.0.0.1:8222` (port 0 picks a free one; see
   * engine.httpUrl): GET /healthz, /readyz, /metrics (Prometheus), /stats (JSON). Off by default.
   */
  http?: string;
  /**
   * Called when a client sends SHUTDOWN (`turbomq stop`); default: `engine.stop()`.
   * `turbomq serve` exits the process instead, as on SIGTERM.
   */
  onShutdownRequest?: () => void | Promise<void>;
  /** A pino-compatible logger; default: silent. */
  logger?: Logger;
}

export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
}

export interface ResolvedOptions {
  threads: number;
  maxMessageBytes: number;
  maxFrameBytes: number;
  maxConnectionsPerThread: number;
  maxSubscriptions: number;
  maxParkedPops: number;
  listen: ListenSpec[];
  allowedOrigins: string[] | undefined;
  initialMemoryMiB: number;
  maxMemoryMiB: number;
  /** The monitoring endpoint, if any. */
  http: { host: string; port: number } | undefined;
}

export interface ListenSpec {
  protocol: 'tcp' | 'ws';
  host: string;
  port: number;
}

export function parseListenUrl(url: string): ListenSpec {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TurboError('ERR_INVALID_ARGUMENT', `not a url: ${JSON.stringify(url)} (expected tcp://host:port or ws://host:port)`);
  }
  const protocol = parsed.protocol.replace(/:$/, '');
  if (protocol !== 'tcp' && protocol !== 'ws') throw new TurboError('ERR_INVALID_ARGUMENT', `unsupported protocol ${JSON.stringify(protocol)} in ${url} (tcp or ws)`);
  const port = parsed.port === '' ? 33444 : Number(parsed.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TurboError('ERR_INVALID_ARGUMENT', `bad port in ${url}`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  return { protocol, host, port };
}

/** `http://host:port` for the monitoring endpoint (no path, no https). */
export function parseHttpUrl(url: string): { host: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TurboError('ERR_INVALID_ARGUMENT', `http: not a url: ${JSON.stringify(url)} (expected http://host:port)`);
  }
  if (parsed.protocol !== 'http:') throw new TurboError('ERR_INVALID_ARGUMENT', `http: unsupported protocol ${parsed.protocol} in ${url} (http: only)`);
  if (parsed.pathname !== '/' || parsed.search !== '' || parsed.username !== '') throw new TurboError('ERR_INVALID_ARGUMENT', `http: ${url} must be just http://host:port`);
  const port = parsed.port === '' ? 80 : Number(parsed.port);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

export function formatUrl(spec: ListenSpec): string {
  const host = spec.host.includes(':') ? `[${spec.host}]` : spec.host;
  return `${spec.protocol}://${host}:${spec.port}`;
}

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) throw new TurboError('ERR_INVALID_ARGUMENT', `${name} must be an integer from 1 to ${max}, got ${value}`);
  return value;
}

export function resolveOptions(url: string | undefined, options: EngineOptions): ResolvedOptions {
  const maxMessageBytes = positiveInt('maxMessageBytes', options.maxMessageBytes, DEFAULT_MAX_MESSAGE_BYTES, 256 * 1024 * 1024);
  const maxFrameBytes = positiveInt('maxFrameBytes', options.maxFrameBytes, defaultMaxFrameBytes(maxMessageBytes), 512 * 1024 * 1024);
  if (maxFrameBytes < maxMessageBytes + 1024) throw new TurboError('ERR_INVALID_ARGUMENT', 'maxFrameBytes must be at least maxMessageBytes + 1024');
  const maxMemoryMiB = positiveInt('maxMemoryMiB', options.maxMemoryMiB, 4096, 4096);
  const initialMemoryMiB = positiveInt('initialMemoryMiB', options.initialMemoryMiB, 4, 4095);
  if (maxMemoryMiB < 2) throw new TurboError('ERR_INVALID_ARGUMENT', 'maxMemoryMiB must be at least 2');
  const listen = [url ?? DEFAULT_URL, ...(options.listen ?? [])].map(parseListenUrl);
  return {
    threads: positiveInt('threads', options.threads, Math.max(1, os.availableParallelism()), 255 - 2),
    maxMessageBytes,
    maxFrameBytes,
    maxConnectionsPerThread: positiveInt('maxConnectionsPerThread', options.maxConnectionsPerThread, 10_000),
    maxSubscriptions: positiveInt('maxSubscriptions', options.maxSubscriptions, 1024),
    maxParkedPops: positiveInt('maxParkedPops', options.maxParkedPops, 65_536),
    listen,
    allowedOrigins: options.allowedOrigins,
    initialMemoryMiB,
    maxMemoryMiB,
    http: options.http === undefined ? undefined : parseHttpUrl(options.http),
  };
}
