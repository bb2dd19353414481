// The built-in strategies by name, for the test suites (a misspelt name fails here, not as an
// undefined strategy further on).
import { BUILTIN_STRATEGIES } from "../../jit/strategies/index.ts";
import type { Strategy } from "../../jit/strategy.ts";

export function strategy(name: string): Strategy {
  const s = BUILTIN_STRATEGIES.find((x) => x.name === name);
  if (!s) throw new Error(`no built-in strategy is named '${name}'`);
  return s;
}
