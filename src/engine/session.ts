// One client connection inside the broker, whatever carries its bytes (TCP, WebSocket,
// or an in-process pipe for the embedded engine).
//
// Data path: transport bytes -> Wasm frame decoder (one call per chunk) -> one core call
// per request (push/pop/length work directly on the decoder's buffer, no copy through JS)
// -> replies encoded into this session's Wasm writer -> one transport write per chunk.
//
// Parked pops and subscriptions: see assembly/waiters.ts for the shared-memory side and
// src/core/thread.ts for the mailbox. This file owns the request side: a parked pop has a
// waiter token registered with the thread; whichever comes first - the hand-over, the
// timeout, a CANCEL, or the connection closing - settles it, and a cancel that comes too
// late (the waiter was already handed a message) turns into a delivery or, if the request
// is gone, into waiterReturn, which puts the message back at the front of its topic.

import type { CoreThread, WaiterHandler } from '../core/thread.ts';
import type { CoreExports } from '../core/wasm.ts';
import {
  Op, ErrorCode, PROTOCOL_VERSION, TIMEOUT_INFINITE, OP_REJECT,
  DESC_SIZE, DESC_CAPACITY, DESC_OP, DESC_REQUEST_ID, DESC_QUEUE_PTR, DESC_QUEUE_LEN, DESC_TOPIC_PTR,
  DESC_TOPIC_LEN, DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1,
} from '../protocol.ts';
import { VERSION } from '../version.ts';
import { authorize, forbiddenText, permissionOf, type AuthUser } from './auth.ts';

export interface SessionLimits {
  maxMessageBytes: number;
  maxFrameBytes: number;
  /** Subscriptions one connection may hold. */
  maxSubscriptions: number;
  /** Parked pops one connection may hold. */
  maxParkedPops: number;
}

/** What a session needs from its transport. */
export interface SessionIO {
  /** Sends bytes (the session hands over ownership of the array). */
  write(bytes: Uint8Array): void;
  /** Closes the connection after what was written (the transport then calls session.close()). */
  end(): void;
  /** Reports an unexpected error (logged by the worker). */
  onError?(err: Error): void;
}

// Descriptor field offsets (src/protocol.ts), short names for the dispatch below.
const D_OP = DESC_OP, D_REQ = DESC_REQUEST_ID, D_QP = DESC_QUEUE_PTR, D_QL = DESC_QUEUE_LEN, D_TP = DESC_TOPIC_PTR,
  D_TL = DESC_TOPIC_LEN, D_DP = DESC_DATA_PTR, D_DL = DESC_DATA_LEN, D_A0 = DESC_ARG0, D_A1 = DESC_ARG1;
const WRITER_INITIAL_BYTES = 16 * 1024;
/** Credit a subscription may accumulate (bounds what one slow consumer can hold). */
const MAX_CREDIT = 1 << 20;

interface ParkedPop extends WaiterHandler {
  requestId: number;
  token: number;
  waiter: number;
  max: number;
  timer: NodeJS.Timeout | undefined;
}

interface Subscription extends WaiterHandler {
  id: number;
  topic: number;
  token: number;
  credit: number;
  /** The parked waiter, 0 when not parked. */
  waiter: number;
}

const textEncoder = new TextEncoder();
const queueNameDecoder = new TextDecoder('utf-8', { fatal: true });
const errorTextCache = new Map<string, Uint8Array>();

export class Session {
  readonly #thread: CoreThread;
  readonly #e: CoreExports;
  readonly #io: SessionIO;
  readonly #limits: SessionLimits;
  readonly #decoder: number;
  readonly #writer: number;
  readonly #pops = new Map<number, ParkedPop>();
  readonly #subs = new Map<number, Subscription>();
  readonly #unhookDrain: () => void;
  #closed = false;
  #dirty = false;
  /** Who is connected (src/engine/auth.ts); undefined: a broker without auth, or the embedded engine. */
  #user: AuthUser | undefined;
  /** The last queue name checked for #user, as bytes and text (most connections use few queues). */
  #lastQueueBytes: Uint8Array | undefined;
  #lastQueueName = '';

  constructor(thread: CoreThread, io: SessionIO, limits: SessionLimits) {
    this.#thread = thread;
    this.#e = thread.exports;
    this.#io = io;
    this.#limits = limits;
    this.#decoder = this.#e.decoderNew(limits.maxFrameBytes, limits.maxMessageBytes);
    this.#writer = this.#e.writerNew(WRITER_INITIAL_BYTES);
    if (this.#decoder === 0 || this.#writer === 0) {
      if (this.#decoder) this.#e.decoderFree(this.#decoder);
      if (this.#writer) this.#e.writerFree(this.#writer);
      throw new Error('turbomq: out of memory for a new connection');
    }
    this.#unhookDrain = thread.onAfterDrain(() => { if (this.#dirty) this.flush(); });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Set by the handshake once the connection has authenticated; every later request is checked against it. */
  set user(user: AuthUser | undefined) {
    this.#user = user;
  }

  get user(): AuthUser | undefined {
    return this.#user;
  }

  /** Parked pops and subscriptions (for stats and tests). */
  get parkedCount(): number {
    return this.#pops.size;
  }

  /** Bytes from the transport: decode every complete frame, answer, flush once. */
  onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.#onData(chunk);
    } catch (err) {
      // A bug here must cost this connection, never the worker and every other connection
      // (and the waiters it holds) on it.
      this.#io.onError?.(err as Error);
      if (!this.#closed) this.#fatal(ErrorCode.ERR_PROTOCOL, 'internal error while serving this connection');
    }
  }

  #onData(chunk: Uint8Array): void {
    const e = this.#e;
    const view = this.#thread.core.view;
    let offset = 0;
    // Feed in pieces of at most maxFrameBytes so the decoder buffer stays bounded.
    while (offset < chunk.length && !this.#closed) {
      const piece = Math.min(chunk.length - offset, this.#limits.maxFrameBytes);
      const at = e.decoderReserve(this.#decoder, piece);
      if (at === 0) return this.#fatal(ErrorCode.ERR_NO_MEMORY, 'broker out of memory');
      view.write(at, offset === 0 && piece === chunk.length ? chunk : chunk.subarray(offset, offset + piece));
      e.decoderCommit(this.#decoder, piece);
      offset += piece;
      for (;;) {
        const n = e.decoderNext(this.#decoder);
        if (n < 0) return this.#fatal(-n, -n === ErrorCode.ERR_NO_MEMORY ? 'broker out of memory' : 'malformed frame');
        const base = e.decoderDescriptors(this.#decoder);
        for (let i = 0; i < n && !this.#closed; i++) this.#dispatch(base + i * DESC_SIZE);
        if (n < DESC_CAPACITY) break;
      }
    }
    this.flush();
  }

  #dispatch(d: number): void {
    const view = this.#thread.core.view;
    const e = this.#e;
    const w = this.#writer;
    const op = view.u32(d + D_OP) & 0xff;
    const req = view.u32(d + D_REQ);
    const user = this.#user;
    if (user !== undefined && !user.admin && !this.#authorized(user, op, req, d)) return;
    switch (op) {
      case Op.PUSH: {
        const status = e.opPush(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), view.u32(d + D_DP), view.u32(d + D_DL));
        if (status === 0) e.encodeOk(w, req);
        else this.#error(req, -status);
        return;
      }
      case Op.PUSH_MANY: {
        const status = e.opPushRecords(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), view.u32(d + D_DP), view.u32(d + D_DL), view.u32(d + D_A0));
        if (status === 0) e.encodeOk(w, req);
        else this.#error(req, -status);
        return;
      }
      case Op.RETURN: {
        const status = e.opReturnRecords(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), view.u32(d + D_DP), view.u32(d + D_DL), view.u32(d + D_A0));
        if (status === 0) e.encodeOk(w, req);
        else this.#error(req, -status);
        return;
      }
      case Op.POP:
        return this.#pop(d, req, 1, view.u32(d + D_A0));
      case Op.POP_MANY:
        return this.#pop(d, req, view.u32(d + D_A0), view.u32(d + D_A1));
      case Op.LENGTH:
        e.encodeLengthOk(w, req, e.opLength(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL)));
        return;
      case Op.SUBSCRIBE:
        return this.#subscribe(d, req);
      case Op.UNSUBSCRIBE: {
        const sub = this.#subs.get(view.u32(d + D_A0));
        if (sub === undefined) return this.#error(req, ErrorCode.ERR_NOT_FOUND, 'no such subscription');
        this.#closeSubscription(sub);
        e.encodeOk(w, req);
        return;
      }
      case Op.CREDIT: {
        const sub = this.#subs.get(view.u32(d + D_A0));
        if (sub === undefined) return; // the subscription just ended: nothing to credit
        sub.credit = Math.min(MAX_CREDIT, sub.credit + view.u32(d + D_A1));
        if (sub.waiter === 0) this.#pump(sub);
        return;
      }
      case Op.CANCEL: {
        const pop = this.#pops.get(view.u32(d + D_A0));
        if (pop !== undefined && e.waiterCancel(pop.waiter) === 1) {
          this.#forgetPop(pop);
          this.#error(pop.requestId, ErrorCode.ERR_ABORTED, 'pop cancelled');
        }
        // Otherwise the waiter was already handed a message: it is delivered as the reply.
        return;
      }
      case Op.HELLO: {
        const min = view.u32(d + D_A0), max = view.u32(d + D_A1);
        if (min > PROTOCOL_VERSION || max < PROTOCOL_VERSION) {
          this.#error(req, ErrorCode.ERR_UNSUPPORTED_VERSION, `this broker speaks protocol version ${PROTOCOL_VERSION}`);
          this.flush();
          this.#io.end();
          return;
        }
        const scratch = this.#thread.scratch;
        const len = view.writeUtf8(scratch, 255, VERSION);
        e.encodeHelloOk(w, req, this.#limits.maxMessageBytes, this.#limits.maxFrameBytes, scratch, len);
        return;
      }
      case Op.PING:
        e.encodePong(w, req);
        return;
      case OP_REJECT:
        return this.#error(req, view.u32(d + D_A0));
      default:
        return this.#error(req, ErrorCode.ERR_UNKNOWN_OPCODE, `opcode 0x${op.toString(16)} is not a request`);
    }
  }

  /** The permission check for a user who is not an admin (src/engine/auth.ts); a refusal answers ERR_FORBIDDEN. */
  #authorized(user: AuthUser, op: number, req: number, d: number): boolean {
    const need = permissionOf(op);
    if (need === 'none') return true;
    const view = this.#thread.core.view;
    const queue = need === 'admin' ? '' : this.#queueName(view.u32(d + D_QP), view.u32(d + D_QL));
    if (queue !== undefined && authorize(user, op, queue)) return true;
    this.#error(req, ErrorCode.ERR_FORBIDDEN, queue === undefined ? 'the queue name is not UTF-8' : forbiddenText(user, op, queue));
    return false;
  }

  /** The queue name at ptr/len as text; undefined when it is not UTF-8. */
  #queueName(ptr: number, len: number): string | undefined {
    const view = this.#thread.core.view;
    const last = this.#lastQueueBytes;
    if (last !== undefined && last.length === len) {
      let same = true;
      for (let i = 0; i < len && same; i++) same = view.u8(ptr + i) === last[i];
      if (same) return this.#lastQueueName;
    }
    const copy = view.copy(ptr, len);
    let name: string;
    try {
      name = queueNameDecoder.decode(copy);
    } catch {
      return undefined;
    }
    this.#lastQueueBytes = copy;
    this.#lastQueueName = name;
    return name;
  }

  #pop(d: number, req: number, max: number, timeoutMs: number): void {
    const view = this.#thread.core.view;
    const e = this.#e;
    if (this.#pops.has(req)) return this.#error(req, ErrorCode.ERR_INVALID_ARGUMENT, 'request id already has a parked pop');
    const park = timeoutMs !== 0;
    if (park && this.#pops.size >= this.#limits.maxParkedPops) return this.#error(req, ErrorCode.ERR_LIMIT, 'too many parked pops on this connection');
    const token = park ? this.#thread.newToken() : 0;
    const n = e.opPop(this.#writer, Op.MESSAGES, req, view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), max, this.#limits.maxFrameBytes, 0, token);
    if (n > 0) return;
    if (n < 0) return this.#error(req, -n);
    if (!park) {
      e.encodeEmpty(this.#writer, req);
      return;
    }
    const pop: ParkedPop = {
      requestId: req, token, waiter: e.lastWaiter(), max, timer: undefined,
      onHanded: (waiter) => this.#deliverPop(pop, waiter),
    };
    this.#pops.set(req, pop);
    this.#thread.register(token, pop);
    if (timeoutMs !== TIMEOUT_INFINITE) pop.timer = setTimeout(() => this.#timeoutPop(pop), timeoutMs);
  }

  #deliverPop(pop: ParkedPop, waiter: number): void {
    const e = this.#e;
    const n = e.waiterDeliverFrame(waiter, this.#writer, Op.MESSAGES, pop.requestId, pop.max - 1, this.#limits.maxFrameBytes, 0);
    if (n < 0) {
      e.waiterReturn(waiter);
      this.#error(pop.requestId, -n);
    } else {
      e.waiterRelease(waiter);
    }
    this.#forgetPop(pop);
    this.#dirty = true;
  }

  #timeoutPop(pop: ParkedPop): void {
    pop.timer = undefined;
    if (this.#closed || this.#e.waiterCancel(pop.waiter) !== 1) return; // handed: delivery is on its way
    this.#forgetPop(pop);
    this.#e.encodeEmpty(this.#writer, pop.requestId);
    this.flush();
  }

  #forgetPop(pop: ParkedPop): void {
    if (pop.timer !== undefined) clearTimeout(pop.timer);
    this.#pops.delete(pop.requestId);
    this.#thread.unregister(pop.token);
  }

  #subscribe(d: number, req: number): void {
    const view = this.#thread.core.view;
    const e = this.#e;
    if (this.#subs.has(req)) return this.#error(req, ErrorCode.ERR_INVALID_ARGUMENT, 'request id already names a subscription');
    if (this.#subs.size >= this.#limits.maxSubscriptions) return this.#error(req, ErrorCode.ERR_LIMIT, 'too many subscriptions on this connection');
    const topic = e.topicAcquire(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), true);
    if (topic === 1) return this.#error(req, ErrorCode.ERR_NO_MEMORY);
    const exclusive = (view.u32(d + D_A1) & 1) !== 0;
    const token = this.#thread.newToken();
    const status = e.consumerAttach(topic, token, exclusive);
    if (status !== 0) {
      e.topicRelease(topic);
      return this.#error(req, -status, exclusive ? 'the topic already has a consumer' : 'the topic has an exclusive consumer');
    }
    const sub: Subscription = {
      id: req, topic, token, credit: Math.min(MAX_CREDIT, view.u32(d + D_A0)), waiter: 0,
      onHanded: (waiter) => this.#deliverSubscription(sub, waiter),
    };
    this.#subs.set(req, sub);
    e.encodeOk(this.#writer, req);
    this.#pump(sub);
  }

  /** Delivers to a subscription while it has credit; parks when its topic is empty. */
  #pump(sub: Subscription): void {
    const e = this.#e;
    while (sub.credit > 0 && sub.waiter === 0 && !this.#closed) {
      const n = e.topicPopFrame(sub.topic, this.#writer, Op.DELIVER, sub.id, sub.credit, this.#limits.maxFrameBytes, sub.token, sub.token);
      if (n > 0) {
        sub.credit -= n;
      } else if (n === 0) {
        sub.waiter = e.lastWaiter();
        this.#thread.register(sub.token, sub);
      } else {
        this.#error(sub.id, -n);
        return;
      }
    }
  }

  #deliverSubscription(sub: Subscription, waiter: number): void {
    const e = this.#e;
    sub.waiter = 0;
    const n = e.waiterDeliverFrame(waiter, this.#writer, Op.DELIVER, sub.id, sub.credit - 1, this.#limits.maxFrameBytes, sub.token);
    if (n < 0) {
      e.waiterReturn(waiter);
      this.#error(sub.id, -n);
      return;
    }
    e.waiterRelease(waiter);
    sub.credit -= n;
    this.#pump(sub);
    this.#dirty = true;
  }

  #closeSubscription(sub: Subscription): void {
    const e = this.#e;
    this.#subs.delete(sub.id);
    if (sub.waiter !== 0) {
      if (e.waiterCancel(sub.waiter) === 1) this.#thread.unregister(sub.token);
      else this.#thread.expectReturn(sub.token);
      sub.waiter = 0;
    }
    e.consumerDetach(sub.topic, sub.token);
    e.topicRelease(sub.topic);
  }

  #error(req: number, code: number, text?: string): void {
    const message = text ?? defaultErrorText(code);
    let bytes = errorTextCache.get(message);
    if (bytes === undefined) {
      bytes = textEncoder.encode(message).subarray(0, 1024);
      if (errorTextCache.size < 256) errorTextCache.set(message, bytes);
    }
    const scratch = this.#thread.scratch;
    this.#thread.core.view.write(scratch, bytes);
    this.#e.encodeError(this.#writer, req, code, scratch, bytes.length);
  }

  // ── for the handshake (src/engine/handshake.ts), which answers AUTH itself ─────────

  /** Answers `req` with OK, at once. */
  replyOk(req: number): void {
    if (this.#closed) return;
    this.#e.encodeOk(this.#writer, req);
    this.flush();
  }

  /** Answers `req` with an ERROR, at once. */
  replyError(req: number, code: number, text: string): void {
    if (this.#closed) return;
    this.#error(req, code, text);
    this.flush();
  }

  /** Sends a fatal ERROR (request id 0) and ends the connection. */
  fail(code: number, text: string): void {
    if (!this.#closed) this.#fatal(code, text);
  }

  #fatal(code: number, text: string): void {
    this.#error(0, code, text);
    this.flush();
    this.#io.end();
    this.close();
  }

  /** Sends everything encoded so far in one write. */
  flush(): void {
    this.#dirty = false;
    if (this.#closed) return; // the writer is freed
    const e = this.#e;
    const len = e.writerLength(this.#writer);
    if (len === 0) return;
    const bytes = this.#thread.core.view.copy(e.writerData(this.#writer), len);
    e.writerReset(this.#writer);
    this.#io.write(bytes);
  }

  /** The connection is gone: cancel parked pops, end subscriptions, free buffers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const e = this.#e;
    for (const pop of this.#pops.values()) {
      if (pop.timer !== undefined) clearTimeout(pop.timer);
      if (e.waiterCancel(pop.waiter) === 1) this.#thread.unregister(pop.token);
      else this.#thread.expectReturn(pop.token); // handed: its message goes back to the topic
    }
    this.#pops.clear();
    for (const sub of [...this.#subs.values()]) this.#closeSubscription(sub);
    this.#unhookDrain();
    e.decoderFree(this.#decoder);
    e.writerFree(this.#writer);
  }
}

function defaultErrorText(code: number): string {
  switch (code) {
    case ErrorCode.ERR_PROTOCOL: return 'malformed request';
    case ErrorCode.ERR_INVALID_ARGUMENT: return 'invalid argument';
    case ErrorCode.ERR_MESSAGE_TOO_LARGE: return 'message too large';
    case ErrorCode.ERR_EXCLUSIVE: return 'the topic has an exclusive consumer';
    case ErrorCode.ERR_NO_MEMORY: return 'broker out of memory';
    case ErrorCode.ERR_UNKNOWN_OPCODE: return 'unknown opcode';
    default: return ErrorCode.nameOf(code);
  }
}
