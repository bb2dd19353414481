// The property runner on the example scenario: exhaustive verdicts, coverage of interrupt points,
// and the counterexample report's parts.
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { checkExhaustive, checkRandom } from "../../../harness/property.ts";
import { formatCounterexample } from "../../../harness/report.ts";
import { runScenario, scheduleOf } from "../../../harness/run.ts";
import { loadScenario } from "../../../harness/scenario.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import type { Strategy } from "../../../jit/strategy.ts";

const sc = loadScenario(fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url)));
const strategy = (n: string): Strategy => BUILTIN_STRATEGIES.find((s) => s.name === n)!;

describe("exhaustive mode", () => {
  test.each(["baseline", "r9-private"])("%s: an IRQ and an NMI at every boundary of the example, each run passes (frame, strict)", (name) => {
    const v = checkExhaustive(sc, strategy(name), { unwinder: "frame" });
    expect(v.failure).toBeUndefined();
    expect(v.ok).toBe(true);
    const steps = v.outcome.result.kind === "completed" ? v.outcome.result.steps : 0;
    expect(v.runs).toBe(1 + 2 * steps); // the base run, then one IRQ run and one NMI run per boundary
    // every window of both function kinds, helpers and the kfunc were interrupted
    for (const k of ["main/prologue", "main/body", "main/epilogue", "subprog/prologue", "subprog/body", "subprog/epilogue", "helper", "kfunc", "kernel"]) {
      expect(v.coverage.get(k as never) ?? 0).toBeGreaterThan(0);
    }
  });

  test("an IRQ raised while the syscall entry keeps IRQs off is delivered when do_syscall_64 enables them", () => {
    const o = runScenario(sc, strategy("baseline"), { unwinder: "frame", injections: [{ kind: "irq", atStep: 0, vector: 236 }] });
    expect(o.raised.map((r) => r.symbol)).toEqual(["do_syscall_64"]);
    expect(o.delivered.map((r) => r.symbol)).toEqual(["do_syscall_64+0xa"]); // after push 0x202; popfq
    expect(o.ok).toBe(true);
  });

  test("split-stack: the base run already fails, at the helper's stack sample", () => {
    const v = checkExhaustive(sc, strategy("split-stack"), { unwinder: "frame" });
    expect(v.ok).toBe(false);
    expect(v.runs).toBe(1);
    expect(v.failure).toMatchObject({ kind: "sample", what: "TRUNCATED" });
    expect(v.outcome.samples[v.failure!.sample!]!.kind).toBe("bpf_get_stack (helper)");
  });
});

describe("runs on an image's reused machine", () => {
  test("are independent of the run before: the same outcome as on a fresh machine, twice, with no hook or watcher left over", () => {
    const s = strategy("r9-private");
    const image = buildImage(sc.spec, s);
    const strip = (o: ReturnType<typeof runScenario>) => JSON.stringify(o, (_, v) => (typeof v === "bigint" ? v.toString(16) : v));
    const fresh = strip(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc) }));
    const first = runScenario(sc, s, { unwinder: "frame", image, injections: scheduleOf(sc) });
    expect(first.samples).toHaveLength(3);
    expect(strip(first)).toBe(fresh);
    // a run with other injections in between, then the same run again
    runScenario(sc, s, { unwinder: "orc-6.19", image, injections: [{ kind: "nmi", atStep: 5, vector: 2 }] });
    expect(strip(runScenario(sc, s, { unwinder: "frame", image, injections: scheduleOf(sc) }))).toBe(fresh);
  });
});

describe("counterexample report", () => {
  test("split-stack on the example: scenario, interrupts with a marked disassembly window, chains, stacks, checks, replay", () => {
    const s = strategy("split-stack");
    const image = buildImage(sc.spec, s);
    const v0 = checkRandom(sc, s, { unwinder: "frame" }, image);
    const outcome = runScenario(sc, s, { unwinder: "frame", image, injections: scheduleOf(sc), picture: v0.failure!.sample! });
    const text = formatCounterexample(sc, image, { ...v0, outcome }, { strategy: s.name, unwinder: "frame", policy: "strict", replay: "npx stackcheck replay --strategy split-stack --seed 1 --path 0" });
    expect(text).toMatch(/^counterexample: strategy split-stack, unwinder frame, policy strict\nfailure: class TRUNCATED: NMI \(perf, from regs\) at common_interrupt\+0x36 \(step \d+\): TRUNCATED\nscenario: 2 program\(s\), 3 function\(s\)\n/);
    expect(text).toContain("   6: call bpf_sc_rw#2");
    expect(text).toMatch(/IRQ 236 delivered at step \d+, interrupting bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ \(main\/body\):\n/);
    expect(text).toMatch(/^=> ffffffff81000[0-9a-f]{3} <common_interrupt\+0x36>/m);
    expect(text).toMatch(/^! 1  ffffffff81000[0-9a-f]{3} asm_common_interrupt\+0x24/m);
    expect(text).toContain("stacks at the sample:");
    expect(text).toMatch(/private outer\/main stack \[ffff88807fc[0-9a-f]{5}, ffff88807fc[0-9a-f]{5}\):/);
    expect(text).toMatch(/rbp chain: ffff88807fc[0-9a-f]{5} -> /);
    expect(text).toContain("FAIL unknown-stack: vector 236 taken at");
    expect(text.trimEnd().split("\n").at(-1)).toBe("replay: npx stackcheck replay --strategy split-stack --seed 1 --path 0");
  });
});
