// docs/durability.md's example runs and prints what its comments say.

import t from 'tap';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

t.test('the interface example in docs/durability.md runs', async (t) => {
  const doc = readFileSync(`${root}docs/durability.md`, 'utf8');
  const section = doc.slice(doc.indexOf('## The interface'));
  const code = section.match(/```js\n([\s\S]*?)```/)![1]!;
  // The example imports the built modules from the repository root; it runs from build/.
  const dir = `${root}build/docs-test-durability`;
  mkdirSync(dir, { recursive: true });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = `${dir}/durability-example.mjs`;
  writeFileSync(file, code.replaceAll("'./build/js/", "'../js/"));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [file], { timeout: 30_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)));
  });
  const expected = [...code.matchAll(/console\.log\(.*\/\/ (\S+)/g)].map((m) => m[1]!.replace(/:$/, ''));
  t.same(expected, ['1', 'image-2.png', '2n', '{"leaseMs":30000}']);
  t.same(stdout.trim().split('\n'), expected);
});
