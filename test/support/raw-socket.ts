// Raw sockets for tests that speak the wire protocol by hand (docs/protocol.md): frames built
// by test/support/raw.ts, replies read back as { op, requestId, code, text }, and whether the broker
// closed the connection. Every socket is destroyed at the end of its test.

import net from 'node:net';
import type { Test } from 'tap';
import { Op, PROTOCOL_VERSION } from '../../src/protocol.ts';
import { encodeAuthFrame } from '../../src/core/raw-frames.ts';
import { rawFrame } from './raw.ts';

/** One frame: header + body (test/support/raw.ts builds it). */
export function frame(op: number, requestId: number, body: Uint8Array = new Uint8Array(0)): Buffer {
  return rawFrame(op, requestId, body);
}

function names(queue: string, topic: string): Buffer {
  const q = Buffer.from(queue), t = Buffer.from(topic);
  return Buffer.concat([Buffer.from([q.length]), q, Buffer.from([t.length]), t]);
}

export const hello = (requestId: number) => frame(Op.HELLO, requestId, Buffer.from([PROTOCOL_VERSION, 0, PROTOCOL_VERSION, 0, 0, 0, 0, 0]));
export const auth = (requestId: number, token: string, user?: string) => Buffer.from(encodeAuthFrame(requestId, user, token));
export const ping = (requestId: number) => frame(Op.PING, requestId);
export const push = (requestId: number, queue: string, topic: string, data: string) => frame(Op.PUSH, requestId, Buffer.concat([names(queue, topic), Buffer.from(data)]));
export const length = (requestId: number, queue: string, topic: string) => frame(Op.LENGTH, requestId, names(queue, topic));

export interface Reply { op: number; requestId: number; code: number; text: string }

export interface RawConnection {
  socket: net.Socket;
  /** The next reply frame; rejects when the connection closes first or after timeoutMs. */
  next(timeoutMs?: number): Promise<Reply>;
  /** Resolves when the broker has closed the connection (true), or false after timeoutMs. */
  closed(timeoutMs?: number): Promise<boolean>;
}

/** A raw TCP connection to `url` (tcp://host:port). */
export function rawConnect(t: Test, url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port), noDelay: true });
    t.teardown(() => { socket.destroy(); });
    let buffer = Buffer.alloc(0);
    const replies: Reply[] = [];
    const waiting: (() => void)[] = [];
    let isClosed = false;
    const wake = () => { for (const w of waiting.splice(0)) w(); };
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 12 && buffer.length >= 4 + buffer.readUInt32LE(0)) {
        const end = 4 + buffer.readUInt32LE(0);
        const op = buffer[5]!;
        const isError = op === Op.ERROR;
        replies.push({
          op, requestId: buffer.readUInt32LE(8),
          code: isError ? buffer.readUInt16LE(12) : 0,
          text: isError ? buffer.subarray(16, end).toString('utf8') : '',
        });
        buffer = buffer.subarray(end);
      }
      wake();
    });
    socket.on('close', () => { isClosed = true; wake(); });
    socket.on('error', () => {});
    socket.once('connect', () => resolve({
      socket,
      async next(timeoutMs = 5000) {
        const deadline = Date.now() + timeoutMs;
        while (replies.length === 0) {
          if (isClosed) throw new Error('connection closed before a reply');
          const left = deadline - Date.now();
          if (left <= 0) throw new Error('no reply in time');
          await new Promise<void>((r) => { waiting.push(r); setTimeout(r, left); });
        }
        return replies.shift()!;
      },
      async closed(timeoutMs = 5000) {
        const deadline = Date.now() + timeoutMs;
        while (!isClosed) {
          const left = deadline - Date.now();
          if (left <= 0) return false;
          await new Promise<void>((r) => { waiting.push(r); setTimeout(r, left); });
        }
        return true;
      },
    }));
    socket.once('error', reject);
  });
}
