// A socket's outgoing copies (TCP, TLS, unix), cut from slabs this thread reuses. The client and the broker's
// sessions encode every frame into a writer in Wasm memory and reuse it at once, so each send
// is copied; a fresh array per send (or a fresh slab now and then) costs more than the copy:
// a new ArrayBuffer is zeroed, its pages faulted in, and counted as external memory until a
// GC (a 20 KiB send: 1.9-5.3 us from fresh 256 KiB slabs, 0.25 us into a reused buffer).
//
// A piece of a slab is free again when its write's callback runs: Node calls a socket's write
// callbacks in order, once the bytes are with the kernel (or the write failed), so each socket
// keeps a FIFO of the slabs its writes hold, and one shared callback pops it. A slab goes
// back to the thread's free list when it is full and none of its pieces is held.
//
//   send(bytes) --copy--> piece of the current slab --socket.write(piece, released)--> kernel
//                          (slab.held++)                                                |
//                              ^   slab.held-- ; full and 0: back to the free list      |
//                              +------------------- released() (in order) --------------+
//
// Memory: slabs are shared by every socket of the thread, so an idle connection holds
// none; a thread keeps at most MAX_FREE_SLABS free. A socket whose writes queue (a reader
// slower than its replies) gets exact copies instead (socket.writableLength > 0), counted by
// the output limit like any queued byte; at most the piece its first queued write took keeps
// one slab from being reused - and only once the kernel's buffers for that socket (several
// MiB on loopback) are full. Pieces go up to 256 KiB, so that 64 pipelined pushMany or popMany
// of 64 (85-130 KiB a send) are cut from slabs too.

import type { Duplex } from 'node:stream';

/** A slab's size, and the largest send cut from one (larger sends get an exact copy). */
const SLAB_BYTES = 1024 * 1024;
const MAX_PIECE_BYTES = 256 * 1024;
/** Sends up to this size are plain on-heap copies (cheaper than a piece's Buffer view). */
const ON_HEAP_MAX_BYTES = 64;
/** Free slabs a thread keeps (more are left to the GC). */
const MAX_FREE_SLABS = 4;

interface Slab {
  readonly buffer: Buffer;
  /** Bytes cut so far. */
  used: number;
  /** Pieces whose write has not been called back. */
  held: number;
}

// This thread's slabs (a worker thread has its own module instance).
const freeSlabs: Slab[] = [];
let current: Slab | undefined;
let slabsMade = 0;

function takeSlab(): Slab {
  let slab = freeSlabs.pop();
  if (slab === undefined) {
    slab = { buffer: Buffer.allocUnsafeSlow(SLAB_BYTES), used: 0, held: 0 };
    slabsMade++;
  }
  slab.used = 0;
  return slab;
}

function retire(slab: Slab): void {
  if (freeSlabs.length < MAX_FREE_SLABS) freeSlabs.push(slab);
}

/** Slabs this thread has made, and keeps free now (for tests). */
export function slabStats(): { made: number; free: number } {
  return { made: slabsMade, free: freeSlabs.length };
}

export class SendBuffers {
  readonly #socket: Duplex;
  /** For each write not yet called back, oldest first: the slab its piece is in, or undefined. */
  readonly #held: (Slab | undefined)[] = [];
  readonly #released = (): void => {
    const slab = this.#held.shift();
    if (slab !== undefined && --slab.held === 0 && slab !== current) retire(slab);
  };

  constructor(socket: Duplex) {
    this.#socket = socket;
  }

  /**
   * Writes a copy of `bytes`, which the caller may overwrite as soon as this returns; false
   * when the socket's buffer is full (socket.write's backpressure).
   */
  send(bytes: Uint8Array): boolean {
    const n = bytes.length;
    const socket = this.#socket;
    if (n <= ON_HEAP_MAX_BYTES || n > MAX_PIECE_BYTES || socket.writableLength > 0) {
      this.#held.push(undefined);
      // (Uint8Array's slice copies; a Buffer's would not.)
      return socket.write(n <= ON_HEAP_MAX_BYTES ? Uint8Array.prototype.slice.call(bytes) : Buffer.from(bytes), this.#released);
    }
    let slab = current;
    if (slab === undefined || slab.used + n > SLAB_BYTES) {
      if (slab !== undefined && slab.held === 0) retire(slab);
      slab = current = takeSlab();
    }
    const at = slab.used;
    slab.buffer.set(bytes, at);
    slab.used = at + ((n + 7) & ~7); // 8-byte aligned pieces
    slab.held++;
    this.#held.push(slab);
    return socket.write(slab.buffer.subarray(at, at + n), this.#released);
  }
}
