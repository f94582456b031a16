// A broker worker thread: instantiates the shared core over the engine's memory, listens
// on the engine's ports (SO_REUSEPORT: the kernel spreads connections over the workers),
// and serves every connection it is given. Controlled by the main thread through comlink.

import { parentPort, workerData } from 'node:worker_threads';
import type net from 'node:net';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { instantiateSharedCore } from '../core/wasm.ts';
import { CoreThread } from '../core/thread.ts';
import { Session } from './session.ts';
import { listenTcp, type SessionHost } from '../transport/tcp.ts';
import { listenWebSocket } from '../transport/websocket.ts';
import type { ListenSpec, ResolvedOptions } from './options.ts';

export interface WorkerData {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  options: ResolvedOptions;
}

export interface WorkerStats {
  threadId: number;
  connections: number;
  connectionsTotal: number;
}

const { memory, module, options } = workerData as WorkerData;
const core = await instantiateSharedCore(memory, module);
const thread = new CoreThread(core);
thread.onHandlerError = (err) => console.error(`turbomq worker ${thread.id}: waiter delivery failed: ${err.stack ?? err.message}`);
thread.start();

const sessions = new Set<{ session: Session; end(): void }>();
const servers: { close(cb: () => void): void }[] = [];
let connectionsTotal = 0;
let stopping = false;

const limits = {
  maxMessageBytes: options.maxMessageBytes,
  maxFrameBytes: options.maxFrameBytes,
  maxSubscriptions: options.maxSubscriptions,
  maxParkedPops: options.maxParkedPops,
};

const host: SessionHost = {
  accept(io) {
    if (stopping || sessions.size >= options.maxConnectionsPerThread) return undefined;
    const session = new Session(thread, { ...io, onError: (err) => console.error(`turbomq worker ${thread.id}: connection closed after an internal error: ${err.stack ?? err.message}`) }, limits);
    const entry = { session, end: () => io.end() };
    sessions.add(entry);
    connectionsTotal++;
    return {
      onData: (chunk) => session.onData(chunk),
      close: () => {
        sessions.delete(entry);
        session.close();
      },
    };
  },
};

const api = {
  /** Starts listening; returns the bound ports in the order given. */
  async listen(specs: ListenSpec[]): Promise<number[]> {
    const ports: number[] = [];
    for (const spec of specs) {
      if (spec.protocol === 'tcp') {
        const server: net.Server = await listenTcp(spec.host, spec.port, host);
        servers.push(server);
        ports.push((server.address() as net.AddressInfo).port);
      } else {
        const server = await listenWebSocket(spec.host, spec.port, host, {
          maxPayload: options.maxFrameBytes,
          allowedOrigins: options.allowedOrigins,
        });
        servers.push(server);
        ports.push(server.port);
      }
    }
    return ports;
  },

  /** Graceful stop: no new connections, answer what was received, close every connection. */
  async stop(): Promise<void> {
    stopping = true;
    // server.close() waits for every connection to end; give in-flight work a moment, then end them.
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.race([Promise.all(closed), delay(50)]);
    for (const { session, end } of sessions) {
      session.flush();
      end();
      session.close();
    }
    sessions.clear();
    thread.stop();
  },

  stats(): WorkerStats {
    return { threadId: thread.id, connections: sessions.size, connectionsTotal };
  },

  /** Tests only (reached through TurboEngine's crashWorkerForTest symbol): an uncaught error. */
  crashForTest(): void {
    setImmediate(() => { throw new Error('turbomq: worker crash requested by a test'); });
  },
};

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type WorkerApi = typeof api;

Comlink.expose(api, nodeEndpoint(parentPort!));
