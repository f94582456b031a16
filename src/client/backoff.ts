// How long a reconnecting client waits before its next attempt: exponential backoff with
// "equal jitter". The ceiling doubles per failed attempt from `baseMs` up to `maxMs`; the
// delay is drawn from [ceiling / 2, ceiling], so clients that lost the same broker at the
// same moment spread out instead of reconnecting in lockstep, and no delay collapses to 0.

/** The delay before attempt `attempt` (0 = the first retry after a loss), in ms. */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}
