// A scenario's problems as `path: message` lines (the form ScenarioError lists them in), for
// tests of bad input: fails the test when the scenario is accepted or fails some other way.
import { expect } from "vitest";
import { parseScenario, ScenarioError } from "../../harness/scenario.ts";

export function scenarioIssues(json: unknown): string[] {
  try {
    parseScenario(json, "s.json");
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as ScenarioError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error("expected a ScenarioError");
}
