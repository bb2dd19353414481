// Module hooks (node:module register()) for a user's strategy module under the compiled CLI
// (bin/entry.js moduleMain()): the module's own file is TypeScript that tsx loads, and its
// imports of this project's sources (`../jit/strategies/r9-private.ts`, `../jit/strategy.ts`)
// resolve to the compiled modules the CLI already runs (`dist/jit/...js`): one copy of each
// module (the harness's error classes, its hook watch), and no source of the project
// transpiled. Registered after tsx's hooks, so it runs first and sees tsx's resolution. Only
// ES module imports come here: a CommonJS-scoped `.ts` module's imports are tsx's require()
// calls, which load the sources (a second copy, as before this redirect).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

let root = "", dist = "", sources = [];

export function initialize(data) {
  root = data.root; // file: URLs ending in "/"
  dist = data.dist;
  sources = data.sources.map((d) => `${d}/`); // the folders the build compiles (bin/entry.js SOURCES)
}

export async function resolve(specifier, context, nextResolve) {
  const r = await nextResolve(specifier, context);
  if (!r.url.startsWith(root) || r.url.startsWith(dist) || !r.url.endsWith(".ts")) return r;
  const rel = r.url.slice(root.length);
  if (!sources.some((d) => rel.startsWith(d))) return r;
  const compiled = `${dist}${rel.slice(0, -3)}.js`;
  return existsSync(fileURLToPath(compiled)) ? { url: compiled, format: "module", shortCircuit: true } : r;
}
