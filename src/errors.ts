// TurboError: the one error class turbomq throws or rejects with. `err.code` is a stable
// `ERR_*` string (src/protocol.ts, docs/protocol.md); switch on it, never on the message.

import { ErrorCode } from './protocol.ts';

export type { ErrorCode } from './protocol.ts';

export class TurboError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }

  /** The code's wire number (ERR_PROTOCOL -> 1). */
  get wireCode(): number {
    return ErrorCode.codeOf(this.code);
  }
}

Object.defineProperty(TurboError.prototype, 'name', {
  value: 'TurboError', writable: true, enumerable: false, configurable: true,
});

/**
 * The error a broker's ERROR frame stands for. An unknown code maps to ERR_PROTOCOL (a
 * broker speaking our version never sends one); empty text gets the code as its message.
 */
export function errorFromWire(code: number, text: string): TurboError {
  const name = ErrorCode.nameOf(code);
  return new TurboError(name, text.length > 0 ? text : name);
}

/** True when `err` is a TurboError, optionally with the given code. */
export function isTurboError(err: unknown, code?: ErrorCode): err is TurboError {
  return err instanceof TurboError && (code === undefined || err.code === code);
}
