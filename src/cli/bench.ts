// `turbomq bench`: load-tests a broker with the load generator (src/cli/loadgen.ts) and
// prints throughput, end-to-end latency and whether every message arrived exactly once.
// Without --url it starts its own broker in this process (all cores, 127.0.0.1, free port).
// Errors in flags are one line and exit code 2 (UsageError); a run that lost or duplicated
// messages exits 1.

import { TurboEngine } from '../engine/engine.ts';
import { MAX_THREADS, defaultThreads } from '../options.ts';
import { parseUrl } from '../url.ts';
import { UsageError, parseFlags } from './args.ts';
import { runLoad, turbomqDriverSpec, formatRate, formatMs, HEADER_BYTES, MAX_CLIENT_THREADS, type LoadResult, type Progress } from './loadgen.ts';
import { VERSION } from '../version.ts';

export const BENCH_HELP = `Usage: turbomq bench [options]

Pushes numbered, timestamped messages through a turbomq broker and pops them, then reports
messages/s, MB/s, end-to-end latency, and whether every message arrived exactly once.

Options:
  -u, --url URL          broker to test (tcp://, tls://, ws://, wss:// or unix:// url); default: start one
                         in this process on 127.0.0.1 with --threads workers
  -t, --threads N        workers of the in-process broker (default: one per core = ${defaultThreads()})
      --client-threads N threads the producers and consumers are spread over (round robin,
                         producers first), so one load-generator thread is not the limit
                         (default 1: all on the main thread)
      --token TOKEN      token for a broker with auth
  -p, --producers N      producer connections (default 1)
  -c, --consumers N      consumer connections (default 1)
  -n, --messages N       messages in total (default 100000)
  -s, --size BYTES       bytes per message, at least ${HEADER_BYTES} (producer, seq, timestamp) (default 16)
  -b, --batch N          messages per push and per pop; 1 = push/pop, more = pushMany/popMany (default 1)
      --consumer-batch N most messages per pop, when it should differ from --batch (default: --batch)
      --topics N         topics the messages are spread over (default 1)
  -d, --duration SEC     stop sending after this many seconds (default 60)
      --rate N           send N messages/s in total, paced (default: as fast as acknowledged)
      --json             print the summary as JSON on stdout
      --progress         progress lines on stderr even when it is not a terminal
  -h, --help             show this help

Examples:
  turbomq bench --producers 4 --consumers 4 --messages 1000000 --size 16 --batch 64
  turbomq bench --url tcp://127.0.0.1:33444 -p 4 -c 4 -b 64 --client-threads 4
  turbomq bench --rate 10000 --messages 30000 --consumer-batch 64   # latency at a fixed rate

Exit code: 0 when every message arrived exactly once, 1 when not, 2 for bad options.`;

export interface BenchSettings {
  url: string | undefined;
  token: string | undefined;
  threads: number;
  clientThreads: number;
  producers: number;
  consumers: number;
  messages: number;
  sizeBytes: number;
  batch: number;
  /** Most messages per pop (the Workload's consumerBatch); defaults to batch. */
  consumerBatch: number;
  topics: number;
  durationMs: number;
  rate: number;
  json: boolean;
  progress: boolean;
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const text = raw.trim().replace(/_/g, '');
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(raw)}`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`--${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

export function parseBenchArgs(argv: string[]): BenchSettings | 'help' {
  const v = parseFlags(argv, {
    url: { type: 'string', short: 'u' },
    token: { type: 'string' },
    threads: { type: 'string', short: 't' },
    'client-threads': { type: 'string' },
    producers: { type: 'string', short: 'p' },
    consumers: { type: 'string', short: 'c' },
    messages: { type: 'string', short: 'n' },
    size: { type: 'string', short: 's' },
    batch: { type: 'string', short: 'b' },
    'consumer-batch': { type: 'string' },
    topics: { type: 'string' },
    duration: { type: 'string', short: 'd' },
    rate: { type: 'string' },
    json: { type: 'boolean' },
    progress: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return 'help';
  if (v.url !== undefined) {
    try {
      parseUrl(v.url);
    } catch (err) {
      throw new UsageError(`--url: ${(err as Error).message}`);
    }
  }
  let durationMs = 60_000;
  if (v.duration !== undefined) {
    const seconds = Number(v.duration);
    if (v.duration.trim() === '' || !Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) throw new UsageError(`--duration must be seconds from 0 to 86400 (e.g. 10 or 0.5), got ${JSON.stringify(v.duration)}`);
    durationMs = seconds * 1000;
  }
  if (v.size !== undefined && /^\d+$/.test(v.size.trim()) && Number(v.size) < HEADER_BYTES) {
    throw new UsageError(`--size must be at least ${HEADER_BYTES} bytes (each message carries producer, seq and send time), got ${v.size}`);
  }
  const batch = integer('batch', v.batch, 1, 1, 65_536);
  return {
    url: v.url,
    threads: integer('threads', v.threads, defaultThreads(), 1, MAX_THREADS),
    clientThreads: integer('client-threads', v['client-threads'], 1, 1, MAX_CLIENT_THREADS),
    token: v.token,
    producers: integer('producers', v.producers, 1, 1, 1024),
    consumers: integer('consumers', v.consumers, 1, 1, 1024),
    messages: integer('messages', v.messages, 100_000, 1, 0xffffffff),
    sizeBytes: integer('size', v.size, 16, HEADER_BYTES, 64 * 1024 * 1024),
    batch,
    consumerBatch: integer('consumer-batch', v['consumer-batch'], batch, 1, 65_536),
    topics: integer('topics', v.topics, 1, 1, 10_000_000),
    durationMs,
    rate: integer('rate', v.rate, 0, 0, 1_000_000_000),
    json: v.json === true,
    progress: v.progress === true,
  };
}

export async function benchMain(argv: string[]): Promise<void> {
  const settings = parseBenchArgs(argv);
  if (settings === 'help') return void console.log(BENCH_HELP);
  const s = settings;
  let engine: TurboEngine | undefined;
  let url = s.url;
  if (url === undefined) {
    engine = new TurboEngine('tcp://127.0.0.1:0', { threads: s.threads });
    await engine.run();
    url = engine.url;
  }
  const tty = process.stderr.isTTY === true;
  const showProgress = !s.json ? tty || s.progress : s.progress;
  let lastLineAt = 0;
  const onProgress = (p: Progress) => {
    const line = `${(p.elapsedMs / 1000).toFixed(1)} s  sent ${p.sent.toLocaleString('en-US')}  received ${p.received.toLocaleString('en-US')}  ${formatRate(p.rate)}msg/s`;
    if (tty) process.stderr.write(`\r\x1b[2K${line}`);
    else if (p.elapsedMs - lastLineAt >= 1000) {
      lastLineAt = p.elapsedMs;
      process.stderr.write(`${line}\n`);
    }
  };
  let result: LoadResult;
  try {
    result = await runLoad(turbomqDriverSpec(url, 'bench', s.token), {
      producers: s.producers,
      consumers: s.consumers,
      messages: s.messages,
      sizeBytes: s.sizeBytes,
      batch: s.batch,
      consumerBatch: s.consumerBatch,
      topics: s.topics,
      durationMs: s.durationMs,
      rate: s.rate,
      clientThreads: s.clientThreads,
      onProgress: showProgress ? onProgress : undefined,
    });
  } finally {
    if (showProgress && tty) process.stderr.write('\r\x1b[2K');
    await engine?.destroy();
  }
  if (s.json) {
    console.log(JSON.stringify({ version: VERSION, url: s.url ?? 'in-process', threads: s.url === undefined ? s.threads : undefined, ...result }, null, 2));
  } else {
    console.log(summary(result, s));
  }
  if (!result.exactlyOnce) process.exitCode = 1;
}

function summary(r: LoadResult, s: BenchSettings): string {
  const w = r.workload;
  const broker = s.url === undefined ? `in-process broker, ${s.threads} thread${s.threads === 1 ? '' : 's'}` : s.url;
  const l = r.latencyMs;
  const lines = [
    `turbomq ${VERSION} bench: ${broker}`,
    `${w.producers} producer${w.producers === 1 ? '' : 's'}, ${w.consumers} consumer${w.consumers === 1 ? '' : 's'}, ${w.messages.toLocaleString('en-US')} messages of ${w.sizeBytes} B, ${w.batch === 1 ? 'single push/pop' : `batches of ${w.batch}`}${(w.consumerBatch ?? w.batch) !== w.batch ? `, pops of up to ${w.consumerBatch}` : ''}, ${w.topics} topic${w.topics === 1 ? '' : 's'}${w.rate ? `, paced at ${formatRate(w.rate)}msg/s` : ''}, ${w.clientThreads ?? 1} client thread${w.clientThreads === 1 ? '' : 's'}`,
    '',
    `producers  ${formatRate(r.sendRate).padStart(8)}msg/s  ${r.sendMBps.toFixed(1).padStart(7)} MB/s  (${r.sent.toLocaleString('en-US')} sent in ${(r.producerMs / 1000).toFixed(2)} s)`,
    `consumers  ${formatRate(r.receiveRate).padStart(8)}msg/s  ${r.receiveMBps.toFixed(1).padStart(7)} MB/s  (${r.received.toLocaleString('en-US')} received in ${(r.consumerMs / 1000).toFixed(2)} s)`,
    `latency    p50 ${formatMs(l.p50)}  p90 ${formatMs(l.p90)}  p99 ${formatMs(l.p99)}  p99.9 ${formatMs(l.p999)}  max ${formatMs(l.max)}  (send to receive)`,
    `pop        p50 ${formatMs(r.popLatencyMs.p50)}  p99 ${formatMs(r.popLatencyMs.p99)}  (request to reply, time parked included)`,
    r.exactlyOnce
      ? `delivery   exactly once: all ${r.unique.toLocaleString('en-US')} messages arrived, none twice`
      : `delivery   NOT exactly once: ${r.missing.toLocaleString('en-US')} missing, ${r.duplicates.toLocaleString('en-US')} duplicated, ${r.corrupt.toLocaleString('en-US')} corrupt`,
  ];
  if (r.cappedByDuration) lines.push(`note       --duration ended sending after ${(w.durationMs / 1000).toFixed(1)} s: ${r.sent.toLocaleString('en-US')} of ${w.messages.toLocaleString('en-US')} sent`);
  return lines.join('\n');
}
