// Operator requests (SERVER_STATS, SHUTDOWN; `turbomq stats`, `turbomq stop`): what a session
// needs to forward them to the engine's main thread, and who may send them. The worker
// builds an OperatorHandler per connection (src/engine/worker.ts) that calls the main
// thread over the worker's control port; the embedded engine calls itself directly.

export interface OperatorHandler {
  /** The broker's statistics, as JSON text (src/engine/stats.ts EngineStats). */
  serverStats(): Promise<string>;
  /** Starts a graceful stop of the whole broker; the OK was already sent. */
  shutdown(): void;
  /** Whether the broker has authentication configured (then only admin users may stop it). */
  readonly authConfigured: boolean;
}

/** Wire number of ERR_FORBIDDEN, allocated to the auth work (docs/protocol.md gains it there). */
export const ERR_FORBIDDEN_CODE = 15;

/**
 * May a connection stop the broker? undefined if it may, else the error to answer.
 *
 */
export function mayShutdown(authConfigured: boolean, user: { admin?: boolean } | undefined): { code: number; text: string } | undefined {
  if (!authConfigured || user?.admin === true) return undefined;
  return { code: ERR_FORBIDDEN_CODE, text: 'stopping the broker needs an admin user' };
}
