// Node-only: reads the compiled Wasm builds from build/wasm (package subpath #wasm/*).
// Browsers get the local build embedded in the bundle instead (src/browser.ts).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateLocalCore, instantiateSharedCore, type Core } from './wasm.ts';

function wasmUrl(name: string): URL {
  return new URL(import.meta.resolve(`#wasm/${name}`));
}

let sharedModule: WebAssembly.Module | undefined;
let localModule: WebAssembly.Module | undefined;

/**
 * The compiled shared build (compiled once per thread; can be sent to workers).
 * TURBOMQ_CORE=debug selects the debug build instead: the same core with its invariants
 * asserted (assembly/debug.ts), for the stress tests and for chasing a bug.
 */
export function sharedCoreModule(): WebAssembly.Module {
  const file = process.env.TURBOMQ_CORE === 'debug' ? 'turbomq.debug.wasm' : 'turbomq.shared.wasm';
  sharedModule ??= new WebAssembly.Module(readFileSync(fileURLToPath(wasmUrl(file))));
  return sharedModule;
}

export function localCoreModule(): WebAssembly.Module {
  localModule ??= new WebAssembly.Module(readFileSync(fileURLToPath(wasmUrl('turbomq.local.wasm'))));
  return localModule;
}


/** The shared core over `memory`, with the module compiled from build/wasm. */
export function loadSharedCore(memory: WebAssembly.Memory): Promise<Core> {
  return instantiateSharedCore(memory, sharedCoreModule());
}

/** A local core for this thread (clients): compiled once, instantiated once per call. */
export function loadLocalCore(): Promise<Core> {
  return instantiateLocalCore(localCoreModule());
}
