// comlink ships this adapter's types as node-adapter.d.ts beside an .mjs file, which
// TypeScript's nodenext resolution does not pair up.
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink';
  interface NodeEndpoint {
    postMessage(message: any, transfer?: any): void; // eslint-disable-line @typescript-eslint/no-explicit-any
    on(type: string, listener: (value: any) => void): void; // eslint-disable-line @typescript-eslint/no-explicit-any
    off(type: string, listener: (value: any) => void): void; // eslint-disable-line @typescript-eslint/no-explicit-any
    start?: () => void;
  }
  export default function nodeEndpoint(nep: NodeEndpoint): Endpoint;
}
