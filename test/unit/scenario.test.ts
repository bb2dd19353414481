// Scenario files: the shipped example loads and runs; every kind of bad input gets an error that
// names the file, the JSON path and the problem.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { loadScenario, parseScenario, ScenarioError } from "../../harness/scenario.ts";
import { buildImage } from "../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../jit/strategies/index.ts";
import { loadImage, startTask } from "../../harness/load.ts";

const example = fileURLToPath(new URL("../scenarios/nested.json", import.meta.url));

function issues(json: unknown): string[] {
  try {
    parseScenario(json, "s.json");
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as ScenarioError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error("expected a ScenarioError");
}

const minimal = () => ({
  version: 1,
  programs: [{ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, insns: [[0xb7, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]] }] }],
  task: "p",
});

describe("the shipped example", () => {
  test("loads, builds and runs under every sound design with one result", () => {
    const s = loadScenario(example);
    expect(s.programs.map((p) => p.name)).toEqual(["outer", "leaf"]);
    const results = BUILTIN_STRATEGIES.filter((x) => x.name !== "r9-no-save").map((st) => {
      const img = buildImage(s.spec, st);
      const m = loadImage(img);
      startTask(img, m);
      const r = m.run({ maxSteps: 100_000 });
      return r.kind === "completed" ? r.rax : r.kind;
    });
    expect(new Set(results)).toEqual(new Set([1078n]));
  });
});

describe("bad scenarios are named precisely", () => {
  test("a minimal scenario is accepted", () => {
    expect(parseScenario(minimal()).spec).toEqual({ programs: expect.any(Array), task: 0, nested: [], irq: [] });
  });
  test("schema problems carry their JSON paths", () => {
    const s = minimal() as Record<string, unknown>;
    s.version = 2;
    s.extra = true;
    (s.programs as { funcs: { insns: number[][] }[] }[])[0]!.funcs[0]!.insns[0]![0] = 300;
    expect(issues(s)).toEqual([
      "version: Invalid input: expected 1",
      "programs[0].funcs[0].insns[0][0]: Too big: expected number to be <=255",
      ": Unrecognized key: \"extra\"",
    ]);
  });
  test("unknown programs in what-runs-what", () => {
    expect(issues({ ...minimal(), task: "q", nested: ["p", "r"], nmi: "s" })).toEqual([
      "task: no program is named 'q' (programs: p)",
      "nested[1]: no program is named 'r' (programs: p)",
      "nmi: no program is named 's' (programs: p)",
    ]);
  });
  test("a scheduled IRQ needs a handler for its vector", () => {
    expect(issues({ ...minimal(), interrupts: [{ kind: "irq", vector: 40, atStep: 3 }] })).toEqual([
      "interrupts[0].vector: no IRQ handler is set up for vector 40; list it under 'irq'",
    ]);
  });
  test("a verifier rejection points at the instruction", () => {
    const s = minimal();
    s.programs[0]!.funcs[0]!.insns = [[0xbf, 0, 2, 0, 0], [0x95, 0, 0, 0, 0]]; // r0 = r2
    expect(issues(s)).toEqual(["programs[0].funcs[0].insns[0]: p/main: R2 !read_ok"]);
  });
  test("duplicate names", () => {
    const s = minimal();
    s.programs.push(s.programs[0]!);
    expect(issues(s)).toEqual(["programs[1].name: program 'p' is defined twice"]);
  });
  test("files that are not there or not JSON", () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-scenario-"));
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ version: 1 ");
    expect(() => loadScenario(bad)).toThrow(`${bad}: 1 problem\n  (top level): not valid JSON:`);
    expect(() => loadScenario(join(dir, "none.json"))).toThrow("cannot read the file");
  });
});
