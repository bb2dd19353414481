// Where a stack walk that a BPF program asks for starts, by the program's type, as 7.2 has it.
// bpf_get_stack() (kernel/bpf/stackmap.c __bpf_get_stack() -> get_perf_callchain() ->
// perf_callchain_kernel(), arch/x86/events/core.c) walks from the regs its proto gives
// (kernel/trace/bpf_trace.c, 7.2):
//   - raw_tp and tracing: bpf_get_stack_raw_tp() fills regs with perf_fetch_caller_regs() in the
//     helper: no X86_EFLAGS_FIXED, so the walk starts at the helper's own frame (first_frame);
//     the program's frames are in it;
//   - tracepoint: bpf_get_stack_tp() takes the regs perf_trace_<event> filled with
//     perf_fetch_caller_regs(): the walk starts at the helper's frame too, but skips every frame
//     up to the tracepoint's (first_frame = its frame): it must chain through the program's
//     frames, and reports only what is above them;
//   - kprobe: the ctx is the probe's pt_regs (the int3 trap's, X86_EFLAGS_FIXED): regs->ip, then
//     the walk from those regs, the probed context's frames only. Through a uprobe the ctx is
//     the task's user-mode pt_regs, and get_perf_callchain() (kernel/events/callchain.c) walks
//     no kernel stack for them (`if (kernel && !user_mode(regs))`): bpf_get_stack() returns no
//     entries, a walk of nothing;
//   - perf_event: bpf_get_stack_proto_pe() walks from the sampled regs: the perf NMI's pt_regs;
//   - struct_ops programs cannot call bpf_get_stack() (their protos come from
//     bpf_base_func_proto()); the kernel functions they call that dump a stack
//     (stack_trace_save(): sched_ext's error exit) walk from their own frame, like raw_tp.
// In the synthetic kernel a program runs from bpf_sc_run, which its trigger calls: that call
// stands for the tracepoint (its caller's frame is perf_trace_<event>'s) and for the kprobe
// (probed at the runner's first instruction, before its frame exists).
import { PT_REGS, PT_REGS_SIZE } from "../arch/ptrace.ts";
import { attachOf } from "../jit/bpf/program.ts";
import type { Machine, TruthEntry } from "./machine/index.ts";
import type { Image } from "../jit/image.ts";
import { archStackWalk, perfCallchainKernel, type Unwinder, type Walk } from "../unwinder/index.ts";
import { allowances, expectedChain, type Allowance, type WindowOracle } from "./oracles/classify.ts";

/** A walk a program asked for, with what a correct walk gives and may miss. */
export interface GetStackSample {
  /** How the walk was started, for reports. */
  readonly how: string;
  readonly walk: Walk;
  readonly expected: readonly bigint[];
  /** What a correct walk may miss: worked out when asked, which classify() does only for a walk that is not plainly EXACT (in the hook that took the sample: the machine as it was). */
  readonly allow: () => readonly Allowance[];
}

/** A pt_regs the kernel would have built (the probe's): where unwinders read it from (off every stack). */
const CTX_REGS = 0xffffffffff600000n;
const KERNEL_CS = 0x10n, X86_EFLAGS_FIXED_IF = 0x202n;

/**
 * The sample taken in the sampling helper (bpf_sc_get_stack), for the innermost running program:
 * `attachment`, the runner's table index of that run, when the image has a program attached twice
 * (whose code says only which program runs, not through which path); else found by its code.
 */
export function getStackSample(img: Image, m: Machine, truth: readonly TruthEntry[], unwinder: Unwinder, windows: WindowOracle, attachment?: number): GetStackSample {
  const runnerEntry = img.kernel.addr("bpf_sc_run");
  const r = truth.findIndex((t) => t.kind === "frame" && t.entry === runnerEntry);
  const main = truth[r - 1];
  const program = main?.kind !== "frame" ? undefined : attachment !== undefined ? img.programs[attachment] : img.programs.find((p) => p.jit.funcs[0]!.image.base === main.entry);
  const runner = truth[r];
  const here = { kind: "current", ip: m.rip, sp: m.reg("rsp"), bp: m.reg("rbp") } as const;
  const fromHelper = (how: string): GetStackSample => ({ how, walk: archStackWalk(unwinder, here), expected: expectedChain(truth, 0), allow: () => allowances(truth, 0, windows) });
  if (r <= 0 || program === undefined || runner?.kind !== "frame" || runner.slot === undefined) return fromHelper("from the helper");
  switch (program.program.type) {
    case "raw_tp": case "tracing": return fromHelper("from the helper (perf_fetch_caller_regs)");
    case "struct_ops": return fromHelper("stack_trace_save() from the helper");
    case "tracepoint": {
      // first_frame: the frame of the runner's caller (perf_trace_<event>), which the runner saved
      const first = m.peek64(runner.slot - 8n) ?? 0n;
      return { how: "from the tracepoint's regs (perf_trace_<event>'s frame)", walk: archStackWalk(unwinder, { ...here, firstFrame: first }), expected: expectedChain(truth, r + 1), allow: () => allowances(truth, r + 1, windows) };
    }
    case "perf_event": {
      const caller = truth[r + 1];
      const nmi = truth.findIndex((t, i) => i > r && t.kind === "interrupt" && t.vector === 2);
      if (caller?.kind === "frame" && caller.function === "exc_nmi" && nmi > r) {
        const regs = (truth[nmi] as { frame: bigint }).frame - BigInt(PT_REGS.ip);
        return { how: "from the sampled regs (the perf NMI's)", walk: perfCallchainKernel(unwinder, regs), expected: expectedChain(truth, nmi), allow: () => allowances(truth, nmi, windows) };
      }
      return fromProbe("from the event's regs (at the runner's entry)");
    }
    case "kprobe": return ["uprobe", "uprobe_multi"].includes(attachOf(program.program))
      ? { how: "the uprobe's user-mode regs: no kernel frames (get_perf_callchain())", walk: { ips: [], error: false, reachedEnd: true, warnings: [] }, expected: [], allow: () => [] }
      : fromProbe("from the kprobe's regs (int3 at the runner's entry)");
  }

  /** A probe at the runner's first instruction: its pt_regs, made for the walk (never in the machine). */
  function fromProbe(how: string): GetStackSample {
    const slot = (runner as { slot: bigint }).slot;
    const fields: Partial<Record<keyof typeof PT_REGS, bigint>> = {
      ip: runnerEntry, sp: slot, bp: m.peek64(slot - 8n) ?? 0n, cs: KERNEL_CS, flags: X86_EFLAGS_FIXED_IF, ss: 0n,
    };
    const words = new Map(Object.entries(fields).map(([f, v]) => [CTX_REGS + BigInt(PT_REGS[f as keyof typeof PT_REGS]), v]));
    const env = unwinder.env;
    const view = { ...env, mem: { read64: (a: bigint) => (a >= CTX_REGS && a < CTX_REGS + BigInt(PT_REGS_SIZE) ? words.get(a) ?? 0n : env.mem.read64(a)) } };
    const probed = unwinder.withEnv(view);
    // the probe's rbp is the one the runner was entered with (it pushed it at slot - 8)
    const runnerBp = (runner as { entryBp?: bigint }).entryBp;
    // The probe interrupted the runner at its entry: the chain is that ip, then the runner's callers;
    // before the runner's `mov rbp,rsp` the frame unwinder may miss its caller (the window), and
    // deeper interrupt boundaries allow what they always do, one position further down.
    const expected = [runnerEntry, ...expectedChain(truth, r)];
    const allow = () => [
      ...(windows.inWindow(runnerEntry, runnerBp === undefined ? undefined : { now: fields.bp!, entry: runnerBp }) ? [{ after: 0, skip: 1, mayEnd: false }] : []),
      ...allowances(truth, r, windows).map((a) => ({ ...a, after: a.after + 1 })),
    ];
    return { how, walk: perfCallchainKernel(probed, CTX_REGS), expected, allow };
  }
}
