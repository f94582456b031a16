// Latency histogram of the load generator: bounded memory, exact merge. Each client thread
// records into its own histogram; the thread that runs the load adds them up bucket by bucket,
// so merged percentiles are exactly those of one histogram that saw every sample.

export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** A histogram's state as it travels between threads (structured-cloneable). */
export interface HistogramData {
  counts: Float64Array;
  count: number;
  sumUs: number;
  maxUs: number;
}

const LINEAR = 1024;
const SUB = 64;
const BUCKETS = LINEAR + 22 * SUB;

/**
 * Latencies in µs: exact below 1,024 µs, then 64 buckets per power of two (under 1.6 %
 * error) up to 2^31 µs. Max and mean are exact.
 */
export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKETS);
  count = 0;
  #sum = 0;
  #max = 0;

  record(ms: number): void {
    const us = ms < 0 ? 0 : ms * 1000;
    this.count++;
    this.#sum += us;
    if (us > this.#max) this.#max = us;
    this.#counts[bucket(us)]!++;
  }

  /** Adds another histogram's samples (from data()) to this one. */
  merge(other: HistogramData): void {
    if (other.counts.length !== BUCKETS) throw new RangeError(`histogram of ${other.counts.length} buckets, expected ${BUCKETS}`);
    for (let i = 0; i < BUCKETS; i++) this.#counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.#sum += other.sumUs;
    if (other.maxUs > this.#max) this.#max = other.maxUs;
  }

  data(): HistogramData {
    return { counts: this.#counts.slice(), count: this.count, sumUs: this.#sum, maxUs: this.#max };
  }

  /** The latency (ms) at quantile q in 0..1. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(edge(i), this.#max) / 1000;
    }
    return this.#max / 1000;
  }

  summary(): Percentiles {
    return {
      count: this.count,
      mean: this.count === 0 ? 0 : this.#sum / this.count / 1000,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.#max / 1000,
    };
  }
}

function bucket(us: number): number {
  const v = Math.floor(us);
  if (v < LINEAR) return v;
  const e = Math.min(31, 31 - Math.clz32(v)); // 10..31
  const sub = Math.floor((v / 2 ** e - 1) * SUB);
  return LINEAR + (e - 10) * SUB + Math.min(sub, SUB - 1);
}

/** Upper edge of bucket i, in µs. */
function edge(i: number): number {
  if (i < LINEAR) return i + 1;
  const k = i - LINEAR;
  const e = 10 + Math.floor(k / SUB);
  return 2 ** e * (1 + ((k % SUB) + 1) / SUB);
}
