// planToScenario(): a Plan as a scenario file (harness/scenario.ts, version 1). Pure and
// deterministic; any value of the Plan type lowers to a scenario that parseScenario() accepts
// (the validator's rules hold by construction: forward-only calls, initialised slots, depths
// fitted to the 512-byte limits). How: generators/_internals/lower.ts.
import type { ScenarioFile } from "../harness/scenario.ts";
import type { Plan } from "./plan.ts";
import { lowerPlan } from "./_internals/lower.ts";

export function planToScenario(plan: Plan): ScenarioFile {
  return lowerPlan(plan).file;
}
