// Readiness (GET /readyz): the engine is ready once it runs and nothing holds it back.
// Whatever must finish before the broker takes traffic takes a hold and releases it when
// done: start-up recovery of a data directory ('recovery'), a worker being replaced. The
// engine's own lifecycle state (starting, stopping) counts as well.

export class Readiness {
  readonly #holds = new Map<number, string>();
  #next = 0;

  /** Not ready for `reason` until the returned function is called (once; later calls do nothing). */
  hold(reason: string): () => void {
    const id = this.#next++;
    this.#holds.set(id, reason);
    return () => { this.#holds.delete(id); };
  }

  /** What readiness waits for; empty when nothing holds it. */
  get waitingFor(): string[] {
    return [...new Set(this.#holds.values())];
  }
}
