// The Queue API, the same for TurboClient (network) and TurboEngine.getQueue (embedded).

export interface Message {
  /** Queue name. */
  queue: string;
  /** Topic name. */
  topic: string;
  /** The message bytes. */
  data: Uint8Array;
  /** `data` decoded as UTF-8. */
  content: string;
}

/** A pop timeout: milliseconds, or an options object with an AbortSignal. */
export type PopTimeout = number | { timeoutMs?: number; signal?: AbortSignal };

export interface SubscribeOptions {
  /** Messages the broker may send ahead of consumption (default 64). */
  prefetch?: number;
  /** Be the only consumer of the topic (ERR_EXCLUSIVE if it has one). */
  exclusive?: boolean;
}

export interface Subscription extends AsyncIterable<Message> {
  /** Ends the subscription; messages received but not yet consumed go back to the topic's front. */
  close(): Promise<void>;
  readonly closed: boolean;
}

export interface Queue {
  readonly name: string;
  /** Stores one message; resolves once the broker has stored it. */
  push(topic: string, data: string | Uint8Array): Promise<void>;
  /** Stores all messages, in order, in one round trip. */
  pushMany(topic: string, items: Iterable<string | Uint8Array>): Promise<void>;
  /**
   * The oldest message, or null after `timeout` ms. Omitted or Infinity: wait until one
   * arrives. 0: answer at once. Negative or NaN: ERR_INVALID_ARGUMENT.
   */
  pop(topic: string, timeout?: PopTimeout): Promise<Message | null>;
  /** Waits like pop for the first message, then returns up to `max` available, in order. */
  popMany(topic: string, max: number, timeout?: PopTimeout): Promise<Message[]>;
  /** Messages waiting in the topic. */
  length(topic: string): Promise<number>;
  /** A consumer receiving messages as they arrive. */
  subscribe(topic: string, options?: SubscribeOptions): Subscription;
}
