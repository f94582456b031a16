// `turbomq pop QUEUE TOPIC [--count N] [--timeout MS]`: pops up to N messages and prints
// each one's data as UTF-8, one a line, on stdout (a message that holds a newline spans
// several lines). Nothing to pop prints nothing on stdout (and a note on stderr).

import { CLIENT_FLAGS, CLIENT_FLAGS_HELP, clientSettings, parseCommandLine, parseInteger, positionals } from './args.ts';
import { withClient } from './connect.ts';

export const POP_HELP = `Usage: turbomq pop QUEUE TOPIC [options]

Pops up to --count messages from TOPIC of QUEUE and prints them, one a line, oldest first.

Options:
  -n, --count N          most messages to pop (default 1)
  -t, --timeout MS       wait up to MS milliseconds for the first message (default 0: answer at once)
${CLIENT_FLAGS_HELP}

Examples:
  turbomq pop jobs resize
  turbomq pop jobs resize --count 10 --timeout 5000

Exit code 0 also when there was nothing to pop (then stdout is empty).`;

/** POP's longest finite timeout on the wire (0xFFFFFFFF means "forever"). */
const MAX_TIMEOUT_MS = 0xFFFFFFFE;

export async function popMain(argv: string[]): Promise<void> {
  const { values, positionals: args } = parseCommandLine(argv, {
    ...CLIENT_FLAGS,
    count: { type: 'string', short: 'n' },
    timeout: { type: 'string', short: 't' },
  });
  if (values.help) return void console.log(POP_HELP);
  const [queue, topic] = positionals(args, 'turbomq pop QUEUE TOPIC', 2) as [string, string];
  const count = values.count === undefined ? 1 : parseInteger('--count', values.count, 1, 1_000_000);
  const timeoutMs = values.timeout === undefined ? 0 : parseInteger('--timeout', values.timeout, 0, MAX_TIMEOUT_MS);
  const settings = clientSettings(values, process.env);
  const messages = await withClient(settings, (client) => client.getQueue(queue).popMany(topic, count, timeoutMs));
  if (messages.length === 0) {
    console.error(`(no message in ${queue}/${topic}${timeoutMs > 0 ? ` within ${timeoutMs} ms` : ''})`);
    return;
  }
  process.stdout.write(messages.map((m) => `${m.content}\n`).join(''));
}
