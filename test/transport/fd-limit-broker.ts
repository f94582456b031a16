// Child process for listener.test.ts: a broker started under a small `ulimit -n`. Prints
// its url, then on every line of stdin one JSON line: the process's CPU use since the last
// line (percent of one core, all threads) and the open connection count.

import { TurboEngine } from '../../src/index.ts';

const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2, handshakeTimeoutMs: 60_000 });
await engine.run();
console.log(engine.url);
let lastCpu = process.cpuUsage();
let lastAt = performance.now();
process.stdin.setEncoding('utf8');
process.stdin.on('data', () => {
  const cpu = process.cpuUsage(lastCpu);
  const now = performance.now();
  console.log(JSON.stringify({ cpuPercent: (cpu.user + cpu.system) / 1000 / (now - lastAt) * 100, connections: engine.connections }));
  lastCpu = process.cpuUsage();
  lastAt = now;
});
process.stdin.on('end', () => void engine.destroy().then(() => process.exit(0)));
