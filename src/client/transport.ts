// What the client needs from a connection: whole byte chunks in and out. TCP
// (src/transport/tcp.ts), WebSocket (src/transport/websocket.ts) and the embedded engine's
// in-process pipe (src/engine/engine.ts) all adapt to this.

export interface Transport {
  /** Sends bytes (ownership passes to the transport). */
  send(bytes: Uint8Array): void;
  /**
   * Sends a copy of bytes that stay valid only during the call (the client's writer, in Wasm
   * memory). Transports that reuse their own buffers offer it (tcp.ts, send-buffers.ts); the
   * client then makes no array per send.
   */
  sendCopyOf?(bytes: Uint8Array): void;
  /** Closes the connection; onClose follows. */
  close(): void;
  /** Set by the client: bytes received. */
  onData: (chunk: Uint8Array) => void;
  /**
   * True when onData's chunk is the transport's read buffer, overwritten by the next read:
   * nothing may keep it after the call (the client copies what its messages keep).
   */
  readonly reusesChunks?: boolean;
  /** Set by the client: the connection ended (with the error, if any). */
  onClose: (error?: Error) => void;
}
