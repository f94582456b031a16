// Command-line and environment settings: `turbomq serve`'s, and the flags every operator
// command shares (push, pop, stats, stop: --url, --token, --help). Flags win over TURBOMQ_*
// variables, which win over defaults. Errors are one readable line (exit code 2).

import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import os from 'node:os';
import { DEFAULT_URL, parseHttpUrl } from '../engine/options.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Node's parseArgs with our conventions: no positionals, unknown flags refused, errors as one UsageError line. */
export function parseFlags<const T extends ParseArgsOptionsConfig>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, allowPositionals: false, strict: true, options }).values;
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
}

/** parseFlags for commands that take positional arguments (QUEUE TOPIC ...). */
export function parseCommandLine<const T extends ParseArgsOptionsConfig>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, strict: true, options });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
}

/** Flags of every command that talks to a running broker. */
export const CLIENT_FLAGS = {
  url: { type: 'string', short: 'u' },
  token: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const CLIENT_FLAGS_HELP = `  -u, --url URL          the broker (default ${DEFAULT_URL}; env TURBOMQ_URL)
      --token TOKEN      authentication token (env TURBOMQ_TOKEN)
  -h, --help             show this help`;

export interface ClientSettings {
  url: string;
  token: string | undefined;
}

export function clientSettings(values: { url?: string; token?: string }, env: NodeJS.ProcessEnv): ClientSettings {
  const url = values.url ?? env.TURBOMQ_URL ?? DEFAULT_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--url: not a url: ${JSON.stringify(url)} (expected tcp://host:port or ws://host:port)`);
  }
  if (parsed.protocol !== 'tcp:' && parsed.protocol !== 'ws:') throw new UsageError(`--url: unsupported protocol ${parsed.protocol} in ${url} (tcp: or ws:)`);
  const token = values.token ?? env.TURBOMQ_TOKEN;
  return { url, token: token === '' ? undefined : token };
}

/** The exact number of positional arguments a command takes (at least `min`, at most `max`). */
export function positionals(args: string[], names: string, min: number, max = min): string[] {
  if (args.length < min) throw new UsageError(`missing ${names.split(' ').slice(args.length, min).join(' ')} (usage: ${names})`);
  if (args.length > max) throw new UsageError(`unexpected argument ${JSON.stringify(args[max])} (usage: ${names})`);
  return args;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = typeof LOG_LEVELS[number];

export interface ServeSettings {
  listen: string[];
  threads: number;
  maxMessageBytes: number;
  maxMemoryMiB: number;
  logLevel: LogLevel;
  allowedOrigins: string[] | undefined;
  http: string | undefined;
}

export const SERVE_HELP = `Usage: turbomq [serve] [options]

Starts a turbomq broker: one worker thread per core, all listening on the same port.

Options:
  -l, --listen URL             tcp://host:port or ws://host:port; repeat to listen on several
                               (default ${DEFAULT_URL}; env TURBOMQ_LISTEN, comma-separated)
  -t, --threads N              worker threads (default: one per core = ${os.availableParallelism()}; env TURBOMQ_THREADS)
      --max-message-bytes N    largest message accepted (default 1048576; env TURBOMQ_MAX_MESSAGE_BYTES)
      --max-memory-mib N       memory stored messages may take; when full, pushes fail with
                               ERR_NO_MEMORY (default 4096; env TURBOMQ_MAX_MEMORY_MIB)
      --allow-origin ORIGIN    WebSocket: allow browsers from this Origin; repeatable
                               ("*" allows any; default: loopback pages only;
                               env TURBOMQ_ALLOW_ORIGINS, comma-separated)
      --http URL               monitoring endpoint, e.g. http://127.0.0.1:8222: GET /healthz,
                               /readyz, /metrics (Prometheus), /stats (JSON) (default off; env TURBOMQ_HTTP)
      --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info; env TURBOMQ_LOG_LEVEL)
  -h, --help                   show this help
  -v, --version                print the version

Other commands (each has --help):
  turbomq push QUEUE TOPIC DATA...     push messages
  turbomq pop QUEUE TOPIC [--count N] [--timeout MS]
                                       pop messages and print them, one a line
  turbomq stats [--json]               threads, connections, memory, the largest queues
  turbomq stop                         stop a running broker gracefully
  turbomq bench [options]              load-test a broker

Stops gracefully on SIGINT or SIGTERM (exit code 0).`;

/** A whole number from min to max, or a UsageError naming the flag. */
export function parseInteger(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

function checkUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--listen: not a url: ${JSON.stringify(url)} (expected tcp://host:port or ws://host:port)`);
  }
  if (parsed.protocol !== 'tcp:' && parsed.protocol !== 'ws:') throw new UsageError(`--listen: unsupported protocol ${parsed.protocol} in ${url} (tcp: or ws:)`);
  return url;
}

function checkHttpUrl(url: string | undefined): string | undefined {
  if (url === undefined || url === '') return undefined;
  try {
    parseHttpUrl(url);
  } catch (err) {
    throw new UsageError(`--${(err as Error).message}`);
  }
  return url;
}

export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv): ServeSettings | 'help' | 'version' {
  const v = parseFlags(argv, {
    listen: { type: 'string', short: 'l', multiple: true },
    threads: { type: 'string', short: 't' },
    'max-message-bytes': { type: 'string' },
    'max-memory-mib': { type: 'string' },
    'allow-origin': { type: 'string', multiple: true },
    http: { type: 'string' },
    'log-level': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  });
  if (v.help) return 'help';
  if (v.version) return 'version';
  const listEnv = (name: string) => env[name]?.split(',').map((s) => s.trim()).filter(Boolean);
  const listen = (v.listen ?? listEnv('TURBOMQ_LISTEN') ?? [DEFAULT_URL]).map(checkUrl);
  const threadsRaw = v.threads ?? env.TURBOMQ_THREADS;
  const maxRaw = v['max-message-bytes'] ?? env.TURBOMQ_MAX_MESSAGE_BYTES;
  const memRaw = v['max-memory-mib'] ?? env.TURBOMQ_MAX_MEMORY_MIB;
  const level = (v['log-level'] ?? env.TURBOMQ_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  return {
    listen,
    threads: threadsRaw === undefined ? os.availableParallelism() : parseInteger('--threads', threadsRaw, 1, 253),
    maxMessageBytes: maxRaw === undefined ? 1024 * 1024 : parseInteger('--max-message-bytes', maxRaw, 1, 256 * 1024 * 1024),
    maxMemoryMiB: memRaw === undefined ? 4096 : parseInteger('--max-memory-mib', memRaw, 2, 4096),
    logLevel: level,
    allowedOrigins: v['allow-origin'] ?? listEnv('TURBOMQ_ALLOW_ORIGINS'),
    http: checkHttpUrl(v.http ?? env.TURBOMQ_HTTP),
  };
}
