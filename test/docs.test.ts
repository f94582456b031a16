// The docs' examples run: the README's Node example, as a user would paste it.

import t from 'tap';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const readme = readFileSync(`${root}README.md`, 'utf8');

for (const heading of ['## Use it', '## At-least-once delivery']) t.test(`the README example under "${heading}" runs and prints what its comments say`, async (t) => {
  const section = readme.slice(readme.indexOf(heading));
  const code = section.match(/```js\n([\s\S]*?)```/)![1]!;
  // Inside the package, `import ... from 'turbomq'` resolves to the package itself (build/js).
  const dir = `${root}build/docs-test`;
  mkdirSync(dir, { recursive: true });
  const file = `${dir}/readme-example-${heading.length}.mjs`;
  writeFileSync(file, code);
  t.teardown(() => rmSync(file, { force: true }));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [file], { timeout: 30_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)));
  });
  const expected = [...code.matchAll(/\/\/ (.*)$/gm)].map((m) => m[1]!).filter((c) => /^('|\d|null)/.test(c)).map((c) => c.split(': ')[0]!.replace(/'/g, '').trim());
  t.same(stdout.trim().split('\n'), expected);
});
