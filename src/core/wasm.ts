// Loading the Wasm core and reading/writing its memory from JavaScript.
//
// Two builds of one AssemblyScript source (asconfig.json):
//   shared  imports a shared WebAssembly.Memory; every worker thread and the main thread
//           instantiate it over the same memory (the broker).
//   local   ordinary memory, for browsers (no cross-origin isolation needed) and clients.
//
// Stale views: memory.grow in any thread gives the memory a longer buffer; views made
// before only cover the old length. Every access here goes through MemoryView, which
// checks the end of the range it touches against its cached view and refreshes the view
// when the range is beyond it. A pointer the core hands out always lies inside the memory
// as it is *now*, and shared buffers never shrink, so a range within the cached view is
// always valid and a range beyond it always triggers a refresh: a stale view cannot be used.

import { instantiate as instantiateShared } from '#wasm/turbomq.shared.js';
import { instantiate as instantiateLocal } from '#wasm/turbomq.local.js';

export type CoreExports = Awaited<ReturnType<typeof instantiateShared>>;

/** Initial and maximum size of the shared memory, in 64 KiB pages. */
export const SHARED_INITIAL_PAGES = 64;        // 4 MiB
export const SHARED_MAXIMUM_PAGES = 65536;     // 4 GiB (Wasm32 limit)

export class MemoryView {
  readonly memory: WebAssembly.Memory;
  #u8: Uint8Array;
  #dv: DataView;

  constructor(memory: WebAssembly.Memory) {
    this.memory = memory;
    this.#u8 = new Uint8Array(memory.buffer);
    this.#dv = new DataView(memory.buffer);
  }

  #refresh(end: number): void {
    const buffer = this.memory.buffer;
    this.#u8 = new Uint8Array(buffer);
    this.#dv = new DataView(buffer);
    if (end > buffer.byteLength) throw new RangeError(`turbomq core: address ${end} is outside the memory (${buffer.byteLength} bytes)`);
  }

  /** A view of `len` bytes at `ptr`, valid until the core frees or moves them (not a copy). */
  bytes(ptr: number, len: number): Uint8Array {
    if (ptr + len > this.#u8.length) this.#refresh(ptr + len);
    return this.#u8.subarray(ptr, ptr + len);
  }

  /**
   * The whole memory as one array that covers [0, end): for code that writes many small
   * pieces (the client's records) without a view per piece. Valid until the next core call
   * that may grow the memory; ask again after one.
   */
  span(end: number): Uint8Array {
    if (end > this.#u8.length) this.#refresh(end);
    return this.#u8;
  }

  /** A copy of `len` bytes at `ptr`. */
  copy(ptr: number, len: number): Uint8Array {
    if (ptr + len > this.#u8.length) this.#refresh(ptr + len);
    return this.#u8.slice(ptr, ptr + len);
  }

  /** Copies `src` to `ptr`. */
  write(ptr: number, src: Uint8Array): void {
    if (ptr + src.length > this.#u8.length) this.#refresh(ptr + src.length);
    this.#u8.set(src, ptr);
  }

  /** Encodes `text` as UTF-8 at `ptr` (at most `cap` bytes); returns the bytes written. */
  writeUtf8(ptr: number, cap: number, text: string): number {
    if (ptr + cap > this.#u8.length) this.#refresh(ptr + cap);
    return encodeUtf8Into(text, this.#u8, ptr, cap);
  }

  u8(ptr: number): number {
    if (ptr + 1 > this.#u8.length) this.#refresh(ptr + 1);
    return this.#u8[ptr]!;
  }

  u16(ptr: number): number {
    if (ptr + 2 > this.#u8.length) this.#refresh(ptr + 2);
    return this.#dv.getUint16(ptr, true);
  }

  u32(ptr: number): number {
    if (ptr + 4 > this.#u8.length) this.#refresh(ptr + 4);
    return this.#dv.getUint32(ptr, true);
  }

  f64(ptr: number): number {
    if (ptr + 8 > this.#u8.length) this.#refresh(ptr + 8);
    return this.#dv.getFloat64(ptr, true);
  }

  setF64(ptr: number, value: number): void {
    if (ptr + 8 > this.#u8.length) this.#refresh(ptr + 8);
    this.#dv.setFloat64(ptr, value, true);
  }

  setU32(ptr: number, value: number): void {
    if (ptr + 4 > this.#u8.length) this.#refresh(ptr + 4);
    this.#dv.setUint32(ptr, value, true);
  }

  /** An Int32Array over the first page (the shared header), for Atomics on header words. */
  headerWords(): Int32Array {
    return new Int32Array(this.memory.buffer, 0, 65536 / 4);
  }
}

const textEncoder = new TextEncoder();

/**
 * UTF-8 encodes `text` into `dst` at `offset`. TextEncoder.encodeInto refuses views over a
 * SharedArrayBuffer in some engines, so shared memory goes through a temporary copy.
 */
function encodeUtf8Into(text: string, dst: Uint8Array, offset: number, cap: number): number {
  if (typeof SharedArrayBuffer === 'undefined' || !(dst.buffer instanceof SharedArrayBuffer)) {
    const { read, written } = textEncoder.encodeInto(text, dst.subarray(offset, offset + cap));
    if (read! < text.length) return -1;
    return written!;
  }
  const bytes = textEncoder.encode(text);
  if (bytes.length > cap) return -1;
  dst.set(bytes, offset);
  return bytes.length;
}

export interface Core {
  readonly exports: CoreExports;
  readonly view: MemoryView;
  readonly shared: boolean;
}

/** A new shared memory for a broker. */
export function newSharedMemory(initialPages = SHARED_INITIAL_PAGES, maximumPages = SHARED_MAXIMUM_PAGES): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared: true });
}

/** Instantiates the shared core over `memory` (does not attach; see attachCore in runtime.ts). */
export async function instantiateSharedCore(memory: WebAssembly.Memory, module: WebAssembly.Module): Promise<Core> {
  const exports = await instantiateShared(module, { env: { memory } } as never);
  return { exports, view: new MemoryView(memory), shared: true };
}

/** Instantiates the local core with a fresh private memory (clients, browsers). */
export async function instantiateLocalCore(module: WebAssembly.Module): Promise<Core> {
  const memory = new WebAssembly.Memory({ initial: 2 });
  const exports = await instantiateLocal(module, { env: { memory } } as never) as unknown as CoreExports;
  return { exports, view: new MemoryView(memory), shared: false };
}
