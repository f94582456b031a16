// The repo pins Node (npm package `node`) so every npm script runs on a Node with
// reusePort and native TypeScript, whatever the machine's own Node is.
import t from 'tap';
import { readFileSync } from 'node:fs';

t.test('npm scripts run under the pinned Node (>= 22.12)', async (t) => {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  t.comment(`node ${process.versions.node}`);
  t.ok(major > 22 || (major === 22 && minor >= 12), `node ${process.versions.node} >= 22.12`);
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const pinned = String(pkg.devDependencies.node).replace(/^[^\d]*/, '').split('.')[0];
  t.equal(String(major), pinned, 'the running Node is the pinned major');
});
