// Requests waiting for their reply, by request id: the client's request plumbing
// (src/client/connection.ts uses it; nothing public).
//
// One promise per request and nothing else: no Pending object, no closure. Entries live in
// parallel arrays indexed by `id & mask` (an open table whose slot is the id itself), so a
// reply finds its request with one array read. Ids are handed out in increasing order; an id
// whose slot is taken (by a pop parked since long ago) is skipped, and the table doubles when
// half full, so a slot is always near. Rehashing keeps entries apart: two ids with different
// low bits keep different low bits under a wider mask.
//
// The promise's resolve and reject come from one shared executor that parks them in two
// fields, instead of a closure per request.

export type Kind = 'ok' | 'pop' | 'popMany' | 'length' | 'hello' | 'subscribe' | 'settle' | 'settings' | 'stats' | 'statsJson';

type Resolve = (value: unknown) => void;
type Reject = (error: Error) => void;

const INITIAL_SLOTS = 64;

export class PendingTable {
  #mask = INITIAL_SLOTS - 1;
  /** Request id per slot, 0 when free (0 is never a request id). */
  #ids = new Uint32Array(INITIAL_SLOTS);
  #kinds: Kind[] = new Array<Kind>(INITIAL_SLOTS).fill('ok');
  #resolves: (Resolve | undefined)[] = new Array<Resolve | undefined>(INITIAL_SLOTS).fill(undefined);
  #rejects: (Reject | undefined)[] = new Array<Reject | undefined>(INITIAL_SLOTS).fill(undefined);
  #queues: string[] = new Array<string>(INITIAL_SLOTS).fill('');
  #topics: string[] = new Array<string>(INITIAL_SLOTS).fill('');
  #cleanups: ((() => void) | undefined)[] = new Array<(() => void) | undefined>(INITIAL_SLOTS).fill(undefined);
  /** Where the request ends in the bytes its connection sent (the connection's early-flush rule). */
  #ends = new Float64Array(INITIAL_SLOTS);
  #count = 0;
  #nextId = 1;
  #resolve: Resolve | undefined;
  #reject: Reject | undefined;
  readonly #executor = (resolve: Resolve, reject: Reject): void => {
    this.#resolve = resolve;
    this.#reject = reject;
  };

  get size(): number {
    return this.#count;
  }

  /**
   * The next request id whose slot is free; `taken(id)` says whether something else uses the
   * id (an open subscription). Ids wrap around at 2^32 and skip 0.
   */
  nextId(taken: (id: number) => boolean): number {
    if ((this.#count + 1) * 2 > this.#mask + 1) this.#grow();
    let id = this.#nextId;
    while (id === 0 || this.#ids[id & this.#mask] !== 0 || taken(id)) id = (id + 1) >>> 0;
    this.#nextId = (id + 1) >>> 0;
    return id;
  }

  /**
   * Registers request `id` (from nextId, encoded since) and returns the promise of its reply;
   * `end` is where it ends in the bytes the connection sent (see end()).
   */
  add<T>(id: number, kind: Kind, queue: string, topic: string, cleanup: (() => void) | undefined, end = 0): Promise<T> {
    const promise = new Promise<T>(this.#executor as (resolve: (value: T) => void, reject: Reject) => void);
    const slot = id & this.#mask;
    this.#ids[slot] = id;
    this.#kinds[slot] = kind;
    this.#resolves[slot] = this.#resolve;
    this.#rejects[slot] = this.#reject;
    this.#queues[slot] = queue;
    this.#topics[slot] = topic;
    this.#cleanups[slot] = cleanup;
    this.#ends[slot] = end;
    this.#resolve = this.#reject = undefined;
    this.#count++;
    return promise;
  }

  /**
   * Registers request `id` with the resolve/reject of an earlier request (a leased pop sent
   * again after a reconnect keeps the promise its caller holds).
   */
  addWith(id: number, kind: Kind, queue: string, topic: string, cleanup: (() => void) | undefined, resolve: Resolve, reject: Reject): void {
    if ((this.#count + 1) * 2 > this.#mask + 1) this.#grow();
    const slot = id & this.#mask;
    this.#ids[slot] = id;
    this.#kinds[slot] = kind;
    this.#resolves[slot] = resolve;
    this.#rejects[slot] = reject;
    this.#queues[slot] = queue;
    this.#topics[slot] = topic;
    this.#cleanups[slot] = cleanup;
    this.#ends[slot] = 0;
    this.#count++;
  }

  /** Removes the request in `slot` without settling it (its cleanup does not run): the caller now owns them. */
  detach(slot: number): { resolve: Resolve; reject: Reject; cleanup: (() => void) | undefined } {
    const taken = { resolve: this.#resolves[slot]!, reject: this.#rejects[slot]!, cleanup: this.#cleanups[slot] };
    this.#cleanups[slot] = undefined;
    this.#free(slot);
    return taken;
  }

  has(id: number): boolean {
    return id !== 0 && this.#ids[id & this.#mask] === id;
  }

  /** The slot of request `id`, or -1. */
  find(id: number): number {
    const slot = id & this.#mask;
    return id !== 0 && this.#ids[slot] === id ? slot : -1;
  }

  kind(slot: number): Kind {
    return this.#kinds[slot]!;
  }

  queue(slot: number): string {
    return this.#queues[slot]!;
  }

  topic(slot: number): string {
    return this.#topics[slot]!;
  }

  /** Where the request in `slot` ends in the bytes its connection sent (0: not known). */
  end(slot: number): number {
    return this.#ends[slot]!;
  }

  /** Ends the request in `slot` with `value` (its cleanup runs first). */
  resolve(slot: number, value: unknown): void {
    const resolve = this.#resolves[slot]!;
    this.#free(slot);
    resolve(value);
  }

  /** Ends the request in `slot` with `error` (its cleanup runs first). */
  reject(slot: number, error: Error): void {
    const reject = this.#rejects[slot]!;
    this.#free(slot);
    reject(error);
  }

  /** Rejects every request (the connection closed). */
  rejectAll(error: Error): void {
    for (let slot = 0; slot <= this.#mask; slot++) if (this.#ids[slot] !== 0) this.reject(slot, error);
  }

  #free(slot: number): void {
    const cleanup = this.#cleanups[slot];
    this.#ids[slot] = 0;
    this.#resolves[slot] = this.#rejects[slot] = this.#cleanups[slot] = undefined;
    this.#queues[slot] = this.#topics[slot] = '';
    this.#count--;
    cleanup?.();
  }

  #grow(): void {
    const oldMask = this.#mask;
    const ids = this.#ids, kinds = this.#kinds, resolves = this.#resolves, rejects = this.#rejects;
    const queues = this.#queues, topics = this.#topics, cleanups = this.#cleanups, ends = this.#ends;
    const slots = (oldMask + 1) * 2;
    this.#mask = slots - 1;
    this.#ids = new Uint32Array(slots);
    this.#kinds = new Array<Kind>(slots).fill('ok');
    this.#resolves = new Array<Resolve | undefined>(slots).fill(undefined);
    this.#rejects = new Array<Reject | undefined>(slots).fill(undefined);
    this.#queues = new Array<string>(slots).fill('');
    this.#topics = new Array<string>(slots).fill('');
    this.#cleanups = new Array<(() => void) | undefined>(slots).fill(undefined);
    this.#ends = new Float64Array(slots);
    for (let old = 0; old <= oldMask; old++) {
      const id = ids[old]!;
      if (id === 0) continue;
      const slot = id & this.#mask;
      this.#ids[slot] = id;
      this.#kinds[slot] = kinds[old]!;
      this.#resolves[slot] = resolves[old];
      this.#rejects[slot] = rejects[old];
      this.#queues[slot] = queues[old]!;
      this.#topics[slot] = topics[old]!;
      this.#cleanups[slot] = cleanups[old];
      this.#ends[slot] = ends[old]!;
    }
  }
}
