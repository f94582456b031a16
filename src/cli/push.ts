// `turbomq push QUEUE TOPIC DATA...`: pushes each DATA as one message, in order, in one
// round trip (pushMany). Without DATA, each line of standard input is a message, so
// `seq 10 | turbomq push jobs numbers` works like `redis-cli -x`.

import { CLIENT_FLAGS, CLIENT_FLAGS_HELP, UsageError, clientSettings, parseCommandLine } from './args.ts';
import { withClient } from './connect.ts';

export const PUSH_HELP = `Usage: turbomq push QUEUE TOPIC DATA... [options]

Pushes each DATA as one message to TOPIC of QUEUE, in order. Without DATA, each line of
standard input is one message.

Options:
${CLIENT_FLAGS_HELP}

Examples:
  turbomq push jobs resize image-1.png image-2.png
  printf 'a\\nb\\n' | turbomq push jobs letters`;

async function readLines(stream: NodeJS.ReadableStream): Promise<string[]> {
  let text = '';
  for await (const chunk of stream) text += chunk;
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

export async function pushMain(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(argv, CLIENT_FLAGS);
  if (values.help) return void console.log(PUSH_HELP);
  if (positionals.length < 2) throw new UsageError(`missing ${positionals.length === 0 ? 'QUEUE TOPIC' : 'TOPIC'} (usage: turbomq push QUEUE TOPIC DATA...)`);
  const [queue, topic, ...data] = positionals as [string, string, ...string[]];
  const settings = clientSettings(values, process.env);
  if (data.length === 0) {
    if (process.stdin.isTTY) throw new UsageError('no DATA: give messages as arguments or one a line on standard input');
    process.stdin.setEncoding('utf8');
    data.push(...await readLines(process.stdin));
  }
  await withClient(settings, async (client) => {
    const q = client.getQueue(queue);
    if (data.length === 1) await q.push(topic, data[0]!);
    else await q.pushMany(topic, data);
  });
  console.log(`pushed ${data.length} message${data.length === 1 ? '' : 's'} to ${queue}/${topic}`);
}
