// Every option turbomq has, with its default, checked and merged in one place: the engine's
// (TurboEngine), the `turbomq serve` flags and TURBOMQ_* variables that set them
// (serveFlags(), read by src/cli/args.ts), and the client's (TurboClient.connect). Adding an
// option is one edit here: its type, its default, its check, and its flag if the CLI has one.
// Browser-safe (the client imports it): no node: imports; files are read by the CLI.

import { TurboError } from './errors.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, MAX_AUTH_TOKEN_BYTES, MAX_AUTH_USER_BYTES, MAX_NAME_BYTES } from './protocol.ts';
import { DEFAULT_URL, SCHEMES, parseUrl, usesTls, isLoopbackHost, type BrokerUrl } from './url.ts';

/** The core has 255 thread ids: the main thread takes one, and one stays spare. */
export const MAX_THREADS = 255 - 2;

/** Every default, by option name. */
export const DEFAULTS = Object.freeze({
  url: DEFAULT_URL,
  maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
  maxConnectionsPerThread: 10_000,
  maxConnections: 65_536,
  maxSubscriptions: 1024,
  maxParkedPops: 65_536,
  maxOutputBytes: 32 * 1024 * 1024,
  maxParkedPopsPerThread: 262_144,
  initialMemoryMiB: 4,
  maxMemoryMiB: 4096,
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  reconnect: false,
  reconnectTimeoutMs: 30_000,
  reconnectDelayMs: 100,
  reconnectMaxDelayMs: 2_000,
  logLevel: 'info',
  /** Redis's appendfsync default, for the same reason: see README "Durability". */
  fsync: 'everysec',
});

/** The fsync policies of a data directory (named like Redis's appendfsync; docs/durability.md). */
export const FSYNC_POLICIES = ['always', 'everysec', 'no'] as const;
export type FsyncPolicy = typeof FSYNC_POLICIES[number];

/** One worker per core (the cores this process may use). */
export function defaultThreads(): number {
  return Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
}

/** PEM text or bytes, as Node's tls module takes them. */
export type Pem = string | Uint8Array | readonly (string | Uint8Array)[];

/** Server TLS: certificate chain and private key (PEM); any other tls.createSecureContext option passes through. */
export interface TlsServerOptions {
  cert: Pem;
  key: Pem;
  [option: string]: unknown;
}

/** Client TLS (Node): passed to tls.connect, e.g. `{ ca }` for a private CA or self-signed certificate. Browsers use their own trust store. */
export interface TlsClientOptions {
  ca?: Pem;
  cert?: Pem;
  key?: Pem;
  servername?: string;
  rejectUnauthorized?: boolean;
  [option: string]: unknown;
}

/** One entry of the `users` option (the --users file is a JSON array of these). */
export interface UserEntry {
  /** 1..255 bytes; shown in ERR_FORBIDDEN messages and logs. */
  name: string;
  /** The token in clear (the file must then be protected like a key). Exactly one of token and tokenHash. */
  token?: string;
  /** An scrypt hash of the token, `$scrypt$ln=…,r=…,p=…$salt$hash` (turbomq hash-token). */
  tokenHash?: string;
  /** Queue names this user may push to; `*` matches any run of characters. */
  push?: string[];
  /** Queue names this user may pop from (pop, popMany, subscribe, and returning messages). */
  pop?: string[];
  /** Allowed everything. Default false. */
  admin?: boolean;
}

export interface EngineOptions {
  /** Worker threads, each listening on the same port. Default: one per core. */
  threads?: number;
  /** Largest message accepted, in bytes. Default 1 MiB. */
  maxMessageBytes?: number;
  /** Largest frame accepted (a pushMany batch), in bytes. Default max(maxMessageBytes + 1 KiB, 8 MiB). */
  maxFrameBytes?: number;
  /** Open connections per worker thread. Default 10,000. */
  maxConnectionsPerThread?: number;
  /**
   * Open connections in total, over all workers (and at most what the process's file
   * descriptor limit leaves room for). Default 65,536.
   */
  maxConnections?: number;
  /** A connection must finish its handshake (TLS, HELLO, AUTH) this many ms after it was accepted, or it is closed. Default 10,000. */
  handshakeTimeoutMs?: number;
  /** Subscriptions per connection. Default 1,024. */
  maxSubscriptions?: number;
  /** Parked pops per connection. Default 65,536. */
  maxParkedPops?: number;
  /** Parked pops per worker thread, over all its connections (each costs about 500 B). Default 262,144. */
  maxParkedPopsPerThread?: number;
  /**
   * Replies a connection may have waiting to be sent, in bytes. While a connection's output
   * is backed up the broker stops reading its requests and pumping its subscriptions; a
   * connection whose output would go past this is closed (its leased and handed messages go
   * back to their topics). Default 32 MiB; at least maxFrameBytes + 64 KiB.
   */
  maxOutputBytes?: number;
  /** Extra listen urls (tcp://, tls://, ws://, wss://, unix://), besides the constructor's url. */
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
  /** Clients must send this token (TurboClient.connect(url, { token })); it is an admin user. Default: none. */
  authToken?: string;
  /** Users with their tokens and permissions (see UserEntry). With authToken or users set, every connection must authenticate. */
  users?: UserEntry[];
  /** Certificate and key for tls:// and wss:// listen urls. */
  tls?: TlsServerOptions;
  /**
   * Data directory: every queue is durable (unless configured `durable: false`) - written to
   * an append-only log here before it is acknowledged, and restored at the next start
   * (docs/durability.md). One broker per directory. Default: none (in memory only).
   */
  dataDir?: string;
  /**
   * With a data directory, when the log is fsync'd: 'always' (before every acknowledgement,
   * one fsync per group of operations), 'everysec' (at least once a second), 'no' (the OS
   * decides). Under every policy an acknowledged operation has been written to the OS, so a
   * killed broker loses nothing acknowledged. Default 'everysec'.
   */
  fsync?: FsyncPolicy;
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
  /** A pino-compatible logger; default: silent (a listener beyond loopback without auth still warns through process.emitWarning). */
  logger?: Logger;
}

export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
}

/** Engine options after defaults and checks; plain data, so workers get it as workerData. */
export interface ResolvedOptions {
  threads: number;
  maxMessageBytes: number;
  maxFrameBytes: number;
  maxConnectionsPerThread: number;
  maxConnections: number;
  handshakeTimeoutMs: number;
  maxSubscriptions: number;
  maxParkedPops: number;
  maxOutputBytes: number;
  maxParkedPopsPerThread: number;
  listen: BrokerUrl[];
  allowedOrigins: string[] | undefined;
  initialMemoryMiB: number;
  maxMemoryMiB: number;
  authToken: string | undefined;
  users: UserEntry[] | undefined;
  tls: TlsServerOptions | undefined;
  /** The monitoring endpoint, if any. */
  http: { host: string; port: number } | undefined;
  dataDir: string | undefined;
  fsync: FsyncPolicy;
}

/** `http://host:port` for the monitoring endpoint (no path, no https). */
export function parseHttpUrl(url: string): { host: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(`http: not a url: ${JSON.stringify(url)} (expected http://host:port)`);
  }
  if (parsed.protocol !== 'http:') throw invalid(`http: unsupported protocol ${parsed.protocol} in ${url} (http: only)`);
  if (parsed.pathname !== '/' || parsed.search !== '' || parsed.username !== '') throw invalid(`http: ${url} must be just http://host:port`);
  const port = parsed.port === '' ? 80 : Number(parsed.port);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

function invalid(message: string): TurboError {
  return new TurboError('ERR_INVALID_ARGUMENT', message);
}

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) throw invalid(`${name} must be an integer from 1 to ${max}, got ${value}`);
  return value;
}

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

function isPem(value: unknown): boolean {
  const one = (v: unknown) => typeof v === 'string' || v instanceof Uint8Array;
  return one(value) || (Array.isArray(value) && value.length > 0 && value.every(one));
}

function checkToken(what: string, token: unknown): string {
  if (typeof token !== 'string' || token.length === 0) throw invalid(`${what} must be a non-empty string`);
  if (utf8Bytes(token) > MAX_AUTH_TOKEN_BYTES) throw invalid(`${what} must be at most ${MAX_AUTH_TOKEN_BYTES} bytes`);
  return token;
}

const USER_KEYS = new Set(['name', 'token', 'tokenHash', 'push', 'pop', 'admin']);

/**
 * Checks the `users` option (or a parsed --users file): the shape of every entry. Errors
 * name the entry and its field, never a token. Token hashes are parsed by the engine
 * (src/engine/auth.ts).
 */
export function checkUsers(users: unknown): UserEntry[] {
  if (!Array.isArray(users)) throw invalid('users must be an array of { name, token | tokenHash, push, pop, admin }');
  const names = new Set<string>();
  return users.map((entry: unknown, i) => {
    const where = `users[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalid(`${where} must be an object`);
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!USER_KEYS.has(key)) throw invalid(`${where}: unknown field ${JSON.stringify(key)} (name, token, tokenHash, push, pop, admin)`);
    if (typeof e.name !== 'string' || e.name.length === 0 || utf8Bytes(e.name) > MAX_AUTH_USER_BYTES) throw invalid(`${where}: name must be 1 to ${MAX_AUTH_USER_BYTES} bytes`);
    const at = `${where} (${JSON.stringify(e.name)})`;
    if (names.has(e.name)) throw invalid(`${at}: a second user with this name`);
    names.add(e.name);
    if ((e.token === undefined) === (e.tokenHash === undefined)) throw invalid(`${at}: give exactly one of token and tokenHash`);
    if (e.token !== undefined) checkToken(`${at}: token`, e.token);
    if (e.tokenHash !== undefined && typeof e.tokenHash !== 'string') throw invalid(`${at}: tokenHash must be a string`);
    for (const field of ['push', 'pop'] as const) {
      const list = e[field];
      if (list === undefined) continue;
      if (!Array.isArray(list) || !list.every((p) => typeof p === 'string' && p.length > 0 && utf8Bytes(p) <= MAX_NAME_BYTES)) {
        throw invalid(`${at}: ${field} must be an array of queue names (1 to ${MAX_NAME_BYTES} bytes, * for any characters)`);
      }
    }
    if (e.admin !== undefined && typeof e.admin !== 'boolean') throw invalid(`${at}: admin must be true or false`);
    const user: UserEntry = { name: e.name };
    if (e.token !== undefined) user.token = e.token as string;
    if (e.tokenHash !== undefined) user.tokenHash = e.tokenHash as string;
    if (e.push !== undefined) user.push = [...e.push as string[]];
    if (e.pop !== undefined) user.pop = [...e.pop as string[]];
    if (e.admin !== undefined) user.admin = e.admin as boolean;
    return user;
  });
}

/** Schemes the engine listens on. */
export const LISTEN_SCHEMES = SCHEMES;

export function resolveOptions(url: string | undefined, options: EngineOptions): ResolvedOptions {
  const maxMessageBytes = positiveInt('maxMessageBytes', options.maxMessageBytes, DEFAULTS.maxMessageBytes, 256 * 1024 * 1024);
  const maxFrameBytes = positiveInt('maxFrameBytes', options.maxFrameBytes, defaultMaxFrameBytes(maxMessageBytes), 512 * 1024 * 1024);
  if (maxFrameBytes < maxMessageBytes + 1024) throw invalid('maxFrameBytes must be at least maxMessageBytes + 1024');
  const maxMemoryMiB = positiveInt('maxMemoryMiB', options.maxMemoryMiB, DEFAULTS.maxMemoryMiB, 4096);
  const initialMemoryMiB = positiveInt('initialMemoryMiB', options.initialMemoryMiB, DEFAULTS.initialMemoryMiB, 4095);
  if (maxMemoryMiB < 2) throw invalid('maxMemoryMiB must be at least 2');
  const maxOutputBytes = positiveInt('maxOutputBytes', options.maxOutputBytes, Math.max(DEFAULTS.maxOutputBytes, maxFrameBytes + 64 * 1024), 0x7fffffff);
  // One reply frame must always fit, or a connection could be closed for a single large pop.
  if (maxOutputBytes < maxFrameBytes + 64 * 1024) throw invalid('maxOutputBytes must be at least maxFrameBytes + 65536');
  const listen = [url ?? DEFAULTS.url, ...(options.listen ?? [])].map((u) => parseUrl(u, LISTEN_SCHEMES));
  const tls = options.tls;
  if (tls !== undefined && (typeof tls !== 'object' || tls === null || !isPem(tls.cert) || !isPem(tls.key))) {
    throw invalid('tls must be { cert, key } with PEM strings or Buffers');
  }
  const needsTls = listen.find((u) => usesTls(u.scheme));
  if (needsTls !== undefined && tls === undefined) throw invalid(`${needsTls.scheme}:// needs a certificate and key: the tls option ({ cert, key }; --tls-cert and --tls-key)`);
  const authToken = options.authToken === undefined ? undefined : checkToken('authToken', options.authToken);
  return {
    threads: positiveInt('threads', options.threads, defaultThreads(), MAX_THREADS),
    maxMessageBytes,
    maxFrameBytes,
    maxConnectionsPerThread: positiveInt('maxConnectionsPerThread', options.maxConnectionsPerThread, DEFAULTS.maxConnectionsPerThread),
    maxConnections: positiveInt('maxConnections', options.maxConnections, DEFAULTS.maxConnections, 0x7fffffff),
    handshakeTimeoutMs: positiveInt('handshakeTimeoutMs', options.handshakeTimeoutMs, DEFAULTS.handshakeTimeoutMs, 0x7fffffff),
    maxSubscriptions: positiveInt('maxSubscriptions', options.maxSubscriptions, DEFAULTS.maxSubscriptions),
    maxParkedPops: positiveInt('maxParkedPops', options.maxParkedPops, DEFAULTS.maxParkedPops),
    maxOutputBytes,
    maxParkedPopsPerThread: positiveInt('maxParkedPopsPerThread', options.maxParkedPopsPerThread, DEFAULTS.maxParkedPopsPerThread),
    listen,
    allowedOrigins: options.allowedOrigins,
    initialMemoryMiB,
    maxMemoryMiB,
    authToken,
    users: options.users === undefined ? undefined : checkUsers(options.users),
    tls: tls === undefined ? undefined : { ...tls },
    http: options.http === undefined ? undefined : parseHttpUrl(options.http),
    dataDir: checkDataDir(options.dataDir),
    fsync: checkFsync(options.fsync),
  };
}

function checkDataDir(dir: unknown): string | undefined {
  if (dir === undefined) return undefined;
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) throw invalid(`dataDir must be a directory path, got ${JSON.stringify(dir)}`);
  return dir;
}

function checkFsync(policy: unknown): FsyncPolicy {
  if (policy === undefined) return DEFAULTS.fsync as FsyncPolicy;
  if (typeof policy !== 'string' || !(FSYNC_POLICIES as readonly string[]).includes(policy)) {
    throw invalid(`fsync must be one of ${FSYNC_POLICIES.join(', ')}, got ${JSON.stringify(policy)}`);
  }
  return policy as FsyncPolicy;
}

/**
 * The listen urls anyone beyond this machine may use: not loopback, not a unix socket, on a
 * broker without auth. The engine warns about them at start.
 */
export function exposedWithoutAuth(options: Pick<ResolvedOptions, 'listen' | 'authToken' | 'users'>): BrokerUrl[] {
  if (options.authToken !== undefined || options.users !== undefined) return [];
  return options.listen.filter((u) => u.scheme !== 'unix' && !isLoopbackHost(u.host));
}

// ── client ────────────────────────────────────────────────────────────────────────────

export interface ClientOptions {
  /** Connect (and handshake) timeout in ms. Default 10,000. */
  connectTimeoutMs?: number;
  /** The token for a broker with auth (--auth-token, or a user's token). Without one such a broker refuses the connection (ERR_UNAUTHORIZED). */
  token?: string;
  /** The user the token belongs to. Optional: the broker finds the user by its token; naming it saves a broker with many hashed tokens some work. */
  user?: string;
  /** Node only: TLS options for tls:// and wss:// urls, passed to tls.connect (e.g. `{ ca }`). */
  tls?: TlsClientOptions;
  /**
   * After a lost connection, connect again (with backoff) and resume subscriptions and
   * leased pops; calls made meanwhile wait. Default false: without it a lost connection
   * ends the client (README, "Reconnecting", says why).
   */
  reconnect?: boolean;
  /** With reconnect: how long a call waits for the connection to come back before it rejects with ERR_CONNECTION_CLOSED. Default 30,000. */
  reconnectTimeoutMs?: number;
  /** With reconnect: the first retry's delay; each failed attempt doubles it (with jitter). Default 100. */
  reconnectDelayMs?: number;
  /** With reconnect: the longest delay between attempts. Default 2,000. */
  reconnectMaxDelayMs?: number;
}

export interface ResolvedClientOptions {
  connectTimeoutMs: number;
  token: string | undefined;
  user: string | undefined;
  tls: TlsClientOptions | undefined;
  reconnect: boolean;
  reconnectTimeoutMs: number;
  reconnectDelayMs: number;
  reconnectMaxDelayMs: number;
}

export function resolveClientOptions(options: ClientOptions): ResolvedClientOptions {
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
  const user = options.user;
  if (user !== undefined && (typeof user !== 'string' || user.length === 0 || utf8Bytes(user) > MAX_AUTH_USER_BYTES)) throw invalid(`user must be 1 to ${MAX_AUTH_USER_BYTES} bytes`);
  if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null)) throw invalid('tls must be an object of tls.connect options');
  if (options.reconnect !== undefined && typeof options.reconnect !== 'boolean') throw invalid('reconnect must be a boolean');
  const reconnectDelayMs = positiveInt('reconnectDelayMs', options.reconnectDelayMs, DEFAULTS.reconnectDelayMs, 0x7fffffff);
  const reconnectMaxDelayMs = positiveInt('reconnectMaxDelayMs', options.reconnectMaxDelayMs, Math.max(reconnectDelayMs, DEFAULTS.reconnectMaxDelayMs), 0x7fffffff);
  if (reconnectMaxDelayMs < reconnectDelayMs) throw invalid(`reconnectMaxDelayMs (${reconnectMaxDelayMs}) must be at least reconnectDelayMs (${reconnectDelayMs})`);
  return {
    connectTimeoutMs: positiveInt('connectTimeoutMs', options.connectTimeoutMs, DEFAULTS.connectTimeoutMs, 0x7fffffff),
    token: options.token === undefined ? undefined : checkToken('token', options.token),
    user,
    tls: options.tls,
    reconnect: options.reconnect ?? DEFAULTS.reconnect,
    reconnectTimeoutMs: positiveInt('reconnectTimeoutMs', options.reconnectTimeoutMs, DEFAULTS.reconnectTimeoutMs, 0x7fffffff),
    reconnectDelayMs,
    reconnectMaxDelayMs,
  };
}

// ── `turbomq serve` flags ─────────────────────────────────────────────────────────────

/**
 * A flag of `turbomq serve` and the TURBOMQ_* variable that can set it instead (flags win).
 * `type` says how the text is read: int (min..max), string, list (repeatable; the variable
 * is comma-separated), file (the flag names a file whose text is the value), json-file.
 */
export interface ServeFlag {
  name: string;
  short?: string;
  env: string;
  /** The engine option it sets, or a setting of the CLI's own (logLevel; tlsCert and tlsKey make the tls option). */
  key: keyof EngineOptions | 'logLevel' | 'tlsCert' | 'tlsKey';
  type: 'int' | 'string' | 'list' | 'file' | 'json-file';
  placeholder: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
  help: string;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/** The flags, in --help order (a function, so that the browser bundle leaves the table out). */
export function serveFlags(): readonly ServeFlag[] {
  return [
  { name: 'listen', short: 'l', env: 'TURBOMQ_LISTEN', key: 'listen', type: 'list', placeholder: 'URL',
    help: `tcp://, tls://, ws://, wss:// host:port or unix:///path; repeat to listen on several (default ${DEFAULTS.url})` },
  { name: 'threads', short: 't', env: 'TURBOMQ_THREADS', key: 'threads', type: 'int', placeholder: 'N', min: 1, max: MAX_THREADS,
    help: `worker threads (default: one per core = ${defaultThreads()})` },
  { name: 'max-message-bytes', env: 'TURBOMQ_MAX_MESSAGE_BYTES', key: 'maxMessageBytes', type: 'int', placeholder: 'N', min: 1, max: 256 * 1024 * 1024,
    help: `largest message accepted (default ${DEFAULTS.maxMessageBytes})` },
  { name: 'max-memory-mib', env: 'TURBOMQ_MAX_MEMORY_MIB', key: 'maxMemoryMiB', type: 'int', placeholder: 'N', min: 2, max: 4096,
    help: `memory stored messages may take; when full, pushes fail with ERR_NO_MEMORY (default ${DEFAULTS.maxMemoryMiB})` },
  { name: 'max-connections', env: 'TURBOMQ_MAX_CONNECTIONS', key: 'maxConnections', type: 'int', placeholder: 'N', min: 1, max: 0x7fffffff,
    help: `open connections in total (default ${DEFAULTS.maxConnections}, and at most what the file-descriptor limit allows)` },
  { name: 'max-connections-per-thread', env: 'TURBOMQ_MAX_CONNECTIONS_PER_THREAD', key: 'maxConnectionsPerThread', type: 'int', placeholder: 'N', min: 1, max: 0x7fffffff,
    help: `open connections per worker thread (default ${DEFAULTS.maxConnectionsPerThread})` },
  { name: 'max-output-bytes', env: 'TURBOMQ_MAX_OUTPUT_BYTES', key: 'maxOutputBytes', type: 'int', placeholder: 'N', min: 1, max: 0x7fffffff,
    help: `replies one connection may have waiting to be sent; past it the connection is closed (default ${DEFAULTS.maxOutputBytes})` },
  { name: 'max-parked-pops-per-thread', env: 'TURBOMQ_MAX_PARKED_POPS_PER_THREAD', key: 'maxParkedPopsPerThread', type: 'int', placeholder: 'N', min: 1, max: 0x7fffffff,
    help: `pops waiting for a message per worker thread, over all connections; more answer ERR_LIMIT (default ${DEFAULTS.maxParkedPopsPerThread})` },
  { name: 'handshake-timeout-ms', env: 'TURBOMQ_HANDSHAKE_TIMEOUT_MS', key: 'handshakeTimeoutMs', type: 'int', placeholder: 'MS', min: 1, max: 0x7fffffff,
    help: `close connections that have not finished TLS, HELLO and AUTH after this long (default ${DEFAULTS.handshakeTimeoutMs})` },
  { name: 'auth-token', env: 'TURBOMQ_AUTH_TOKEN', key: 'authToken', type: 'string', placeholder: 'TOKEN',
    help: 'clients must connect with this token (an admin user); prefer the variable: flags show in ps' },
  { name: 'users', env: 'TURBOMQ_USERS', key: 'users', type: 'json-file', placeholder: 'FILE',
    help: 'JSON array of users: [{ "name", "token" | "tokenHash", "push": [queues], "pop": [queues], "admin" }]' },
  { name: 'tls-cert', env: 'TURBOMQ_TLS_CERT', key: 'tlsCert', type: 'file', placeholder: 'FILE',
    help: 'certificate chain (PEM) for tls:// and wss:// urls' },
  { name: 'tls-key', env: 'TURBOMQ_TLS_KEY', key: 'tlsKey', type: 'file', placeholder: 'FILE',
    help: 'private key (PEM) for tls:// and wss:// urls' },
  { name: 'allow-origin', env: 'TURBOMQ_ALLOW_ORIGINS', key: 'allowedOrigins', type: 'list', placeholder: 'ORIGIN',
    help: 'WebSocket: allow browsers from this Origin; repeatable ("*" allows any; default: loopback pages only)' },
  { name: 'http', env: 'TURBOMQ_HTTP', key: 'http', type: 'string', placeholder: 'URL',
    help: 'monitoring endpoint, e.g. http://127.0.0.1:8222: GET /healthz, /readyz, /metrics (Prometheus), /stats (JSON) (default off)' },
  { name: 'data-dir', short: 'd', env: 'TURBOMQ_DATA_DIR', key: 'dataDir', type: 'string', placeholder: 'DIR',
    help: 'keep queues on disk here (durable: an append-only log, restored at start); one broker per directory (default: memory only)' },
  { name: 'fsync', env: 'TURBOMQ_FSYNC', key: 'fsync', type: 'string', placeholder: 'POLICY', choices: FSYNC_POLICIES,
    help: `with --data-dir: always (fsync before each acknowledgement, grouped), everysec, no (default ${DEFAULTS.fsync})` },
  { name: 'log-level', env: 'TURBOMQ_LOG_LEVEL', key: 'logLevel', type: 'string', placeholder: 'LEVEL', choices: LOG_LEVELS,
    help: `${LOG_LEVELS.join(', ')} (default ${DEFAULTS.logLevel})` },
  ];
}
