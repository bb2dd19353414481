// The dead-stack check: no instruction reads below rsp (the kernel has no red zone) or an IRQ or
// NMI stack no context is on. A planted epilogue that pops through the red zone is caught in a
// run where no interrupt lands in between, and exhaustive mode's early end, which rests on the
// same rule, fails such a design in its unforked run whether it is on or off.
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { loadScenario } from "../../../harness/scenario.ts";
import { checkExhaustive } from "../../../harness/property.ts";
import { runScenario } from "../../../harness/run.ts";
import { deadSpans, deadStack, type StackSpan } from "../../../harness/oracles/dead-stack.ts";
import type { Machine } from "../../../harness/machine/index.ts";
import type { OracleContext, RunFailure } from "../../../harness/oracles/types.ts";
import { toInternal } from "../../../harness/machine/index.ts";
import { watchRun } from "../../../harness/oracles/run.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { kernelStacks } from "../../../jit/private-stacks.ts";
import { standardPrologue } from "../../../jit/prologue.ts";
import { buildImage } from "../../../jit/image.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { strategy } from "../../helpers/strategies.ts";

const scenario = loadScenario(fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url)));

/** baseline, whose epilogue restores the callee-saved registers from below rsp: `add rsp,8n; mov r,[rsp-8(k+1)]`. */
const redZone: Strategy = {
  ...strategy("baseline"),
  name: "red-zone-epilogue",
  epilogue: (e, f) => {
    const regs = [...f.calleeSaved].reverse();
    if (regs.length > 0) e.addRsp(8 * regs.length);
    regs.forEach((r, k) => e.ldx(8, r, "rsp", -8 * (regs.length - k)));
    e.leave();
    e.frameGone();
    e.ret();
  },
};

describe("dead-stack", () => {
  test("an epilogue that pops through the red zone fails a run with no interrupt (every other check passes it)", () => {
    const o = runScenario(scenario, redZone, { unwinder: "frame", injections: [] });
    expect(o.result.kind).toBe("completed");
    const dead = o.checks.failures.filter((f) => f.check === "dead-stack");
    expect(dead.length).toBeGreaterThan(0);
    expect(dead[0]!.message).toMatch(/^bpf_prog_[0-9a-f]{16}_\w+\+0x[0-9a-f]+ reads 8 bytes at [0-9a-f]{16}: (8|16|24|32|40) bytes below rsp [0-9a-f]{16} on the task stack, where an interrupt may push \(the kernel has no red zone\)$/);
    // the read right below rsp too (the last restore of each epilogue)
    expect(dead.some((f) => / 8 bytes below rsp /.test(f.message))).toBe(true);
    expect(o.checks.failures.filter((f) => f.check !== "dead-stack")).toEqual([]);
    // the same code with its pops passes
    expect(runScenario(scenario, strategy("baseline"), { unwinder: "frame", injections: [] }).checks.failures).toEqual([]);
  });

  test("exhaustive mode fails the design in its unforked run, with the early end and without", () => {
    const image = buildImage(scenario.spec, redZone);
    for (const shortcut of [true, false]) {
      const v = checkExhaustive(scenario, redZone, { unwinder: "frame", shortcut }, image);
      expect(v.ok).toBe(false);
      expect(v.runs).toBe(1); // the unforked run
      expect(v.failure?.what).toBe("dead-stack");
    }
  });

  test("a read of the IRQ stack while rsp is on the task stack fails; the same read with rsp on the IRQ stack is its own frame's", () => {
    // baseline whose prologue first reads [r11]; r11 is set at each entry of leaf (program 1) to an IRQ-stack word
    const reads: Strategy = { ...strategy("baseline"), name: "reads-r11", prologue: (e, f) => { e.ldx(8, "rax", "r11", 0); standardPrologue(e, f, f.func.stackDepth); } };
    const img = buildImage(scenario.spec, reads);
    const m = loadImage(img);
    const w = watchRun(img, m);
    const irq = kernelStacks(img).find((s) => s.name === "IRQ stack")!;
    const leaf = img.programs[1]!.jit.funcs[0]!.image.base;
    let inIrq = 0;
    m.addHook(leaf, (mm) => {
      const onIrq = mm.reg("rsp") >= irq.begin && mm.reg("rsp") < irq.end;
      if (onIrq) inIrq++;
      mm.setReg("r11", onIrq ? mm.reg("rsp") : irq.end - 64n);
    });
    m.addHook(img.programs[0]!.jit.funcs[0]!.image.base, (mm) => { mm.setReg("r11", mm.reg("rsp")); });
    startTask(img, m);
    let r = m.runUntil(40);
    m.raise(236); // leaf runs in the IRQ too (on the IRQ stack: its read is of a live frame)
    if (r.kind === "paused") r = m.run();
    expect(r.kind).toBe("completed");
    const dead = w.report().failures.filter((f) => f.check === "dead-stack").map((f) => f.message);
    expect(inIrq).toBeGreaterThan(0);
    // (its subprog reads [r11] too, still the IRQ stack's word)
    expect(dead.length).toBeGreaterThan(0);
    for (const x of dead) expect(x).toMatch(/^bpf_prog_[0-9a-f]{16}_\w+ reads 8 bytes at [0-9a-f]{16}: the IRQ stack, which no context is using \(rsp [0-9a-f]{16} is on the task stack\)$/);
  });

  test("at the edges: a read ending at rsp, or starting below it, is dead; one starting at rsp is not", () => {
    const img = buildImage(scenario.spec, strategy("baseline"));
    const task = kernelStacks(img).find((s) => s.name === "task stack")!, irq = kernelStacks(img).find((s) => s.name === "IRQ stack")!;
    const at = (a: bigint) => toInternal(a)!;
    let rsp = at(task.end - 0x100n);
    const failures: RunFailure[] = [];
    const ctx = { img, m: { get rspAt() { return rsp; } } as unknown as Machine, fail: (f: RunFailure) => failures.push(f), sym: () => "f" } as unknown as OracleContext;
    // (a check of its own for each read: one reports a few failures at most)
    const read = (addr: number, size: number) => { failures.length = 0; deadStack(ctx).onRead!(addr, size, at(0xffffffffa0000000n)); return failures.length; };
    expect([read(rsp, 8), read(rsp + 8, 8), read(rsp - 8, 8), read(rsp - 4, 8), read(rsp - 1, 1), read(at(task.begin), 8)]).toEqual([0, 0, 1, 1, 1, 1]);
    expect([read(at(irq.begin), 8), read(at(irq.end - 8n), 8)]).toEqual([1, 1]); // no context on the IRQ stack
    // a few failures a run, and a fork put back reports afresh
    const one = deadStack(ctx), back = one.save();
    failures.length = 0;
    for (let i = 0; i < 8; i++) one.onRead!(rsp - 8, 8, 0);
    expect(failures.length).toBe(4);
    back();
    one.onRead!(rsp - 8, 8, 0);
    expect(failures.length).toBe(5);
    rsp = at(irq.end - 0x40n); // now on the IRQ stack: the interrupted task's stack is live, and so is the IRQ stack above rsp
    expect([read(at(task.end - 0x100n), 8), read(rsp, 8), read(rsp - 8, 8)]).toEqual([0, 0, 1]);
  });

  test("the dead areas at a boundary: below rsp on the stack it is on, and the IRQ and NMI stacks while it is on a task's", () => {
    const spans: StackSpan[] = [
      { name: "task stack", begin: 0x1000, end: 0x5000, kind: "task" },
      { name: "task 1 stack", begin: 0x6000, end: 0xa000, kind: "task" },
      { name: "IRQ stack", begin: 0x10000, end: 0x14000, kind: "interrupt" },
      { name: "NMI stack", begin: 0x20000, end: 0x21000, kind: "interrupt" },
      { name: "private p/main", begin: 0x30000, end: 0x30200, kind: "private" },
    ];
    expect(deadSpans(spans, 0x4f00)).toEqual([[0x1000, 0x4f00], [0x10000, 0x14000], [0x20000, 0x21000]]);
    expect(deadSpans(spans, 0x13000)).toEqual([[0x10000, 0x13000]]); // the interrupted task's stack is live
    expect(deadSpans(spans, 0x30100)).toEqual([[0x30000, 0x30100]]); // rsp on a private stack (split designs)
    expect(deadSpans(spans, 0x50000)).toEqual([]); // on no stack the image has
  });
});
