// CPU time and memory of a process (and its descendants) from Linux's /proc, for the
// benchmarks that report broker CPU per message and broker memory per message.
//
// CPU time is read in nanoseconds from /proc/PID/task/TID/schedstat (its first field: time
// on a CPU, user and system), summed over the process's threads. /proc/PID/stat's utime and
// stime (fields 14 and 15) count the same in clock ticks of usually 10 ms, too coarse for the
// 50-100 ms a batched run can cost Redis (+-1 tick is +-10-20 % there); they are the fallback
// where schedstat is missing. What schedstat cannot count is a thread that exited during the
// interval (stat keeps its time, schedstat loses it): the brokers measured keep their threads.

import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Whether /proc can be read here (Linux). */
export const procAvailable = fs.existsSync('/proc/self/stat');

interface Stat { ppid: number; cpuTicks: number }

function stat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
}

/** `pid` and every process below it (e.g. rabbitmq-server's shell script and its beam.smp). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s === undefined) continue;
    const list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, [Number(name)]);
    else list.push(Number(name));
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** CPU ns of `pid`'s live threads from schedstat, or undefined where it cannot be read. */
function schedstatNs(pid: number): number | undefined {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ', 1)[0]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync(`/proc/${pid}/task`) && !fs.existsSync(`/proc/${pid}/task/${tid}`)) continue; // the thread just exited
      return undefined;
    }
  }
  return ns;
}

/**
 * CPU ns so far of each live thread of `pid`, summed per thread name (/proc/PID/task/TID/comm:
 * e.g. Node's "WorkerThread", "node-V8Worker", "libuv-worker"), to see where a process spends.
 */
export function cpuNsByThreadName(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tids) {
    try {
      const name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const ns = Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ', 1)[0]);
      byName.set(name, (byName.get(name) ?? 0) + ns);
    } catch { /* the thread just exited */ }
  }
  return byName;
}

/** User + system CPU ms used so far by `pids` (live processes only). */
export function cpuMs(pids: number[]): number {
  let ms = 0;
  for (const pid of pids) {
    const ns = schedstatNs(pid);
    ms += ns !== undefined ? ns / 1e6 : (stat(pid)?.cpuTicks ?? 0) * 1000 / clockTicks();
  }
  return ms;
}

/** Resident memory of `pid` in bytes (VmRSS), or NaN. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Number(m[1]) * 1024;
  } catch {
    return NaN;
  }
}
