// Types of bin/entry.js, for the TypeScript that imports it (harness/cli/pool.ts).
/** Is the build (dist/) there and newer than every source? */
export function distIsFresh(): boolean;
/** The CLI's main module: compiled, or the TypeScript source with tsx's loader registered. */
export function cliMain(): Promise<typeof import("../harness/cli/main.ts")>;
/** The TypeScript source, always (with a user's strategy module). */
export function sourceMain(): Promise<typeof import("../harness/cli/main.ts")>;
/** Import compiled modules (paths under dist/), then register tsx and the redirect of this project's sources to dist/ on this thread. */
export function withModuleHooks(...compiled: string[]): Promise<unknown[]>;
/** The CLI's main module for a command with a user's strategy module: compiled when fresh, else the source. */
export function moduleMain(): Promise<typeof import("../harness/cli/main.ts")>;
/** The V8 flags every entry point that runs campaigns sets (see bin/entry.js). */
export const V8_FLAGS: readonly string[];
/** Set V8_FLAGS for this process (its worker threads share them), before any code is optimised; on V8 11 (Node 20) only. */
export function tuneV8(): void;
