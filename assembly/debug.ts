// Invariants, checked in the debug build only.
//
// asconfig.json's `debug` target leaves assertions on (ASC_NO_ASSERT false); the release
// targets set noAssert, so every `invariant(...)` compiles to nothing there. A broken
// invariant traps with `unreachable` rather than AssemblyScript's assert(): assert() would
// put its file name string in a data segment, and the shared build must have none
// (layout.ts). The trap surfaces in JS as a RuntimeError whose stack names the function.

// @ts-ignore: decorator
@inline export function invariant(ok: bool): void {
  if (!ASC_NO_ASSERT) {
    if (!ok) unreachable();
  }
}

/** True in the debug build: guards checks that cost more than a comparison. */
// @ts-ignore: decorator
@inline export const DEBUG: bool = !ASC_NO_ASSERT;
