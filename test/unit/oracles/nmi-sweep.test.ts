// An NMI at every instruction boundary of a small nested scenario (main -> subprog -> helper,
// and main -> kfunc -> nested program): under baseline and r9-private the frame unwinder's perf
// callchain from the NMI's regs is EXACT or WINDOW, and WINDOW exactly where the interrupted
// rip is in its function's frame-pointer window (its frame not built, rbp still the entry rbp).
import { describe, expect, test } from "vitest";
import { alu64, call, exit, ldx, stx } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R2, R3, R4, R5, R6, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { frameUnwinder, perfCallchainKernel } from "../../../unwinder/index.ts";
import { allowances, classify, expectedChain, type StackClass } from "../../../harness/oracles/classify.ts";
import { frameWindows } from "../../../harness/oracles/window.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { straightRun } from "../../helpers/sweep.ts";

const mixArgs = [alu64.mov.imm(R1, 1), alu64.mov.imm(R2, 2), alu64.mov.imm(R3, 3), alu64.mov.imm(R4, 4), alu64.mov.imm(R5, 5)];
const outer = program({ name: "outer", type: "kprobe", funcs: [
  { name: "main", stackDepth: 64, body: [
    alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8),
    alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("sub"),
    alu64.mov.reg(R6, R0), alu64.mov.imm(R1, 0), call.kfunc(1000), alu64.add.reg(R0, R6),
    ldx(BPF_DW, R1, R10, -8), alu64.add.reg(R0, R1), exit(),
  ] },
  { name: "sub", stackDepth: 16, body: [ldx(BPF_DW, R0, R1, 0), stx(BPF_DW, R10, R0, -8), call.helper(3), ...mixArgs, call.helper(1), exit()] },
] });
const nested = program({ name: "nested", type: "tracing", funcs: [
  { name: "main", stackDepth: 8, body: [alu64.mov.imm(R1, 3), stx(BPF_DW, R10, R1, -8), call.subprog("sub2"), exit()] },
  { name: "sub2", stackDepth: 0, body: [...mixArgs, call.helper(1), exit()] },
] });

/** A step of the task's run where rip is in a BPF function's body, outside its frame window. */
function irqPoint(strategyName: string): number {
  const img = buildImage({ programs: [outer, nested], task: 0, nested: [1] }, BUILTIN_STRATEGIES.find((s) => s.name === strategyName)!);
  const m = loadImage(img);
  const windows = frameWindows(img, m);
  startTask(img, m);
  for (let k = 1; ; k++) {
    if (m.runUntil(k).kind !== "paused") throw new Error(`${strategyName}: no BPF body step`);
    if (k > 40 && m.symbols.lookup(m.rip)?.kind === "bpf" && !windows.inWindow(m.rip)) return k;
  }
}

/**
 * An NMI at every boundary of the task's run (`irqAt` undefined), or at every boundary of the
 * handling of an IRQ raised `irqAt` steps into it: entry code, the IRQ's program, the way out.
 */
function sweep(strategyName: string, irqAt?: number, first = outer) {
  const { img, m, env, windows, base, straight } = straightRun({ programs: [first, nested], task: 0, nested: [1], irq: [{ vector: 0x20, program: 1 }] }, BUILTIN_STRATEGIES.find((s) => s.name === strategyName)!);
  let from = 0, to = straight.steps;
  if (irqAt !== undefined) {
    m.restore(base);
    m.runUntil(irqAt);
    m.raise(0x20);
    const withIrq = m.run();
    if (withIrq.kind !== "completed") throw new Error(`${strategyName}: ${withIrq.kind}`);
    from = irqAt;
    to = irqAt + (withIrq.steps - straight.steps) + 1;
  }
  const rows: { k: number; cls: StackClass; inWindow: boolean; blind: boolean; where: string; unwound: number }[] = [];
  let sample: { cls: StackClass; inWindow: boolean; blind: boolean; where: string; unwound: number } | undefined;
  m.addHook(img.kernel.addr("nmi_sample"), (mm) => {
    const truth = mm.truth();
    const marker = truth.findIndex((t) => t.kind === "interrupt");
    const { ip, frame, bp } = truth[marker] as { ip: bigint; frame: bigint; bp: bigint };
    const blind = windows.blindSpot(ip, frame, true) !== undefined;
    // the interrupted rbp, and the rbp the interrupted function was entered with (unknown for the task's root)
    const entry = (truth[marker + 1] as { entryBp?: bigint }).entryBp;
    const inWindow = windows.inWindow(ip, entry === undefined ? undefined : { now: bp, entry });
    const walk = perfCallchainKernel(frameUnwinder(env), mm.reg("rdi"));
    const c = classify(expectedChain(truth, marker), walk, allowances(truth, marker, windows));
    sample = { cls: c.class, inWindow, blind, where: mm.symbols.symbolize(ip) ?? ip.toString(16), unwound: walk.ips.length };
  });
  for (let k = from; k < to; k++) {
    m.restore(base);
    if (irqAt !== undefined) {
      m.runUntil(irqAt);
      m.raise(0x20);
    }
    m.runUntil(k);
    m.raise(2);
    sample = undefined;
    const r = m.run();
    expect(r).toMatchObject({ kind: "completed", rax: straight.rax });
    rows.push({ k, ...sample! });
  }
  return rows;
}

describe("an NMI at every instruction boundary, frame unwinder, perf callchain", () => {
  test.each(["baseline", "r9-private"])("%s: only EXACT or WINDOW, and WINDOW exactly in the frame-pointer windows", (name) => {
    const rows = sweep(name);
    expect(rows.length).toBeGreaterThan(100);
    const bad = rows.filter((r) => r.cls !== (r.inWindow ? "WINDOW" : "EXACT"));
    expect(bad, JSON.stringify(bad.slice(0, 5))).toEqual([]);
    expect(rows.filter((r) => r.blind), JSON.stringify(rows.filter((r) => r.blind))).toEqual([]); // no entry code runs in the task's own run
    expect(rows.some((r) => r.cls === "WINDOW" && r.where.includes("bpf_prog_"))).toBe(true);
    expect(rows.filter((r) => r.cls === "EXACT").length).toBeGreaterThan(rows.length / 2);
  });

  // NMI inside an IRQ's entry code, its stack switch and its handler (classify.ts WindowOracle):
  // in the kernel's blind spots the FP walk from the NMI's regs may miss frames up to the rip
  // the IRQ interrupted (or stop, on the IRQ stack switch) — WINDOW; everywhere else EXACT.
  test.each(["baseline", "r9-private"])("%s: an NMI anywhere in an IRQ's handling: WINDOW exactly in frame windows and the kernel's blind spots", (name) => {
    const rows = sweep(name, irqPoint(name));
    const inEntry = rows.filter((r) => r.where.startsWith("asm_common_interrupt") || r.where.startsWith("irq_entry_"));
    expect(inEntry.length).toBeGreaterThan(30);
    const bad = rows.filter((r) => r.cls !== (r.inWindow || r.blind ? "WINDOW" : "EXACT"));
    expect(bad, JSON.stringify(bad)).toEqual([]);
    // the blind spots are the IRQ path's own code only; the IRQ's program and the runner are outside them
    const blindIn = new Set(rows.filter((r) => r.blind).map((r) => r.where.replace(/\+0x[0-9a-f]+$/, "")));
    const IRQ_PATH = ["asm_common_interrupt", "common_interrupt", "handle_irq", "irq_entry_32"];
    expect([...blindIn].sort()).toEqual(IRQ_PATH);
    // outside the IRQ path's own code (its program, the runner, the helpers) nothing is blind
    const outside = rows.filter((r) => !IRQ_PATH.includes(r.where.replace(/\+0x[0-9a-f]+$/, "")));
    expect(outside.length).toBeGreaterThan(40);
    expect(outside.filter((r) => r.blind)).toEqual([]);
    // CLEAR_REGS (7.2): between `xor ebp,ebp` and ENCODE_FRAME_POINTER rbp is 0, and the walk from those regs is regs->ip alone
    const cleared = rows.filter((r) => r.where.startsWith("asm_common_interrupt") && r.unwound === 1);
    expect(cleared.length).toBe(5);
    expect(cleared.every((r) => r.cls === "WINDOW")).toBe(true);
    expect(rows.some((r) => r.cls === "EXACT" && r.where.includes("bpf_prog_"))).toBe(true);
  });

  test.each([
    ["split-stack", "TRUNCATED"], ["full-private", "TRUNCATED"], ["split-double-frame", "TRUNCATED"],
    ["limited-recursion", "TRUNCATED"], ["rbp-private", "FLAGGED"],
  ] as const)("%s is caught: outside the windows the walk is %s (the model's finding, not the strategy's name)", (name, cls) => {
    // design (g) picks its level from prog->active, which the kprobe's runner never raises
    // (trace_call_bpf() takes bpf_prog_active): its outer program runs on a trampoline here
    const rows = sweep(name, undefined, name === "limited-recursion" ? { ...outer, type: "tracing" } : outer);
    // the kernel's blind spots are the kernel's: no entry code runs in the task's own run, and
    // a helper running with rsp on a private stack and rbp on the task stack is the design's doing
    expect(rows.filter((r) => r.blind), JSON.stringify(rows.filter((r) => r.blind).slice(0, 3))).toEqual([]);
    const outside = rows.filter((r) => !r.inWindow && r.cls !== "EXACT");
    expect(outside.length).toBeGreaterThan(0);
    expect(outside.some((r) => r.cls === cls)).toBe(true);
  });
});
