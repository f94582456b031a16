// Command-line and environment settings for `turbomq serve`, read from the flag table in
// src/options.ts (serveFlags()), and the flags every operator command shares (push, pop,
// stats, stop: --url, --token, --help): flags win over TURBOMQ_* variables, which win over
// the engine's defaults. Files named by flags (--users, --tls-cert, --tls-key) are read
// here. Errors are one readable line (UsageError, exit code 2); a value that names a token
// is never repeated in one.

import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import {
  serveFlags, LOG_LEVELS, DEFAULTS, LISTEN_SCHEMES, checkUsers, resolveOptions,
  type EngineOptions, type LogLevel, type ServeFlag,
} from '../options.ts';
import { parseUrl } from '../url.ts';

export { LOG_LEVELS, type LogLevel } from '../options.ts';

const DEFAULT_URL = DEFAULTS.url;

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

export interface ServeSettings {
  /** The listen urls (at least one). */
  listen: string[];
  logLevel: LogLevel;
  /** Everything else for new TurboEngine(listen[0], { ...engine, listen: listen.slice(1) }). */
  engine: Omit<EngineOptions, 'listen' | 'logger'>;
}

const WIDTH = 100;

function wrap(text: string, indent: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent + line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

const flagLeft = (flag: ServeFlag) => `  ${flag.short ? `-${flag.short}, ` : '    '}--${flag.name} ${flag.placeholder}`;

/** The flags' lines of --help: flag and value on the left, what it does and its variable on the right. */
function flagsHelp(flags: readonly ServeFlag[]): string {
  const column = Math.max(...flags.map((f) => flagLeft(f).length)) + 2;
  const lines = flags.map((flag) => {
    const env = flag.type === 'list' ? `env ${flag.env}, comma-separated` : flag.type === 'file' || flag.type === 'json-file' ? `env ${flag.env} names the file` : `env ${flag.env}`;
    const [first, ...rest] = wrap(`${flag.help}; ${env}`, column);
    return [`${flagLeft(flag).padEnd(column)}${first}`, ...rest.map((l) => `${' '.repeat(column)}${l}`)].join('\n');
  });
  for (const [left, text] of [['  -h, --help', 'show this help'], ['  -v, --version', 'print the version']]) lines.push(`${left!.padEnd(column)}${text}`);
  return lines.join('\n');
}

export const SERVE_HELP = `Usage: turbomq [serve] [options]

Starts a turbomq broker: one worker thread per core, all listening on the same port.

Options:
${flagsHelp(serveFlags())}

Security: without --auth-token or --users every client may do everything, so the default
listen address is loopback only; a listener beyond it without auth is warned about at start.

Examples:
  turbomq --listen tcp://0.0.0.0:33444 --users users.json
  TURBOMQ_AUTH_TOKEN=s3cret turbomq --listen tls://0.0.0.0:33444 --tls-cert cert.pem --tls-key key.pem

Other commands (each has --help):
  turbomq push QUEUE TOPIC DATA...     push messages
  turbomq pop QUEUE TOPIC [--count N] [--timeout MS]
                                       pop messages and print them, one a line
  turbomq stats [--json]               threads, connections, memory, the largest queues
  turbomq stop                         stop a running broker gracefully
  turbomq bench [options]              load-test a broker
  turbomq hash-token                   make a tokenHash for a --users file

Stops gracefully on SIGINT or SIGTERM (exit code 0).`;

/** A whole number from min to max, or a UsageError naming the flag. */
const integer = (name: string, raw: string, min: number, max: number): number => parseInteger(name, raw, min, max);

export function parseInteger(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

function readText(name: string, path: string, read: (path: string) => string): string {
  try {
    return read(path);
  } catch (err) {
    throw new UsageError(`${name}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): ServeSettings | 'help' | 'version' {
  const config: ParseArgsOptionsConfig = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  };
  const flags = serveFlags();
  for (const flag of flags) config[flag.name] = { type: 'string', multiple: flag.type === 'list', ...(flag.short ? { short: flag.short } : {}) };
  const v = parseFlags(argv, config) as Record<string, string | string[] | boolean | undefined>;
  if (v.help) return 'help';
  if (v.version) return 'version';
  const values: Record<string, unknown> = {};
  for (const flag of flags) {
    const name = `--${flag.name}`;
    const fromFlag = v[flag.name] as string | string[] | undefined;
    const fromEnv = env[flag.env];
    if (flag.type === 'list') {
      const list = (fromFlag as string[] | undefined) ?? fromEnv?.split(',').map((s) => s.trim()).filter(Boolean);
      if (list !== undefined) values[flag.key] = list;
      continue;
    }
    const raw = fromFlag as string | undefined ?? fromEnv;
    if (raw === undefined) continue;
    switch (flag.type) {
      case 'int':
        values[flag.key] = integer(name, raw, flag.min!, flag.max!);
        break;
      case 'string':
        if (flag.choices !== undefined && !flag.choices.includes(raw)) throw new UsageError(`${name} must be one of ${flag.choices.join(', ')}, got ${JSON.stringify(raw)}`);
        values[flag.key] = raw;
        break;
      case 'file':
        values[flag.key] = readText(name, raw, read);
        break;
      case 'json-file': {
        const text = readText(name, raw, read);
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          throw new UsageError(`${name}: ${raw} is not JSON: ${(err as Error).message}`);
        }
        try {
          values[flag.key] = checkUsers(parsed);
        } catch (err) {
          throw new UsageError(`${name} ${raw}: ${(err as Error).message}`);
        }
        break;
      }
    }
  }
  const listen = (values.listen as string[] | undefined) ?? [DEFAULTS.url];
  for (const url of listen) {
    try {
      parseUrl(url, LISTEN_SCHEMES);
    } catch (err) {
      throw new UsageError(`--listen: ${(err as Error).message}`);
    }
  }
  const { tlsCert, tlsKey, logLevel, listen: _listen, ...engine } = values as Record<string, unknown> & EngineOptions;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (tlsCert !== undefined) engine.tls = { cert: tlsCert as string, key: tlsKey as string };
  // Every other check the engine makes (tls:// without a certificate, a bad token ...), as a usage error.
  try {
    resolveOptions(listen[0], { ...engine, listen: listen.slice(1) });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return { listen, logLevel: (logLevel as LogLevel | undefined) ?? (DEFAULTS.logLevel as LogLevel), engine };
}
