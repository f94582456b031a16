// The client's side of the handshake: HELLO, then AUTH, on a connection's current transport,
// within a timeout. Used for the first connection (client.ts) and every reconnect
// (reconnect.ts): the token is sent again each time.

import type { Connection } from './connection.ts';
import { TurboError } from '../errors.ts';
import { PROTOCOL_VERSION } from '../protocol.ts';
import { encodeAuthFrame } from '../core/raw-frames.ts';

/** Resolves once the broker accepted HELLO and AUTH; rejects with its error or ERR_CONNECTION_CLOSED. */
export async function handshake(conn: Connection, timeoutMs: number, token: string | undefined, user: string | undefined): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const hello = conn.request('hello', '', '', (id) => conn.e.encodeHello(conn.writer, id, PROTOCOL_VERSION, PROTOCOL_VERSION));
    // AUTH always follows, with an empty token when there is none: a broker with auth
    // refuses that with ERR_UNAUTHORIZED (so connect does), one without answers OK.
    const auth = conn.request('ok', '', '', (id) => conn.writeFrame(encodeAuthFrame(id, user, token ?? '')));
    await Promise.race([
      Promise.all([hello, auth]),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new TurboError('ERR_CONNECTION_CLOSED', `no answer from ${conn.url} within ${timeoutMs} ms`)), timeoutMs); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
