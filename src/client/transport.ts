// What the client needs from a connection: whole byte chunks in and out. TCP
// (src/transport/tcp.ts), WebSocket (src/transport/websocket.ts) and the embedded engine's
// in-process pipe (src/engine/engine.ts) all adapt to this.

export interface Transport {
  /** Sends bytes (ownership passes to the transport). */
  send(bytes: Uint8Array): void;
  /** Closes the connection; onClose follows. */
  close(): void;
  /** Set by the client: bytes received. */
  onData: (chunk: Uint8Array) => void;
  /** Set by the client: the connection ended (with the error, if any). */
  onClose: (error?: Error) => void;
}
