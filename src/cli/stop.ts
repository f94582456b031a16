// `turbomq stop`: asks a running broker to stop gracefully (SHUTDOWN) and waits until it
// has closed this connection. Only an admin user may, once the broker has authentication.

import { isTurboError } from '../index.ts';
import { CLIENT_FLAGS, CLIENT_FLAGS_HELP, clientSettings, parseCommandLine, positionals } from './args.ts';
import { connectClient } from './connect.ts';

export const STOP_HELP = `Usage: turbomq stop [options]

Stops a running broker gracefully, as SIGTERM would: it stops accepting, answers what it
received, closes every connection and exits. Needs an admin user when the broker has
authentication.

Options:
${CLIENT_FLAGS_HELP}

Example:
  turbomq stop --url tcp://127.0.0.1:33444`;

/** How long to wait for the broker to close the connection after accepting the stop. */
const STOP_WAIT_MS = 15_000;

export async function stopMain(argv: string[]): Promise<void> {
  const { values, positionals: args } = parseCommandLine(argv, CLIENT_FLAGS);
  if (values.help) return void console.log(STOP_HELP);
  positionals(args, 'turbomq stop', 0);
  const settings = clientSettings(values, process.env);
  const client = await connectClient(settings);
  try {
    await client.shutdown();
    // The broker closes every connection as it stops: wait for ours to go.
    const deadline = Date.now() + STOP_WAIT_MS;
    while (!client.closed && Date.now() < deadline) {
      try {
        await client.ping();
        await new Promise((resolve) => setTimeout(resolve, 50));
      } catch (err) {
        if (!isTurboError(err, 'ERR_CONNECTION_CLOSED')) throw err;
      }
    }
    if (!client.closed) {
      console.error(`turbomq: ${settings.url} accepted the stop but still serves after ${STOP_WAIT_MS / 1000} s`);
      process.exitCode = 1;
      return;
    }
    console.log(`turbomq at ${settings.url} stopped`);
  } finally {
    await client.close();
  }
}
