// RangeSet: a set of message ids kept as sorted, disjoint, half-open ranges [start, end).
// Compaction's bookkeeping is made of these (which ids are live, which were seen, which a
// segment holds), so its memory follows the number of *runs* of ids, not of messages: a
// topic consumed in order is one range however many messages it holds.
//
// Storage: one Float64Array of [start0, end0, start1, end1, ...] (16 bytes per range), ids
// as numbers (exact below 2^53). Appending past the end and removing from the front, the
// common FIFO cases, are O(1); anything else is a binary search and one copyWithin.

export class RangeSet {
  #r: Float64Array;
  #n = 0;      // ranges
  #size = 0;   // ids

  constructor(capacityRanges = 2) {
    this.#r = new Float64Array(Math.max(2, capacityRanges) * 2);
  }

  /** Number of ids in the set. */
  get size(): number {
    return this.#size;
  }

  /** Number of ranges. */
  get rangeCount(): number {
    return this.#n;
  }

  startAt(i: number): number {
    return this.#r[2 * i]!;
  }

  endAt(i: number): number {
    return this.#r[2 * i + 1]!;
  }

  /** Smallest id, or NaN when empty. */
  first(): number {
    return this.#n === 0 ? NaN : this.#r[0]!;
  }

  /** Largest id, or NaN when empty. */
  last(): number {
    return this.#n === 0 ? NaN : this.#r[2 * this.#n - 1]! - 1;
  }

  clear(): void {
    this.#n = 0;
    this.#size = 0;
  }

  clone(): RangeSet {
    const c = new RangeSet(this.#n);
    c.#r.set(this.#r.subarray(0, 2 * this.#n));
    c.#n = this.#n;
    c.#size = this.#size;
    return c;
  }

  has(id: number): boolean {
    const i = this.#firstEndAbove(id);
    return i < this.#n && this.#r[2 * i]! <= id;
  }

  add(id: number): void {
    this.addRange(id, id + 1);
  }

  /** Adds [start, end). */
  addRange(start: number, end: number): void {
    if (end <= start) return;
    const r = this.#r;
    const n = this.#n;
    // Fast path: at or after the last range (ids arrive in increasing order).
    if (n === 0 || start >= r[2 * n - 1]!) {
      if (n > 0 && start === r[2 * n - 1]!) {
        r[2 * n - 1] = end;
      } else {
        this.#grow(n + 1);
        this.#r[2 * n] = start;
        this.#r[2 * n + 1] = end;
        this.#n = n + 1;
      }
      this.#size += end - start;
      return;
    }
    // i: first range whose end >= start (it touches or follows [start, end)).
    // j: first range whose start > end (it lies wholly after).
    const i = this.#firstEndAtLeast(start);
    const j = this.#firstStartAbove(end);
    if (i === j) {
      // Disjoint from every range: insert at i.
      this.#grow(n + 1);
      const rr = this.#r;
      rr.copyWithin(2 * i + 2, 2 * i, 2 * n);
      rr[2 * i] = start;
      rr[2 * i + 1] = end;
      this.#n = n + 1;
      this.#size += end - start;
      return;
    }
    // Merge ranges i..j-1 with [start, end).
    let covered = 0;
    for (let k = i; k < j; k++) covered += r[2 * k + 1]! - r[2 * k]!;
    const newStart = Math.min(start, r[2 * i]!);
    const newEnd = Math.max(end, r[2 * (j - 1) + 1]!);
    r[2 * i] = newStart;
    r[2 * i + 1] = newEnd;
    if (j - i > 1) {
      r.copyWithin(2 * i + 2, 2 * j, 2 * n);
      this.#n = n - (j - i - 1);
    }
    this.#size += newEnd - newStart - covered;
  }

  /** Adds every range of `other`. */
  addAll(other: RangeSet): void {
    for (let i = 0; i < other.#n; i++) this.addRange(other.#r[2 * i]!, other.#r[2 * i + 1]!);
  }

  /** Removes [start, end); returns how many ids were in the set. */
  deleteRange(start: number, end: number): number {
    if (end <= start || this.#n === 0) return 0;
    const r = this.#r;
    const n = this.#n;
    // Fast path: from the front of the first range (FIFO consumption).
    if (start <= r[0]! && end < r[1]!) {
      if (end <= r[0]!) return 0;
      const removed = end - r[0]!;
      r[0] = end;
      this.#size -= removed;
      return removed;
    }
    const i = this.#firstEndAbove(start);          // first range with end > start
    const j = this.#firstStartAtLeast(end);        // first range with start >= end
    if (i >= j) return 0;
    let removed = 0;
    for (let k = i; k < j; k++) removed += Math.min(end, r[2 * k + 1]!) - Math.max(start, r[2 * k]!);
    const leftStart = r[2 * i]!;
    const rightEnd = r[2 * (j - 1) + 1]!;
    const pieces: number[] = [];
    if (leftStart < start) pieces.push(leftStart, start);
    if (rightEnd > end) pieces.push(end, rightEnd);
    const newN = n - (j - i) + pieces.length / 2;
    this.#grow(newN);
    const rr = this.#r;
    rr.copyWithin(2 * i + pieces.length, 2 * j, 2 * n);
    for (let k = 0; k < pieces.length; k++) rr[2 * i + k] = pieces[k]!;
    this.#n = newN;
    this.#size -= removed;
    return removed;
  }

  /** How many ids of [start, end) are in the set. */
  countIn(start: number, end: number): number {
    if (end <= start) return 0;
    let count = 0;
    for (let k = this.#firstEndAbove(start); k < this.#n; k++) {
      const s = this.#r[2 * k]!;
      if (s >= end) break;
      count += Math.min(end, this.#r[2 * k + 1]!) - Math.max(start, s);
    }
    return count;
  }

  /** How many ids both sets hold. */
  intersectionSize(other: RangeSet): number {
    const a = this.#r, b = other.#r;
    let i = 0, j = 0, count = 0;
    while (i < this.#n && j < other.#n) {
      const s = Math.max(a[2 * i]!, b[2 * j]!);
      const e = Math.min(a[2 * i + 1]!, b[2 * j + 1]!);
      if (s < e) count += e - s;
      if (a[2 * i + 1]! < b[2 * j + 1]!) i++; else j++;
    }
    return count;
  }

  /** Calls fn(start, end) for each piece of [start, end) that is in the set, in order. */
  forEachIn(start: number, end: number, fn: (start: number, end: number) => void): void {
    for (let k = this.#firstEndAbove(start); k < this.#n; k++) {
      const s = this.#r[2 * k]!;
      if (s >= end) break;
      fn(Math.max(start, s), Math.min(end, this.#r[2 * k + 1]!));
    }
  }

  /** Calls fn(start, end) for each piece of [start, end) that is not in the set, in order. */
  forEachGap(start: number, end: number, fn: (start: number, end: number) => void): void {
    let at = start;
    for (let k = this.#firstEndAbove(start); k < this.#n && at < end; k++) {
      const s = this.#r[2 * k]!;
      if (s >= end) break;
      if (s > at) fn(at, s);
      at = Math.max(at, this.#r[2 * k + 1]!);
    }
    if (at < end) fn(at, end);
  }

  /** Bytes this set takes (for the bookkeeping figures). */
  get bytes(): number {
    return this.#r.byteLength;
  }

  // Binary searches over range i: start = r[2i], end = r[2i+1].

  /** First range whose end > id. */
  #firstEndAbove(id: number): number {
    let lo = 0, hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#r[2 * mid + 1]! > id) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  /** First range whose end >= id. */
  #firstEndAtLeast(id: number): number {
    let lo = 0, hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#r[2 * mid + 1]! >= id) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  /** First range whose start > id. */
  #firstStartAbove(id: number): number {
    let lo = 0, hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#r[2 * mid]! > id) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  /** First range whose start >= id. */
  #firstStartAtLeast(id: number): number {
    let lo = 0, hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#r[2 * mid]! >= id) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  #grow(ranges: number): void {
    if (2 * ranges <= this.#r.length) return;
    let size = this.#r.length * 2;
    while (size < 2 * ranges) size *= 2;
    const grown = new Float64Array(size);
    grown.set(this.#r.subarray(0, 2 * this.#n));
    this.#r = grown;
  }
}
