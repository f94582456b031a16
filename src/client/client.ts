// TurboClient: the public face of one connection to a broker, over any Transport (TCP,
// WebSocket, the embedded engine's in-process pipe). The plumbing - writer, request ids,
// replies - is src/client/connection.ts and is not reachable from here.

import type { Transport } from './transport.ts';
import type { Queue } from './queue.ts';
import { ClientQueue } from './queue.ts';
import { Connection, clientCore, clientPlatform, type ClientCore } from './connection.ts';
import { TurboError } from '../errors.ts';
import { DEFAULTS, resolveClientOptions, type ClientOptions } from '../options.ts';
import { DEFAULT_URL } from '../url.ts';
import type { EngineStats } from '../engine/stats.ts';
import { handshake } from './handshake.ts';
import { Reconnector } from './reconnect.ts';
import type { StatusEvent, StatusListener, StatusType } from './status.ts';

export { setClientPlatform, type ClientPlatform } from './connection.ts';
export type { ClientOptions } from '../options.ts';
export type { StatusEvent } from './status.ts';

export class TurboClient {
  readonly url: string;
  readonly #conn: Connection;
  readonly #queues = new Map<string, ClientQueue>();

  private constructor(conn: Connection) {
    this.#conn = conn;
    this.url = conn.url;
  }

  /**
   * Connects to a broker: tcp://, tls://, unix:// (Node) or ws://, wss:// urls. With
   * `{ token }` it authenticates; a broker with auth refuses a missing or wrong token with
   * ERR_UNAUTHORIZED. With `{ reconnect: true }` a lost connection is replaced (README,
   * "Reconnecting"); the first connection must succeed all the same.
   */
  static async connect(url: string = DEFAULT_URL, options: ClientOptions = {}): Promise<TurboClient> {
    const platform = clientPlatform();
    const opts = resolveClientOptions(options);
    const c = await clientCore();
    const transport = await platform.connect(url, opts);
    const client = await TurboClient.#handshake(url, transport, c, opts.connectTimeoutMs, opts.token, opts.user);
    if (opts.reconnect) client.#conn.enableReconnect(new Reconnector(client.#conn, platform, opts));
    return client;
  }

  /** A client over an already open transport (the embedded engine uses this). */
  static async connectTransport(transport: Transport, url: string, timeoutMs: number = DEFAULTS.connectTimeoutMs, token?: string, user?: string): Promise<TurboClient> {
    return TurboClient.#handshake(url, transport, await clientCore(), timeoutMs, token, user);
  }

  static async #handshake(url: string, transport: Transport, c: ClientCore, timeoutMs: number, token: string | undefined, user: string | undefined): Promise<TurboClient> {
    const conn = new Connection(url, transport, c);
    try {
      await handshake(conn, timeoutMs, token, user);
    } catch (err) {
      // A fatal ERROR from the broker (ERR_LIMIT when it is full) says more than "closed".
      const fatal = conn.closeError;
      await conn.close();
      throw fatal instanceof TurboError ? fatal : err;
    }
    conn.opened();
    return new TurboClient(conn);
  }

  /** The broker's limits and version, from the handshake. */
  get server(): { version: string; maxMessageBytes: number; maxFrameBytes: number } {
    return this.#conn.server;
  }

  /** Closed for good (client.close(), or a lost connection without reconnect). */
  get closed(): boolean {
    return this.#conn.closed;
  }

  /** Connected now: false while reconnecting, and once closed. */
  get connected(): boolean {
    return this.#conn.isOpen;
  }

  /**
   * Status events: `disconnect` ({ error }: the connection was lost, the client reconnects),
   * `reconnect` ({ attempts }: it is back, subscriptions and leased pops resumed) and `close`.
   */
  on<T extends StatusType>(type: T, listener: StatusListener<T>): this {
    this.#conn.status.on(type, listener);
    return this;
  }

  off<T extends StatusType>(type: T, listener: StatusListener<T>): this {
    this.#conn.status.off(type, listener);
    return this;
  }

  /** The same events as an async iterator, from now on; it ends after `close`. */
  status(): AsyncIterableIterator<StatusEvent> {
    return this.#conn.status.iterate();
  }

  getQueue(name: string): Queue {
    let queue = this.#queues.get(name);
    if (queue === undefined) {
      queue = new ClientQueue(this.#conn, name);
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /** Round trip to the broker. */
  async ping(): Promise<void> {
    const conn = this.#conn;
    if (!conn.isOpen) return conn.whenOpen(() => this.ping());
    await conn.request('ok', '', '', (id) => conn.e.encodePing(conn.writer, id));
  }

  /** The broker's statistics (SERVER_STATS: what `turbomq stats` and GET /stats show). */
  async serverStats(): Promise<EngineStats> {
    const conn = this.#conn;
    if (!conn.isOpen) return conn.whenOpen(() => this.serverStats());
    return conn.request<EngineStats>('statsJson', '', '', (id) => conn.e.encodeServerStats(conn.writer, id));
  }

  /**
   * Asks the broker to stop gracefully (SHUTDOWN; needs an admin user once the broker has
   * authentication). Resolves when the broker has accepted; it then closes every connection.
   */
  async shutdown(): Promise<void> {
    const conn = this.#conn;
    if (!conn.isOpen) return conn.whenOpen(() => this.shutdown());
    await conn.request('ok', '', '', (id) => conn.e.encodeShutdown(conn.writer, id));
  }

  /**
   * Closes the connection. Open subscriptions are closed first, so their received but
   * unconsumed messages go back to their topics; then pending and later calls reject with
   * ERR_CONNECTION_CLOSED, and leases still held end (their messages are redelivered).
   * A reconnecting client stops reconnecting; calls waiting for it reject.
   */
  async close(): Promise<void> {
    const conn = this.#conn;
    if (!conn.closed) await Promise.allSettled(conn.subscriptions().map((sub) => sub.close()));
    await conn.close();
  }
}
