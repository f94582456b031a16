// Builds build/browser/turbomq.browser.js: src/browser.ts bundled as one minified ES module
// with build/wasm/turbomq.local.wasm embedded (base64), so the page needs nothing else.
// Run after build:wasm (`npm run build:browser`). Fails if the bundle would pull in a Node
// module: the browser entry must stay free of node: imports. Prints the sizes.

import { build } from 'esbuild';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
const outfile = `${root}build/browser/turbomq.browser.js`;
const wasm = readFileSync(`${root}build/wasm/turbomq.local.wasm`);

await build({
  entryPoints: [`${root}src/browser.ts`],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
  define: { __TURBOMQ_LOCAL_WASM_BASE64__: JSON.stringify(wasm.toString('base64')) },
  plugins: [{
    name: 'no-node-modules',
    setup(b) {
      b.onResolve({ filter: /^node:|^(fs|path|url|net|http|os|zlib|worker_threads|ws)$/ }, (args) => ({
        errors: [{ text: `the browser bundle must not import ${JSON.stringify(args.path)} (from ${args.importer})` }],
      }));
    },
  }],
});

const bundle = readFileSync(outfile);
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`${outfile.slice(root.length)}: ${kib(statSync(outfile).size)} minified, ${kib(gzipSync(bundle, { level: 9 }).length)} gzip (Wasm ${kib(wasm.length)})`);
