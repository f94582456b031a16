// The engine's options live with every other option in src/options.ts; this re-export keeps
// imports from the engine's side short.
export * from '../options.ts';
