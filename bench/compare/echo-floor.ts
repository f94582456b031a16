// The latency floor of this machine for bench/compare's fixed-rate latency: the same paced
// sender (single sends due at LATENCY_RATE, a 1 ms timer between bursts, each stamped with
// the time of its write) to a Node process that echoes every byte back on one plain
// socket, timed from the write to the echo's arrival. One hop and no broker, where a
// broker's end-to-end latency is two hops (producer to broker, broker to consumer): what is
// left in its tail is the platform's (event loops, timers, GC, the VM's scheduling).
//
// `node bench/compare/echo-floor.ts --serve` prints "listening on PORT" and echoes;
// bench/compare/servers.ts starts it as its own process.

import net from 'node:net';

export interface EchoLatency { p50: number; p99: number; p999: number; rate: number }

const STAMP = 8;

/** Sends `rate` stamped 8-byte messages per second for `seconds` to the echo at `port`; latency in ms. */
export async function echoLatency(port: number, rate: number, seconds: number): Promise<EchoLatency> {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const total = rate * seconds;
  const latency = new Float64Array(total);
  let received = 0, carry: Buffer | undefined;
  const done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      const now = performance.now();
      const buf = carry === undefined ? chunk : Buffer.concat([carry, chunk]);
      let at = 0;
      for (; buf.length - at >= STAMP; at += STAMP) latency[received++] = now - buf.readDoubleLE(at);
      carry = at < buf.length ? buf.subarray(at) : undefined;
      if (received >= total) resolve();
    });
  });
  const t0 = performance.now();
  for (let sent = 0; sent < total;) {
    const due = Math.min(total, Math.floor((performance.now() - t0) * rate / 1000) + 1);
    for (; sent < due; sent++) {
      const b = Buffer.allocUnsafe(STAMP);
      b.writeDoubleLE(performance.now());
      socket.write(b);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await done;
  const ms = performance.now() - t0;
  socket.destroy();
  latency.sort();
  const q = (p: number) => latency[Math.min(total - 1, Math.floor(total * p))]!;
  return { p50: q(0.5), p99: q(0.99), p999: q(0.999), rate: total / (ms / 1000) };
}

if (process.argv.includes('--serve')) {
  const server = net.createServer({ noDelay: true }, (s) => {
    s.on('data', (d) => s.write(d));
    s.on('error', () => s.destroy());
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening on ${(server.address() as net.AddressInfo).port}`));
}
