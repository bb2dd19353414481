// The built-in prologue strategies, and loading a user's own strategy module from a file.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { isRecursionLimit, recursionLimitProblem, StrategyError, type Strategy } from "../strategy.ts";
import { guardStrategy, hookWatch, thrownText } from "./guard.ts";
import { baseline } from "./baseline.ts";
import { r9NoSave } from "./r9-no-save.ts";
import { r9Private } from "./r9-private.ts";
import { fullPrivate } from "./full-private.ts";
import { limitedRecursion } from "./limited-recursion.ts";
import { rbpPrivate } from "./rbp-private.ts";
import { splitDoubleFrame } from "./split-double-frame.ts";
import { splitStack } from "./split-stack.ts";

/** design.md §3.3, in its order. */
export const BUILTIN_STRATEGIES: readonly Strategy[] = [
  baseline, r9Private, splitStack, fullPrivate, rbpPrivate, splitDoubleFrame, limitedRecursion, r9NoSave,
];

export { StrategyError };

const FUNCTIONS = ["privateMemory", "frameRegister", "prologue", "epilogue", "call"] as const;

/** Check that a value implements the Strategy interface; `where` names its origin in errors. */
export function mustBeStrategy(v: unknown, where: string): Strategy {
  if (typeof v !== "object" || v === null) throw new StrategyError(`${where}: expected a strategy object, got ${v === null ? "null" : typeof v}`);
  const o = v as Record<string, unknown>;
  if (typeof o.name !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(o.name)) throw new StrategyError(`${where}: 'name' must be a lower-case name like 'my-design'`);
  if (typeof o.summary !== "string" || o.summary === "") throw new StrategyError(`${where}: 'summary' must be a non-empty string saying which design it models`);
  for (const k of FUNCTIONS) if (typeof o[k] !== "function") throw new StrategyError(`${where}: '${k}' must be a function`);
  if (!isRecursionLimit(o.recursionLimit)) throw new StrategyError(`${where}: ${recursionLimitProblem(o.recursionLimit)}`);
  return v as Strategy;
}

/** A strategy given as a module file (by its extension), not a built-in name. */
export const isStrategyModule = (spec: string): boolean => /\.(ts|js|mjs|mts)$/.test(spec);

/**
 * A built-in strategy by name, or a module file (`.ts` or `.js`) whose default export (or
 * `strategy` export) implements the Strategy interface.
 */
export async function loadStrategy(spec: string): Promise<Strategy> {
  const builtin = BUILTIN_STRATEGIES.find((s) => s.name === spec);
  if (builtin) return builtin;
  if (!isStrategyModule(spec)) {
    throw new StrategyError(`unknown strategy '${spec}'; built in: ${BUILTIN_STRATEGIES.map((s) => s.name).join(", ")}; or give a .ts/.js module path`);
  }
  const file = resolve(spec);
  if (!existsSync(file)) throw new StrategyError(`strategy module ${file} does not exist`);
  let mod: Record<string, unknown>;
  // tsx loads slowly, and only modules need it: loaded here, outside the watched load of the module
  const { tsImport } = await import("tsx/esm/api");
  hookWatch.enter(`strategy module ${file}: loading it`); // top-level code may not return either
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (first) {
    // A .ts file outside an ESM package ("type": "module") is CommonJS to Node and tsx, and then
    // cannot import this project's ES modules; tsx's tsImport() loads it as a module anyway.
    try {
      mod = (await tsImport(file, import.meta.url)) as Record<string, unknown>;
    } catch (second) {
      // Under the CLI's loader the first attempt fails for every CommonJS-scoped file ("Cannot
      // require() ES Module … in a cycle"); then the second error is the one that says why.
      const why = /in a cycle/.test(String((first as Error)?.message)) ? second : first;
      throw new StrategyError(`strategy module ${file} failed to load: ${thrownText(why, 3).replace(/^[A-Za-z]*Error: /, "")}`);
    }
  } finally {
    hookWatch.leave();
  }
  try {
    let v = mod.default ?? mod.strategy;
    // CommonJS interop wraps the module's exports one level down.
    if (typeof v === "object" && v !== null && !("name" in v)) v = (v as Record<string, unknown>).default ?? (v as Record<string, unknown>).strategy;
    if (v === undefined) throw new StrategyError(`strategy module ${file}: export the strategy as default or as 'strategy'`);
    return guardStrategy(mustBeStrategy(v, `strategy module ${file}`), file);
  } catch (e) {
    if (e instanceof StrategyError) throw e;
    throw new StrategyError(`strategy module ${file}: reading its strategy threw ${thrownText(e)}`); // a getter that throws
  }
}
