// Programs reading their context (R1): the runner passes each program its own context from the
// synthetic kernel's table (a kprobe's pt_regs, a tracepoint's record, a raw_tp's arguments), the
// machine and the reference interpreter read the same bytes, from the task, an IRQ and an NMI.
import { describe, expect, test } from "vitest";
import { loadScenario } from "../../../harness/scenario.ts";
import { runScenario, scheduleOf } from "../../../harness/run.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { ctxBytes } from "../../../jit/kernel/layout.ts";

const sc = loadScenario(new URL("../../scenarios/ctx-reads.json", import.meta.url).pathname);
const le = (b: Uint8Array, off: number, n: number) => b.subarray(off, off + n).reduceRight((v, x) => (v << 8n) | BigInt(x), 0n);

describe("context reads", () => {
  test("the kprobe task reads its pt_regs: 8 bytes at 0 and 160, 4 at 12, 1 at 167, as the table holds them", () => {
    const c = ctxBytes(0);
    const want = BigInt.asUintN(64, le(c, 0, 8) + le(c, 160, 8) + le(c, 12, 4) + le(c, 167, 1));
    const o = runScenario(sc, BUILTIN_STRATEGIES.find((s) => s.name === "baseline")!, { unwinder: "frame", injections: scheduleOf(sc) });
    expect(o.result).toMatchObject({ kind: "completed", rax: want });
  });

  test.each(BUILTIN_STRATEGIES.filter((s) => s.name !== "r9-no-save").map((s) => s.name))("%s: every invocation (the IRQ's tracepoint, the NMI's raw_tp) returns the interpreter's result", (name) => {
    const o = runScenario(sc, BUILTIN_STRATEGIES.find((s) => s.name === name)!, { unwinder: "frame", policy: "reliable", injections: scheduleOf(sc) });
    expect(o.checks.invocations).toBe(3);
    expect(o.checks.failures.filter((f) => f.check === "semantics")).toEqual([]);
    expect(o.result.kind).toBe("completed");
  });
});
