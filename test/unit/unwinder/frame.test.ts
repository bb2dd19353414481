// The frame-pointer unwinder, rule by rule on hand-built memory images, and whole walks on the
// real image compared with the machine's ground truth.
import { describe, expect, test } from "vitest";
import { alu64, call, exit, ldx, stx } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R2, R6, R7, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import {
  archStackWalk, frameUnwinder, frameUnwindStart, perfCallchainKernel, STACK_TYPE_NMI, STACK_TYPE_PRIVATE, unwindDone, type UnwindEnv, type Walk,
} from "../../../unwinder/index.ts";
import { envFromImage } from "../../../harness/unwind-env.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { strategy } from "../../helpers/strategies.ts";

/** What a walk that reached the task's user-mode pt_regs says about its end (not a kernel field: for reports). */
const COMPLETE = { why: "it reached the task's user-mode pt_regs (complete)" };

/** arch_stack_walk() of current from a running function whose frame pointer is `bp`. */
const stackWalk = (env: UnwindEnv, from: { bp: bigint }): Walk => archStackWalk(frameUnwinder(env), { kind: "current", ip: 0n, sp: from.bp, bp: from.bp });
/** perf_callchain_kernel() from hardware regs. */
const perfCallchain = (env: UnwindEnv, regs: bigint): Walk => perfCallchainKernel(frameUnwinder(env), regs);

// ---- a hand-built world: a task stack, an IRQ stack, an NMI stack, text at 0xffffffff81000000 ----
const TASK = 0xffffc90000010000n, TASK_END = TASK + 0x4000n, PT = TASK_END - 168n;
const IRQ_END = 0xffffc90000024000n, NMI = 0xffffc90000030000n;
const TEXT = 0xffffffff81000000n, ENTRY = 0xffffffff81800000n;

function world(words: [bigint, bigint][], extra: Partial<UnwindEnv["stacks"]> = {}): UnwindEnv {
  const mem = new Map(words);
  mem.set(PT + 136n, 0x33n); // the task's pt_regs: user mode
  return {
    mem: { read64: (a) => mem.get(a) ?? 0n },
    stacks: { task: { begin: TASK, end: TASK_END }, hardirqStackPtr: IRQ_END - 8n, irqStackSize: 0x4000, exception: [{ type: STACK_TYPE_NMI, begin: NMI, end: NMI + 0x1000n }], ...extra },
    taskPtRegs: PT,
    isKernelText: (a) => (a >= TEXT && a < TEXT + 0x10000n) || (a >= ENTRY && a < ENTRY + 0x1000n),
    inEntryCode: (a) => a >= ENTRY && a < ENTRY + 0x1000n,
    symbolize: (a) => a.toString(16),
  };
}
/** A chain of frames on the task stack ending in the last frame at PT - 16. */
const f1 = PT - 0x40n, f0 = PT - 0x80n;
const chain: [bigint, bigint][] = [
  [f0, f1], [f0 + 8n, TEXT + 0x10n],          // innermost frame: saved rbp, return address
  [f1, PT - 16n], [f1 + 8n, TEXT + 0x20n],
  [PT - 16n, 0n], [PT - 8n, ENTRY + 0x40n],    // do_syscall_64's frame: the last one
];

describe("unwind_frame.c rules on hand-built stacks", () => {
  test("from a running function's frame, the walk reaches the last task frame (task_pt_regs - 16)", () => {
    const w = stackWalk(world(chain), { bp: f0 });
    expect(w).toEqual({ ips: [TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n], error: false, reachedEnd: true, warnings: [], stopped: COMPLETE });
  });

  test("the skip loop: regs->sp on a stack get_stack_info() does not know gives an empty trace", () => {
    const regs = TASK + 0x1000n; // a pt_regs on the task stack, describing an interrupted context
    const env = world([...chain, [regs + 32n, f0], [regs + 128n, TEXT + 0x5n], [regs + 136n, 0x10n], [regs + 152n, 0xffff88807fc01000n]]);
    const w = perfCallchain(env, regs);
    expect(w.ips).toEqual([TEXT + 0x5n]); // regs->ip only: the skip loop consumed every frame
    expect(unwindDone(frameUnwindStart(env, { kind: "regs", regs }))).toBe(true);
  });

  test("from regs with regs->sp on the stack, the first reported frame is regs->bp's", () => {
    const regs = TASK + 0x1000n;
    const env = world([...chain, [regs + 32n, f0], [regs + 128n, TEXT + 0x5n], [regs + 136n, 0x10n], [regs + 152n, f0 - 8n]]);
    expect(perfCallchain(env, regs).ips).toEqual([TEXT + 0x5n, TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n]);
  });

  test("a registered private stack with a back-link: the walk hops to the task stack through next_sp; without one it stops", () => {
    const P = 0xffff88807fc01000n, top = P + 0x1000n, p0 = top - 0x40n;
    const words: [bigint, bigint][] = [...chain, [p0, f0], [p0 + 8n, TEXT + 0x30n], [top - 8n, f0 - 0x10n]]; // the top word: the old rsp
    const linked = world(words, { privateStacks: [{ begin: P, end: top, type: STACK_TYPE_PRIVATE, backLink: top - 8n }] });
    expect(stackWalk(linked, { bp: p0 }).ips).toEqual([TEXT + 0x30n, TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n]);
    const unlinked = stackWalk(world(words, { privateStacks: [{ begin: P, end: top, type: STACK_TYPE_PRIVATE }] }), { bp: p0 });
    expect(unlinked.ips).toEqual([TEXT + 0x30n]);
    expect(unlinked.error).toBe(true);
  });

  test("an encoded pt_regs frame (bit 0): the walk continues from the regs' ip and bp", () => {
    const regs = f0 - 0x100n; // pt_regs on the task stack, below the interrupted frames
    const handler = regs - 0x20n;
    const env = world([
      ...chain, [handler, regs | 1n], [handler + 8n, ENTRY + 0x10n], // C handler frame: saved rbp = encoded regs
      [regs + 32n, f0], [regs + 128n, TEXT + 0x7n], [regs + 136n, 0x10n], [regs + 152n, f0 - 8n],
    ]);
    expect(stackWalk(env, { bp: handler }).ips).toEqual([ENTRY + 0x10n, TEXT + 0x7n, TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n]);
  });

  test("an IRQ-stack frame hops to the task stack through the back-link at the top of the IRQ stack", () => {
    const onIrq = IRQ_END - 0x40n;
    const env = world([...chain, [onIrq, f0], [onIrq + 8n, TEXT + 0x30n], [IRQ_END - 8n, f0 - 0x10n]]);
    const w = stackWalk(env, { bp: onIrq });
    expect(w.ips).toEqual([TEXT + 0x30n, TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n]);
    expect(w.error).toBe(false);
  });

  test("a frame that does not go up the stack is the monotonic violation: error and the warning text", () => {
    const env = world([[f1, f0], [f1 + 8n, TEXT + 0x20n], [f0, f1], [f0 + 8n, TEXT + 0x10n]]);
    const w = stackWalk(env, { bp: f1 });
    expect(w.error).toBe(true);
    expect(w.ips).toEqual([TEXT + 0x20n]);
    expect(w.warnings).toEqual([`WARNING: kernel stack frame pointer at ${f1.toString(16).padStart(16, "0")} in stackcheck:1 has bad value ${f0.toString(16).padStart(16, "0")}`]);
  });

  test("visit_mask: next_sp links that lead back to a visited stack type are 'stack recursion on stack type'", () => {
    // NMI frame -> (NMI next_sp) IRQ stack -> (IRQ back-link) the NMI stack again
    const n = NMI + 0x800n, i = IRQ_END - 0x80n;
    const env = world([
      [n, i], [n + 8n, TEXT + 1n], [NMI + 0x1000n - 16n, IRQ_END - 0x100n], // the NMI's saved regs->sp
      [i, f0], [i + 8n, TEXT + 2n], [IRQ_END - 8n, NMI + 0x900n],          // the IRQ stack's back-link
    ]);
    const w = stackWalk(env, { bp: n });
    expect(w.error).toBe(true);
    expect(w.ips).toEqual([TEXT + 1n, TEXT + 2n]);
    expect(w.warnings[0]).toBe(`WARNING: stack recursion on stack type ${STACK_TYPE_NMI}`);
  });

  test("a task-stack frame linking back into the IRQ stack fails on the task stack's NULL next_sp", () => {
    const a = IRQ_END - 0x40n, b = IRQ_END - 0x80n;
    const env = world([[a, f0], [a + 8n, TEXT + 1n], [IRQ_END - 8n, f0 - 8n], [f0, b], [f0 + 8n, TEXT + 2n], [b, 0n], [b + 8n, TEXT + 3n]]);
    const w = stackWalk(env, { bp: a });
    expect(w.error).toBe(true);
    expect(w.warnings).toEqual([`WARNING: kernel stack frame pointer at ${f0.toString(16).padStart(16, "0")} in stackcheck:1 has bad value ${b.toString(16).padStart(16, "0")}`]);
  });

  test("a bad frame pointer in a regs frame names the regs; lost in entry code is silent", () => {
    const regs = TASK + 0x1000n;
    const env = world([[regs + 32n, 0x1234n], [regs + 128n, TEXT + 0x5n], [regs + 136n, 0x10n], [regs + 152n, regs + 168n]]);
    const handler = regs - 0x20n;
    const env2 = world([[handler, regs | 1n], [handler + 8n, TEXT + 0x9n], [regs + 32n, 0x1234n], [regs + 128n, TEXT + 0x5n], [regs + 136n, 0x10n], [regs + 152n, regs + 168n]]);
    expect(stackWalk(env2, { bp: handler }).warnings[0]).toMatch(/^WARNING: kernel stack regs at ffffc90000011000 in stackcheck:1 has bad 'bp' value 0000000000001234$/);
    const lost = world([[handler, regs | 1n], [handler + 8n, TEXT + 0x9n], [regs + 32n, 0x1234n], [regs + 128n, ENTRY + 0x5n], [regs + 136n, 0x10n], [regs + 152n, regs + 168n]]);
    const w = stackWalk(lost, { bp: handler });
    expect(w.error).toBe(true);
    expect(w.warnings).toEqual([]);
    void env;
  });
});

// ---- the real image ----
const sampler = program({ name: "sampler", type: "kprobe", funcs: [{ name: "main", stackDepth: 64, body: [
  alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8),
  alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 5), call.helper(2),
  alu64.mov.reg(R7, R0), call.helper(3),
  ldx(BPF_DW, R0, R10, -8), alu64.add.reg(R0, R7), exit(),
] }] });
const leaf = program({ name: "leaf", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 1), exit()] }] });
const returnAddresses = (t: ReturnType<import("../../../harness/machine/index.ts").Machine["truth"]>) =>
  t.filter((e) => e.kind === "frame").map((e) => (e.kind === "frame" ? e.returnAddress! : 0n));

describe("private stacks as the unwinder knows them (--private-stacks)", () => {
  const stacks = (name: string, knowledge: "per-type" | "per-instance") => {
    const img = buildImage({ programs: [sampler], task: 0 }, strategy(name));
    return envFromImage(img, loadImage(img), knowledge).stacks.privateStacks ?? [];
  };
  test("a back-link only where the design keeps one (full-private's pushed rsp); none for the others", () => {
    for (const s of BUILTIN_STRATEGIES) {
      const defs = stacks(s.name, "per-type");
      const declared = s.name === "full-private"; // the only built-in whose request names a back-link word
      expect(defs.every((d) => (d.backLink !== undefined) === declared)).toBe(true);
    }
    const [full] = stacks("full-private", "per-type");
    expect(full!.backLink).toBe(full!.end - 16n); // below the top guard: the word `push r10` stored
  });

  test("a per-level slot design registers one stack per slot: per type they share one type, per instance each has its own", () => {
    const perType = stacks("limited-recursion", "per-type"), perInstance = stacks("limited-recursion", "per-instance");
    expect(perType.map((d) => Number(d.end - d.begin))).toEqual([0x4000, 0x4000, 0x4000, 0x4000]);
    expect(new Set(perType.map((d) => d.type))).toEqual(new Set([STACK_TYPE_PRIVATE]));
    expect(perInstance.map((d) => d.type)).toEqual([0, 1, 2, 3].map((k) => STACK_TYPE_PRIVATE + k));
    for (let k = 1; k < 4; k++) expect(perInstance[k]!.begin).toBe(perInstance[k - 1]!.end);
  });
});

describe("walks on the real image against the ground truth", () => {
  test.each(["baseline", "r9-private"])("%s: bpf_get_stack-style from the helper gives exactly the true chain", (name) => {
    const img = buildImage({ programs: [sampler], task: 0 }, strategy(name));
    const m = loadImage(img);
    const env = envFromImage(img, m);
    let walk, truth;
    m.addHook(img.kernel.addr("bpf_sc_get_stack_sample"), (mm) => { walk = stackWalk(env, { bp: mm.reg("rbp") }); truth = returnAddresses(mm.truth()); });
    startTask(img, m);
    expect(m.run().kind).toBe("completed");
    expect(walk).toEqual({ ips: truth, error: false, reachedEnd: true, warnings: [], stopped: COMPLETE });
  });

  test("split-stack: from the helper, bp is on the private stack, which get_stack_info() does not know: an empty trace", () => {
    const img = buildImage({ programs: [sampler], task: 0 }, strategy("split-stack"));
    const m = loadImage(img);
    let walk;
    m.addHook(img.kernel.addr("bpf_sc_get_stack_sample"), (mm) => { walk = stackWalk(envFromImage(img, mm), { bp: mm.reg("rbp") }); });
    startTask(img, m);
    m.run();
    expect(walk).toMatchObject({ ips: [], reachedEnd: false, stopped: { why: expect.stringMatching(/^the first frame pointer \([0-9a-f]{16}\) is on no stack get_stack_info\(\) knows$/) } });
  });

  test("baseline: an IRQ in a BPF program; from handle_irq the walk crosses the IRQ stack, the encoded pt_regs and reaches the end", () => {
    const img = buildImage({ programs: [sampler, leaf], task: 0, irq: [{ vector: 0xec, program: 1 }] }, strategy("baseline"));
    const m = loadImage(img);
    let walk, truth;
    let raised = false;
    m.addHook(img.programs[0]!.jit.funcs[0]!.insnAddrs[4]!, (mm) => { if (!raised) { raised = true; mm.raise(0xec); } });
    m.addHook(img.kernel.addr("irq_sample"), (mm) => { walk = stackWalk(envFromImage(img, mm), { bp: mm.reg("rbp") }); truth = returnAddresses(mm.truth()); });
    startTask(img, m);
    expect(m.run().kind).toBe("completed");
    expect(walk).toEqual({ ips: truth, error: false, reachedEnd: true, warnings: [], stopped: COMPLETE });
  });
});
