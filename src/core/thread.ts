// One thread's attachment to the shared core: its thread id, its mailbox of handed-over
// waiters (assembly/waiters.ts), and the tokens that tie a waiter back to the request that
// parked it. Each worker thread has one, and so does the main thread of an embedding engine.
//
// The mailbox loop sleeps with Atomics.waitAsync on this thread's signal word; a push on
// any thread that hands a message to one of our waiters bumps and notifies that word, so
// the wake-up arrives on this event loop like any other I/O. Draining takes the whole
// mailbox at once and dispatches each waiter to the handler registered for its token; a
// waiter nobody claims any more (its connection died, its pop was aborted) goes back to
// its topic with waiterReturn, so it is never lost.
//
// Timers: this thread's leases (assembly/leases.ts) and the shared delay heap
// (assembly/delays.ts) are driven by two timers per thread, each set to the earliest
// deadline it was told of - never a timer per message. When one fires, the core moves what
// is due in bounded batches, yielding to I/O between batches (setImmediate), so a million
// leases expiring at once do not stall this thread's connections.

import type { Core, CoreExports } from './wasm.ts';

/** What a thread needs of its log (src/storage/log.ts LogWriter). */
export interface ThreadLog {
  appendJournal(bytes: Uint8Array): void;
  appendSettings(queue: Uint8Array, json: string): void;
  commitSync(): boolean;
  commit(): Promise<void>;
  /** Nothing appended waits for a write or an fsync. */
  readonly settled: boolean;
  readonly fsync: string;
  readonly writable: boolean;
  readonly error: Error | undefined;
}

/** Initial size of a thread's journal writer (it grows with the changes of one turn). */
const JOURNAL_INITIAL_BYTES = 64 * 1024;

// The cross-thread log marks (assembly/layout.ts ThreadSlot, assembly/journal.ts): the
// `journaled`, `logged` and `loggedWaiters` words are consecutive; words of a slot relative
// to its `logged` word. (Where the mailbox signal is relative to them is read from the core
// at attachLog: #signalFromLogged.)
const JOURNALED_FROM_LOGGED = -1;
const WAITERS_FROM_LOGGED = 1;
/** Most threads a reply can wait for (thread ids are 1..255). */
const MAX_PEERS = 255;
/**
 * A thread whose log stays behind this long is rung (its mailbox signal): it moves and
 * commits whatever it journaled. Normally it writes at the end of its turn by itself.
 */
const RING_PEER_MS = 10;
const noop = (): void => {};
/** Wrap-safe `a >= b` for the i32 counts. */
const reached = (a: number, b: number): boolean => ((a - b) | 0) >= 0;

export interface WaiterHandler {
  /** The waiter `waiter` was handed a message. The handler must release or return it. */
  onHanded(waiter: number): void;
}

/** Bytes of this thread's scratch area (names and small arguments copied in from JS). */
export const SCRATCH_BYTES = 4096;

/** leaseExpire / delaysDue move at most this many per call (assembly: EXPIRE_BATCH, DUE_BATCH). */
const TIMER_BATCH = 4096;
/** setTimeout's longest delay; later deadlines re-arm on the way. */
const MAX_TIMER_MS = 0x7FFFFFFF;
/** How often expired dedupIds of idle segments are swept. */
const DEDUP_SWEEP_MS = 10_000;

/** One timer at the earliest deadline it was asked for; `run` moves what is due. */
class DeadlineTimer {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #at = Infinity;
  readonly #run: (now: number) => number;
  readonly #next: () => number;
  readonly #after: () => void;

  /** `run(now)` moves due items (returns how many); `next()` the new earliest deadline, 0 = none. */
  constructor(run: (now: number) => number, next: () => number, after: () => void) {
    this.#run = run;
    this.#next = next;
    this.#after = after;
  }

  /** Fire at `deadline` (ms since the epoch) unless already set to fire sooner; 0 = nothing. */
  arm(deadline: number): void {
    if (deadline === 0 || deadline >= this.#at) return;
    clearTimeout(this.#timer);
    this.#at = deadline;
    this.#timer = setTimeout(this.#fire, Math.min(MAX_TIMER_MS, Math.max(1, deadline - Date.now())));
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#at = Infinity;
    const moved = this.#run(Date.now());
    if (moved > 0) this.#after();
    if (moved >= TIMER_BATCH) {
      // More are due: let I/O run, then go on.
      this.#at = 0;
      this.#timer = setImmediate(this.#fire) as unknown as ReturnType<typeof setTimeout>;
      return;
    }
    this.arm(this.#next());
  };

  stop(): void {
    if (this.#at === 0) clearImmediate(this.#timer as unknown as NodeJS.Immediate);
    else clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = -Infinity; // never arms again
  }
}

export class CoreThread {
  readonly core: Core;
  readonly exports: CoreExports;
  readonly id: number;
  /** Address of a per-thread scratch area in the core's memory. */
  readonly scratch: number;
  #tokenCounter = 0;
  readonly #handlers = new Map<number, WaiterHandler>();
  readonly #afterDrain = new Set<() => void>();
  #signalWords: Int32Array | undefined;
  #signalIndex = 0;
  #running = false;
  readonly #leaseEnded = new Set<() => void>();
  readonly #leaseTimer: DeadlineTimer;
  readonly #delayTimer: DeadlineTimer;
  #dedupSweep: ReturnType<typeof setInterval> | undefined;
  /** Called when a waiter handler throws (the worker logs it). */
  onHandlerError: ((err: Error) => void) | undefined;
  /** The log this thread's journal goes to (a broker with a data directory), and the journal writer. */
  #log: ThreadLog | undefined;
  #journal = 0;
  /** Records appended to the log directly (settings) since the journal was last moved. */
  #directAppends = false;
  /** The header words (the ThreadSlots live there) and this thread's `logged` word in them. */
  #marks: Int32Array | undefined;
  #loggedWord = 0;
  /** A slot's mailbox signal word relative to its `logged` word (the same in every slot). */
  #signalFromLogged = 0;
  /** The `journaled` count the last move took; the `logged` count published. */
  #movedMark = 0;
  #publishedMark = 0;
  /** Resolves when every other thread's log has what it had journaled at our last move. */
  #peersLogged: Promise<void> | undefined;
  /** Where logMarksBehind writes its pairs (MAX_PEERS x 8 bytes). */
  #peerPairs = 0;
  /** stop() has detached this thread's id. */
  #detached = false;
  /**
   * Counts the cross-thread waits (docs/durability.md, "Across threads"): 'wait' when replies
   * are held for other threads' logs, 'ring' (once per thread waited for) when one of those
   * threads had not written within 10 ms and was rung.
   */
  onPeerLog: ((event: 'wait' | 'ring') => void) | undefined;
  /** Reports a background log failure (a timer's changes could not be written; retried by the log). */
  onLogError: ((err: Error) => void) | undefined;

  constructor(core: Core) {
    this.core = core;
    this.exports = core.exports;
    const id = this.exports.attach();
    if (id < 0) throw new Error(id === -2 ? 'turbomq core: too many threads attached (max 255)' : 'turbomq core: memory layout mismatch');
    this.id = id;
    this.scratch = this.exports.alloc(SCRATCH_BYTES);
    if (this.scratch === 0) throw new Error('turbomq core: out of memory');
    const e = this.exports;
    // Expired leases go back to their topics: messages may now be handed to waiters of
    // this thread (drain) and ack:true subscriptions have credit again.
    this.#leaseTimer = new DeadlineTimer((now) => e.leaseExpire(now), () => e.leaseNextDeadline(), () => {
      this.persistLater(); // expiries are journaled (new deliveries, dead letters)
      this.leasesEnded();
      this.drain();
    });
    this.#delayTimer = new DeadlineTimer((now) => e.delaysDue(now), () => e.delaysNextDue(), () => this.drain());
  }

  /**
   * From now on the core journals every change to a durable queue made on this thread
   * (assembly/journal.ts), and persist() moves it to `log`.
   */
  attachLog(log: ThreadLog): void {
    if (this.#log !== undefined) throw new Error('turbomq core: this thread already has a log');
    const w = this.exports.writerNew(JOURNAL_INITIAL_BYTES);
    if (w === 0) throw new Error('turbomq core: out of memory for the journal');
    const pairs = this.exports.alloc(MAX_PEERS * 8);
    if (pairs === 0) throw new Error('turbomq core: out of memory for the journal');
    this.#journal = w;
    this.#peerPairs = pairs;
    this.#log = log;
    this.exports.journalSet(w);
    this.#marks = this.core.view.headerWords();
    this.#loggedWord = (this.exports.logMarksAddress() >>> 2) - JOURNALED_FROM_LOGGED;
    this.#signalFromLogged = (this.exports.mailboxSignalAddress() >>> 2) - this.#loggedWord;
    this.#movedMark = this.#publishedMark = Atomics.load(this.#marks, this.#loggedWord);
  }

  get log(): ThreadLog | undefined {
    return this.#log;
  }

  /**
   * Moves what the core journaled to the log. True: the replies being sent may go now (no
   * log, or nothing unsettled in it, nor in the other threads' logs they depend on: see
   * #awaitPeers). False: they wait for commit().
   */
  persist(): boolean {
    const log = this.#log;
    if (log === undefined) return true;
    let safe: boolean;
    if (!this.#moveJournal(log)) {
      // Nothing journaled since the last move. That does not prove these replies acknowledge
      // nothing: another connection's flush may have moved their records along (a delivery
      // made in the same mailbox drain), so they wait until the log is settled. Only while the
      // log cannot write at all do they go out at once, so that durable: false queues (and
      // LENGTH, PING, ...) keep working on a full disk.
      safe = log.settled || !log.writable;
    } else {
      // 'everysec' and 'no': written now (one write(2) per flushed chunk), so the replies go
      // out in the same turn. 'always': the write and the fsync wait for the group commit,
      // once per event-loop turn (setImmediate: after every socket read of the turn) for every
      // connection of this thread. (Deferring 'everysec' to the turn's group as well measured
      // no better in A/B runs: 0.81x to 1.34x depending on the run, within this machine's noise.)
      safe = log.fsync === 'always' ? log.settled : log.commitSync();
    }
    if (log.settled) this.#publish(this.#movedMark);
    // When false the caller awaits commit(), which publishes this thread's mark.
    return safe && this.#peersLogged === undefined;
  }

  /** Resolves when everything journaled so far is safe under the fsync policy (rejects with ERR_STORAGE). */
  commit(): Promise<void> {
    const log = this.#log;
    if (log === undefined) return Promise.resolve();
    this.#moveJournal(log);
    const own = this.#commitAndPublish(log);
    const peers = this.#peersLogged;
    return peers === undefined ? own : Promise.all([own, peers]).then(noop);
  }

  /** Changes nobody waits for (timers, closing connections): written soon, failures reported. */
  persistLater(): void {
    const log = this.#log;
    if (log === undefined) return;
    this.#moveJournal(log);
    this.#commitAndPublish(log).catch((err: Error) => this.onLogError?.(err));
  }

  /** log.commit(), and once it resolves, this thread's `logged` mark for what it covers. */
  #commitAndPublish(log: ThreadLog): Promise<void> {
    const mark = this.#movedMark;
    const done = log.commit();
    done.then(() => this.#publish(mark), noop);
    return done;
  }

  /**
   * Tells other threads that this thread's log has made safe everything it had journaled
   * when its count was `mark` (never moves back: commits resolve in order, but a
   * commitSync() may have published a later mark first).
   */
  #publish(mark: number): void {
    // Once detached the slot is not ours: a commit resolving after stop() must not write a
    // count into it (the id may be attached again, with marks of its own).
    if (this.#detached || reached(this.#publishedMark, mark)) return;
    this.#publishedMark = mark;
    const words = this.#marks!;
    Atomics.store(words, this.#loggedWord, mark);
    // Dekker with the waiter (#waitForPeer): it raises the flag, then reads `logged`; we
    // store `logged`, then read the flag. Sequentially consistent atomics: one of us sees
    // the other, so a waiter is never left asleep on a mark that passed.
    if (Atomics.load(words, this.#loggedWord + WAITERS_FROM_LOGGED) !== 0) {
      Atomics.store(words, this.#loggedWord + WAITERS_FROM_LOGGED, 0);
      Atomics.notify(words, this.#loggedWord);
    }
  }

  /**
   * At a move: the replies that follow may answer for a message another thread pushed (or
   * dead-lettered, or nacked) whose record that thread's log has not written yet - its
   * write comes at the end of its own turn: a pop, an ack, a duplicate refused. If the
   * core says so (logMarksBehind: only after such a change), take every other thread's
   * journaled count now (the topic locks ordered its change before ours) and make the
   * replies wait until each of those logs has it (docs/durability.md, "Across threads").
   */
  #awaitPeers(): void {
    const e = this.exports;
    if (this.#peerPairs === 0) return; // stopped
    const n = e.logMarksBehind(this.#peerPairs, MAX_PEERS);
    if (n === 0) return;
    const view = this.core.view;
    const words = this.#marks!;
    let waits: Promise<void>[] | undefined;
    for (let i = 0; i < n; i++) {
      const logged = view.u32(this.#peerPairs + i * 8) >>> 2;
      const journaled = view.u32(this.#peerPairs + i * 8 + 4) | 0;
      if (reached(Atomics.load(words, logged), journaled)) continue; // written meanwhile
      (waits ??= []).push(this.#waitForPeer(logged, journaled));
    }
    if (waits === undefined) return;
    this.onPeerLog?.('wait');
    const previous = this.#peersLogged;
    if (previous !== undefined) waits.push(previous);
    const all: Promise<void> = Promise.all(waits).then(() => {
      if (this.#peersLogged === all) this.#peersLogged = undefined;
    });
    this.#peersLogged = all;
  }

  /** Resolves once the `logged` word at index `logged` reaches `mark`. */
  async #waitForPeer(logged: number, mark: number): Promise<void> {
    const words = this.#marks!;
    let rung = false;
    for (;;) {
      Atomics.store(words, logged + WAITERS_FROM_LOGGED, 1);
      const now = Atomics.load(words, logged);
      if (reached(now, mark)) return;
      const wait = Atomics.waitAsync(words, logged, now, RING_PEER_MS);
      if (!wait.async) continue; // changed meanwhile: look again
      if (await wait.value === 'timed-out') {
        // That thread has not written it by itself: ring it (the mailbox signal), so it
        // moves and commits what it journaled (#loop, #catchUp). A dead thread is settled
        // by its reaper (assembly/reap.ts).
        if (!rung) this.onPeerLog?.('ring'); // counted once per wait, rung every 10 ms
        rung = true;
        Atomics.add(words, logged + this.#signalFromLogged, 1);
        Atomics.notify(words, logged + this.#signalFromLogged);
      }
    }
  }

  /** Woken (another thread waits for our log, or a hand-over): commit what is not written yet. */
  #catchUp(): void {
    const log = this.#log;
    if (log === undefined) return;
    if (Atomics.load(this.#marks!, this.#loggedWord + JOURNALED_FROM_LOGGED) === this.#publishedMark) return;
    this.#moveJournal(log);
    this.#commitAndPublish(log).catch(noop); // a failure is reported to those waiting for the commit
  }

  /** Appends a queue's settings to the log (for the reply that follows, as the core's journal). */
  appendSettings(queue: Uint8Array, json: string): void {
    if (this.#log === undefined) return;
    this.#log.appendSettings(queue, json);
    this.#directAppends = true;
  }

  /** Moves the journal to the log; true when anything was appended since the last move. */
  #moveJournal(log: ThreadLog): boolean {
    const e = this.exports;
    // Read before the bytes move: every record counted so far is in them (same thread).
    this.#movedMark = Atomics.load(this.#marks!, this.#loggedWord + JOURNALED_FROM_LOGGED);
    const len = e.journalLength();
    let moved = this.#directAppends;
    this.#directAppends = false;
    if (len > 0) {
      log.appendJournal(this.core.view.bytes(e.journalData(), len));
      e.writerReset(this.#journal);
      moved = true;
    }
    const lost = e.journalTakeLost();
    // Only when the Wasm memory is exhausted: the change was made but is not in the log.
    if (lost > 0) this.onLogError?.(new Error(`turbomq core: out of memory for the journal; ${lost} change(s) to durable queues are not in the log`));
    this.#awaitPeers();
    return moved;
  }

  /** This thread holds a lease ending at `deadline` (ms since the epoch; 0 = none): expire it then. */
  armLeaseTimer(deadline: number): void {
    this.#leaseTimer.arm(deadline);
  }

  /** A delayed message is due at `due` (ms since the epoch): move it to its topic then. */
  armDelayTimer(due: number): void {
    this.#delayTimer.arm(due);
  }

  /** Called after leases of this thread ended by expiry (sessions pump ack:true subscriptions). */
  onLeasesEnded(fn: () => void): () => void {
    this.#leaseEnded.add(fn);
    return () => this.#leaseEnded.delete(fn);
  }

  leasesEnded(): void {
    for (const fn of this.#leaseEnded) fn();
  }

  /** A token unique across threads (thread id in the top 8 bits), never 0. */
  newToken(): number {
    this.#tokenCounter = (this.#tokenCounter + 1) & 0xffffff;
    if (this.#tokenCounter === 0) this.#tokenCounter = 1;
    return ((this.id << 24) | this.#tokenCounter) >>> 0;
  }

  register(token: number, handler: WaiterHandler): void {
    this.#handlers.set(token, handler);
  }

  unregister(token: number): void {
    this.#handlers.delete(token);
  }

  /**
   * The request behind `token` is gone, but its waiter was already handed a message (its
   * cancel failed): when the waiter arrives, give the message back to the topic.
   */
  expectReturn(token: number): void {
    this.#handlers.set(token, this.#returner);
  }

  #returner: WaiterHandler = { onHanded: (waiter) => { this.exports.waiterReturn(waiter); } };

  /**
   * The request behind `token` already took the message its waiter was handed (delivered
   * it at once): when the waiter arrives, only release it.
   */
  expectRelease(token: number): void {
    this.#handlers.set(token, this.#releaser);
  }

  #releaser: WaiterHandler = { onHanded: (waiter) => { this.exports.waiterRelease(waiter); } };

  /** Called after each mailbox drain (sessions flush their output here). */
  onAfterDrain(fn: () => void): () => void {
    this.#afterDrain.add(fn);
    return () => this.#afterDrain.delete(fn);
  }

  /** Starts listening for hand-overs from other threads. */
  start(): void {
    if (this.#running || !this.core.shared) return;
    this.#running = true;
    const address = this.exports.mailboxSignalAddress();
    this.#signalWords = this.core.view.headerWords();
    this.#signalIndex = address >>> 2;
    this.#dedupSweep = setInterval(() => this.exports.dedupSweep(Date.now()), DEDUP_SWEEP_MS);
    this.#dedupSweep.unref();
    // Delayed messages may be due already (pushed before this thread started).
    this.armDelayTimer(this.exports.delaysNextDue());
    this.#loop();
  }

  #loop = (): void => {
    if (!this.#running) return;
    const words = this.#signalWords!;
    const seen = Atomics.load(words, this.#signalIndex);
    this.drain();
    this.#catchUp();
    if (!this.#running) return;
    const wait = Atomics.waitAsync(words, this.#signalIndex, seen);
    if (wait.async) wait.value.then(this.#loop);
    else setImmediate(this.#loop); // signalled meanwhile: drain again, but let I/O run first
  };

  /** Dispatches every waiter in this thread's mailbox. */
  drain(): void {
    const e = this.exports;
    let waiter = e.mailboxTake();
    if (waiter === 0) return;
    while (waiter !== 0) {
      const next = e.waiterNext(waiter);
      const token = e.waiterToken(waiter);
      const handler = this.#handlers.get(token);
      if (handler !== undefined) {
        this.#handlers.delete(token);
        try {
          handler.onHanded(waiter);
        } catch (err) {
          // Report it and go on with the other waiters; one failure must not strand them.
          this.onHandlerError?.(err as Error);
        }
      } else {
        e.waiterReturn(waiter);
      }
      waiter = next;
    }
    for (const fn of this.#afterDrain) fn();
  }

  /**
   * Stops the mailbox loop and gives the thread id back. Every request must be cancelled
   * first; waiters already handed a message are still on their way (a pusher hands them
   * over right after unlocking the topic), so wait for each of them and return its message.
   */
  stop(): void {
    // Its counters may be freed once it has stopped; a wait still pending reports nothing.
    this.onPeerLog = undefined;
    this.#leaseTimer.stop();
    this.#delayTimer.stop();
    clearInterval(this.#dedupSweep);
    if (this.#running) {
      this.#running = false;
      Atomics.notify(this.#signalWords!, this.#signalIndex);
    }
    const deadline = Date.now() + 5000;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    this.drain();
    while (this.#handlers.size > 0 && Date.now() < deadline) {
      Atomics.wait(sleeper, 0, 0, 1);
      this.drain();
    }
    this.exports.free(this.scratch);
    this.exports.detach(Date.now());
    this.#detached = true;
    if (this.#log !== undefined) {
      // detach() ended the leases still held here: journal them before the log closes.
      this.persistLater();
      this.exports.journalSet(0);
      this.exports.writerFree(this.#journal);
      this.exports.free(this.#peerPairs);
      this.#journal = 0;
      this.#peerPairs = 0;
    }
  }
}
