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
//
// Leases (assembly/leases.ts): leased pops belong to this connection's lease owner, each
// ack:true subscription has its own. SETTLE frames settle them; closing a subscription
// ends its leases before UNSUBSCRIBE is answered, and closing the connection ends all of
// them, so every unacked message is back at its topic's front at once, not at expiry. An
// ack:true subscription's credit is `prefetch - leases it holds`: an ack, nack or expiry
// lets the next message come, with no CREDIT from the client.
//
// Output limits (src/engine/output.ts): a message is taken from its topic only while this
// connection's unsent output (the writer plus the transport's buffer) is under the high-water
// mark. Past it, requests stop being dispatched (the rest stays in the decoder and the
// chunks that follow are held) and subscriptions stop being pumped until the transport calls
// onWritable(); a connection whose output would pass maxOutputBytes is closed at once and
// what was handed to it goes back to its topic.

import type { CoreThread, WaiterHandler } from '../core/thread.ts';
import type { CoreExports } from '../core/wasm.ts';
import {
  Op, ErrorCode, PROTOCOL_VERSION, TIMEOUT_INFINITE, OP_REJECT, SUBSCRIBE_EXCLUSIVE, SUBSCRIBE_ACK, SettleKind,
  SETTLE_ENTRY_BYTES, SettingsMask,
  DESC_SIZE, DESC_CAPACITY, DESC_OP, DESC_REQUEST_ID, DESC_QUEUE_PTR, DESC_QUEUE_LEN, DESC_TOPIC_PTR,
  DESC_TOPIC_LEN, DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1, DESC_ARG2, DESC_ARG3,
} from '../protocol.ts';
import { VERSION } from '../version.ts';
import { countersOf, type ThreadCounters } from './metrics.ts';
import { mayShutdown, type OperatorHandler } from './operator.ts';
import { authorize, forbiddenText, permissionOf, type AuthUser } from './auth.ts';
import { OutputGate } from './output.ts';
import type { ParkedPopBudget } from './parked.ts';
import { settingsJson } from './durability.ts';

export interface SessionLimits {
  maxMessageBytes: number;
  maxFrameBytes: number;
  /** Subscriptions one connection may hold. */
  maxSubscriptions: number;
  /** Parked pops one connection may hold. */
  maxParkedPops: number;
  /** Unsent output past which the connection is closed (src/engine/output.ts). */
  maxOutputBytes: number;
  /** The thread's parked pops over all its connections (src/engine/parked.ts); shared by its sessions. */
  parkedPops: ParkedPopBudget;
}

/** What a session needs from its transport. */
export interface SessionIO {
  /** Sends bytes (the session hands over ownership of the array). */
  write(bytes: Uint8Array): void;
  /**
   * Sends a copy of bytes valid only during the call (a view of the session's writer): a
   * transport that reuses its own buffers (tcp.ts, send-buffers.ts) offers it, and the
   * session then makes no array per reply.
   */
  writeCopyOf?(bytes: Uint8Array): void;
  /** Closes the connection after what was written (the transport then calls session.close()). */
  end(): void;
  /** Bytes written and not sent yet (the transport's buffer); without it, 0 (an in-process pipe). */
  bufferedBytes?(): number;
  /** Closes the connection at once, dropping unsent output (the output limit); without it, end(). */
  destroy?(): void;
  /** Reports an unexpected error (logged by the worker). */
  onError?(err: Error): void;
  /** The session is closing the connection for a protocol error (logged once by the worker). */
  onFatal?(code: number, text: string): void;
  /** Serves SERVER_STATS and SHUTDOWN; without it they answer ERR_UNKNOWN_OPCODE. */
  operator?: OperatorHandler;
}

// Descriptor field offsets (src/protocol.ts), short names for the dispatch below.
const D_OP = DESC_OP, D_REQ = DESC_REQUEST_ID, D_QP = DESC_QUEUE_PTR, D_QL = DESC_QUEUE_LEN, D_TP = DESC_TOPIC_PTR,
  D_TL = DESC_TOPIC_LEN, D_DP = DESC_DATA_PTR, D_DL = DESC_DATA_LEN, D_A0 = DESC_ARG0, D_A1 = DESC_ARG1,
  D_A2 = DESC_ARG2, D_A3 = DESC_ARG3;
const WRITER_INITIAL_BYTES = 16 * 1024;
/** Credit a subscription may accumulate (bounds what one slow consumer can hold). */
const MAX_CREDIT = 1 << 20;
/** SERVER_STATS requests one connection may have in flight to the main thread (they share one answer). */
const MAX_STATS_WAITING = 16;

interface ParkedPop extends WaiterHandler {
  requestId: number;
  token: number;
  waiter: number;
  max: number;
  timer: NodeJS.Timeout | undefined;
  /** Leased pop: the connection's lease owner (0 for a plain pop) and the lease length (0 = the queue's). */
  owner: number;
  leaseMs: number;
}

interface Subscription extends WaiterHandler {
  id: number;
  topic: number;
  token: number;
  /** Plain: messages it may still be sent. ack:true: its prefetch (credit = prefetch - leases held). */
  credit: number;
  /** The parked waiter, 0 when not parked. */
  waiter: number;
  /** ack:true: its own lease owner (0 for a plain subscription) and lease length (0 = the queue's). */
  owner: number;
  leaseMs: number;
}

/** Largest delayMs / leaseMs / timeoutMs a timer honours at once (setTimeout's limit); longer ones re-arm. */
const MAX_TIMER_MS = 0x7FFFFFFF;

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
  readonly #unhookExpiry: () => void;
  /** This connection's id for lease ownership (unique on this thread). */
  readonly #connectionId: number;
  /** Lease owner of this connection's leased pops, 0 until the first. */
  #popOwner = 0;
  readonly #counters: ThreadCounters;
  /** Request ids of SERVER_STATS waiting for the main thread's answer. */
  #statsWaiting: number[] | undefined;
  #closed = false;
  #dirty = false;
  /** Who is connected (src/engine/auth.ts); undefined: a broker without auth, or the embedded engine. */
  #user: AuthUser | undefined;
  /** The last queue name checked for #user, as bytes and text (most connections use few queues). */
  #lastQueueBytes: Uint8Array | undefined;
  #lastQueueName = '';
  readonly #output: OutputGate;

  constructor(thread: CoreThread, io: SessionIO, limits: SessionLimits) {
    this.#thread = thread;
    const e = this.#e = thread.exports;
    this.#io = io;
    this.#limits = limits;
    this.#counters = countersOf(thread);
    this.#decoder = this.#e.decoderNew(limits.maxFrameBytes, limits.maxMessageBytes);
    this.#writer = this.#e.writerNew(WRITER_INITIAL_BYTES);
    if (this.#decoder === 0 || this.#writer === 0) {
      if (this.#decoder) this.#e.decoderFree(this.#decoder);
      if (this.#writer) this.#e.writerFree(this.#writer);
      throw new Error('turbomq: out of memory for a new connection');
    }
    this.#unhookDrain = thread.onAfterDrain(() => { if (this.#dirty) this.flush(); });
    // Expired leases free ack:true subscriptions' credit.
    this.#unhookExpiry = thread.onLeasesEnded(() => this.#pumpAckSubscriptions());
    this.#connectionId = thread.newToken();
    this.#output = new OutputGate(limits.maxOutputBytes, limits.maxFrameBytes, () => e.writerLength(this.#writer) + (io.bufferedBytes?.() ?? 0) + this.#waitingBytes);
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
    if (this.#output.stalled) {
      // Held until the output drains; the transport stopped reading, so this is at most what it had read.
      if (!this.#output.hold(chunk)) this.#closeForOutput('the connection sent requests while its replies were not read');
      return;
    }
    try {
      this.#onData(chunk, 0);
    } catch (err) {
      // A bug here must cost this connection, never the worker and every other connection
      // (and the waiters it holds) on it.
      this.#io.onError?.(err as Error);
      if (!this.#closed) this.#fatal(ErrorCode.ERR_PROTOCOL, 'internal error while serving this connection');
    }
  }

  #onData(chunk: Uint8Array, offset: number): void {
    const e = this.#e;
    const view = this.#thread.core.view;
    // Feed in pieces of at most maxFrameBytes so the decoder buffer stays bounded.
    while (offset < chunk.length && !this.#closed) {
      const piece = Math.min(chunk.length - offset, this.#limits.maxFrameBytes);
      const at = e.decoderReserve(this.#decoder, piece);
      if (at === 0) return this.#fatal(ErrorCode.ERR_NO_MEMORY, 'broker out of memory');
      view.write(at, offset === 0 && piece === chunk.length ? chunk : chunk.subarray(offset, offset + piece));
      e.decoderCommit(this.#decoder, piece);
      offset += piece;
      if (!this.#serve(-1, 0, 0)) {
        // Output backed up: the rest of this chunk waits, ahead of anything that comes later.
        if (offset < chunk.length) this.#output.holdFirst(chunk.subarray(offset));
        break;
      }
    }
    this.flush();
  }

  /**
   * Dispatches decoded requests, from descriptor `i` of a batch of `n` at `base` (base -1:
   * decode the next batch). False when it stopped because the output is backed up: the
   * position is kept and onWritable() goes on from there (the decoder is not touched
   * meanwhile, so the descriptors stay valid).
   */
  #serve(base: number, i: number, n: number): boolean {
    const e = this.#e;
    for (;;) {
      if (base < 0) {
        n = e.decoderNext(this.#decoder);
        if (n < 0) {
          this.#fatal(-n, fatalText(-n, this.#limits.maxFrameBytes));
          return true;
        }
        base = e.decoderDescriptors(this.#decoder);
        i = 0;
      }
      for (; i < n && !this.#closed; i++) {
        if (this.#output.backedUp() && (this.flush(), this.#output.backedUp())) {
          this.#output.stall(base, i, n);
          return false;
        }
        this.#dispatch(base + i * DESC_SIZE);
      }
      if (n < DESC_CAPACITY || this.#closed) return true;
      base = -1;
    }
  }

  /**
   * The transport can take more (TCP 'drain', a WebSocket send completed): go on with the
   * requests held back, then the subscriptions that stopped for output.
   */
  onWritable(): void {
    if (this.#closed || this.#output.backedUp()) return;
    try {
      const resume = this.#output.resume();
      if (resume !== undefined && this.#serve(resume.base, resume.i, resume.n)) {
        for (let chunk = this.#output.nextHeld(); chunk !== undefined && !this.#closed; chunk = this.#output.stalled ? undefined : this.#output.nextHeld()) {
          this.#onData(chunk, 0);
        }
      }
      if (!this.#output.stalled) {
        for (const sub of this.#output.takeStalledSubscriptions()) if (!this.#closed && this.#subs.get(sub) !== undefined) this.#pumpById(sub);
      }
      this.flush();
    } catch (err) {
      this.#io.onError?.(err as Error);
      if (!this.#closed) this.#fatal(ErrorCode.ERR_PROTOCOL, 'internal error while serving this connection');
    }
  }

  #pumpById(id: number): void {
    const sub = this.#subs.get(id)!;
    if (sub.waiter === 0) this.#pump(sub);
  }

  /** Past maxOutputBytes: closed at once (the client is not reading); leases and handed messages go back. */
  #closeForOutput(reason: string): void {
    this.#io.onFatal?.(ErrorCode.ERR_LIMIT, `output limit (maxOutputBytes ${this.#limits.maxOutputBytes}): ${reason}`);
    if (this.#io.destroy !== undefined) this.#io.destroy();
    else this.#io.end();
    this.close();
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
        if (this.#storageRefuses(req, d)) return;
        const status = e.opPush(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), view.u32(d + D_DP), view.u32(d + D_DL));
        if (status === 0) this.#counters.onPushed(1);
        if (status === 0) e.encodeOk(w, req);
        else this.#error(req, -status);
        return;
      }
      case Op.PUSH_MANY: {
        if (this.#storageRefuses(req, d)) return;
        const status = e.opPushRecords(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), view.u32(d + D_DP), view.u32(d + D_DL), view.u32(d + D_A0));
        if (status === 0) this.#counters.onPushed(view.u32(d + D_A0));
        if (status === 0) e.encodeOk(w, req);
        else this.#error(req, -status);
        return;
      }
      case Op.RETURN: {
        if (this.#storageRefuses(req, d)) return;
        const status = e.opReturnRecords(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), view.u32(d + D_DP), view.u32(d + D_DL), view.u32(d + D_A0));
        if (status === 0) this.#counters.onReturned(view.u32(d + D_A0));
        if (status === 0) e.encodeOk(w, req);
        else this.#error(req, -status);
        return;
      }
      case Op.PUSH_EX:
        if (this.#storageRefuses(req, d)) return;
        return this.#pushEx(req, d, 0, 0, 0, view.u32(d + D_DP), view.u32(d + D_DL), view.u32(d + D_A0), view.u32(d + D_A2), view.u32(d + D_A3));
      case Op.PUSH_MANY_EX:
        if (this.#storageRefuses(req, d)) return;
        return this.#pushEx(req, d, view.u32(d + D_DP), view.u32(d + D_DL), view.u32(d + D_A0), 0, 0, view.u32(d + D_A1), 0, 0);
      case Op.POP_LEASED:
        return this.#pop(d, req, view.u32(d + D_A0), view.u32(d + D_A1), this.#leaseOwner(), view.u32(d + D_A2));
      case Op.SETTLE:
        return this.#settle(req, view.u32(d + D_DP), view.u32(d + D_A0));
      case Op.CONFIGURE:
        return this.#configure(req, d);
      case Op.STATS: {
        const out = this.#thread.scratch;
        e.opStats(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), out);
        e.encodeStatsOk(w, req, out);
        return;
      }
      case Op.POP:
        return this.#pop(d, req, 1, view.u32(d + D_A0), 0, 0);
      case Op.POP_MANY:
        return this.#pop(d, req, view.u32(d + D_A0), view.u32(d + D_A1), 0, 0);
      case Op.LENGTH:
        e.encodeLengthOk(w, req, e.opLength(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL)));
        return;
      case Op.SUBSCRIBE:
        return this.#subscribe(d, req);
      case Op.UNSUBSCRIBE: {
        const sub = this.#subs.get(view.u32(d + D_A0));
        if (sub === undefined) return this.#error(req, ErrorCode.ERR_NOT_FOUND, 'no such subscription');
        this.#closeSubscription(sub, true);
        e.encodeOk(w, req);
        return;
      }
      case Op.CREDIT: {
        const sub = this.#subs.get(view.u32(d + D_A0));
        if (sub === undefined) return; // the subscription just ended: nothing to credit
        if (sub.owner !== 0) return; // ack:true: credit comes from settling, not from CREDIT
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
          this.#io.onFatal?.(ErrorCode.ERR_UNSUPPORTED_VERSION, `client speaks protocol versions ${min}..${max}`);
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
      case Op.SERVER_STATS:
      case Op.SHUTDOWN:
        return this.#operatorRequest(op, req);
      case OP_REJECT:
        return this.#error(req, view.u32(d + D_A0));
      default:
        return this.#error(req, ErrorCode.ERR_UNKNOWN_OPCODE, `opcode 0x${op.toString(16)} is not a request`);
    }
  }

  /**
   * While the log cannot be written (a full disk: src/storage/log.ts), a push to a durable
   * queue is refused before the core stores it: ERR_STORAGE, and the connection stays
   * usable. Pops, acks and nacks go on; they are what lets the disk empty again.
   */
  #storageRefuses(req: number, d: number): boolean {
    const log = this.#thread.log;
    if (log === undefined || log.writable) return false;
    const view = this.#thread.core.view;
    if (!this.#e.opQueueDurable(view.u32(d + D_QP), view.u32(d + D_QL))) return false;
    this.#error(req, ErrorCode.ERR_STORAGE, log.error?.message ?? 'the log cannot be written');
    return true;
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

  /** POP, POP_MANY (owner 0) and POP_LEASED (owner = this connection's lease owner). */
  #pop(d: number, req: number, max: number, timeoutMs: number, owner: number, leaseMs: number): void {
    const view = this.#thread.core.view;
    const e = this.#e;
    if (this.#pops.has(req)) return this.#error(req, ErrorCode.ERR_INVALID_ARGUMENT, 'request id already has a parked pop');
    if (owner < 0) return this.#error(req, ErrorCode.ERR_NO_MEMORY);
    const park = timeoutMs !== 0;
    if (park && this.#pops.size >= this.#limits.maxParkedPops) return this.#error(req, ErrorCode.ERR_LIMIT, 'too many parked pops on this connection');
    const room = park ? this.#limits.parkedPops.take() : 'ok';
    if (room === 'limit') return this.#error(req, ErrorCode.ERR_LIMIT, `too many parked pops on this worker thread (maxParkedPopsPerThread ${this.#limits.parkedPops.max})`);
    if (room === 'memory') return this.#error(req, ErrorCode.ERR_NO_MEMORY, 'broker memory full (maxMemoryMiB): no room to park this pop');
    const token = park ? this.#thread.newToken() : 0;
    const now = Date.now();
    const n = e.opPop(this.#writer, Op.MESSAGES, req, view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), max, this.#limits.maxFrameBytes, 0, token, owner, leaseMs, now);
    if (park && n !== 0) this.#limits.parkedPops.release(); // answered at once: it did not park
    if (n > 0) {
      this.#counters.onPopped(n);
      if (owner !== 0) this.#thread.armLeaseTimer(e.leaseNextDeadline());
      return;
    }
    if (n < 0) return this.#error(req, -n);
    if (!park) {
      e.encodeEmpty(this.#writer, req);
      return;
    }
    const pop: ParkedPop = {
      requestId: req, token, waiter: e.lastWaiter(), max, timer: undefined, owner, leaseMs,
      onHanded: (waiter) => this.#deliverPop(pop, waiter),
    };
    this.#pops.set(req, pop);
    this.#thread.register(token, pop);
    if (timeoutMs !== TIMEOUT_INFINITE) this.#armPopTimer(pop, now + timeoutMs);
  }

  /** The pop's timeout at `deadline`; timeouts past setTimeout's 24.8 days re-arm on the way. */
  #armPopTimer(pop: ParkedPop, deadline: number): void {
    pop.timer = setTimeout(() => this.#timeoutPop(pop, deadline), Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now())));
  }

  #deliverPop(pop: ParkedPop, waiter: number): void {
    const e = this.#e;
    if (!this.#output.roomForFrame() && (this.flush(), !this.#output.roomForFrame())) {
      // Nobody reads this connection: the message goes back to its topic, not into a buffer.
      e.waiterReturn(waiter);
      this.#forgetPop(pop);
      return this.#closeForOutput('a parked pop was handed a message while the replies were not read');
    }
    const n = e.waiterDeliverFrame(waiter, this.#writer, Op.MESSAGES, pop.requestId, pop.max - 1, this.#limits.maxFrameBytes, 0, pop.owner, pop.leaseMs, Date.now());
    if (n < 0) {
      e.waiterReturn(waiter);
      this.#error(pop.requestId, -n);
    } else {
      e.waiterRelease(waiter);
      this.#counters.onPopped(n);
      if (pop.owner !== 0) this.#thread.armLeaseTimer(e.leaseNextDeadline());
    }
    this.#forgetPop(pop);
    this.#dirty = true;
  }

  #timeoutPop(pop: ParkedPop, deadline: number): void {
    pop.timer = undefined;
    if (this.#closed) return;
    if (Date.now() < deadline) return this.#armPopTimer(pop, deadline);
    if (this.#e.waiterCancel(pop.waiter) !== 1) return; // handed: delivery is on its way
    this.#forgetPop(pop);
    this.#e.encodeEmpty(this.#writer, pop.requestId);
    this.flush();
  }

  /** This connection's lease owner for leased pops (created on first use), -1 when out of memory. */
  #leaseOwner(): number {
    if (this.#popOwner === 0) this.#popOwner = this.#e.ownerNew(this.#connectionId);
    return this.#popOwner === 0 ? -1 : this.#popOwner;
  }

  /** PUSH_EX / PUSH_MANY_EX: a push with delayMs and/or a dedupId. */
  #pushEx(req: number, d: number, records: number, bytes: number, count: number, data: number, len: number, delayMs: number, dedup: number, dedupLen: number): void {
    const view = this.#thread.core.view;
    const now = Date.now();
    const status = this.#e.opPushEx(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), records, bytes, count, data, len, delayMs, dedup, dedupLen, now, this.#thread.scratch);
    if (status !== 0) return this.#error(req, -status);
    this.#counters.onPushed(records === 0 ? 1 : count);
    if (delayMs > 0) this.#thread.armDelayTimer(now + delayMs);
    this.#e.encodeOk(this.#writer, req);
  }

  /** SETTLE: ack / nack / extend / reject a batch of this connection's leases; one status each. */
  #settle(req: number, entries: number, count: number): void {
    const e = this.#e;
    const view = this.#thread.core.view;
    const now = Date.now();
    if (e.opSettle(this.#writer, req, entries, count, this.#connectionId, now) === 0) return this.#error(req, ErrorCode.ERR_NO_MEMORY);
    let nackDelay = 0;
    for (let i = 0; i < count; i++) {
      const at = entries + i * SETTLE_ENTRY_BYTES;
      if (view.u32(at + 8) === SettleKind.NACK) nackDelay = Math.max(nackDelay, view.u32(at + 12));
    }
    if (nackDelay > 0) this.#thread.armDelayTimer(now + nackDelay);
    this.#thread.armLeaseTimer(e.leaseNextDeadline());
    this.#pumpAckSubscriptions();
  }

  /** CONFIGURE: validate the patch, merge it into the queue's settings, answer the effective settings. */
  #configure(req: number, d: number): void {
    const view = this.#thread.core.view;
    const e = this.#e;
    const mask = view.u32(d + D_A0);
    const p = view.u32(d + D_DP);
    const leaseMs = view.f64(p), maxDeliveries = view.f64(p + 8), maxLength = view.f64(p + 16), dedupWindowMs = view.f64(p + 24);
    const dropOldest = view.u8(p + 32) === 1, durable = view.u8(p + 33) === 1, dlqLen = view.u8(p + 34);
    const positive = (x: number) => x > 0 && x !== Infinity; // NaN fails too
    const countOrInfinity = (x: number) => x === Infinity || (Number.isInteger(x) && x >= 1);
    let problem: string | undefined;
    if (mask & ~0x7f) problem = 'unknown settings';
    else if (mask & SettingsMask.LEASE_MS && !positive(leaseMs)) problem = `leaseMs must be a positive number of ms, got ${leaseMs}`;
    else if (mask & SettingsMask.DEDUP_WINDOW_MS && !positive(dedupWindowMs)) problem = `dedupWindowMs must be a positive number of ms, got ${dedupWindowMs}`;
    else if (mask & SettingsMask.MAX_DELIVERIES && !countOrInfinity(maxDeliveries)) problem = `maxDeliveries must be a positive integer or Infinity, got ${maxDeliveries}`;
    else if (mask & SettingsMask.MAX_LENGTH && !countOrInfinity(maxLength)) problem = `maxLength must be a positive integer or Infinity, got ${maxLength}`;
    else if (mask & SettingsMask.DURABLE && view.u8(p + 33) > 1) problem = 'durable must be true or false';
    else if (mask & SettingsMask.DURABLE && durable && this.#thread.log === undefined) problem = 'durable queues need a broker started with a data directory (--data-dir)';
    else if (mask & SettingsMask.DEAD_LETTER_TOPIC && dlqLen > 0 && !validUtf8(view.bytes(p + 35, dlqLen))) problem = 'deadLetterTopic must be valid UTF-8';
    if (problem !== undefined) return this.#error(req, ErrorCode.ERR_INVALID_ARGUMENT, problem);
    // An empty patch only reads: it must not pin a settings record for every name asked about.
    if (mask !== 0 && e.queueConfigure(view.u32(d + D_QP), view.u32(d + D_QL), mask, leaseMs, maxDeliveries, maxLength, dedupWindowMs, dropOldest, durable, p + 35, dlqLen) === 0) {
      return this.#error(req, ErrorCode.ERR_NO_MEMORY);
    }
    const out = this.#thread.scratch;
    const len = e.queueSettingsInto(view.u32(d + D_QP), view.u32(d + D_QL), out);
    // Settings are kept across restarts for every queue, durable or not (the reply waits for the log).
    if (mask !== 0 && this.#thread.log !== undefined) this.#thread.appendSettings(view.copy(view.u32(d + D_QP), view.u32(d + D_QL)), settingsJson(view, out));
    // Never configured: the reply says what holds (durable exactly when there is a data directory).
    if (view.u8(out + 33) === 2) view.write(out + 33, Uint8Array.of(this.#thread.log !== undefined ? 1 : 0));
    e.encodeSettings(this.#writer, req, out, len);
  }

  #forgetPop(pop: ParkedPop): void {
    if (pop.timer !== undefined) clearTimeout(pop.timer);
    if (this.#pops.delete(pop.requestId)) this.#limits.parkedPops.release();
    this.#thread.unregister(pop.token);
  }

  #subscribe(d: number, req: number): void {
    const view = this.#thread.core.view;
    const e = this.#e;
    if (this.#subs.has(req)) return this.#error(req, ErrorCode.ERR_INVALID_ARGUMENT, 'request id already names a subscription');
    if (this.#subs.size >= this.#limits.maxSubscriptions) return this.#error(req, ErrorCode.ERR_LIMIT, 'too many subscriptions on this connection');
    const topic = e.topicAcquire(view.u32(d + D_QP), view.u32(d + D_QL), view.u32(d + D_TP), view.u32(d + D_TL), true);
    if (topic === 1) return this.#error(req, ErrorCode.ERR_NO_MEMORY);
    const options = view.u32(d + D_A1);
    const exclusive = (options & SUBSCRIBE_EXCLUSIVE) !== 0;
    let owner = 0;
    if ((options & SUBSCRIBE_ACK) !== 0) {
      owner = e.ownerNew(this.#connectionId);
      if (owner === 0) {
        e.topicRelease(topic);
        return this.#error(req, ErrorCode.ERR_NO_MEMORY);
      }
    }
    const token = this.#thread.newToken();
    const status = e.consumerAttach(topic, token, exclusive);
    if (status !== 0) {
      if (owner !== 0) e.ownerFree(owner);
      e.topicRelease(topic);
      return this.#error(req, -status, exclusive ? 'the topic already has a consumer' : 'the topic has an exclusive consumer');
    }
    const sub: Subscription = {
      id: req, topic, token, credit: Math.min(MAX_CREDIT, view.u32(d + D_A0)), waiter: 0, owner, leaseMs: view.u32(d + D_A2),
      onHanded: (waiter) => this.#deliverSubscription(sub, waiter),
    };
    this.#subs.set(req, sub);
    e.encodeOk(this.#writer, req);
    this.#pump(sub);
  }

  /** Messages the subscription may be sent now. */
  #credit(sub: Subscription): number {
    return sub.owner === 0 ? sub.credit : sub.credit - this.#e.ownerCount(sub.owner);
  }

  /** Delivers to a subscription while it has credit; parks when its topic is empty. */
  #pump(sub: Subscription): void {
    const e = this.#e;
    let leased = false;
    for (let credit = this.#credit(sub); credit > 0 && sub.waiter === 0 && !this.#closed; credit = this.#credit(sub)) {
      if (this.#output.backedUp() && (this.flush(), this.#output.backedUp())) {
        // Nothing more leaves the topic for a connection that cannot send it; onWritable() resumes.
        // (Flushed first: a transport that took everything at once will not report a drain.)
        this.#output.stallSubscription(sub.id);
        break;
      }
      const n = e.topicPopFrame(sub.topic, this.#writer, Op.DELIVER, sub.id, credit, this.#limits.maxFrameBytes, sub.token, sub.token, sub.owner, sub.leaseMs, Date.now());
      if (n > 0) {
        if (sub.owner === 0) sub.credit -= n;
        else leased = true;
        this.#counters.onPopped(n);
        this.#dirty = true;
      } else if (n === 0) {
        sub.waiter = e.lastWaiter();
        this.#thread.register(sub.token, sub);
      } else {
        this.#error(sub.id, -n);
        break;
      }
    }
    if (leased) this.#thread.armLeaseTimer(e.leaseNextDeadline());
  }

  /** After leases ended (settled, expired): ack:true subscriptions may take more. */
  #pumpAckSubscriptions(): void {
    if (this.#closed) return;
    for (const sub of this.#subs.values()) if (sub.owner !== 0 && sub.waiter === 0) this.#pump(sub);
    if (this.#dirty) this.flush();
  }

  #deliverSubscription(sub: Subscription, waiter: number): void {
    const e = this.#e;
    sub.waiter = 0;
    if (!this.#output.roomForFrame() && (this.flush(), !this.#output.roomForFrame())) {
      e.waiterReturn(waiter);
      return this.#closeForOutput('a subscription was handed a message while the replies were not read');
    }
    const n = e.waiterDeliverFrame(waiter, this.#writer, Op.DELIVER, sub.id, this.#credit(sub) - 1, this.#limits.maxFrameBytes, sub.token, sub.owner, sub.leaseMs, Date.now());
    if (n < 0) {
      e.waiterReturn(waiter);
      this.#error(sub.id, -n);
      return;
    }
    e.waiterRelease(waiter);
    this.#counters.onPopped(n);
    if (sub.owner === 0) sub.credit -= n;
    this.#pump(sub);
    this.#dirty = true;
  }

  /**
   * Ends a subscription: its parked waiter, its leases (back to the topic's front, in
   * order), its consumer slot. `deliverHanded` (UNSUBSCRIBE): a message already handed to
   * its waiter is delivered now, ahead of the OK, so the client returns it with the rest,
   * in order; otherwise (the connection is gone) it goes back to the topic when it arrives.
   */
  #closeSubscription(sub: Subscription, deliverHanded: boolean): void {
    const e = this.#e;
    this.#subs.delete(sub.id);
    if (sub.waiter !== 0) {
      if (e.waiterCancel(sub.waiter) === 1) {
        this.#thread.unregister(sub.token);
      } else if (deliverHanded && e.waiterDeliverFrame(sub.waiter, this.#writer, Op.DELIVER, sub.id, 0, this.#limits.maxFrameBytes, sub.token, sub.owner, sub.leaseMs, Date.now()) > 0) {
        // The hand-over is done (the pusher set the message before it unlocked the topic);
        // only its mailbox push may still be on its way: release the waiter when it lands.
        this.#counters.onPopped(1);
        this.#thread.expectRelease(sub.token);
      } else {
        this.#thread.expectReturn(sub.token);
      }
      sub.waiter = 0;
    }
    if (sub.owner !== 0) {
      e.ownerEnd(sub.owner, Date.now());
      e.ownerFree(sub.owner);
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
    this.#io.onFatal?.(code, text);
    this.#error(0, code, text);
    this.flush();
    this.#io.end();
    this.close();
  }

  /**
   * SERVER_STATS / SHUTDOWN: the engine's main thread answers (src/engine/operator.ts); the
   * reply is written whenever it comes, unless the connection is gone by then.
   */
  #operatorRequest(op: number, req: number): void {
    const operator = this.#io.operator;
    if (operator === undefined) return this.#error(req, ErrorCode.ERR_UNKNOWN_OPCODE, 'this connection does not serve operator requests');
    if (op === Op.SHUTDOWN) {
      const refusal = mayShutdown(operator.authConfigured, this.#user);
      if (refusal !== undefined) return this.#error(req, refusal.code, refusal.text);
      // Answer first: the stop closes this connection too.
      this.#e.encodeOk(this.#writer, req);
      this.flush();
      operator.shutdown();
      return;
    }
    // Requests that arrive while one is out share its answer, so a client cannot make the
    // main thread compute statistics faster than it answers them.
    if (this.#statsWaiting !== undefined) {
      if (this.#statsWaiting.length >= MAX_STATS_WAITING) return this.#error(req, ErrorCode.ERR_LIMIT, 'too many statistics requests in flight on this connection');
      this.#statsWaiting.push(req);
      return;
    }
    const waiting = this.#statsWaiting = [req];
    operator.serverStats().then((json) => {
      this.#statsWaiting = undefined;
      if (this.#closed) return;
      const bytes = textEncoder.encode(json);
      for (const id of waiting) {
        const at = bytes.length <= this.#limits.maxFrameBytes ? this.#e.encodeStatsJson(this.#writer, id, bytes.length) : 0;
        if (at === 0) this.#error(id, ErrorCode.ERR_NO_MEMORY, 'statistics too large to send');
        else this.#thread.core.view.write(at, bytes);
      }
      this.flush();
    }, (err: Error) => {
      this.#statsWaiting = undefined;
      if (this.#closed) return;
      for (const id of waiting) this.#error(id, ErrorCode.ERR_PROTOCOL, `statistics unavailable: ${err.message}`);
      this.flush();
    });
  }

  /** Sends everything encoded so far in one write. */
  flush(): void {
    this.#dirty = false;
    if (this.#closed) return; // the writer is freed
    const e = this.#e;
    const len = e.writerLength(this.#writer);
    if (len === 0) return;
    // Durability: a reply goes out only once what it acknowledges is in the log as the
    // fsync policy asks (docs/durability.md). Under 'everysec' and 'no' persist() has
    // written it already; under 'always' (or after a failed write) the replies wait for
    // the group commit, in order behind any that wait already (a copy of their own).
    const view = this.#thread.core.view;
    if (this.#thread.log !== undefined && (this.#waitingOutput !== undefined || !this.#thread.persist())) {
      const bytes = view.copy(e.writerData(this.#writer), len);
      e.writerReset(this.#writer);
      this.#waitForLog(bytes);
      return;
    }
    const io = this.#io;
    // (Views are taken after persist(): a core call may grow the memory.)
    if (io.writeCopyOf !== undefined) io.writeCopyOf(view.bytes(e.writerData(this.#writer), len));
    else io.write(view.copy(e.writerData(this.#writer), len));
    e.writerReset(this.#writer);
    // A backstop for replies that are not messages (errors, statistics): checked after the
    // caller is done with the writer, which closing frees.
    if (this.#output.overLimit()) queueMicrotask(() => { if (!this.#closed && this.#output.overLimit()) this.#closeForOutput('replies were not read'); });
  }

  /** Replies that wait for the log, oldest first, each with the commit it waits for. */
  #waitingOutput: { bytes: Uint8Array; done: Promise<void> }[] | undefined;
  #waitingBytes = 0;

  #waitForLog(bytes: Uint8Array): void {
    const entry = { bytes, done: this.#thread.commit() };
    this.#waitingBytes += bytes.length;
    if (this.#waitingOutput !== undefined) {
      this.#waitingOutput.push(entry);
      return;
    }
    const queue = this.#waitingOutput = [entry];
    void (async () => {
      while (queue.length > 0) {
        const head = queue[0]!;
        try {
          await head.done;
        } catch (err) {
          this.#waitingOutput = undefined;
          this.#waitingBytes = 0;
          return this.#storageFailed(err as Error);
        }
        queue.shift();
        this.#waitingBytes -= head.bytes.length;
        if (this.#closed) return;
        this.#io.write(head.bytes);
      }
      this.#waitingOutput = undefined;
      if (this.#dirty && !this.#closed) this.flush();
    })();
  }

  /**
   * What this connection was answered could not be made durable (the log's write or fsync
   * failed). Those replies are never sent - nothing is acknowledged that is not on disk -
   * and the connection is closed with ERR_STORAGE, so the client knows their outcome is
   * unknown (at-least-once producers push again). The log keeps retrying the bytes.
   */
  #storageFailed(err: Error): void {
    if (this.#closed) return;
    const text = err.message || 'the log cannot be written';
    this.#io.onFatal?.(ErrorCode.ERR_STORAGE, text);
    const e = this.#e;
    e.writerReset(this.#writer);
    this.#error(0, ErrorCode.ERR_STORAGE, text);
    const len = e.writerLength(this.#writer);
    if (len > 0) this.#io.write(this.#thread.core.view.copy(e.writerData(this.#writer), len));
    e.writerReset(this.#writer);
    this.#io.end();
    this.close();
  }

  /** The connection is gone: cancel parked pops, end subscriptions, free buffers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#output.clear(); // requests not served yet are dropped: nobody would receive their replies
    const e = this.#e;
    for (const pop of this.#pops.values()) {
      if (pop.timer !== undefined) clearTimeout(pop.timer);
      if (e.waiterCancel(pop.waiter) === 1) this.#thread.unregister(pop.token);
      else this.#thread.expectReturn(pop.token); // handed: its message goes back to the topic
    }
    this.#limits.parkedPops.release(this.#pops.size);
    this.#pops.clear();
    for (const sub of [...this.#subs.values()]) this.#closeSubscription(sub, false);
    if (this.#popOwner !== 0) {
      // Leased pops this connection did not settle are ready again now, not at expiry.
      e.ownerEnd(this.#popOwner, Date.now());
      e.ownerFree(this.#popOwner);
      this.#popOwner = 0;
    }
    this.#unhookDrain();
    this.#unhookExpiry();
    // Leases that went back and messages returned are journaled; nobody waits for them.
    this.#thread.persistLater();
    e.decoderFree(this.#decoder);
    e.writerFree(this.#writer);
  }
}

const utf8Check = new TextDecoder('utf-8', { fatal: true });

function validUtf8(bytes: Uint8Array): boolean {
  try {
    utf8Check.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Why the decoder gave up on the connection (decoderNext's fatal codes). */
function fatalText(code: number, maxFrameBytes: number): string {
  if (code === ErrorCode.ERR_NO_MEMORY) return 'broker out of memory';
  if (code === ErrorCode.ERR_MESSAGE_TOO_LARGE) return `frame larger than maxFrameBytes (${maxFrameBytes} bytes of body)`;
  return 'malformed frame';
}

function defaultErrorText(code: number): string {
  switch (code) {
    case ErrorCode.ERR_PROTOCOL: return 'malformed request';
    case ErrorCode.ERR_INVALID_ARGUMENT: return 'invalid argument';
    case ErrorCode.ERR_MESSAGE_TOO_LARGE: return 'message too large';
    case ErrorCode.ERR_EXCLUSIVE: return 'the topic has an exclusive consumer';
    case ErrorCode.ERR_NO_MEMORY: return 'broker out of memory';
    case ErrorCode.ERR_UNKNOWN_OPCODE: return 'unknown opcode';
    case ErrorCode.ERR_QUEUE_FULL: return 'the topic is full (maxLength)';
    case ErrorCode.ERR_LEASE_EXPIRED: return 'the lease has ended';
    default: return ErrorCode.nameOf(code);
  }
}
