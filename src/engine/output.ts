// A connection's output budget: how much it may have encoded and not yet sent, and what
// waits while it is over. The rule it enforces for the session (session.ts): a message is
// taken from its topic only for a connection that can send it. Below the high-water mark
// everything runs; above it the session dispatches no more requests (the position in the
// decoder's batch is kept here, and chunks that still arrive are held) and pumps no
// subscription, until the transport says it can take more (Session.onWritable). The only
// output that can still grow past the mark is what parked pops and subscriptions were
// already handed by other threads; a frame that would not fit under maxOutputBytes is
// given back to its topic and the connection is closed.

/**
 * Unsent bytes above which a connection stops being served. Above TCP's own 16 KiB
 * (socket.write returning false pauses reading first) and the same mark the WebSocket
 * transport pauses at, so neither keeps reading while the session holds back.
 */
export const OUTPUT_HIGH_WATER_BYTES = 1024 * 1024;

/** Where dispatching stopped: descriptor `i` of the `n` at `base` in the decoder. */
export interface ServePosition {
  base: number;
  i: number;
  n: number;
}

export class OutputGate {
  readonly #maxOutputBytes: number;
  readonly #maxFrameBytes: number;
  readonly #maxHeldBytes: number;
  /** The writer's length plus the transport's buffer, now. */
  readonly #outputBytes: () => number;
  #position: ServePosition | undefined;
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  #stalledSubscriptions = new Set<number>();

  constructor(maxOutputBytes: number, maxFrameBytes: number, outputBytes: () => number) {
    this.#maxOutputBytes = maxOutputBytes;
    this.#maxFrameBytes = maxFrameBytes;
    // What a transport may still deliver after it was paused: one read or one WebSocket message.
    this.#maxHeldBytes = 2 * maxFrameBytes + OUTPUT_HIGH_WATER_BYTES;
    this.#outputBytes = outputBytes;
  }

  /** Requests are waiting for the output to drain. */
  get stalled(): boolean {
    return this.#position !== undefined;
  }

  get outputBytes(): number {
    return this.#outputBytes();
  }

  backedUp(): boolean {
    return this.#outputBytes() >= OUTPUT_HIGH_WATER_BYTES;
  }

  /** A frame of up to maxFrameBytes still fits under maxOutputBytes. */
  roomForFrame(): boolean {
    return this.#outputBytes() + this.#maxFrameBytes <= this.#maxOutputBytes;
  }

  overLimit(): boolean {
    return this.#outputBytes() > this.#maxOutputBytes;
  }

  stall(base: number, i: number, n: number): void {
    this.#position = { base, i, n };
  }

  /** The position to go on from (and not stalled any more), or undefined when nothing was held back. */
  resume(): ServePosition | undefined {
    const position = this.#position;
    this.#position = undefined;
    return position;
  }

  /**
   * Holds a copy of a chunk that arrived while stalled; false when that would pass the bound.
   * (A copy: a transport may read every connection into one buffer, valid only during onData.)
   */
  hold(chunk: Uint8Array): boolean {
    if (this.#heldBytes + chunk.length > this.#maxHeldBytes) return false;
    this.#held.push(new Uint8Array(chunk));
    this.#heldBytes += chunk.length;
    return true;
  }

  /** A copy of the rest of the chunk being decoded when the session stalled: it goes first. */
  holdFirst(chunk: Uint8Array): void {
    this.#held.unshift(new Uint8Array(chunk));
    this.#heldBytes += chunk.length;
  }

  nextHeld(): Uint8Array | undefined {
    const chunk = this.#held.shift();
    if (chunk !== undefined) this.#heldBytes -= chunk.length;
    return chunk;
  }

  stallSubscription(id: number): void {
    this.#stalledSubscriptions.add(id);
  }

  takeStalledSubscriptions(): number[] {
    const ids = [...this.#stalledSubscriptions];
    this.#stalledSubscriptions.clear();
    return ids;
  }

  /** The connection closed: what it had not served is dropped. */
  clear(): void {
    this.#position = undefined;
    this.#held = [];
    this.#heldBytes = 0;
    this.#stalledSubscriptions.clear();
  }
}
