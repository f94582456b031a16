// TurboClient: the public face of one connection to a broker, over any Transport (TCP,
// WebSocket, the embedded engine's in-process pipe). The plumbing - writer, request ids,
// replies - is src/client/connection.ts and is not reachable from here.

import type { Transport } from './transport.ts';
import type { Queue } from './queue.ts';
import { ClientQueue } from './queue.ts';
import { Connection, clientCore, clientPlatform, type ClientOptions, type ClientCore } from './connection.ts';
import { TurboError } from '../errors.ts';
import { PROTOCOL_VERSION } from '../protocol.ts';
import type { EngineStats } from '../engine/stats.ts';

export { setClientPlatform, type ClientOptions, type ClientPlatform } from './connection.ts';

export class TurboClient {
  readonly url: string;
  readonly #conn: Connection;
  readonly #queues = new Map<string, ClientQueue>();

  private constructor(conn: Connection) {
    this.#conn = conn;
    this.url = conn.url;
  }

  /** Connects to a broker: tcp://host:port (Node) or ws://host:port. */
  static async connect(url: string = 'tcp://127.0.0.1:33444', options: ClientOptions = {}): Promise<TurboClient> {
    const platform = clientPlatform();
    const opts: Required<ClientOptions> = { connectTimeoutMs: options.connectTimeoutMs ?? 10_000 };
    const c = await clientCore();
    const transport = await platform.connect(url, opts);
    return TurboClient.#handshake(url, transport, c, opts.connectTimeoutMs);
  }

  /** A client over an already open transport (the embedded engine uses this). */
  static async connectTransport(transport: Transport, url: string, timeoutMs = 10_000): Promise<TurboClient> {
    return TurboClient.#handshake(url, transport, await clientCore(), timeoutMs);
  }

  static async #handshake(url: string, transport: Transport, c: ClientCore, timeoutMs: number): Promise<TurboClient> {
    const conn = new Connection(url, transport, c);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        conn.request('hello', '', '', (id) => c.e.encodeHello(conn.writer, id, PROTOCOL_VERSION, PROTOCOL_VERSION)),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new TurboError('ERR_CONNECTION_CLOSED', `no answer from ${url} within ${timeoutMs} ms`)), timeoutMs); }),
      ]);
    } catch (err) {
      await conn.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return new TurboClient(conn);
  }

  /** The broker's limits and version, from the handshake. */
  get server(): { version: string; maxMessageBytes: number; maxFrameBytes: number } {
    return this.#conn.server;
  }

  get closed(): boolean {
    return this.#conn.closed;
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
    await conn.request('ok', '', '', (id) => conn.e.encodePing(conn.writer, id));
  }

  /** The broker's statistics (SERVER_STATS: what `turbomq stats` and GET /stats show). */
  async serverStats(): Promise<EngineStats> {
    const conn = this.#conn;
    return conn.request<EngineStats>('statsJson', '', '', (id) => conn.e.encodeServerStats(conn.writer, id));
  }

  /**
   * Asks the broker to stop gracefully (SHUTDOWN; needs an admin user once the broker has
   * authentication). Resolves when the broker has accepted; it then closes every connection.
   */
  async shutdown(): Promise<void> {
    const conn = this.#conn;
    await conn.request('ok', '', '', (id) => conn.e.encodeShutdown(conn.writer, id));
  }

  /**
   * Closes the connection. Open subscriptions are closed first, so their received but
   * unconsumed messages go back to their topics; then pending and later calls reject with
   * ERR_CONNECTION_CLOSED, and leases still held end (their messages are redelivered).
   */
  async close(): Promise<void> {
    const conn = this.#conn;
    if (!conn.closed) await Promise.allSettled(conn.subscriptions().map((sub) => sub.close()));
    await conn.close();
  }
}
