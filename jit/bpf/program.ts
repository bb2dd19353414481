// A BPF program: a main function plus subprogs, laid out as the kernel lays them out (one flat
// instruction array; each function a contiguous range; BPF_PSEUDO_CALL's imm is the callee's
// start relative to the next instruction), with a stack depth per function and a program type.
import { BPF_CALL, BPF_CLASS, BPF_JA, BPF_JMP, BPF_JMP32, BPF_OP, BPF_PSEUDO_CALL } from "./opcodes.ts";
import { insn, type BpfInsn, type Item } from "./insn.ts";

/** Program types that matter for private-stack eligibility (kernel-model.md §2.2). */
export const PROG_TYPES = ["kprobe", "tracepoint", "perf_event", "raw_tp", "tracing", "struct_ops"] as const;
export type ProgType = (typeof PROG_TYPES)[number];

/**
 * How a program is run, and what guards it (kernel-model-7.2.md A.4, Linux 7.2):
 *   - counter: which per-CPU recursion counter the run path checks: `global` bpf_prog_active
 *     (kernel/trace/bpf_trace.c trace_call_bpf(), kprobe_multi_link_prog_run(),
 *     kernel/events/core.c bpf_overflow_handler()), the program's own `prog` prog->active
 *     (kernel/bpf/trampoline.c __bpf_prog_enter_recur(), bpf_trace.c __bpf_trace_run(),
 *     trace_call_bpf_faultable() via bpf_prog_run_array_sleepable()), or `none`
 *     (trace_uprobe.c __uprobe_perf_func() → bpf_prog_run_array_uprobe(), bpf_trace.c
 *     uprobe_prog_run(): no counter at all);
 *   - preemptible: the path runs the program with preemption enabled (migrate_disable() only;
 *     with PREEMPT_RCU rcu_read_lock() does not disable it): kprobe handlers, perf tracepoints
 *     (guard(preempt_notrace)) and perf overflow handlers do not;
 *   - sleepable: a sleepable program may be attached there (verifier.c can_be_sleepable():
 *     KPROBE only for uprobes, TRACEPOINT only for faultable tracepoints);
 *   - task: the path fires only in a task's own context, never in an interrupt or inside
 *     kernel code a BPF program called: a uprobe from the breakpoint of user code, on the way
 *     back to user mode (kernel/entry/common.c → kernel/events/uprobes.c
 *     uprobe_notify_resume() → handle_swbp()) or, on x86, from the uprobe and uretprobe
 *     syscalls (arch/x86/kernel/uprobes.c); a faultable tracepoint at syscall entry or exit
 *     (kernel/trace/trace_syscalls.c → trace_call_bpf_faultable(), 7.2's syscall tracepoints).
 * `types`: the program types that attach through it.
 */
export const ATTACH_PATHS = {
  kprobe: { types: ["kprobe"], counter: "global", preemptible: false, sleepable: false, task: false },
  kprobe_multi: { types: ["kprobe"], counter: "global", preemptible: false, sleepable: false, task: false },
  uprobe: { types: ["kprobe"], counter: "none", preemptible: true, sleepable: true, task: true },
  uprobe_multi: { types: ["kprobe"], counter: "none", preemptible: true, sleepable: true, task: true },
  tracepoint: { types: ["tracepoint"], counter: "global", preemptible: false, sleepable: false, task: false },
  tp_faultable: { types: ["tracepoint"], counter: "prog", preemptible: true, sleepable: true, task: true },
  perf_event: { types: ["perf_event"], counter: "global", preemptible: false, sleepable: false, task: false },
  raw_tp: { types: ["raw_tp"], counter: "prog", preemptible: true, sleepable: true, task: false },
  trampoline: { types: ["tracing", "struct_ops"], counter: "prog", preemptible: true, sleepable: true, task: false },
} as const satisfies Record<string, { types: readonly ProgType[]; counter: "global" | "prog" | "none"; preemptible: boolean; sleepable: boolean; task: boolean }>;
export type AttachPath = keyof typeof ATTACH_PATHS;

export type Counter = (typeof ATTACH_PATHS)[AttachPath]["counter"];

/**
 * The recursion counter a program's runner takes: its path's, except on a trampoline for a
 * struct_ops program, which takes prog->active only when its JIT uses a private stack.
 * bpf_trampoline_enter() (kernel/bpf/trampoline.c, 7.2) picks __bpf_prog_enter_recur() when
 * bpf_prog_check_recur() (include/linux/bpf_verifier.h) holds, which for struct_ops is `return
 * prog->aux->jits_use_priv_stack;` (set by check_max_stack_depth() when any subprog got a private
 * stack); otherwise plain __bpf_prog_enter(), which counts nothing. `jitsUsePrivStack`: whether
 * the JIT gives the program a private stack: in 7.2 (r9-private) the verifier's decision
 * (validate.ts Validated.privStack); a design that puts every program on one takes the counter
 * as a kernel built with it would, and one with no private stacks (the baseline) never does.
 */
export function counterOf(p: { readonly type: ProgType; readonly attach?: AttachPath | undefined }, jitsUsePrivStack: boolean): Counter {
  const c: Counter = ATTACH_PATHS[attachOf(p)].counter;
  return p.type === "struct_ops" && c === "prog" && !jitsUsePrivStack ? "none" : c;
}

/**
 * Activations per CPU the runner allows on `counter` (undefined: no counter, no limit): the
 * design's limit on prog->active (`designLimit`, the strategy's recursionLimit: 1 is the
 * exactly-1 rule of __bpf_prog_enter_recur()), trace_call_bpf()'s `!= 1` on bpf_prog_active
 * (kernel/trace/bpf_trace.c, 7.2), which no design changes. One rule for the synthetic kernel's
 * runner table (jit/image.ts) and the reference interpreter (jit/bpf/interp.ts).
 */
export function runnerLimit(counter: Counter, designLimit: number): number | undefined {
  return counter === "none" ? undefined : counter === "global" ? 1 : designLimit;
}
export const ATTACH_PATH_NAMES = Object.keys(ATTACH_PATHS) as AttachPath[];

/** The path a program of `type` runs through unless told otherwise (what stackcheck modelled before paths were a choice). */
export const DEFAULT_ATTACH: Readonly<Record<ProgType, AttachPath>> = {
  kprobe: "kprobe", tracepoint: "tracepoint", perf_event: "perf_event", raw_tp: "raw_tp", tracing: "trampoline", struct_ops: "trampoline",
};

/** The attach paths a program type may use. */
export const attachPathsOf = (type: ProgType): AttachPath[] => ATTACH_PATH_NAMES.filter((a) => (ATTACH_PATHS[a].types as readonly ProgType[]).includes(type));

/** A program's path: its own, or its type's default. */
export const attachOf = (p: { readonly type: ProgType; readonly attach?: AttachPath | undefined }): AttachPath => p.attach ?? DEFAULT_ATTACH[p.type];

/**
 * Does the program run only in a task's own context? Its path's `task` (ATTACH_PATHS), or a
 * sleepable raw_tp program: bpf_raw_tp_link_attach() (kernel/bpf/syscall.c, 7.2) refuses a
 * sleepable program on a tracepoint that is not faultable (`prog->sleepable &&
 * !tracepoint_is_faultable(btp->tp)`), and the faultable ones are the syscall tracepoints.
 */
export const runsOnlyInTask = (p: { readonly type: ProgType; readonly attach?: AttachPath | undefined; readonly sleepable?: boolean | undefined }): boolean =>
  ATTACH_PATHS[attachOf(p)].task || (p.sleepable === true && attachOf(p) === "raw_tp");

/**
 * The function a BPF-to-BPF call at flat instruction `at` lands in: its imm is the offset of the
 * callee's first instruction from the next one (BPF_PSEUDO_CALL). -1 if none starts there.
 */
export function calleeOf(p: { readonly funcs: readonly { readonly start: number }[] }, at: number, imm: number): number {
  return p.funcs.findIndex((g) => g.start === at + 1 + imm);
}

export interface FuncSource {
  readonly name: string;
  /** Bytes of BPF stack the function uses (the verifier's stack_depth, unrounded). */
  readonly stackDepth: number;
  readonly body: readonly Item[];
}

export interface ProgramSource {
  readonly name: string;
  readonly type: ProgType;
  /** struct_ops: check_member() set prog->aux->priv_stack_requested. */
  readonly privStackRequested?: boolean;
  /** funcs[0] is the main program; the others are subprogs. */
  readonly funcs: readonly FuncSource[];
}

export interface Func {
  readonly name: string;
  /** First instruction index in the flat array, and one past the last. */
  readonly start: number;
  readonly end: number;
  readonly stackDepth: number;
}

export interface Program {
  readonly name: string;
  readonly type: ProgType;
  readonly privStackRequested: boolean;
  /** How it is run (ATTACH_PATHS); its type's default when absent. */
  readonly attach?: AttachPath;
  /** BPF_F_SLEEPABLE: it may call helpers that sleep (only on paths that allow it). */
  readonly sleepable?: boolean;
  /**
   * This entry is another attachment (a second bpf_link, or perf event) of the program at this
   * index of the same list, through `attach`: the same bpf_prog, so the same JITed code,
   * prog->active, misses and private stacks, run by its own path's runner (its counter, its
   * preemptibility). 7.2 lets a KPROBE program be attached to a uprobe and a kprobe at once, and a
   * TRACEPOINT program to a syscall tracepoint and an ordinary one (kernel/events/core.c
   * __perf_event_set_bpf_prog() checks the program type against the event, not against the
   * program's other attachments). Its insns and funcs are the program's own.
   */
  readonly linkOf?: number;
  readonly insns: readonly BpfInsn[];
  readonly funcs: readonly Func[];
}

export class ProgramError extends Error {
  override name = "ProgramError";
}

/** Put a program together: flatten the functions, resolve jump labels and subprog calls. */
export function program(src: ProgramSource): Program {
  if (src.funcs.length === 0) throw new ProgramError(`program ${src.name}: no functions`);
  const names = new Map<string, number>();
  src.funcs.forEach((f, i) => {
    if (names.has(f.name)) throw new ProgramError(`program ${src.name}: function '${f.name}' defined twice`);
    names.set(f.name, i);
  });
  // Pass 1: layout. Labels are local to their function.
  const funcs: Func[] = [];
  const labels: Map<string, number>[] = [];
  let at = 0;
  for (const f of src.funcs) {
    const local = new Map<string, number>();
    const start = at;
    for (const it of f.body) {
      if (it.kind === "label") {
        if (local.has(it.name)) throw new ProgramError(`program ${src.name}, function ${f.name}: label '${it.name}' defined twice`);
        local.set(it.name, at);
      } else at++;
    }
    if (at === start) throw new ProgramError(`program ${src.name}, function ${f.name}: no instructions`);
    funcs.push({ name: f.name, start, end: at, stackDepth: f.stackDepth });
    labels.push(local);
  }
  // Pass 2: resolve targets.
  const insns: BpfInsn[] = [];
  src.funcs.forEach((f, fi) => {
    for (const it of f.body) {
      if (it.kind === "label") continue;
      const i = insns.length;
      const where = `program ${src.name}, function ${f.name}, insn ${i - funcs[fi]!.start}`;
      let x = it.insn;
      if (it.jumpTo !== undefined) {
        const cls = BPF_CLASS(x.code);
        if (cls !== BPF_JMP && cls !== BPF_JMP32) throw new ProgramError(`${where}: only jumps take a label`);
        const target = labels[fi]!.get(it.jumpTo);
        if (target === undefined) throw new ProgramError(`${where}: jump to unknown label '${it.jumpTo}'`);
        // gotol (BPF_JMP32|BPF_JA) holds its offset in imm, every other jump in off.
        x = retarget(x, x.code === (BPF_JMP32 | BPF_JA) ? "imm" : "off", target - (i + 1), where);
      }
      if (it.callee !== undefined) {
        if (!(BPF_OP(x.code) === BPF_CALL && x.src === BPF_PSEUDO_CALL)) throw new ProgramError(`${where}: only a subprog call names a callee`);
        const ci = names.get(it.callee);
        if (ci === undefined) throw new ProgramError(`${where}: call of unknown function '${it.callee}'`);
        x = retarget(x, "imm", funcs[ci]!.start - (i + 1), where);
      }
      insns.push(x);
    }
  });
  return { name: src.name, type: src.type, privStackRequested: src.privStackRequested ?? false, insns, funcs };
}

function retarget(x: BpfInsn, field: "off" | "imm", v: number, where: string): BpfInsn {
  try {
    return field === "off" ? insn(x.code, x.dst, x.src, v, x.imm) : insn(x.code, x.dst, x.src, x.off, v);
  } catch (e) {
    throw new ProgramError(`${where}: ${(e as Error).message}`);
  }
}
