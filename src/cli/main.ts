#!/usr/bin/env node
// The `turbomq` command: `turbomq [serve]` runs a broker; `push`, `pop`, `stats` and `stop`
// talk to a running one (one module each); `bench` load-tests one; `hash-token` makes a
// tokenHash for a users file.

import { pino } from 'pino';
import { TurboEngine, isTurboError } from '../index.ts';
import { VERSION } from '../version.ts';
import { parseServeArgs, SERVE_HELP, UsageError } from './args.ts';

async function serve(argv: string[]): Promise<void> {
  const settings = parseServeArgs(argv, process.env);
  if (settings === 'help') return void console.log(SERVE_HELP);
  if (settings === 'version') return void console.log(VERSION);
  // Structured logs on stderr; the one readable "listening" line on stdout.
  const logger = pino({ level: settings.logLevel, base: { pid: process.pid } }, pino.destination(2));
  const [url, ...more] = settings.listen;
  let engine: TurboEngine;
  try {
    // `turbomq stop` (SHUTDOWN from a client): the same graceful exit as SIGTERM.
    engine = new TurboEngine(url, { ...settings.engine, listen: more, logger, onShutdownRequest: () => stop('SHUTDOWN') });
  } catch (err) {
    // A users entry or a certificate the engine cannot use: a usage error like any other.
    if (isTurboError(err, 'ERR_INVALID_ARGUMENT')) throw new UsageError(err.message);
    throw err;
  }
  let stopping = false;
  async function stop(signal: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      logger.error('graceful stop took over 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    await engine.destroy();
    console.log('turbomq stopped');
    process.exit(0);
  }
  try {
    await engine.run();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const where = [...settings.listen, ...(settings.engine.http === undefined ? [] : [settings.engine.http])].join(', ');
    console.error(`turbomq: cannot start: ${e.code === 'EADDRINUSE' ? `address in use (${where})` : e.message}`);
    process.exit(1);
  }
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  console.log(`turbomq ${VERSION} listening on ${engine.urls.join(' ')} with ${engine.threads} thread${engine.threads === 1 ? '' : 's'} (Ctrl-C to stop)`);
  if (engine.httpUrl !== undefined) console.log(`turbomq monitoring on ${engine.httpUrl} (/healthz /readyz /metrics /stats)`);
}

let helpHint = 'turbomq --help';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const command = argv[0] !== undefined && !argv[0].startsWith('-') ? argv[0] : 'serve';
  const rest = command === argv[0] ? argv.slice(1) : argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'bench': {
      helpHint = 'turbomq bench --help';
      const { benchMain } = await import('./bench.ts');
      return benchMain(rest);
    }
    case 'push': {
      helpHint = 'turbomq push --help';
      const { pushMain } = await import('./push.ts');
      return pushMain(rest);
    }
    case 'pop': {
      helpHint = 'turbomq pop --help';
      const { popMain } = await import('./pop.ts');
      return popMain(rest);
    }
    case 'stats': {
      helpHint = 'turbomq stats --help';
      const { statsMain } = await import('./stats.ts');
      return statsMain(rest);
    }
    case 'stop': {
      helpHint = 'turbomq stop --help';
      const { stopMain } = await import('./stop.ts');
      return stopMain(rest);
    }
    case 'hash-token': {
      helpHint = 'turbomq hash-token --help';
      const { hashTokenMain } = await import('./hash-token.ts');
      return hashTokenMain(rest);
    }
    case 'help':
      return void console.log(SERVE_HELP);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)} (the commands: serve, push, pop, stats, stop, bench, hash-token)`);
  }
}

main().catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`turbomq: ${err.message} (see ${helpHint})`);
    process.exit(2);
  }
  if (isTurboError(err)) {
    // A broker that is down, refuses, or answers an error: one readable line.
    console.error(`turbomq: ${err.message} (${err.code})`);
    process.exit(1);
  }
  console.error(`turbomq: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
