// The docs' examples run: the README's Node example, as a user would paste it.

import t from 'tap';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

t.test('the README example runs and prints what its comments say', async (t) => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Use it'));
  const code = section.match(/```js\n([\s\S]*?)```/)![1]!;
  // Inside the package, `import ... from 'turbomq'` resolves to the package itself (build/js).
  const dir = `${root}build/docs-test`;
  mkdirSync(dir, { recursive: true });
  const file = `${dir}/readme-example.mjs`;
  writeFileSync(file, code);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [file], { timeout: 30_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)));
  });
  const expected = [...code.matchAll(/\/\/ (.*)$/gm)].map((m) => m[1]!).filter((c) => /^('|\d|null)/.test(c)).map((c) => c.split(':')[0]!.replace(/'/g, '').trim());
  t.same(stdout.trim().split('\n'), expected);
});

t.test("the README's Security example runs and prints what its comments say", async (t) => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Security'));
  const code = section.match(/```js\n([\s\S]*?)```/)![1]!;
  const dir = `${root}build/docs-test-security`;
  mkdirSync(dir, { recursive: true });
  const file = `${dir}/readme-security.mjs`;
  writeFileSync(file, code);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, [file], { timeout: 30_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)));
  });
  const expected = [...code.matchAll(/\/\/ (.*)$/gm)].map((m) => m[1]!.trim()).filter((c) => /^('|ERR_)/.test(c)).map((c) => c.replace(/'/g, ''));
  t.same(stdout.trim().split('\n'), expected);
});
