// turbomq for browsers: the same TurboClient as Node (src/client/client.ts), over the
// browser's WebSocket, with the local (unshared memory) Wasm build embedded in the bundle.
// This is the entry of build/browser/turbomq.browser.js (scripts/build-browser.ts); it must
// never import node: modules or use Buffer, and needs no cross-origin isolation.

import { setClientPlatform } from './client/client.ts';
import { instantiateLocalCore } from './core/wasm.ts';
import { connectWebSocket } from './transport/websocket-client.ts';
import { TurboError } from './errors.ts';
import { parseUrl, usesWebSocket, SCHEMES } from './url.ts';

/**
 * build/wasm/turbomq.local.wasm as base64, put in by the bundler (esbuild `define`, see
 * scripts/build-browser.ts). Not defined when this file runs unbundled.
 */
declare const __TURBOMQ_LOCAL_WASM_BASE64__: string | undefined;

let localModule: Promise<WebAssembly.Module> | undefined;

function localCoreModule(): Promise<WebAssembly.Module> {
  localModule ??= (async () => {
    if (typeof __TURBOMQ_LOCAL_WASM_BASE64__ !== 'string') throw new Error('turbomq/browser: the Wasm core is not embedded; import the bundle build/browser/turbomq.browser.js');
    const text = atob(__TURBOMQ_LOCAL_WASM_BASE64__);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return WebAssembly.compile(bytes);
  })();
  return localModule;
}

setClientPlatform({
  async loadCore() {
    return instantiateLocalCore(await localCoreModule());
  },
  async connect(url, options) {
    const parsed = parseUrl(url, SCHEMES);
    if (!usesWebSocket(parsed.scheme)) throw new TurboError('ERR_INVALID_ARGUMENT', `unsupported scheme ${parsed.scheme}: in ${url}: browsers connect with ws: or wss: (the broker listens on a ws:// or wss:// url)`);
    return connectWebSocket(url, options.connectTimeoutMs, globalThis.WebSocket);
  },
});

export { TurboClient, type ClientOptions, type StatusEvent } from './client/client.ts';
export type { TlsClientOptions } from './options.ts';
export type { Queue, Message, PopTimeout, PopOptions, PushOptions, QueueSettings, TopicStats, SubscribeOptions, Subscription } from './client/queue.ts';
export { TurboError, type ErrorCode, isTurboError } from './errors.ts';
export { VERSION } from './version.ts';
