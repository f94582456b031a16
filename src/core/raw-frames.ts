// Frames built and read in plain JS, for the few places that run before a connection has a
// codec-backed session: the handshake (AUTH, docs/protocol.md "Authentication") and a
// connection refused at accept (a fatal ERROR). Everything else goes through the Wasm codec
// (assembly/codec.ts). Browser-safe: no node: imports, no Buffer.

import { Op, PROTOCOL_VERSION, HEADER_BYTES, MAX_AUTH_USER_BYTES, MAX_AUTH_TOKEN_BYTES } from '../protocol.ts';
import { TurboError } from '../errors.ts';

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** A frame header as read from the first 12 bytes of `bytes` at `at`. */
export interface FrameHeader {
  /** Body bytes (`length - 8`); negative when `length < 8` (broken framing). */
  bodyBytes: number;
  version: number;
  op: number;
  requestId: number;
}

export function readHeader(bytes: Uint8Array, at: number): FrameHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_BYTES);
  return { bodyBytes: view.getUint32(0, true) - 8, version: view.getUint8(4), op: view.getUint8(5), requestId: view.getUint32(8, true) };
}

function frame(op: number, requestId: number, bodyBytes: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(HEADER_BYTES + bodyBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 8 + bodyBytes, true);
  view.setUint8(4, PROTOCOL_VERSION);
  view.setUint8(5, op);
  view.setUint32(8, requestId, true);
  return { bytes, view };
}

/**
 * AUTH: `u8 userLength`, the user name (0 bytes: the broker finds the user by its token),
 * then the token, which fills the rest of the frame. Throws ERR_INVALID_ARGUMENT for a
 * user name over 255 bytes or a token over MAX_AUTH_TOKEN_BYTES.
 */
export function encodeAuthFrame(requestId: number, user: string | undefined, token: string): Uint8Array {
  const userBytes = textEncoder.encode(user ?? '');
  const tokenBytes = textEncoder.encode(token);
  if (userBytes.length > MAX_AUTH_USER_BYTES) throw new TurboError('ERR_INVALID_ARGUMENT', `user name must be at most ${MAX_AUTH_USER_BYTES} bytes of UTF-8`);
  if (tokenBytes.length > MAX_AUTH_TOKEN_BYTES) throw new TurboError('ERR_INVALID_ARGUMENT', `token must be at most ${MAX_AUTH_TOKEN_BYTES} bytes of UTF-8`);
  const { bytes } = frame(Op.AUTH, requestId, 1 + userBytes.length + tokenBytes.length);
  bytes[HEADER_BYTES] = userBytes.length;
  bytes.set(userBytes, HEADER_BYTES + 1);
  bytes.set(tokenBytes, HEADER_BYTES + 1 + userBytes.length);
  return bytes;
}

/** Largest AUTH body a receiver accepts. */
export const MAX_AUTH_BODY_BYTES = 1 + MAX_AUTH_USER_BYTES + MAX_AUTH_TOKEN_BYTES;

/**
 * An AUTH body: the user name ('' when not given) and the token bytes (a view into `body`).
 * undefined when malformed: the user name runs past the body, is not UTF-8, or the token is
 * too long.
 */
export function decodeAuthBody(body: Uint8Array): { user: string; token: Uint8Array } | undefined {
  if (body.length < 1 || body.length > MAX_AUTH_BODY_BYTES) return undefined;
  const userBytes = body[0]!;
  if (1 + userBytes > body.length) return undefined;
  let user: string;
  try {
    user = textDecoder.decode(body.subarray(1, 1 + userBytes));
  } catch {
    return undefined;
  }
  const token = body.subarray(1 + userBytes);
  return token.length > MAX_AUTH_TOKEN_BYTES ? undefined : { user, token };
}

/** An ERROR frame: `u16 code`, `u16 textLength`, the text (cut to 1 KiB). */
export function encodeErrorFrame(requestId: number, code: number, text: string): Uint8Array {
  const textBytes = textEncoder.encode(text).subarray(0, 1024);
  const { bytes, view } = frame(Op.ERROR, requestId, 4 + textBytes.length);
  view.setUint16(HEADER_BYTES, code, true);
  view.setUint16(HEADER_BYTES + 2, textBytes.length, true);
  bytes.set(textBytes, HEADER_BYTES + 4);
  return bytes;
}
