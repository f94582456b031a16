// A socket's outgoing copies, in buffers it reuses. The client encodes every frame into its
// writer in Wasm memory and reuses that writer at once, so each send is copied; a fresh
// array per send (or per 256 KiB slab) costs more than the copy: a new ArrayBuffer is
// zeroed, its pages faulted in, and counted as external memory until a GC (measured on a
// 20 KiB send: 1.9-5.3 us per send from fresh slabs, 0.25 us into a reused buffer; a
// pipelined pushMany spent a fifth of its CPU there).
//
// A buffer goes back to the pool when its write's callback runs: Node calls write callbacks
// in order, once the bytes are with the kernel (or the write failed), so one shared callback
// and a FIFO of what each write holds are enough.
//
//   send(bytes) --copy--> pooled buffer --socket.write(sub, released)--> kernel
//                              ^                                         |
//                              +------------- released() (in order) -----+

import type { Duplex } from 'node:stream';

/** Pooled buffers' size: sends up to it are copied into one; larger ones get their own. */
const BUFFER_BYTES = 64 * 1024;
/** Sends up to this size are plain on-heap copies (cheaper than a pooled buffer's Buffer view). */
const ON_HEAP_MAX_BYTES = 64;
/** Free buffers kept (more only while a slow reader leaves writes queued: then dropped). */
const MAX_FREE = 4;

export class SendBuffers {
  readonly #socket: Duplex;
  readonly #free: Buffer[] = [];
  /** For each write not yet called back, oldest first: its pooled buffer, or undefined. */
  readonly #held: (Buffer | undefined)[] = [];
  readonly #released = (): void => {
    const buffer = this.#held.shift();
    if (buffer !== undefined && this.#free.length < MAX_FREE) this.#free.push(buffer);
  };

  constructor(socket: Duplex) {
    this.#socket = socket;
  }

  /** Writes a copy of `bytes`, which the caller may overwrite as soon as this returns. */
  send(bytes: Uint8Array): void {
    const n = bytes.length;
    if (n <= ON_HEAP_MAX_BYTES || n > BUFFER_BYTES) {
      this.#held.push(undefined);
      // (Uint8Array's slice copies; a Buffer's would not.)
      this.#socket.write(n <= ON_HEAP_MAX_BYTES ? Uint8Array.prototype.slice.call(bytes) : Buffer.from(bytes), this.#released);
      return;
    }
    const buffer = this.#free.pop() ?? Buffer.allocUnsafeSlow(BUFFER_BYTES);
    buffer.set(bytes);
    this.#held.push(buffer);
    this.#socket.write(buffer.subarray(0, n), this.#released);
  }
}
