// The start of every connection, between its transport and its Session: HELLO, AUTH, and
// nothing else until the connection has authenticated. Called by the worker (and the
// embedded engine's pipe) with every chunk of bytes; once the handshake is over it hands
// chunks straight to the session (one branch per chunk, no parsing).
//
// With auth (authToken or users): the connection may send HELLO and PING, then AUTH. Any
// other request before AUTH succeeded is answered ERR_UNAUTHORIZED and the connection is
// closed; a wrong or missing token answers the AUTH with ERR_UNAUTHORIZED and closes. While
// a token is being checked (scrypt runs off the event loop), later bytes are held, not
// decoded; after a good AUTH they are served in order, after a bad one dropped. So no
// request that arrives before a successful AUTH is ever executed: the session never sees
// its bytes.
//
// Without auth: HELLO and PING go to the session, AUTH is answered OK whatever its token
// (clients always send one), and the first other request ends the handshake.
//
// The handshake reads frame headers itself (src/core/raw-frames.ts): it never hands the
// session a frame it has not checked, and it holds at most `maxHeldBytes`.
//
// Every connection refused for authentication is reported once through `io.authFailed`
// (the worker logs it with the remote address): a reason that says which kind of refusal,
// never the token nor the user name (a user may paste a token there by mistake).

import { Op, ErrorCode, HEADER_BYTES, PROTOCOL_VERSION } from '../protocol.ts';
import { readHeader, decodeAuthBody, MAX_AUTH_BODY_BYTES } from '../core/raw-frames.ts';
import type { Session } from './session.ts';
import type { Authenticator, AuthUser } from './auth.ts';

export interface HandshakeIO {
  /** The handshake is over (the listener stops the connection's handshake deadline). */
  established(): void;
  /** Closes the connection after what was written. */
  end(): void;
  /** The connection was refused for authentication (once per connection; never carries the token). */
  authFailed?(reason: AuthFailure): void;
}

/** Why a connection was refused: a wrong or unknown token, none, a request before AUTH, a malformed AUTH. */
export type AuthFailure = 'invalid user or token' | 'no token' | 'request before AUTH' | 'malformed AUTH';

type State = 'hello' | 'verifying' | 'open' | 'closed';

const EMPTY = new Uint8Array(0);

/** `a` then `b`, always a new array: `b` may be the transport's read buffer, valid only during onData. */
function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return new Uint8Array(b);
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

export class Handshake {
  readonly #session: Session;
  readonly #auth: Authenticator | undefined;
  readonly #io: HandshakeIO;
  readonly #maxHeldBytes: number;
  #state: State = 'hello';
  /** Bytes received and not yet handed to the session. */
  #pending: Uint8Array = EMPTY;

  constructor(session: Session, auth: Authenticator | undefined, io: HandshakeIO, maxHeldBytes: number) {
    this.#session = session;
    this.#auth = auth;
    this.#io = io;
    this.#maxHeldBytes = maxHeldBytes;
  }

  /** Whether requests now go straight to the session. */
  get done(): boolean {
    return this.#state === 'open';
  }

  onData(chunk: Uint8Array): void {
    if (this.#state === 'open') return this.#session.onData(chunk);
    if (this.#state === 'closed') return;
    this.#pending = concat(this.#pending, chunk);
    if (this.#state === 'verifying') {
      if (this.#pending.length > this.#maxHeldBytes) this.#refuse(0, ErrorCode.ERR_LIMIT, 'too many bytes sent before AUTH was answered');
      return;
    }
    this.#parse();
  }

  /** The connection is gone: a token check still waiting is skipped. */
  close(): void {
    this.#state = 'closed';
    this.#pending = EMPTY;
  }

  #parse(): void {
    const auth = this.#auth;
    let at = 0;
    while (this.#state === 'hello') {
      const pending = this.#pending;
      if (pending.length - at < HEADER_BYTES) break;
      const header = readHeader(pending, at);
      const handshakeOp = header.op === Op.HELLO || header.op === Op.PING || header.op === Op.AUTH;
      if (header.version !== PROTOCOL_VERSION || header.bodyBytes < 0) {
        if (auth === undefined) return this.#open(at); // the session's decoder reports broken framing
        return this.#fail(ErrorCode.ERR_PROTOCOL, 'malformed frame');
      }
      if (!handshakeOp) {
        if (auth === undefined) return this.#open(at);
        this.#io.authFailed?.('request before AUTH');
        return this.#refuse(header.requestId, ErrorCode.ERR_UNAUTHORIZED, 'authenticate first: this broker needs AUTH with a valid token before any request');
      }
      if (header.bodyBytes > MAX_AUTH_BODY_BYTES) return this.#fail(ErrorCode.ERR_PROTOCOL, 'handshake frame too large');
      const end = at + HEADER_BYTES + header.bodyBytes;
      if (pending.length < end) break;
      const frame = pending.subarray(at, end);
      at = end;
      if (auth === undefined) this.#io.established(); // a whole frame arrived: not a silent socket
      if (header.op !== Op.AUTH) {
        this.#session.onData(frame);
        if (this.#session.closed) return this.close();
        continue;
      }
      if (auth === undefined) {
        this.#session.replyOk(header.requestId);
        continue;
      }
      const body = decodeAuthBody(frame.subarray(HEADER_BYTES));
      if (body === undefined) {
        this.#io.authFailed?.('malformed AUTH');
        return this.#refuse(header.requestId, ErrorCode.ERR_PROTOCOL, 'malformed AUTH');
      }
      const result = auth.authenticate(body.user, body.token, () => this.#state === 'verifying');
      this.#pending = pending.subarray(at);
      at = 0;
      if (result instanceof Promise) {
        this.#state = 'verifying';
        result.then(
          (user) => this.#verified(header.requestId, user, body.token.length === 0),
          () => this.#verified(header.requestId, undefined, false),
        );
        return;
      }
      return this.#verified(header.requestId, result, body.token.length === 0);
    }
    if (this.#state === 'hello') this.#pending = at === 0 ? this.#pending : this.#pending.slice(at);
  }

  #verified(requestId: number, user: AuthUser | undefined, noToken: boolean): void {
    if (this.#state === 'closed') return;
    if (user === undefined) {
      // One message for a wrong user, a wrong token or an unknown one: it tells nothing.
      this.#io.authFailed?.(noToken ? 'no token' : 'invalid user or token');
      return this.#refuse(requestId, ErrorCode.ERR_UNAUTHORIZED, noToken ? 'this broker needs a token (the token option)' : 'invalid user or token');
    }
    this.#session.user = user;
    this.#session.replyOk(requestId);
    this.#open(0);
  }

  /** The handshake is over: the session gets everything from `at` on, then every chunk. */
  #open(at: number): void {
    const rest = this.#pending.subarray(at);
    this.#pending = EMPTY;
    this.#state = 'open';
    this.#io.established();
    if (rest.length > 0) this.#session.onData(rest);
  }

  /** Answers `requestId` with an error and closes; nothing received after it is served. */
  #refuse(requestId: number, code: number, text: string): void {
    this.close();
    this.#session.replyError(requestId, code, text);
    this.#io.end();
  }

  #fail(code: number, text: string): void {
    this.close();
    this.#session.fail(code, text);
  }
}
