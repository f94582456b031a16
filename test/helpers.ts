// Shared test helpers: real brokers on 127.0.0.1 port 0, cleaned up even when a test fails.

import type { Test } from 'tap';
import { TurboEngine, TurboClient, type EngineOptions, type Queue } from '../src/index.ts';

/** A running engine on a free port, destroyed at the end of the test. */
export async function startEngine(t: Test, options: EngineOptions = {}, url = 'tcp://127.0.0.1:0'): Promise<TurboEngine> {
  const engine = new TurboEngine(url, { threads: 2, ...options });
  await engine.run();
  t.teardown(() => engine.destroy());
  return engine;
}

/** A client connected to `url`, closed at the end of the test. */
export async function connect(t: Test, url: string): Promise<TurboClient> {
  const client = await TurboClient.connect(url);
  t.teardown(() => client.close());
  return client;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once `check()` holds, polling every 20 ms; rejects naming `what` after `ms`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(20);
  }
}

/** A seeded PRNG (mulberry32) in [0, 1), so a failing random test can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rejects if `promise` takes longer than `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms); }),
  ]);
}

/** Pushes `data` to `topic` until a push is refused (at most `max` tries); the pushes stored and the refusal. */
export async function pushUntilRefused(q: Queue, topic: string, data: Uint8Array, max = Infinity): Promise<{ stored: number; error: unknown }> {
  let stored = 0;
  for (let i = 0; i < max; i++) {
    try {
      await q.push(topic, data);
      stored++;
    } catch (err) {
      return { stored, error: err };
    }
  }
  return { stored, error: undefined };
}

/** Pushes an empty message, every byte value and 1 MiB to topic 'b' of `q`, and checks they pop back exactly. */
export async function checkBinaryRoundTrip(t: Test, q: Queue): Promise<void> {
  const all = new Uint8Array(256).map((_, i) => i);
  const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 31) & 0xff);
  await q.push('b', new Uint8Array(0));
  await q.push('b', all);
  await q.push('b', big);
  t.equal((await q.pop('b', 0))!.data.length, 0);
  t.same([...(await q.pop('b', 0))!.data], [...all]);
  const got = (await q.pop('b', 0))!.data;
  t.equal(got.length, big.length);
  t.ok(Buffer.compare(Buffer.from(got), Buffer.from(big)) === 0, '1 MiB intact');
}
