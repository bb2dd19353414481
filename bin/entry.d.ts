// Types of bin/entry.js, for the TypeScript that imports it (harness/cli/pool.ts).
/** Is the build (dist/) there and newer than every source? */
export function distIsFresh(): boolean;
/** The CLI's main module: compiled, or the TypeScript source with tsx's loader registered. */
export function cliMain(): Promise<typeof import("../harness/cli/main.ts")>;
/** The TypeScript source, always (with a user's strategy module). */
export function sourceMain(): Promise<typeof import("../harness/cli/main.ts")>;
