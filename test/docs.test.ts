// The docs' examples run: the README's Node example, as a user would paste it.

import t from 'tap';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const readme = readFileSync(`${root}README.md`, 'utf8');

for (const heading of ['## Use it', '## At-least-once delivery', '## Durability', '## Reconnecting']) t.test(`the README example under "${heading}" runs and prints what its comments say`, async (t) => {
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

t.test('the README CLI session runs and prints what its comments say', async (t) => {
  const { TurboEngine } = await import('../src/index.ts');
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Try it from the CLI'));
  const lines = section.match(/```sh\n([\s\S]*?)```/)![1]!.trim().split('\n');
  // The session's broker runs here, on a free port: each command finds it through TURBOMQ_URL.
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 1 });
  await engine.run();
  t.teardown(() => engine.destroy());
  const main = `${root}src/cli/main.ts`;
  for (const line of lines) {
    const [command, comment = ''] = line.split(/\s+# /) as [string, string?];
    if (command.includes('turbomq serve')) continue;
    const shell = command.trim().replace(/npx turbomq/g, `"${process.execPath}" "${main}"`);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('sh', ['-c', shell], { timeout: 30_000, env: { ...process.env, TURBOMQ_URL: engine.url } }, (err, out, errOut) => (err ? reject(new Error(`${command}: ${err.message}\n${errOut}`)) : resolve(out)));
    });
    // Comments that are a command's exact output (not a description) are checked.
    if (/^pushed |^[\w.-]+$/.test(comment)) t.equal(stdout.trim(), comment, command.trim());
    else t.pass(command.trim());
  }
  const deadline = Date.now() + 10_000;
  while (engine.running && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.notOk(engine.running, 'turbomq stop stopped the broker');
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
