// The browser client (build/browser/turbomq.browser.js) in a real headless Chromium,
// against a real broker listening on ws://127.0.0.1:0, with Node clients on the other end.
// Skips (with the reason) only when no Chromium can be found or launched.

import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import type { BrowserContext, Page } from 'playwright-core';
import { TurboEngine, TurboClient, type EngineOptions } from '../../src/index.ts';
import { BUNDLE_PATH, launchChromium, serveTestPage, type StaticServer } from './harness.ts';
import { delay, within } from '../helpers.ts';
import { testCertificate } from '../support/tls.ts';

import type { TurboClient as BrowserClient, Subscription } from '../../src/browser.ts';

declare global {
  interface Window {
    turbomq: typeof import('../../src/browser.ts');
    client: BrowserClient;
    got: string[];
    subscription: Subscription;
  }
}

/** Bound on every single step in the page. */
const STEP_MS = 10_000;

async function startWsEngine(t: Test, options: EngineOptions = {}): Promise<{ engine: TurboEngine; wsUrl: string }> {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2, listen: ['ws://127.0.0.1:0'], ...options });
  t.teardown(() => engine.destroy());
  await engine.run();
  return { engine, wsUrl: engine.urls[1]! };
}

function suite(context: BrowserContext, server: StaticServer, engine: TurboEngine, wsUrl: string, node: TurboClient): void {
  /** A fresh page with the bundle loaded (window.turbomq), closed at the end of the test. */
  async function openPage(t: Test, connectTo: string | undefined = wsUrl): Promise<Page> {
    const page = await context.newPage();
    t.teardown(() => page.close());
    page.setDefaultTimeout(STEP_MS);
    await page.goto(server.url);
    await page.waitForFunction(() => window.turbomq !== undefined);
    if (connectTo !== undefined) {
      await inPage(page, async (url) => { window.client = await window.turbomq.TurboClient.connect(url, { connectTimeoutMs: 5000 }); }, connectTo);
    }
    return page;
  }

  /** page.evaluate, bounded in time. */
  function inPage<R, A>(page: Page, fn: (arg: A) => R | Promise<R>, arg: A): Promise<R> {
    return within(page.evaluate(fn as (arg: unknown) => R | Promise<R>, arg), STEP_MS, 'a step in the page');
  }

  t.test('the bundle loads in a page without cross-origin isolation and connects over ws', async (t) => {
    const page = await openPage(t);
    const info = await inPage(page, () => ({
      isolated: crossOriginIsolated,
      version: window.client.server.version,
      maxMessageBytes: window.client.server.maxMessageBytes,
      url: window.client.url,
    }), undefined);
    t.equal(info.isolated, false, 'no COOP/COEP needed: the local (unshared) Wasm build');
    t.ok(info.version.length > 0, `server version ${info.version}`);
    t.equal(info.maxMessageBytes, node.server.maxMessageBytes);
    t.equal(info.url, wsUrl);
  });

  t.test('push from the browser, pop from Node: UTF-8 and binary data arrive intact', async (t) => {
    const page = await openPage(t);
    const text = 'héllo wörld ✓ 🚀 日本';
    await inPage(page, async (text) => {
      const q = window.client.getQueue('b2n');
      await q.push('t', text);
      await q.push('t', new Uint8Array(256).map((_, i) => i));
      await q.push('t', new Uint8Array(0));
    }, text);
    const q = node.getQueue('b2n');
    t.equal((await q.pop('t', 1000))!.content, text);
    t.same([...(await q.pop('t', 1000))!.data], Array.from({ length: 256 }, (_, i) => i), 'every byte value');
    t.equal((await q.pop('t', 1000))!.data.length, 0, 'an empty message');
  });

  t.test('push from Node, pop in the browser: UTF-8 and binary data arrive intact', async (t) => {
    const page = await openPage(t);
    const q = node.getQueue('n2b');
    const text = 'naïve ☕ 🚀';
    await q.push('t', text);
    await q.push('t', new Uint8Array(256).map((_, i) => 255 - i));
    await q.push('t', new Uint8Array(256 * 1024).map((_, i) => (i * 31) & 0xff));
    const got = await inPage(page, async () => {
      const q = window.client.getQueue('n2b');
      const a = await q.pop('t', 1000);
      const b = await q.pop('t', 1000);
      const c = await q.pop('t', 1000);
      return {
        queue: a?.queue, topic: a?.topic, content: a?.content,
        binary: Array.from(b!.data), isUint8Array: b!.data instanceof Uint8Array,
        bigLength: c!.data.length, bigIntact: c!.data.every((v, i) => v === ((i * 31) & 0xff)),
      };
    }, undefined);
    t.same({ queue: got.queue, topic: got.topic, content: got.content }, { queue: 'n2b', topic: 't', content: text });
    t.same(got.binary, Array.from({ length: 256 }, (_, i) => 255 - i));
    t.ok(got.isUint8Array, 'data is a Uint8Array');
    t.equal(got.bigLength, 256 * 1024);
    t.ok(got.bigIntact, '256 KiB intact');
  });

  t.test('pushMany, popMany and length in the browser', async (t) => {
    const page = await openPage(t);
    const got = await inPage(page, async () => {
      const q = window.client.getQueue('many');
      await q.pushMany('t', ['a', 'b', 'c', 'd']);
      const length = await q.length('t');
      const first = (await q.popMany('t', 3, 0)).map((m) => m.content);
      const rest = (await q.popMany('t', 10, 0)).map((m) => m.content);
      const none = await q.popMany('t', 10, 0);
      return { length, first, rest, none: none.length };
    }, undefined);
    t.same(got, { length: 4, first: ['a', 'b', 'c'], rest: ['d'], none: 0 });
  });

  t.test('the at-least-once API in the browser: configure, leased pops, ack/nack/reject, dead letters, delays, dedup, stats', async (t) => {
    const page = await openPage(t);
    const got = await inPage(page, async () => {
      const q = window.client.getQueue('alo');
      const settings = await q.configure({ maxDeliveries: 2, deadLetterTopic: 'dead', leaseMs: 10_000 });
      await q.push('t', 'job', { dedupId: 'job-1' });
      await q.push('t', 'job again', { dedupId: 'job-1' });
      await q.push('t', 'later', { delayMs: 100 });
      const before = await q.stats('t');
      const m = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
      const first = { id: m.id, deliveries: m.deliveries };
      await m.nack();
      const again = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
      await again.nack(); // second delivery: maxDeliveries reached
      const dead = (await q.pop('dead', 1000))!;
      const later = (await q.pop('t', { ack: true, timeoutMs: 2000 }))!;
      await later.ack();
      let expired = '';
      try { await later.ack(); } catch (err) { expired = (err as { code: string }).code; }
      const sub = q.subscribe('s', { ack: true, prefetch: 2 });
      await q.pushMany('s', ['x', 'y']);
      const it = sub[Symbol.asyncIterator]();
      const x = (await it.next()).value;
      await x.reject();
      await sub.close();
      return {
        maxDeliveries: settings.maxDeliveries, before, first, againDeliveries: again.deliveries, againId: again.id,
        dead: [dead.content, dead.deadLetter], later: later.content, expired, after: await q.stats('t'), s: await q.stats('s'),
      };
    }, undefined);
    // Ids are per topic and increase; a topic starts at the broker's id floor (never an id a
    // removed topic of the same name had), so only the relation between them is fixed.
    t.equal(got.againId, got.first.id, 'the redelivery keeps its id');
    t.same(got, {
      maxDeliveries: 2, before: { ready: 1, delayed: 1, inFlight: 0 }, first: { id: got.first.id, deliveries: 1 }, againDeliveries: 2, againId: got.first.id,
      dead: ['job', { topic: 't', reason: 'max-deliveries' }], later: 'later', expired: 'ERR_LEASE_EXPIRED',
      after: { ready: 0, delayed: 0, inFlight: 0 }, s: { ready: 1, delayed: 0, inFlight: 0 },
    });
  });

  t.test('a pushMany over maxFrameBytes from the browser crosses as whole-frame messages, in order', async (t) => {
    // 40 × 64 KiB = 2.5 MiB: about 20 PUSH_MANY frames of at most 128 KiB in one flush, sent as
    // three messages of several frames each (each over maxFrameBytes, within 1 MiB).
    const small = await startWsEngine(t, { threads: 1, maxMessageBytes: 64 * 1024, maxFrameBytes: 128 * 1024 });
    const page = await openPage(t, small.wsUrl);
    await inPage(page, async () => {
      const items = Array.from({ length: 40 }, (_, i) => new Uint8Array(64 * 1024).fill(i));
      await window.client.getQueue('big').pushMany('t', items);
    }, undefined);
    const reader = await TurboClient.connect(small.engine.url);
    t.teardown(() => reader.close());
    const q = reader.getQueue('big');
    t.equal(await q.length('t'), 40);
    const firsts: number[] = [];
    while (firsts.length < 40) {
      const batch = await q.popMany('t', 40, 1000);
      if (batch.length === 0) break;
      for (const m of batch) firsts.push(m.data.length === 64 * 1024 && m.data.every((v) => v === m.data[0]) ? m.data[0]! : -1);
    }
    t.same(firsts, Array.from({ length: 40 }, (_, i) => i), 'all 40, whole, in order');
  });

  t.test('pop timeouts in the browser: 0 answers at once, 150 ms gives null after about that long, a parked pop wakes on a push from Node', async (t) => {
    const page = await openPage(t);
    const timed = await inPage(page, async () => {
      const q = window.client.getQueue('timeouts');
      let started = performance.now();
      const zero = await q.pop('empty', 0);
      const zeroMs = performance.now() - started;
      started = performance.now();
      const short = await q.pop('empty', 150);
      return { zero, zeroMs, short, shortMs: performance.now() - started };
    }, undefined);
    t.equal(timed.zero, null);
    t.ok(timed.zeroMs < 500, `timeout 0: ${timed.zeroMs.toFixed(0)} ms`);
    t.equal(timed.short, null);
    t.ok(timed.shortMs >= 140 && timed.shortMs < 2000, `timeout 150: ${timed.shortMs.toFixed(0)} ms`);
    const parked = inPage(page, async () => (await window.client.getQueue('timeouts').pop('later', 5000))?.content, undefined);
    await delay(100);
    await node.getQueue('timeouts').push('later', 'woken');
    t.equal(await parked, 'woken');
  });

  t.test('errors reach the browser as TurboError with a stable .code', async (t) => {
    const page = await openPage(t);
    // Broker-side: an exclusive consumer held by Node makes the browser's pop fail.
    const exclusive = node.getQueue('errors').subscribe('held', { exclusive: true });
    t.teardown(() => exclusive.close());
    await (exclusive as unknown as { ready: Promise<void> }).ready;
    const errors = await inPage(page, async (wsUrl) => {
      const { TurboClient, TurboError } = window.turbomq;
      const q = window.client.getQueue('errors');
      const describe = async (what: string, run: () => Promise<unknown>) => {
        try {
          await run();
          return { what, resolved: true };
        } catch (err) {
          return { what, isTurboError: err instanceof TurboError, name: (err as Error).name, code: (err as { code?: string }).code };
        }
      };
      const results = [
        await describe('broker: pop on an exclusively held topic', () => q.pop('held', 0)),
        await describe('message over maxMessageBytes', () => q.push('t', new Uint8Array(window.client.server.maxMessageBytes + 1))),
        await describe('empty topic name', () => q.push('', 'x')),
        await describe('negative timeout', () => q.pop('t', -1)),
        await describe('tcp:// in a browser', () => TurboClient.connect('tcp://127.0.0.1:1')),
        await describe('nothing listening', () => TurboClient.connect('ws://127.0.0.1:1', { connectTimeoutMs: 3000 })),
        await describe('still usable after errors', () => q.pop('t', 0)),
      ];
      await window.client.close();
      results.push(await describe('after close', () => q.pop('t', 0)));
      return results;
    }, wsUrl);
    const expected = [
      ['broker: pop on an exclusively held topic', 'ERR_EXCLUSIVE'],
      ['message over maxMessageBytes', 'ERR_MESSAGE_TOO_LARGE'],
      ['empty topic name', 'ERR_INVALID_ARGUMENT'],
      ['negative timeout', 'ERR_INVALID_ARGUMENT'],
      ['tcp:// in a browser', 'ERR_INVALID_ARGUMENT'],
      ['nothing listening', 'ERR_CONNECTION_CLOSED'],
      ['still usable after errors', undefined],
      ['after close', 'ERR_CONNECTION_CLOSED'],
    ] as const;
    for (const [what, code] of expected) {
      const got = errors.find((e) => e.what === what);
      if (code === undefined) t.same(got, { what, resolved: true }, what);
      else t.same(got, { what, isTurboError: true, name: 'TurboError', code }, what);
    }
  });

  t.test('a subscription in the browser receives messages pushed from Node, in order, and nothing after close', async (t) => {
    const page = await openPage(t);
    await inPage(page, async () => {
      window.got = [];
      window.subscription = window.client.getQueue('live').subscribe('feed', { prefetch: 4 });
      await (window.subscription as unknown as { ready: Promise<void> }).ready;
      void (async () => {
        for await (const m of window.subscription) window.got.push(m.content);
      })();
    }, undefined);
    const q = node.getQueue('live');
    for (let i = 0; i < 5; i++) await q.push('feed', `m${i}`);
    await page.waitForFunction(() => window.got.length >= 5);
    t.same(await inPage(page, () => window.got, undefined), ['m0', 'm1', 'm2', 'm3', 'm4']);
    await inPage(page, () => window.subscription.close(), undefined);
    await q.push('feed', 'after close');
    t.equal((await q.pop('feed', 1000))?.content, 'after close', 'the closed subscription takes nothing more');
    t.same(await inPage(page, () => window.got.length, undefined), 5);
  });

  t.test('a page whose Origin is not allowed cannot connect', async (t) => {
    const strict = await startWsEngine(t, { threads: 1, allowedOrigins: ['https://app.example.com'] });
    const page = await openPage(t, undefined);
    const result = await inPage(page, async (url) => {
      try {
        await window.turbomq.TurboClient.connect(url, { connectTimeoutMs: 5000 });
        return 'connected';
      } catch (err) {
        return (err as { code?: string }).code;
      }
    }, strict.wsUrl);
    t.equal(result, 'ERR_CONNECTION_CLOSED', 'refused at the upgrade (HTTP 403)');
    t.ok(engine.running, 'the main broker is unaffected');
  });
}

if (!existsSync(BUNDLE_PATH)) {
  t.fail(`${BUNDLE_PATH} is missing: run npm run build:browser (npm test builds it)`);
} else {
  const launched = await launchChromium();
  if ('skip' in launched) {
    t.plan(0, launched.skip);
  } else {
    const { browser } = launched;
    t.teardown(() => browser.close());
    // One context (new pages in it are cheap); each test opens its own page.
    const context = await browser.newContext();
    const server = await serveTestPage();
    t.teardown(() => server.close());
    const { engine, wsUrl } = await startWsEngine(t);
    const node = await TurboClient.connect(engine.url);
    t.teardown(() => node.close());
    suite(context, server, engine, wsUrl, node);

    t.test('a page with reconnect: true outlives a broker restart: disconnect, reconnect, a push made while down completes, the subscription resumes', async (t) => {
      let restartable = new TurboEngine('ws://127.0.0.1:0', { threads: 1 });
      t.teardown(() => restartable.destroy());
      await restartable.run();
      const url = restartable.url;
      const page = await context.newPage();
      t.teardown(() => page.close());
      page.setDefaultTimeout(STEP_MS);
      await page.goto(server.url);
      await page.waitForFunction(() => window.turbomq !== undefined);
      await within(page.evaluate(async (u: string) => {
        const w = window as unknown as { events: string[]; pushed: Promise<string> };
        w.events = [];
        window.got = [];
        window.client = await window.turbomq.TurboClient.connect(u, { reconnect: true, reconnectMaxDelayMs: 200, connectTimeoutMs: 5000 });
        window.client.on('disconnect', () => w.events.push('disconnect'));
        window.client.on('reconnect', () => w.events.push('reconnect'));
        window.subscription = window.client.getQueue('rc').subscribe('live');
        await (window.subscription as unknown as { ready: Promise<void> }).ready;
        void (async () => { for await (const m of window.subscription) window.got.push(m.content); })();
      }, url), STEP_MS, 'connecting the page');
      await restartable.destroy();
      await page.waitForFunction(() => (window as unknown as { events: string[] }).events.includes('disconnect'));
      await page.evaluate(() => {
        const w = window as unknown as { pushed: Promise<string> };
        w.pushed = window.client.getQueue('rc').push('kept', 'from the page while down').then(() => 'ok', (err: { code?: string }) => String(err.code));
      });
      restartable = new TurboEngine(url, { threads: 1 });
      await restartable.run();
      t.equal(await within(page.evaluate(() => (window as unknown as { pushed: Promise<string> }).pushed), STEP_MS), 'ok', 'the push completed after the restart');
      t.same(await page.evaluate(() => (window as unknown as { events: string[] }).events), ['disconnect', 'reconnect']);
      const nodeClient = await TurboClient.connect(url);
      t.teardown(() => nodeClient.close());
      t.equal((await nodeClient.getQueue('rc').pop('kept', 0))?.content, 'from the page while down');
      await nodeClient.getQueue('rc').push('live', 'after the restart');
      await page.waitForFunction(() => window.got.length >= 1);
      t.same(await page.evaluate(() => window.got), ['after the restart'], 'the subscription resumed');
      await page.evaluate(() => window.client.close());
    });

    t.test('wss:// with tokens from a page: the right token connects, a wrong one is ERR_UNAUTHORIZED, a pop-only token cannot push', async (t) => {
      const certificate = testCertificate();
      if ('skip' in certificate) return t.skip(certificate.skip);
      const secure = new TurboEngine('tcp://127.0.0.1:0', {
        threads: 1, listen: ['wss://127.0.0.1:0'], tls: { cert: certificate.cert, key: certificate.key },
        authToken: 'page-admin', users: [{ name: 'page', token: 'page-token', pop: ['inbox'] }],
      });
      t.teardown(() => secure.destroy());
      await secure.run();
      const admin = await TurboClient.connect(secure.url, { token: 'page-admin' });
      t.teardown(() => admin.close());
      await admin.getQueue('inbox').push('t', 'for the page');
      // The throw-away certificate is self-signed: this context trusts it, as a browser would a real one.
      const tlsContext = await browser.newContext({ ignoreHTTPSErrors: true });
      t.teardown(() => tlsContext.close());
      const page = await tlsContext.newPage();
      page.setDefaultTimeout(STEP_MS);
      await page.goto(server.url);
      await page.waitForFunction(() => window.turbomq !== undefined);
      const result = await within(page.evaluate(async (url: string) => {
        const { TurboClient } = window.turbomq;
        const code = (p: Promise<unknown>) => p.then(() => 'ok', (err: { code?: string }) => err.code);
        const wrong = await code(TurboClient.connect(url, { token: 'guess', connectTimeoutMs: 5000 }));
        const none = await code(TurboClient.connect(url, { connectTimeoutMs: 5000 }));
        const client = await TurboClient.connect(url, { token: 'page-token', connectTimeoutMs: 5000 });
        const popped = (await client.getQueue('inbox').pop('t', 1000))?.content;
        const pushed = await code(client.getQueue('inbox').push('t', 'forged'));
        await client.close();
        return { wrong, none, popped, pushed };
      }, secure.urls[1]!), STEP_MS * 2, 'the wss steps in the page');
      t.same(result, { wrong: 'ERR_UNAUTHORIZED', none: 'ERR_UNAUTHORIZED', popped: 'for the page', pushed: 'ERR_FORBIDDEN' });
      t.equal(await admin.getQueue('inbox').length('t'), 0, 'nothing forged');
    });
  }
}
