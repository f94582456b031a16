// Ports for the workers' SO_REUSEPORT listeners (src/transport/tcp.ts): port 0 is picked and held
// until the workers listen, so no other broker starting at the same moment can be given it and
// take half of its connections.

import t from 'tap';
import net from 'node:net';
import { probePort, reservePort } from '../../src/transport/tcp.ts';
import { startEngine } from '../helpers.ts';

const listen = (port: number, reusePort: boolean) => new Promise<net.Server>((resolve, reject) => {
  const s = net.createServer((socket) => socket.destroy());
  s.once('error', reject);
  s.listen({ host: '127.0.0.1', port, reusePort }, () => resolve(s));
});
const close = (s: net.Server) => new Promise<void>((resolve) => s.close(() => resolve()));

t.test('a reserved port is never another port-0 pick, and the workers can join it', async (t) => {
  const held = await Promise.all(Array.from({ length: 200 }, () => reservePort('127.0.0.1')));
  t.teardown(() => Promise.all(held.map((r) => r.release())));
  t.equal(new Set(held.map((r) => r.port)).size, 200, '200 reservations, 200 ports');
  // What another broker's start does: pick port 0 (exclusive, as probePort) or with SO_REUSEPORT.
  const mine = new Set(held.map((r) => r.port));
  for (let i = 0; i < 200; i++) {
    const other = await listen(0, i % 2 === 0);
    const port = (other.address() as net.AddressInfo).port;
    await close(other);
    if (mine.has(port)) t.fail(`port ${port} was handed to another listener while reserved`);
  }
  await t.rejects(probePort('127.0.0.1', held[0]!.port), { code: 'EADDRINUSE' }, 'a busy-port check sees it taken');
  const worker = await listen(held[0]!.port, true);
  t.equal((worker.address() as net.AddressInfo).port, held[0]!.port, 'an SO_REUSEPORT listener joins it');
  await close(worker);
});

t.test('released: the port is free again', async (t) => {
  const r = await reservePort('127.0.0.1');
  await r.release();
  t.equal(await probePort('127.0.0.1', r.port), r.port);
});

t.test('an engine on port 0 serves on the reserved port, and gives the placeholder up', async (t) => {
  const engine = await startEngine(t, { threads: 2, listen: ['ws://127.0.0.1:0'] }); // and tcp://127.0.0.1:0
  const ports = engine.urls.map((u) => Number(new URL(u).port));
  t.equal(new Set(ports).size, 2);
  // Every connection reaches a worker (a placeholder left listening would take some and close them).
  for (let i = 0; i < 40; i++) {
    const socket = net.connect({ host: '127.0.0.1', port: ports[0]! });
    const closedEarly = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => setTimeout(() => resolve(socket.destroyed), 20));
      socket.once('close', () => resolve(true));
    });
    socket.destroy();
    t.equal(closedEarly, false, `connection ${i} stays open`);
  }
});
