// GET /metrics: the broker's figures in the Prometheus text format, through prom-client
// with a private Registry (never the global one: an application that embeds the engine
// keeps its own metrics to itself, and two engines in one process do not collide).
//
// Every value is computed at scrape time from one snapshot (src/engine/stats.ts, summed
// from shared memory): each metric's collect() reads the snapshot taken just before
// registry.metrics() runs, so one scrape is one consistent reading. Counters are set from
// running totals (reset + inc), which is what prom-client's collect() is for.
//
// fsync latency: the storage layer observes it in whichever thread waits for the fsync
// (ThreadCounters.observeFsyncSeconds, per-thread buckets in shared memory); the histogram
// below only reports the summed buckets, so it has no observe() of its own.

import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';
import { FSYNC_BUCKETS_SECONDS, type CounterValues } from './metrics.ts';

/** What one scrape reads (filled by the engine from stats.ts). */
export interface MetricsSnapshot {
  counters: CounterValues;
  /** Event-loop utilisation per worker thread id, and of the main thread. */
  loopUtilization: Map<string, number>;
  topics: number;
  memoryBytes: number;
  bytesInUse: number;
  messageBytes: number;
  messageLimitBytes: number;
  workers: number;
  workerRestarts: number;
}

/** A histogram whose buckets are summed from shared memory on each scrape. */
class SummedHistogram extends Histogram<string> {
  readonly #read: () => CounterValues;
  readonly #name: string;
  readonly #help: string;

  constructor(name: string, help: string, registry: Registry, read: () => CounterValues) {
    super({ name, help, buckets: [...FSYNC_BUCKETS_SECONDS], registers: [registry] });
    this.#read = read;
    this.#name = name;
    this.#help = help;
  }

  #values() {
    const c = this.#read();
    let cumulative = 0;
    const values = FSYNC_BUCKETS_SECONDS.map((le, i) => {
      cumulative += c.fsyncBuckets[i]!;
      return { labels: { le }, value: cumulative, metricName: `${this.#name}_bucket` };
    });
    values.push(
      { labels: { le: '+Inf' as unknown as number }, value: c.fsyncCount, metricName: `${this.#name}_bucket` },
      { labels: {} as { le: number }, value: c.fsyncSumSeconds, metricName: `${this.#name}_sum` },
      { labels: {} as { le: number }, value: c.fsyncCount, metricName: `${this.#name}_count` },
    );
    return { name: this.#name, help: this.#help, type: 'histogram' as const, values, aggregator: 'sum' as const };
  }

  // prom-client formats what these return (getForPromString for the text format).
  override async get() {
    return this.#values() as unknown as Awaited<ReturnType<Histogram<string>['get']>>;
  }

  async getForPromString() {
    return this.#values();
  }
}

export class BrokerMetrics {
  readonly registry = new Registry();
  readonly #sample: () => MetricsSnapshot;
  #snapshot: MetricsSnapshot | undefined;

  constructor(sample: () => MetricsSnapshot) {
    this.#sample = sample;
    const registers = [this.registry];
    const snap = () => (this.#snapshot ??= this.#sample());
    const counter = (name: string, help: string, value: (s: MetricsSnapshot) => number) => new Counter({
      name, help, registers,
      collect() { this.reset(); this.inc(value(snap())); },
    });
    const gauge = (name: string, help: string, value: (s: MetricsSnapshot) => number) => new Gauge({
      name, help, registers,
      collect() { this.set(value(snap())); },
    });
    counter('turbomq_messages_pushed_total', 'Messages stored by PUSH and PUSH_MANY.', (s) => s.counters.pushed);
    counter('turbomq_messages_popped_total', 'Messages delivered to consumers (pops and subscriptions).', (s) => s.counters.popped);
    counter('turbomq_messages_acked_total', 'Messages acknowledged by their consumer.', (s) => s.counters.acked);
    counter('turbomq_messages_redelivered_total', 'Messages back in their topic after a lease ended unacknowledged.', (s) => s.counters.redelivered);
    counter('turbomq_messages_dead_lettered_total', 'Messages given up on after too many deliveries.', (s) => s.counters.deadLettered);
    counter('turbomq_messages_dropped_total', 'Messages removed from a topic without being delivered.', (s) => s.counters.dropped);
    gauge('turbomq_messages_ready', 'Messages waiting in topics to be delivered.', (s) => Math.max(0, s.counters.ready));
    gauge('turbomq_messages_in_flight', 'Messages delivered and not yet acknowledged.', (s) => Math.max(0, s.counters.inFlight));
    gauge('turbomq_connections', 'Open client connections.', (s) => s.counters.connections);
    gauge('turbomq_parked_pops', 'Pops waiting for a message.', (s) => s.counters.parkedPops);
    counter('turbomq_connections_accepted_total', 'Client connections accepted.', (s) => s.counters.connectionsTotal);
    counter('turbomq_connections_refused_total', 'Client connections refused at a connection limit.', (s) => s.counters.connectionsRefused);
    counter('turbomq_protocol_errors_total', 'Connections closed for a protocol error.', (s) => s.counters.protocolErrors);
    counter('turbomq_received_bytes_total', 'Bytes received from clients.', (s) => s.counters.bytesReceived);
    counter('turbomq_sent_bytes_total', 'Bytes sent to clients.', (s) => s.counters.bytesSent);
    gauge('turbomq_topics', 'Topics in use (with messages, waiters or consumers).', (s) => s.topics);
    gauge('turbomq_memory_bytes', 'Size of the shared memory that holds the queues.', (s) => s.memoryBytes);
    gauge('turbomq_memory_in_use_bytes', 'Bytes allocated in the shared memory.', (s) => s.bytesInUse);
    gauge('turbomq_message_storage_bytes', 'Bytes stored messages take (counted against the limit).', (s) => s.messageBytes);
    gauge('turbomq_message_storage_limit_bytes', 'Most bytes stored messages may take (maxMemoryMiB).', (s) => s.messageLimitBytes);
    gauge('turbomq_workers', 'Worker threads serving connections.', (s) => s.workers);
    counter('turbomq_worker_restarts_total', 'Workers started to replace ones that died.', (s) => s.workerRestarts);
    new Gauge({
      name: 'turbomq_event_loop_utilization',
      help: 'Fraction of the last second each thread\'s event loop was busy (thread: worker core thread id, or "main").',
      labelNames: ['thread'],
      registers,
      collect() {
        this.reset();
        for (const [thread, fraction] of snap().loopUtilization) this.set({ thread }, fraction);
      },
    });
    counter('turbomq_log_peer_waits_total', 'Times replies were held until another worker\'s log had the records they depend on (a pop of a message that worker had just stored).', (s) => s.counters.peerLogWaits);
    counter('turbomq_log_peer_rings_total', 'Of those, waits for a worker that had not written within 10 ms and was rung (its turns are slow).', (s) => s.counters.peerLogRings);
    new SummedHistogram('turbomq_fsync_seconds', 'Time each fsync of the data directory took.', this.registry, () => snap().counters);
    // process_* and nodejs_* figures of the broker's process (RSS, CPU, heap, main-thread event loop lag).
    collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One scrape: a fresh snapshot, then every metric formatted by prom-client. */
  async scrape(): Promise<string> {
    // collect() callbacks run synchronously inside metrics(), so overlapping scrapes each
    // read their own snapshot.
    this.#snapshot = this.#sample();
    return this.registry.metrics();
  }
}
