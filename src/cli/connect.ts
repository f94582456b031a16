// The connection an operator command (push, pop, stats, stop) makes to a running broker.

import { TurboClient, type ClientOptions } from '../index.ts';
import type { ClientSettings } from './args.ts';

/** How long a command waits for the broker to answer its handshake. */
const CONNECT_TIMEOUT_MS = 5000;

/** Connects with --url and --token; the caller closes the client. */
export function connectClient(settings: ClientSettings): Promise<TurboClient> {
  // `token` is what TurboClient.connect authenticates with once the broker has auth
  // (issue 12's security part); a client without it ignores the field.
  const options: ClientOptions & { token?: string } = { connectTimeoutMs: CONNECT_TIMEOUT_MS };
  if (settings.token !== undefined) options.token = settings.token;
  return TurboClient.connect(settings.url, options);
}

/** Runs `fn` with a connected client and always closes it. */
export async function withClient<T>(settings: ClientSettings, fn: (client: TurboClient) => Promise<T>): Promise<T> {
  const client = await connectClient(settings);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}
