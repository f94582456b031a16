// A client's connection status events: `disconnect` (the connection was lost; the client is
// reconnecting), `reconnect` (it is back; subscriptions and leased pops are resumed) and
// `close` (client.close(): the last one). Listeners (client.on) and async iterators
// (client.status()) see the same events in the same order. Browser-safe: no node:events.
//
// A listener that throws does not stop the others or the client: its error is rethrown in a
// microtask, where it surfaces as an uncaught exception as an EventEmitter listener's would.

export type StatusEvent =
  | { type: 'disconnect'; error: Error | undefined }
  | { type: 'reconnect'; attempts: number }
  | { type: 'close' };

export type StatusType = StatusEvent['type'];
export type StatusListener<T extends StatusType> = (event: Extract<StatusEvent, { type: T }>) => void;

/** One status() iterator: events not read yet, and the read waiting for the next one. */
interface Feed {
  events: StatusEvent[];
  waiting: ((result: IteratorResult<StatusEvent>) => void) | undefined;
  done: boolean;
}

export class StatusEvents {
  readonly #listeners = new Map<StatusType, Set<(event: StatusEvent) => void>>();
  readonly #feeds = new Set<Feed>();
  #closed = false;

  on<T extends StatusType>(type: T, listener: StatusListener<T>): void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, set = new Set());
    set.add(listener as (event: StatusEvent) => void);
  }

  off<T extends StatusType>(type: T, listener: StatusListener<T>): void {
    this.#listeners.get(type)?.delete(listener as (event: StatusEvent) => void);
  }

  emit(event: StatusEvent): void {
    if (this.#closed) return;
    if (event.type === 'close') this.#closed = true;
    for (const feed of this.#feeds) {
      if (feed.waiting !== undefined) {
        const w = feed.waiting;
        feed.waiting = undefined;
        w({ value: event, done: false });
      } else {
        feed.events.push(event);
      }
      if (event.type === 'close') this.#feeds.delete(feed);
    }
    for (const listener of [...this.#listeners.get(event.type) ?? []]) {
      try {
        listener(event);
      } catch (err) {
        queueMicrotask(() => { throw err; });
      }
    }
  }

  /** The events from now on; ends after `close`. */
  iterate(): AsyncIterableIterator<StatusEvent> {
    const feed: Feed = { events: [], waiting: undefined, done: this.#closed };
    if (!feed.done) this.#feeds.add(feed);
    const end = (): IteratorResult<StatusEvent> => ({ value: undefined, done: true });
    const iterator: AsyncIterableIterator<StatusEvent> = {
      next: () => {
        const event = feed.events.shift();
        if (event !== undefined) {
          if (event.type === 'close') feed.done = true;
          return Promise.resolve({ value: event, done: false });
        }
        if (feed.done || !this.#feeds.has(feed)) return Promise.resolve(end());
        return new Promise((resolve) => { feed.waiting = resolve; });
      },
      return: () => {
        feed.done = true;
        this.#feeds.delete(feed);
        feed.events.length = 0;
        const w = feed.waiting;
        feed.waiting = undefined;
        w?.(end());
        return Promise.resolve(end());
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}
