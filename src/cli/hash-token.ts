// `turbomq hash-token`: prints the tokenHash of a token (scrypt, src/engine/auth.ts) for the
// "tokenHash" field of a --users file, so the file need not hold the token itself. The
// token comes from stdin (never from a flag: flags show in process lists and shell history)
// or is made up with --generate.

import { hashToken, generateToken, DEFAULT_SCRYPT_LN } from '../engine/auth.ts';
import { UsageError, parseFlags } from './args.ts';

export const HASH_TOKEN_HELP = `Usage: turbomq hash-token [options] < token.txt

Prints the tokenHash of a token, for the "tokenHash" field of a --users file:
  $scrypt$ln=${DEFAULT_SCRYPT_LN},r=8,p=1$<salt>$<hash>    (scrypt; salt and hash in base64)
The broker then keeps no token in clear. The token is read from stdin (one line; a
trailing newline is not part of it).

Options:
      --generate     make a new random token (32 bytes, base64url) and print it with its
                     hash as JSON: {"token": "...", "tokenHash": "..."}
      --cost N       scrypt cost as log2 of N, 10 to 20 (default ${DEFAULT_SCRYPT_LN}: 16 MiB and about
                     80 ms per check; each +1 doubles both)
  -h, --help         show this help

Examples:
  turbomq hash-token --generate
  printf %s "$TOKEN" | turbomq hash-token`;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('token (then Enter): ');
  let text = '';
  for await (const chunk of process.stdin) {
    text += chunk;
    if (process.stdin.isTTY && text.includes('\n')) break;
  }
  return text.replace(/\r?\n$/, '');
}

export async function hashTokenMain(argv: string[]): Promise<void> {
  const v = parseFlags(argv, {
    generate: { type: 'boolean' },
    cost: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return void console.log(HASH_TOKEN_HELP);
  let cost = DEFAULT_SCRYPT_LN;
  if (v.cost !== undefined) {
    cost = Number(v.cost);
    if (!/^\d+$/.test(v.cost) || cost < 10 || cost > 20) throw new UsageError(`--cost must be from 10 to 20, got ${JSON.stringify(v.cost)}`);
  }
  if (v.generate) {
    const token = generateToken();
    console.log(JSON.stringify({ token, tokenHash: await hashToken(token, cost) }));
    return;
  }
  const token = await readStdin();
  if (token.length === 0) throw new UsageError('no token on stdin (or use --generate)');
  console.log(await hashToken(token, cost));
}
