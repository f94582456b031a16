// A producer or consumer process for test/engine/durability-crash.test.ts. It works against
// a broker that is killed (kill -9) and restarted on the same port again and again, so
// every connection may die at any moment: it reconnects and goes on, and reports on stdout
// exactly what the broker acknowledged:
//
//   producer ID URL TOPIC...   pushes "ID:SEQ" (SEQ = 0, 1, ...; each SEQ tried once, alternately
//                              one push and a pushMany of 8) round robin over the topics:
//                              "P TOPIC SEQ" once the push (or the whole pushMany) was acknowledged
//   retrier ID URL TOPIC...    pushes "ID:SEQ" one at a time with dedupId "ID:SEQ", round robin
//                              over the topics, and retries a push whose outcome the kill left
//                              unknown (same topic, same SEQ) until it is acknowledged: "P TOPIC
//                              SEQ" then. The broker must store each SEQ once (dedupId windows
//                              survive the restarts).
//   consumer ID URL TOPIC      leased popMany (up to 16) and ack of each:
//                              "D TOPIC DATA MSGID" for every delivery received,
//                              "A TOPIC DATA" for every ack the broker acknowledged
//
// A line "stop" on stdin makes it finish the operation in hand, close and print "done".
// Built JS only (no type stripping in child processes): it imports build/js.

import { TurboClient } from '../../build/js/index.js';

const [role, id, url, ...topics] = process.argv.slice(2);
let stopping = false;
let finished;
const done = new Promise((resolve) => { finished = resolve; });
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { if (d.includes('stop')) stopping = true; });

const out = [];
function report(line) {
  out.push(line);
  if (out.length >= 256) flushOut();
}
function flushOut() {
  if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
  out.length = 0;
}
setInterval(flushOut, 20).unref();

async function connect() {
  for (;;) {
    try {
      return await TurboClient.connect(url, { connectTimeoutMs: 2000 });
    } catch {
      if (stopping && role !== 'consumer') return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Runs `work(queue)` on a connection until stopping; after the broker dies, on a new one. */
async function untilStopped(work) {
  while (!stopping) {
    const client = await connect();
    if (client === undefined) break;
    try {
      await work(client.getQueue('crash'));
    } catch { /* the broker died */ }
    await client.close().catch(() => {});
  }
}

async function produce() {
  let seq = 0, round = 0;
  // A push cut off by a kill has an unknown outcome: that SEQ is never tried again.
  await untilStopped(async (queue) => {
    while (!stopping) {
      const topic = topics[round++ % topics.length];
      if (round % 2 === 0) {
        const first = seq;
        const items = [];
        for (let i = 0; i < 8; i++) items.push(`${id}:${seq++}`);
        await queue.pushMany(topic, items);
        for (let i = 0; i < 8; i++) report(`P ${topic} ${first + i}`);
      } else {
        const s = seq++;
        await queue.push(topic, `${id}:${s}`);
        report(`P ${topic} ${s}`);
      }
    }
  });
}

async function retry() {
  let seq = 0;
  // A push cut off by a kill is pushed again (same topic, same SEQ, same dedupId) on the next connection.
  await untilStopped(async (queue) => {
    while (!stopping) {
      const topic = topics[seq % topics.length];
      await queue.push(topic, `${id}:${seq}`, { dedupId: `${id}:${seq}` });
      report(`P ${topic} ${seq}`);
      seq++;
    }
  });
}

async function consume() {
  const topic = topics[0];
  for (;;) {
    const client = await connect();
    const queue = client.getQueue('crash');
    try {
      for (;;) {
        if (stopping) {
          await client.close();
          return;
        }
        const batch = await queue.popMany(topic, 16, { timeoutMs: 50, ack: true, leaseMs: 60_000 });
        for (const m of batch) report(`D ${topic} ${m.content} ${m.id}`);
        // Acks of one batch go out together; each one that resolves was acknowledged.
        const results = await Promise.allSettled(batch.map((m) => m.ack()));
        let failed = false;
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') report(`A ${topic} ${batch[i].content}`);
          else failed = true;
        });
        if (failed) throw new Error('ack failed');
      }
    } catch { /* reconnect */ }
    await client.close().catch(() => {});
  }
}

try {
  await (role === 'producer' ? produce() : role === 'retrier' ? retry() : consume());
} finally {
  flushOut();
  process.stdout.write('done\n');
  finished();
}
await done;
process.exit(0);
