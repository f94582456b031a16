// Reconnecting a client whose connection was lost: attempts with exponential backoff and
// jitter (backoff.ts), each a new transport from the platform (tcp, tls, unix, ws, wss, the
// browser's WebSocket) and a full handshake (the token again). Connection (connection.ts)
// decides what happens to calls, subscriptions and pops; this only drives the attempts.
// It never gives up on its own: calls waiting meanwhile time out (reconnectTimeoutMs), and
// client.close() stops it - a timer pending or an attempt under way alike.

import type { Connection, ClientPlatform, ReconnectDriver } from './connection.ts';
import type { ResolvedClientOptions } from '../options.ts';
import { backoffDelayMs } from './backoff.ts';
import { handshake } from './handshake.ts';

export class Reconnector implements ReconnectDriver {
  readonly reconnectTimeoutMs: number;
  readonly #conn: Connection;
  readonly #platform: ClientPlatform;
  readonly #options: ResolvedClientOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #attempts = 0;
  #stopped = false;
  #running = false;

  constructor(conn: Connection, platform: ClientPlatform, options: ResolvedClientOptions) {
    this.#conn = conn;
    this.#platform = platform;
    this.#options = options;
    this.reconnectTimeoutMs = options.reconnectTimeoutMs;
  }

  /** The connection was lost: start attempting (the first after one short, jittered delay). */
  start(): void {
    if (this.#stopped || this.#running) return;
    this.#running = true;
    this.#attempts = 0;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#stopped) return;
    const o = this.#options;
    this.#timer = setTimeout(() => { this.#timer = undefined; void this.#attempt(); }, backoffDelayMs(this.#attempts, o.reconnectDelayMs, o.reconnectMaxDelayMs));
  }

  async #attempt(): Promise<void> {
    this.#attempts++;
    const o = this.#options;
    let transport;
    try {
      transport = await this.#platform.connect(this.#conn.url, o);
    } catch {
      return this.#schedule(); // not listening (yet): try again later
    }
    if (this.#stopped) return transport.close();
    this.#conn.attach(transport);
    try {
      await handshake(this.#conn, o.connectTimeoutMs, o.token, o.user);
    } catch {
      // Refused (ERR_UNAUTHORIZED, ERR_LIMIT), closed or silent: drop it, try again later.
      this.#conn.abandonAttempt();
      return this.#schedule();
    }
    if (this.#stopped) return;
    this.#running = false;
    this.#conn.resume(this.#attempts);
  }
}
