// The frame-pointer window comes from where the JIT says a function's frame is built
// (frameReady()/frameGone()) and from the machine's rbp, never from the opcodes a design happens
// to use: a design that builds its frame with another instruction has the baseline's window, and
// a design whose body runs on its caller's rbp gets no window for it, wherever a `mov rbp,rsp` sits.
import { describe, expect, test, vi } from "vitest";
import { alu64, call, exit, stx } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R1, R2, R3, R4, R5, R6, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { buildImage } from "../../../jit/image.ts";
import { pushCalleeRegs, standardPrologue } from "../../../jit/prologue.ts";
import type { X86Reg } from "../../../jit/x86/emit.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { frameUnwinder, perfCallchainKernel } from "../../../unwinder/index.ts";
import { allowances, classify, expectedChain, type StackClass } from "../../../harness/oracles/classify.ts";
import { frameWindows } from "../../../harness/oracles/window.ts";
import { loadImage } from "../../../harness/load.ts";
import { straightRun } from "../../helpers/sweep.ts";

const baseline = BUILTIN_STRATEGIES.find((s) => s.name === "baseline")!;
const mixArgs = [alu64.mov.imm(R1, 1), alu64.mov.imm(R2, 2), alu64.mov.imm(R3, 3), alu64.mov.imm(R4, 4), alu64.mov.imm(R5, 5)];
/** With a stack (for the sound designs) and without (a design that never points rbp at its own frame must not touch it). */
const withStack = program({ name: "p", type: "kprobe", funcs: [
  { name: "main", stackDepth: 16, body: [alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8), ...mixArgs, call.helper(1), ...mixArgs, call.helper(1), exit()] },
] });
const leaf = program({ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [...mixArgs, call.helper(1), ...mixArgs, call.helper(1), exit()] }] });

/** The upstream prologue with `lea rbp,[rsp]` for `mov rbp,rsp`: the same frame, another opcode. */
const leaFrame: Strategy = {
  ...baseline, name: "lea-frame",
  prologue: (e, f) => standardPrologue(new Proxy(e, {
    get: (t, k) => k === "movRR" ? (d: X86Reg, r: X86Reg) => (d === "rbp" && r === "rsp" ? t.lea(d, r, 0) : t.movRR(d, r)) : (t as never)[k],
  }), f, f.stackDepth),
};

/** Broken: declares its frame ready after `push rbp` but leaves rbp the caller's until its epilogue's `mov rbp,rsp`. */
const lateFrame: Strategy = {
  ...baseline, name: "late-frame",
  prologue: (e, f) => { if (f.opts.ibt) e.endbr64(); e.nop5(); e.nop3(); e.push("rbp"); e.label("tail_call_offset"); e.frameReady(); pushCalleeRegs(e, f.calleeSaved); },
  epilogue: (e, f) => { for (const r of [...f.calleeSaved].reverse()) e.pop(r); e.movRR("rbp", "rsp"); e.leave(); e.frameGone(); e.ret(); },
};

/** An NMI at every boundary of the task's run: the class of the frame unwinder's perf walk from its regs, and where; the main function's frame marks. */
function sweep(s: Strategy, p: typeof leaf): { rows: { cls: StackClass; bpf: boolean; ip: bigint }[]; frame: { ready: bigint; gone: bigint } } {
  const { img, m, env, windows, base, straight } = straightRun({ programs: [p], task: 0 }, s);
  let row: { cls: StackClass; bpf: boolean; ip: bigint } | undefined;
  m.addHook(img.kernel.addr("nmi_sample"), (mm) => {
    const truth = mm.truth();
    const k = truth.findIndex((t) => t.kind === "interrupt");
    const ip = (truth[k] as { ip: bigint }).ip;
    const c = classify(expectedChain(truth, k), perfCallchainKernel(frameUnwinder(env), mm.reg("rdi")), allowances(truth, k, windows));
    row = { cls: c.class, bpf: mm.symbols.lookup(ip)?.kind === "bpf", ip };
  });
  const rows = [];
  for (let i = 0; i < straight.steps; i++) {
    m.restore(base);
    m.runUntil(i);
    m.raise(2);
    row = undefined;
    expect(m.run()).toMatchObject({ kind: "completed", rax: straight.rax });
    rows.push(row!);
  }
  return { rows, frame: img.programs[0]!.jit.funcs[0]!.frame };
}

describe("the frame-pointer window is the machine's, not the opcodes'", () => {
  test("a frame built with `lea rbp,[rsp]` gets the baseline's classes at every boundary (WINDOW before it, EXACT after)", () => {
    const lea = sweep(leaFrame, withStack).rows, base = sweep(baseline, withStack).rows;
    expect(lea.map((r) => r.cls)).toEqual(base.map((r) => r.cls));
    expect(lea.filter((r) => r.bpf && r.cls === "WINDOW").length).toBeGreaterThanOrEqual(3); // entry, nops, push, lea
    expect(lea.every((r) => r.cls === "EXACT" || r.cls === "WINDOW")).toBe(true);
  });

  test("a body run on the caller's rbp is caught at every BPF boundary from the declared frame to the epilogue's `mov rbp,rsp`", () => {
    const { rows, frame } = sweep(lateFrame, leaf);
    // the epilogue: `mov rbp,rsp` (3 bytes), `leave` (1), then frameGone()
    const movRbp = frame.gone - 4n;
    const body = rows.filter((r) => r.bpf && r.ip >= frame.ready && r.ip <= movRbp);
    expect(body.length).toBeGreaterThanOrEqual(2 * mixArgs.length); // the argument moves, the helper calls' returns
    expect(new Set(body.map((r) => r.cls))).toEqual(new Set(["WRONG"])); // the walk skips the runner
    // elsewhere in BPF code (the declared window, after the epilogue's `mov rbp,rsp`): EXACT or
    // WINDOW; the helpers it calls lose the runner too
    const rest = rows.filter((r) => !body.includes(r) && r.cls !== "EXACT" && r.cls !== "WINDOW");
    expect(rest.length).toBeGreaterThan(0);
    expect(rest.filter((r) => r.bpf || r.cls !== "WRONG")).toEqual([]);
  });

  test("a kernel function's facts are read once per kernel, a BPF function's once per image", () => {
    // two images of one kernel (the same vectors, no tasks), each on a machine of its own
    const a = buildImage({ programs: [withStack], task: 0 }, baseline), b = buildImage({ programs: [leaf], task: 0 }, baseline);
    expect(b.kernel).toBe(a.kernel);
    const [ma, mb] = [loadImage(a), loadImage(b)];
    const peeks = (m: ReturnType<typeof loadImage>) => vi.spyOn(m.memory, "peek");
    const kernelIp = a.kernel.addr("do_syscall_64") + 1n, bpfIp = (img: typeof a) => img.programs[0]!.jit.funcs[0]!.image.base;
    const wa = frameWindows(a, ma), wb = frameWindows(b, mb);
    const asked = [wa.inWindow(kernelIp), wa.inWindow(bpfIp(a))]; // (a read the kernel's, unless an earlier test did)
    const pb = peeks(mb);
    try {
      expect([wb.inWindow(kernelIp), wb.inWindow(bpfIp(b))]).toEqual(asked);
      expect(pb).toHaveBeenCalledTimes(1); // only its own BPF function's bytes: the kernel's facts are there already
      expect(pb.mock.calls[0]![0]).toBe(Number(BigInt.asIntN(64, bpfIp(b))));
    } finally {
      pb.mockRestore();
    }
  });

  test("inside the declared window only while rbp is the entry rbp", () => {
    const img = buildImage({ programs: [withStack], task: 0 }, baseline);
    const windows = frameWindows(img, loadImage(img));
    const f = img.programs[0]!.jit.funcs[0]!;
    expect(windows.inWindow(f.image.base)).toBe(true);
    expect(windows.inWindow(f.image.base, { now: 0x1000n, entry: 0x1000n })).toBe(true);
    expect(windows.inWindow(f.image.base, { now: 0x1000n, entry: 0x2000n })).toBe(false);
    expect(windows.inWindow(f.frame.ready)).toBe(false);
    expect(windows.inWindow(f.frame.gone)).toBe(true); // the `ret` after `leave`
  });
});
