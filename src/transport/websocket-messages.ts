// Cutting a flush of whole frames into WebSocket messages, for both ends (websocket.ts on
// the broker, websocket-client.ts in clients). Browser-safe: no node: imports, no Buffer.
//
// docs/protocol.md: every binary WebSocket message carries one or more whole frames. One
// writer flush can hold many frames (a pushMany split at maxFrameBytes, a burst of pushes
// in one turn, a burst of replies); sent as one message it could exceed the receiver's
// message limit (the broker's maxPayload, a `ws` client's 100 MiB default) even though
// every frame in it is within the limits. So a flush over MESSAGE_TARGET_BYTES is cut at
// frame boundaries into messages of at most MESSAGE_TARGET_BYTES each, except that a single
// frame larger than that travels alone. Messages are subarrays of the flush (no copies).
// Callers must pass whole frames only: a partial frame would be cut in the wrong place.

/** Frames are packed into messages of up to this many bytes (a larger frame goes alone). */
export const MESSAGE_TARGET_BYTES = 1024 * 1024;

/** Calls `send` once per message; `bytes` is a sequence of whole frames. */
export function sendAsMessages(bytes: Uint8Array, send: (message: Uint8Array) => void): void {
  if (bytes.length <= MESSAGE_TARGET_BYTES) {
    send(bytes);
    return;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let start = 0;
  let at = 0;
  // Each frame starts with its u32 `length` (the bytes after that field).
  while (at + 4 <= bytes.length) {
    const frameEnd = Math.min(at + 4 + view.getUint32(at, true), bytes.length);
    if (frameEnd - start > MESSAGE_TARGET_BYTES && at > start) {
      send(bytes.subarray(start, at));
      start = at;
    }
    at = frameEnd;
  }
  if (start < bytes.length) send(bytes.subarray(start));
}
