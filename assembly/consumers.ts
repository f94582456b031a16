// Consumers: subscriptions attached to a topic, and exclusivity.
//
// A subscription (src/engine/session.ts) holds a topic reference for its lifetime and is
// counted in the topic's `consumers`; an exclusive one also writes its token into
// `exclusive`, and while that is set only pops carrying that token may take messages
// (topic.ts checks it on every pop). Tokens carry the owning thread id in their top 8
// bits (src/core/thread.ts newToken), which is how the reaper finds a dead thread's claims.

import { lock, unlock } from "./sync";
import { T_LOCK, T_EXCLUSIVE, T_CONSUMERS, T_WAITER_HEAD } from "./table";
import { E_EXCLUSIVE } from "./status";

/** True when an exclusive consumer other than `token` holds the topic (topic lock held). */
// @ts-ignore: decorator
@inline export function excluded(topic: usize, token: u32): bool {
  let owner = load<u32>(topic + T_EXCLUSIVE);
  return owner != 0 && owner != token;
}

/** Attaches a subscription. Exclusive needs the topic free of consumers and waiters. */
export function consumerAttach(topic: usize, token: u32, exclusive: bool): i32 {
  lock(topic + T_LOCK);
  let status: i32 = 0;
  if (load<u32>(topic + T_EXCLUSIVE) != 0) status = E_EXCLUSIVE;
  else if (exclusive && (load<u32>(topic + T_CONSUMERS) != 0 || load<u32>(topic + T_WAITER_HEAD) != 0)) status = E_EXCLUSIVE;
  if (status == 0) {
    atomic.store<u32>(topic + T_CONSUMERS, load<u32>(topic + T_CONSUMERS) + 1);
    if (exclusive) atomic.store<u32>(topic + T_EXCLUSIVE, token);
  }
  unlock(topic + T_LOCK);
  return status;
}

export function consumerDetach(topic: usize, token: u32): void {
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_CONSUMERS, load<u32>(topic + T_CONSUMERS) - 1);
  if (load<u32>(topic + T_EXCLUSIVE) == token) atomic.store<u32>(topic + T_EXCLUSIVE, 0);
  unlock(topic + T_LOCK);
}

/** Drops an exclusive claim of thread `dead` (topic lock held; see reap.ts). */
export function reapExclusive(topic: usize, dead: u32): void {
  let exclusive = load<u32>(topic + T_EXCLUSIVE);
  if (exclusive != 0 && (exclusive >>> 24) == dead) {
    atomic.store<u32>(topic + T_EXCLUSIVE, 0);
    atomic.store<u32>(topic + T_CONSUMERS, load<u32>(topic + T_CONSUMERS) - 1);
  }
}
