// Broker urls: the one place that parses and formats them, and that knows the default host
// and port. The engine (listen urls), the CLI (--listen, --url) and both clients (connect)
// call parseUrl; nothing else looks inside a url. Browser-safe: no node: imports.
//
//   tcp://host:port     plain TCP                        (Node clients)
//   tls://host:port     TCP with TLS                     (Node clients)
//   ws://host:port      WebSocket                        (Node and browsers)
//   wss://host:port     WebSocket over TLS               (Node and browsers)
//   unix:///path/sock   a Unix domain socket             (Node clients; served by one worker)
//
// A url without a port gets DEFAULT_PORT; one without a host (tcp://:4000) gets
// DEFAULT_HOST. IPv6 hosts are written in brackets (tcp://[::1]:33444) and stored without.

import { TurboError } from './errors.ts';

export type Scheme = 'tcp' | 'tls' | 'ws' | 'wss' | 'unix';

export const SCHEMES: readonly Scheme[] = Object.freeze(['tcp', 'tls', 'ws', 'wss', 'unix']);

/** The port a url without one gets, for every scheme. */
export const DEFAULT_PORT = 33444;

/** The host a url without one gets; also the default listen address (loopback only). */
export const DEFAULT_HOST = '127.0.0.1';

/** The broker's default listen url, and the client's default connect url. */
export const DEFAULT_URL = `tcp://${DEFAULT_HOST}:${DEFAULT_PORT}`;

export interface BrokerUrl {
  scheme: Scheme;
  /** Host name or address, IPv6 without brackets; '' for unix. */
  host: string;
  /** 0..65535 (0: pick a free port when listening); 0 for unix. */
  port: number;
  /** unix: the socket's file path. ws/wss: the request path ('/' by default). Otherwise ''. */
  path: string;
}

const FORMS: Record<Scheme, string> = {
  tcp: 'tcp://host:port', tls: 'tls://host:port', ws: 'ws://host:port', wss: 'wss://host:port', unix: 'unix:///path/to/socket',
};

function expected(accepted: readonly Scheme[]): string {
  return accepted.map((s) => FORMS[s]).join(', ');
}

/**
 * Parses a broker url. `accepted` lists the schemes the caller can serve or connect with;
 * anything else (another scheme, a bad port, a path on tcp) throws ERR_INVALID_ARGUMENT
 * with a message that names the forms it would take.
 */
export function parseUrl(url: string, accepted: readonly Scheme[] = SCHEMES): BrokerUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TurboError('ERR_INVALID_ARGUMENT', `not a url: ${JSON.stringify(url)} (expected ${expected(accepted)})`);
  }
  const scheme = parsed.protocol.replace(/:$/, '') as Scheme;
  if (!(accepted as readonly string[]).includes(scheme)) {
    throw new TurboError('ERR_INVALID_ARGUMENT', `unsupported scheme ${JSON.stringify(`${scheme}:`)} in ${url} (expected ${expected(accepted)})`);
  }
  if (parsed.username !== '' || parsed.password !== '') {
    // A token in a url ends up in logs and process lists: it goes in the `token` option.
    throw new TurboError('ERR_INVALID_ARGUMENT', `credentials in a url are not supported (${scheme}://user:pass@…): pass the token as the token option`);
  }
  if (scheme === 'unix') {
    const path = decodeURIComponent(parsed.pathname);
    if (parsed.hostname !== '' || path === '' || path === '/') throw new TurboError('ERR_INVALID_ARGUMENT', `bad unix url ${url} (expected ${FORMS.unix})`);
    return { scheme, host: '', port: 0, path };
  }
  // WHATWG URL drops a ws:// url's port 80 and a wss:// url's 443 (their defaults): read
  // the port from the text, so that only a url without one gets DEFAULT_PORT.
  const written = /^[a-z]+:\/\/(?:\[[^\]]*\]|[^/?#:]*):(\d+)/i.exec(url)?.[1];
  const port = parsed.port !== '' ? Number(parsed.port) : written !== undefined ? Number(written) : DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TurboError('ERR_INVALID_ARGUMENT', `bad port in ${url}`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || DEFAULT_HOST;
  const isWebSocket = scheme === 'ws' || scheme === 'wss';
  const path = isWebSocket ? `${parsed.pathname || '/'}${parsed.search}` : '';
  if (!isWebSocket && ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search !== '')) {
    throw new TurboError('ERR_INVALID_ARGUMENT', `a ${scheme}:// url has no path: ${url} (expected ${FORMS[scheme]})`);
  }
  return { scheme, host, port, path };
}

/** The url's canonical text: `tcp://127.0.0.1:33444`, `ws://[::1]:8080/mq`, `unix:///run/turbomq.sock`. */
export function formatUrl(url: BrokerUrl): string {
  if (url.scheme === 'unix') return `unix://${url.path}`;
  const host = url.host.includes(':') ? `[${url.host}]` : url.host;
  const path = url.path === '/' ? '' : url.path;
  return `${url.scheme}://${host}:${url.port}${path}`;
}

/** TLS is on for tls:// and wss://. */
export function usesTls(scheme: Scheme): boolean {
  return scheme === 'tls' || scheme === 'wss';
}

/** ws:// and wss:// carry frames in WebSocket messages. */
export function usesWebSocket(scheme: Scheme): boolean {
  return scheme === 'ws' || scheme === 'wss';
}

/**
 * Whether a host names this machine only: localhost (and *.localhost), 127.0.0.0/8, ::1
 * (with or without brackets), ::ffff:127.x. '0.0.0.0' and '::' listen on every interface:
 * not loopback.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}
