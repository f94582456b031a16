// `turbomq stats [--json]`: the running broker's statistics (SERVER_STATS), as a readable
// table or as the JSON GET /stats serves.

import type { EngineStats } from '../index.ts';
import { CLIENT_FLAGS, CLIENT_FLAGS_HELP, clientSettings, parseCommandLine, positionals } from './args.ts';
import { withClient } from './connect.ts';

export const STATS_HELP = `Usage: turbomq stats [options]

Shows a running broker's threads, connections, memory, topics, message counts and its
largest queues (by ready messages).

Options:
      --json             print the statistics as JSON (as GET /stats on the --http endpoint)
${CLIENT_FLAGS_HELP}

Example:
  turbomq stats --url tcp://127.0.0.1:33444`;

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const parts: string[] = [];
  if (s >= 86_400) parts.push(`${Math.floor(s / 86_400)}d`);
  if (s >= 3600) parts.push(`${Math.floor(s / 3600) % 24}h`);
  if (s >= 60) parts.push(`${Math.floor(s / 60) % 60}m`);
  parts.push(`${s % 60}s`);
  return parts.join(' ');
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** Columns: the first `leftColumns` left-aligned (names), the others right-aligned (numbers). */
function table(header: string[], rows: string[][], leftColumns = 1): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** The readable form of `stats` (one string, lines joined). */
export function formatStats(stats: EngineStats, url: string): string {
  const m = stats.messages;
  const lines = [
    `turbomq ${stats.version} at ${url}, up ${duration(stats.uptimeMs)}, ${stats.ready ? 'ready' : 'not ready'}`,
    `threads       ${stats.threads.length} worker${stats.threads.length === 1 ? '' : 's'}${stats.workerRestarts > 0 ? ` (${stats.workerRestarts} restarted)` : ''}`,
    `connections   ${count(stats.connections)} open, ${count(stats.threads.reduce((sum, t) => sum + t.connectionsTotal, 0))} accepted`,
    `memory        ${bytes(stats.memoryBytes)} shared, ${bytes(stats.bytesInUse)} in use, ${bytes(stats.messageBytes)} of messages (limit ${bytes(stats.messageLimitBytes)})`,
    `topics        ${count(stats.topics)}`,
    `messages      ${count(m.pushed)} pushed, ${count(m.popped)} popped, ${count(m.ready)} ready, ${count(m.inFlight)} in flight`,
    '',
    ...table(['thread', 'connections', 'accepted', 'loop busy'], stats.threads.map((t) => [
      String(t.threadId), count(t.connections), count(t.connectionsTotal), `${(t.eventLoopUtilization * 100).toFixed(1)}%`,
    ]), 0),
    '',
  ];
  if (stats.largestTopics.length === 0) {
    lines.push('largest queues: none (no topic holds messages, waiters or consumers)');
  } else {
    lines.push('largest queues');
    lines.push(...table(['queue', 'topic', 'ready', 'in flight', 'consumers'], stats.largestTopics.map((t) => [
      t.queue, t.topic, count(t.ready), count(t.inFlight), `${count(t.consumers)}${t.waiting ? ' +pops' : ''}`,
    ]), 2));
  }
  return lines.join('\n');
}

export async function statsMain(argv: string[]): Promise<void> {
  const { values, positionals: args } = parseCommandLine(argv, { ...CLIENT_FLAGS, json: { type: 'boolean' } });
  if (values.help) return void console.log(STATS_HELP);
  positionals(args, 'turbomq stats', 0);
  const settings = clientSettings(values, process.env);
  const stats = await withClient(settings, (client) => client.serverStats());
  console.log(values.json ? JSON.stringify(stats, null, 2) : formatStats(stats, settings.url));
}
