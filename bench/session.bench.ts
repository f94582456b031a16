// npm run bench:session — CPU time one Session spends per request (pipelined PUSH and POP of
// 16 B on one topic, one thread, no sockets), for a broker without auth, an admin user, and a
// user whose permissions are checked on every request (src/engine/auth.ts authorize). Prints
// the median of REPEAT runs per case and the ratios to the case without auth.

import { newSharedMemory, instantiateSharedCore } from '../src/core/wasm.ts';
import { sharedCoreModule } from '../src/core/load.ts';
import { CoreThread } from '../src/core/thread.ts';
import { Session } from '../src/engine/session.ts';
import { Authenticator } from '../src/engine/auth.ts';

const REPEAT = Number(process.env.REPEAT ?? 7);
const ROUNDS = Number(process.env.ROUNDS ?? 500);
const PER_ROUND = 1000;

const thread = new CoreThread(await instantiateSharedCore(newSharedMemory(64 * 16), sharedCoreModule()));
const limits = { maxMessageBytes: 1 << 20, maxFrameBytes: 8 << 20, maxSubscriptions: 1024, maxParkedPops: 1024 };

function frame(op: number, id: number, body: Buffer): Buffer {
  const b = Buffer.alloc(12 + body.length);
  b.writeUInt32LE(8 + body.length, 0);
  b[4] = 1;
  b[5] = op;
  b.writeUInt32LE(id, 8);
  body.copy(b, 12);
  return b;
}
const names = Buffer.from([5, ...Buffer.from('bench'), 1, 0x74]);
const push = frame(0x10, 1, Buffer.concat([names, Buffer.from('0123456789abcdef')]));
const pop = frame(0x12, 2, Buffer.concat([names, Buffer.alloc(4)]));
const chunk = Buffer.concat([...Array<Buffer>(PER_ROUND).fill(push), ...Array<Buffer>(PER_ROUND).fill(pop)]);

const auth = Authenticator.from({ users: [
  { name: 'admin', token: 'admin-token', admin: true },
  { name: 'user', token: 'user-token', push: ['bench*'], pop: ['bench*'] },
] })!;
const login = (token: string) => auth.authenticate('', new TextEncoder().encode(token)) as ReturnType<typeof auth.authenticate> & object;
const cases = [['no auth', undefined], ['admin', login('admin-token')], ['checked user', login('user-token')]] as const;

function nsPerRequest(session: Session): number {
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < ROUNDS; i++) session.onData(chunk);
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) * 1000 / (ROUNDS * 2 * PER_ROUND);
}

const results = new Map<string, number[]>();
for (let r = 0; r < REPEAT; r++) {
  for (const [name, user] of cases) {
    const session = new Session(thread, { write() {}, end() {} }, limits);
    session.user = user as never;
    for (let i = 0; i < 50; i++) session.onData(chunk); // warm up
    results.set(name, [...(results.get(name) ?? []), nsPerRequest(session)]);
    session.close();
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.get('no auth')!);
console.log(`turbomq session dispatch, CPU ns per request (median of ${REPEAT}; PUSH + POP, 16 B, pipelined)`);
for (const [name] of cases) {
  const m = median(results.get(name)!);
  console.log(`  ${name.padEnd(14)} ${m.toFixed(1).padStart(7)} ns  ${(m / base).toFixed(2)}x`);
}
thread.stop();
