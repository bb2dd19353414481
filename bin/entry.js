// Which CLI module a command runs: dist/harness/cli/main.js (JavaScript that `npm run build`
// compiled, `npm install` runs it) while it is newer than every TypeScript source, so a command
// starts without transpiling; otherwise (sources edited since, no build, or
// STACKCHECK_FROM_SOURCE=1) the TypeScript itself through tsx. `node bin/entry.js --stamp`
// finishes a build (package.json "build"): it copies the files tsc does not (the kernel JIT
// shim's C sources) and marks the build done.
import { cpSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";

/**
 * V8's optimising compiler inlines Array.prototype.map into the functions it optimises, and
 * the inlined map makes HOLEY arrays where the builtin makes PACKED ones (Node 20, V8 11.3).
 * The images, programs, symbol tables and verifier states a campaign builds are mostly made by
 * map(), so every function that reads them sees arrays of a new map once their maker is
 * optimised, and is thrown out and compiled again ("wrong map" deopts). Without that inlining
 * the first 4,000 small scenarios of a campaign deoptimise 56 times instead of 204 (58 with the
 * flag set at run time, as here) and spend 44% less time compiling (V8's --trace-deopt and
 * --trace-opt); two workers (check --workers 2, 6,000 small scenarios, whose threads spend most
 * of their time warming up) take 15% less CPU and wall time, in four of four alternating pairs.
 * Every entry point that runs campaigns sets it (the CLI, the benchmark, the tests' workers)
 * before any code is optimised; worker threads share the process's flags. Only on the V8 it was
 * measured on (11.x, Node 20): another V8 may not know the flag (setFlagsFromString() would
 * print an error at every command) or may not need it.
 *
 * `--max-inlined-bytecode-size-cumulative=300` (V8's default 920): a smaller inlining budget
 * for each function the optimising compiler compiles. A campaign compiles for seconds while it
 * warms up (4.8 s of compile time over the first 4,000 small scenarios, V8's --trace-opt;
 * buildImage() alone 166 ms), and each worker thread compiles the harness for itself. Counted
 * in instructions (cachegrind, node --single-threaded, so compiling counts too): 1,500 small
 * scenarios from a cold start took 12% fewer (18.4 against 20.9 billion), and past the warm-up
 * a scenario costs the same (4.97 against 4.95 million instructions, from 1,500 to 4,500); a
 * budget of 150 cut the cold start further (17.7) but made every scenario past it 4% dearer.
 */
export const V8_FLAGS = ["--no-turbo-inline-array-builtins", "--max-inlined-bytecode-size-cumulative=300"];
export function tuneV8() {
  if (process.versions.v8.startsWith("11.")) for (const f of V8_FLAGS) setFlagsFromString(f);
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const STAMP = join(ROOT, "dist", ".built");
const SOURCES = ["arch", "harness", "jit", "unwinder", "generators"];

/** The newest modification time of a source file (what the build compiles or copies). */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of SOURCES) walk(join(ROOT, d));
  return newest;
}

/** Is the build there and newer than every source? */
export function distIsFresh() {
  if (process.env.STACKCHECK_FROM_SOURCE === "1") return false;
  try {
    return statSync(STAMP).mtimeMs >= newestSource();
  } catch {
    return false;
  }
}

/** The CLI's main module: compiled, or the TypeScript source with tsx's loader registered. */
export async function cliMain() {
  return distIsFresh() ? import("../dist/harness/cli/main.js") : sourceMain();
}

/**
 * The TypeScript source, always: with a user's strategy module and no fresh build, the harness
 * must be the same modules the user's module imports (`jit/strategies/*.ts`,
 * `jit/strategy.ts`), one copy of each (its error classes, its hook watch), for an ES module;
 * a CommonJS-scoped `.ts` module's require() calls load their own copy either way.
 */
export async function sourceMain() {
  const { register } = await import("tsx/esm/api");
  register();
  return import("../harness/cli/main.ts");
}

/**
 * Load compiled modules (`dist/` paths), then let this thread import a user's TypeScript
 * strategy module against them: tsx for the module itself, and bin/dist-redirect.js, which
 * sends the module's ES imports of this project's sources to their compiled copies. The compiled
 * modules are imported first because module hooks, once registered, see every later import on
 * the thread (a round trip to the hooks thread each: loading the harness through them took
 * about as long as transpiling it).
 */
export async function withModuleHooks(...compiled) {
  const loaded = await Promise.all(compiled.map((p) => import(pathToFileURL(join(ROOT, "dist", p)).href)));
  const { register } = await import("tsx/esm/api");
  register();
  const { register: registerHooks } = await import("node:module");
  registerHooks("./dist-redirect.js", import.meta.url, { data: { root: pathToFileURL(ROOT).href, dist: `${pathToFileURL(join(ROOT, "dist")).href}/`, sources: SOURCES } });
  return loaded;
}

/** Every module a command can load: the CLI's lazy command modules, loaded before the hooks. */
const COMMAND_MODULES = ["harness/cli/main.js", "harness/cli/commands.js", "harness/cli/campaign-run.js", "jit/strategies/index.js", "jit/tree/index.js", "jit/tree/backend.js", "harness/jit-diff.js"];

/** The CLI's main module for a command with a user's strategy module: compiled when the build is fresh. */
export async function moduleMain() {
  if (!distIsFresh()) return sourceMain();
  const [main] = await withModuleHooks(...COMMAND_MODULES);
  return main;
}

if (process.argv[2] === "--stamp" && process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  cpSync(join(ROOT, "jit/tree/shim"), join(ROOT, "dist/jit/tree/shim"), { recursive: true });
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
}
