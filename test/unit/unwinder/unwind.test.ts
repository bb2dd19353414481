// The one unwinder interface (unwinder/unwind.ts, asm/unwind.h): both unwinders behind it, the
// walks built on it (arch_stack_walk, arch_stack_walk_reliable, perf_callchain_kernel), the
// start from a blocked task's switch frame, and the two corrections to the frame unwinder
// (the warning text chosen by state->regs; is_last_ftrace_frame()'s content checks).
import { describe, expect, test } from "vitest";
import {
  archStackWalk, archStackWalkReliable, bpfHasFramePointer, frameUnwinder, KLP_MAX_STACK_ENTRIES, OrcTable, orcUnwinder, perfCallchainKernel, STACK_TYPE_NMI,
  type BpfKsym, type OrcEntry, type TaskView, type UnwindEnv, type Unwinder,
} from "../../../unwinder/index.ts";
import { PT_REGS } from "../../../arch/ptrace.ts";

/** What a walk that reached the task's user-mode pt_regs says about its end (not a kernel field: for reports). */
const COMPLETE = { why: "it reached the task's user-mode pt_regs (complete)" };

// ---- a hand-built world: a task stack, an IRQ and an NMI stack, text at 0xffffffff81000000 ----
const TASK = 0xffffc90000010000n, TASK_END = TASK + 0x4000n, PT = TASK_END - 168n;
const IRQ_END = 0xffffc90000024000n, NMI = 0xffffc90000030000n;
const TEXT = 0xffffffff81000000n, ENTRY = 0xffffffff81800000n;
const hex = (v: bigint) => v.toString(16).padStart(16, "0");

function world(words: [bigint, bigint][], ptRegs = PT): UnwindEnv {
  const mem = new Map(words);
  mem.set(ptRegs + BigInt(PT_REGS.cs), 0x33n); // the task's pt_regs: user mode
  return {
    mem: { read64: (a) => mem.get(a) ?? 0n },
    stacks: { task: { begin: TASK, end: TASK_END }, hardirqStackPtr: IRQ_END - 8n, irqStackSize: 0x4000, exception: [{ type: STACK_TYPE_NMI, begin: NMI, end: NMI + 0x1000n }] },
    taskPtRegs: ptRegs,
    isKernelText: (a) => (a >= TEXT && a < TEXT + 0x10000n) || (a >= ENTRY && a < ENTRY + 0x1000n),
    inEntryCode: (a) => a >= ENTRY && a < ENTRY + 0x1000n,
    symbolize: (a) => a.toString(16),
  };
}

/** vmlinux ORC for the hand-built text: every function has a frame pointer at its call sites. */
const bpFrames: OrcEntry = { type: "CALL", spReg: "BP", spOffset: 16, bpReg: "PREV_SP", bpOffset: -16, signal: false };
function orcFor(env: UnwindEnv, version: "orc-6.13" | "orc-6.19" = "orc-6.19"): Unwinder {
  const table = new OrcTable(TEXT, TEXT + 0x10000n);
  table.add(TEXT, bpFrames);
  return orcUnwinder(env, { version, kernel: table, bpfKsyms: [] });
}

const f1 = PT - 0x40n, f0 = PT - 0x80n;
const chain: [bigint, bigint][] = [
  [f0, f1], [f0 + 8n, TEXT + 0x10n],
  [f1, PT - 16n], [f1 + 8n, TEXT + 0x20n],
  [PT - 16n, 0n], [PT - 8n, ENTRY + 0x40n], // do_syscall_64's frame: the last one
];

describe("one interface, two unwinders", () => {
  test("arch_stack_walk from a running function: frame and ORC give the same chain", () => {
    const env = world(chain);
    const from = { kind: "current", ip: TEXT + 0x100n, sp: f0 - 0x20n, bp: f0 } as const;
    const fp = archStackWalk(frameUnwinder(env), from);
    expect(fp).toEqual({ ips: [TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n], error: false, reachedEnd: true, warnings: [], stopped: COMPLETE });
    // ORC starts at the running function's own ip and skips ahead to the frame above first_frame (bp)
    expect(archStackWalk(orcFor(env), from).ips.slice(0, 2)).toEqual([TEXT + 0x10n, TEXT + 0x20n]);
  });

  test("a first_frame of 0 is the default (first_frame ?: get_stack_pointer()), under both unwinders", () => {
    const env = world(chain);
    const from = { kind: "current", ip: TEXT + 0x100n, sp: f0 - 0x20n, bp: f0 } as const;
    for (const u of [frameUnwinder(env), orcFor(env)]) expect(archStackWalk(u, { ...from, firstFrame: 0n })).toEqual(archStackWalk(u, from));
  });

  test("arch_stack_walk keeps going after an ORC error (code without ORC data: the frame-pointer guess); the reliable walk stops", () => {
    const BPF = 0xffffffffa0000000n; // not in the ORC table: orc_fp_entry, error set
    const words: [bigint, bigint][] = [[f0, f1], [f0 + 8n, BPF + 0x10n], [f1, PT - 16n], [f1 + 8n, TEXT + 0x20n], [PT - 16n, 0n], [PT - 8n, ENTRY + 0x40n]];
    const env = { ...world(words), isKernelText: (a: bigint) => (a >= TEXT && a < TEXT + 0x10000n) || (a >= BPF && a < BPF + 0x1000n) || (a >= ENTRY && a < ENTRY + 0x1000n) };
    const u = orcFor(env, "orc-6.13");
    const from = { kind: "current", ip: TEXT + 0x100n, sp: f0 - 0x20n, bp: f0 } as const;
    const walk = archStackWalk(u, from);
    expect(walk.error).toBe(true);
    expect(walk.ips.slice(0, 2)).toEqual([BPF + 0x10n, TEXT + 0x20n]); // past the guess
    const reliable = archStackWalkReliable(u, from, false);
    expect(reliable).toMatchObject({ ok: false, why: "unwinder error", ips: [BPF + 0x10n] });
  });

  test("the reliable walk: with frame pointers, kernel-mode regs on the stack fail it; user-mode regs end it", () => {
    const regs = f0 - 0x100n, handler = regs - 0x20n;
    const env = world([
      ...chain, [handler, regs | 1n], [handler + 8n, ENTRY + 0x10n],
      [regs + 32n, f0], [regs + 128n, TEXT + 0x7n], [regs + 136n, 0x10n], [regs + 152n, f0 - 8n],
    ]);
    const from = { kind: "current", ip: ENTRY + 0x20n, sp: handler, bp: handler } as const;
    expect(archStackWalkReliable(frameUnwinder(env), from, true)).toMatchObject({ ok: false, why: "kernel regs (frame pointers)" });
    expect(archStackWalkReliable(frameUnwinder(world(chain)), { kind: "current", ip: 0n, sp: f0, bp: f0 }, true)).toMatchObject({ ok: true, ips: [TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n] });
  });
});

describe("the reliable walk's buffer (livepatch's MAX_STACK_ENTRIES)", () => {
  /** A frame-pointer chain of `n` return addresses ending at do_syscall_64's frame below pt_regs. */
  const deep = (n: number): { env: UnwindEnv; from: { kind: "current"; ip: bigint; sp: bigint; bp: bigint }; ips: bigint[] } => {
    const frames = Array.from({ length: n }, (_, k) => PT - 16n - 16n * BigInt(n - 1 - k)); // innermost first
    const words: [bigint, bigint][] = [];
    const ips = frames.map((_, k) => (k === n - 1 ? ENTRY + 0x40n : TEXT + 0x10n + BigInt(k)));
    frames.forEach((f, k) => { words.push([f, k === n - 1 ? 0n : frames[k + 1]!], [f + 8n, ips[k]!]); });
    return { env: world(words), from: { kind: "current", ip: 0n, sp: frames[0]!, bp: frames[0]! }, ips };
  };

  test("stack_trace_consume_entry() refuses the entry that fills it: 99 return addresses are reliable, 100 are -EINVAL", () => {
    // (the buffer is the walk's, the same over either unwinder; this hand-built world has ORC data for TEXT only)
    for (const u of [(e: UnwindEnv) => frameUnwinder(e)]) {
      const fits = deep(KLP_MAX_STACK_ENTRIES - 1);
      expect(archStackWalkReliable(u(fits.env), fits.from, false)).toMatchObject({ ok: true, ips: fits.ips });
      const full = deep(KLP_MAX_STACK_ENTRIES);
      const r = archStackWalkReliable(u(full.env), full.from, false);
      expect(r).toMatchObject({ ok: false, why: "buffer full", ips: full.ips });
      expect(r.stopped.why).toBe("the caller's buffer of 100 entries is full (stack_trace_consume_entry())");
      // arch_stack_walk() itself has no buffer: the whole chain
      expect(archStackWalk(u(full.env), full.from).ips).toEqual(full.ips);
    }
  });
});

describe("a task that is not running, from its switch frame (task->thread.sp)", () => {
  // struct inactive_task_frame at thread.sp: r15 r14 r13 r12 bx, bp at +40, ret_addr at +48
  const threadSp = f0 - 0x80n;
  const task: TaskView = { stack: { begin: TASK, end: TASK_END }, threadSp, ptRegs: PT };
  const words: [bigint, bigint][] = [...chain, [threadSp + 40n, f0], [threadSp + 48n, TEXT + 0x50n]];

  test("frame (bp = thread.sp + 40) and ORC (sp = thread.sp + 56, bp and ip from the frame) walk it alike", () => {
    const env = world(words);
    const want = [TEXT + 0x50n, TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n];
    expect(archStackWalk(frameUnwinder(env), { kind: "task", task })).toEqual({ ips: want, error: false, reachedEnd: true, warnings: [], stopped: COMPLETE });
    expect(archStackWalk(orcFor(env), { kind: "task", task }).ips.slice(0, 3)).toEqual(want.slice(0, 3));
  });

  test("its own task_pt_regs() ends the walk, not current's: a task on another stack reaches its last frame", () => {
    const TASK2 = 0xffffc90000040000n, PT2 = TASK2 + 0x4000n - 168n, g1 = PT2 - 0x40n, g0 = PT2 - 0x80n, sp2 = g0 - 0x80n;
    const other: TaskView = { stack: { begin: TASK2, end: TASK2 + 0x4000n }, threadSp: sp2, ptRegs: PT2 };
    const env = world([
      [sp2 + 40n, g0], [sp2 + 48n, TEXT + 0x50n], [g0, g1], [g0 + 8n, TEXT + 0x10n], [g1, PT2 - 16n], [g1 + 8n, TEXT + 0x20n],
      [PT2 - 16n, 0n], [PT2 - 8n, ENTRY + 0x40n], [PT2 + BigInt(PT_REGS.cs), 0x33n],
    ]); // (current's task_pt_regs is PT, on the first task stack)
    expect(archStackWalk(frameUnwinder(env), { kind: "task", task: other })).toEqual({ ips: [TEXT + 0x50n, TEXT + 0x10n, TEXT + 0x20n, ENTRY + 0x40n], error: false, reachedEnd: true, warnings: [], stopped: COMPLETE });
    expect(archStackWalkReliable(frameUnwinder(env), { kind: "task", task: other }, true)).toMatchObject({ ok: true });
  });

  test("only its task stack is known, and a bad frame pointer ends the walk silently (it may be running elsewhere)", () => {
    const bad: [bigint, bigint][] = [[threadSp + 40n, f0], [threadSp + 48n, TEXT + 0x50n], [f0, IRQ_END - 0x40n], [f0 + 8n, TEXT + 0x10n]];
    const w = archStackWalk(frameUnwinder(world(bad)), { kind: "task", task });
    expect(w).toMatchObject({ ips: [TEXT + 0x50n, TEXT + 0x10n], error: true, warnings: [] });
  });
});

describe("unwind_frame.c corrections", () => {
  test("the warning text follows state->regs: a walk started from regs that fails on a plain frame names the frame pointer", () => {
    // regs -> bp = f0 (a plain frame) whose saved rbp is garbage
    const regs = TASK + 0x1000n;
    const env = world([[regs + 32n, f0], [regs + 128n, TEXT + 0x5n], [regs + 136n, 0x10n], [regs + 152n, f0 - 8n], [f0, 0x1234n], [f0 + 8n, TEXT + 0x10n]]);
    const w = perfCallchainKernel(frameUnwinder(env), regs);
    expect(w.ips).toEqual([TEXT + 0x5n, TEXT + 0x10n]);
    expect(w.warnings).toEqual([`WARNING: kernel stack frame pointer at ${hex(f0)} in stackcheck:1 has bad value ${hex(0x1234n)}`]);
  });

  test("is_last_ftrace_frame(): bp = last_frame - 3 words is the last frame only when its words are an ftrace frame's", () => {
    // an ftrace handler of a function entry code called: bp, parent ret, bp, function ret, parent ret, pt_regs
    const bp = PT - 16n - 24n, parentRet = ENTRY + 0x40n, fnRet = TEXT + 0x60n;
    const ftrace: [bigint, bigint][] = [[f0, bp], [f0 + 8n, TEXT + 0x10n], [bp, 0n], [bp + 8n, parentRet], [bp + 16n, 0n], [bp + 24n, fnRet], [bp + 32n, parentRet]];
    const at = { kind: "current", ip: 0n, sp: f0, bp: f0 } as const;
    expect(archStackWalk(frameUnwinder(world(ftrace)), at)).toMatchObject({ ips: [TEXT + 0x10n, parentRet], reachedEnd: true, error: false });
    // the same address with other contents is an ordinary frame: the walk follows its saved rbp (0: off every stack)
    const other: [bigint, bigint][] = ftrace.map(([a, v]) => [a, a === bp + 32n ? TEXT + 0x70n : v]);
    const w = archStackWalk(frameUnwinder(world(other)), at);
    expect(w.reachedEnd).toBe(false);
    expect(w.error).toBe(true);
  });

  test("is_last_aligned_frame(): bp = last_frame - GCC_REALIGN_WORDS is the last frame only when its return address is last_frame's", () => {
    // gcc realigned do_syscall_64's stack and pushed a copy of the return address: bp one word
    // below last_frame, the same return address above it as above last_frame
    const bp = PT - 16n - 8n, ret = ENTRY + 0x40n;
    const aligned: [bigint, bigint][] = [[f0, bp], [f0 + 8n, TEXT + 0x10n], [bp, 0n], [bp + 8n, ret], [PT - 8n, ret]];
    const at = { kind: "current", ip: 0n, sp: f0, bp: f0 } as const;
    expect(archStackWalk(frameUnwinder(world(aligned)), at)).toMatchObject({ ips: [TEXT + 0x10n, ret], reachedEnd: true, error: false });
    // another return address above last_frame: an ordinary frame, whose saved rbp (0) is on no stack
    const other: [bigint, bigint][] = aligned.map(([a, v]) => [a, a === PT - 8n ? TEXT + 0x70n : v]);
    const w = archStackWalk(frameUnwinder(world(other)), at);
    expect(w.reachedEnd).toBe(false);
    expect(w.error).toBe(true);
  });
});

describe("bpf_has_frame_pointer() (kernel/bpf/core.c, 7.2)", () => {
  const BPF = 0xffffffffa0000000n;
  const ksym = (fpStart: number, fpEnd: number): BpfKsym => ({ start: BPF, end: BPF + 0x40n, fpStart, fpEnd });
  test("inside [fp_start, fp_end) of the ip's ksym only, and never with a zero bound", () => {
    expect(bpfHasFramePointer([ksym(0x14, 0x30)], BPF + 0x14n)).toBe(true);
    expect(bpfHasFramePointer([ksym(0x14, 0x30)], BPF + 0x30n)).toBe(false);
    expect(bpfHasFramePointer([ksym(0x14, 0x30)], BPF + 0x13n)).toBe(false);
    expect(bpfHasFramePointer([ksym(0, 0x30)], BPF + 0x14n)).toBe(false);
    expect(bpfHasFramePointer([ksym(0x14, 0x1)], BPF + 0x14n)).toBe(false); // 7.2's literal values: empty
  });

  test("orc-6.19 takes the frame-pointer step without the error inside a window, with it outside", () => {
    const words: [bigint, bigint][] = [[f0, f1], [f0 + 8n, BPF + 0x20n], [f1, PT - 16n], [f1 + 8n, TEXT + 0x20n], [PT - 16n, 0n], [PT - 8n, ENTRY + 0x40n]];
    const env = { ...world(words), isKernelText: (a: bigint) => (a >= TEXT && a < TEXT + 0x10000n) || (a >= BPF && a < BPF + 0x40n) || (a >= ENTRY && a < ENTRY + 0x1000n) };
    const table = new OrcTable(TEXT, ENTRY + 0x1000n); // the entry code ends the stack (UNWIND_HINT_END_OF_STACK)
    table.add(TEXT, bpFrames);
    table.add(ENTRY, { type: "END_OF_STACK", spReg: "UNDEFINED", spOffset: 0, bpReg: "UNDEFINED", bpOffset: 0, signal: false });
    const from = { kind: "current", ip: TEXT + 0x100n, sp: f0 - 0x20n, bp: f0 } as const;
    const walk = (k: BpfKsym) => archStackWalk(orcUnwinder(env, { version: "orc-6.19", kernel: table, bpfKsyms: [k] }), from);
    expect(walk(ksym(0x14, 0x30)).error).toBe(false); // the return address BPF+0x20 (looked up at +0x1f) is inside
    expect(walk(ksym(0x14, 0x1)).error).toBe(true);
  });
});
