// A child process for test/storage/lock.test.ts: takes the data directory's lock, says so on
// stdout, and waits to be killed.

import { lockDataDir } from '../../src/storage/lock.ts';

const lock = await lockDataDir(process.argv[2]!);
process.stdout.write(`locked ${lock.boot}\n`);
setInterval(() => {}, 1 << 30);
