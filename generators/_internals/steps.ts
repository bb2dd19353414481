// A step model of a run: how many x86 instructions each piece executes, so that interrupt points
// can be placed without running anything. Counted from jit/kernel/kernel.ts and from the upstream
// prologue/epilogue (jit/prologue.ts, with CONFIG_X86_KERNEL_IBT as DEFAULT_JIT_OPTIONS has it);
// exact for `baseline`, which test/unit/generators/planToScenario.test.ts checks against the machine.
// Other designs add a few instructions per prologue or call (r9 setup, push r9/pop r9, stack
// switches), so points drift by a few steps there — they still land near what they aim at.

/**
 * do_syscall_64: push rbp; mov rbp,rsp; push 0x202; popfq (IRQs on); call bpf_sc_run |
 * push 2; popfq (IRQs off); pop rbp; ret.
 */
export const SYSCALL_ENTER = 5, SYSCALL_EXIT = 4;

/**
 * bpf_sc_run: frame, three pushes, the table lookup, this_cpu_inc_return(*active) (its store is
 * instruction 14), cmp, ja, mov rdi, call *bpf_func = 18 before the program; then mov r13,rax;
 * jmp; this_cpu_dec (load, add gs, sub); mov rax,r13; four pops; ret = 11 after it. A refused
 * run takes run_refused's four instructions instead of the call: 29 in all.
 */
export const RUNNER_ENTER = 18, RUNNER_EXIT = 11, RUNNER_REFUSED = 29;
/** The counter is raised by the runner's 14th instruction and dropped by the 5th after the program. */
export const RUNNER_ACTIVE_FROM = 14, RUNNER_ACTIVE_AFTER = 5;

/** scx_sc_run_nested: frame, movabs, cmp, jae, mov rdi, call bpf_sc_run | pop rbp; ret; the -EINVAL path: 8. */
export const KFUNC_ENTER = 7, KFUNC_EXIT = 2, KFUNC_EINVAL = 8;

/**
 * Helper bodies by id, ret included: bpf_sc_mix 10, bpf_sc_rw 8, bpf_sc_get_stack 6; bpf_sc_sleep
 * an estimate (schedule() and __schedule() with no switch: about 60; a switch runs another task
 * for as long as it runs, which no step model of one task can know).
 */
export const HELPER_STEPS: Readonly<Record<number, number>> = { 1: 10, 2: 8, 3: 6, 4: 60 };

/**
 * IRQ: the vector stub (push, jmp), asm_common_interrupt (15 pushes, CLEAR_REGS's 13 xors,
 * ENCODE_FRAME_POINTER, mov rdi, call), common_interrupt's switch to the IRQ stack (14),
 * handle_irq up to its call (9) = 56 before the runner; after it handle_irq (3),
 * common_interrupt (6), the pops, the orig_ax drop and iretq (17) = 26.
 */
export const IRQ_ENTER = 56, IRQ_EXIT = 26;
/** NMI: asm_exc_nmi (push -1, 15 pushes, 13 xors, lea, mov, call) and exc_nmi up to its call = 39; 2 + 17 after; 57 with no program. */
export const NMI_ENTER = 39, NMI_EXIT = 19, NMI_NO_PROGRAM = 57;

/**
 * may_goto after the verifier's fix-up (timed, x86-64): the two stores of the count and the
 * timestamp at the function's start; per pass `r12 = count; if r12 == 0` (test, je); `r12 -= 1;
 * if r12 != 0` (test, jne) over the refill to `count = r12`: 7; the last one, which jumps: 3.
 */
export const MAY_GOTO_INIT = 2, MAY_GOTO_PASS = 7, MAY_GOTO_EXIT = 3;
/**
 * A refill: `r12 = off; call arch_bpf_timed_may_goto` (2 more than a pass); that function's 20
 * (lea, frame, six pushes, mov rdi, call | mov r10, six pops, leave, ret) and
 * bpf_check_timed_may_goto()'s 13 the first time (the timestamp recorded) and 15 the second
 * (the slice spent, with the synthetic kernel's clock: jit/kernel/layout.ts MONO_CLOCK_STEP).
 */
const REFILL_1 = 2 + 20 + 13, REFILL_2 = 2 + 20 + 15;
/** Passes of a loop only may_goto bounds: two budgets of BPF_MAX_TIMED_LOOPS. */
export const SPIN_PASSES = 2 * 0xffff;
/** Steps of `l: may_goto out; r2 += 1; goto l` run to its end: 9 a pass, the two refills, the exit. */
export const SPIN_LOOP_STEPS = SPIN_PASSES * (MAY_GOTO_PASS + 2) + REFILL_1 + REFILL_2 + MAY_GOTO_EXIT;

/**
 * A BPF function's prologue: endbr64, nop5, nop3, push rbp, mov rbp,rsp,
 * endbr64, sub rsp (with a non-zero stack), then one push per callee-saved register used; its epilogue: the pops,
 * `leave`, `ret` (the BPF `exit` is the first of them).
 */
export const prologueSteps = (pushes: number, stack = true) => 6 + (stack ? 1 : 0) + pushes;
export const epilogueSteps = (pushes: number) => pushes + 2;

/** What a call instruction enters. */
export type Callee =
  | { readonly kind: "helper"; readonly id: number }
  | { readonly kind: "subprog"; readonly fi: number }
  | { readonly kind: "nested"; readonly prog: number }
  | { readonly kind: "einval" };

/** The executed shape of one lowered function: straight runs of instructions between its calls. */
export interface FuncShape {
  readonly pushes: number;
  /** It touches its stack, so its depth is not 0 and its prologue has a `sub rsp` (baseline). */
  readonly stack: boolean;
  /** straight[k] instructions, then calls[k], …, then straight[calls.length], then the epilogue. */
  readonly straight: readonly number[];
  readonly calls: readonly Callee[];
}

export interface ProgShape {
  /** By the plan's function index (functions no call reaches are never entered). */
  readonly funcs: readonly FuncShape[];
  /** The recursion counter the runner checks (interp.ts recursionCounters()). */
  readonly counter: number;
}

/** Steps the kfunc call of program `prog` takes when the run is allowed, given that program's main cost. */
export const nestedRunCost = (mainCost: number) => KFUNC_ENTER + RUNNER_ENTER + mainCost + RUNNER_EXIT + KFUNC_EXIT;

/** How many instances of each anchor the timeline keeps (the plan's n wraps over them). */
const EVENT_CAP = 256;

export interface Timeline {
  /** Steps of the whole task run (to the return into entry_SYSCALL_64). */
  readonly length: number;
  readonly calls: readonly number[];
  readonly entries: readonly number[];
  readonly exits: readonly number[];
  /** Per program: the steps where its main function is entered. */
  readonly runs: ReadonlyMap<number, readonly number[]>;
  /** The recursion counters held by program runs at step `s`. */
  heldAt(s: number): Set<number>;
}

/**
 * Steps through runs of programs as the runner takes them with the exactly-1 rule: a run whose
 * counter is held is refused. It notes when each counter is held and, with `record`, the anchors.
 */
class Walk {
  step = 0;
  readonly calls: number[] = [];
  readonly entries: number[] = [];
  readonly exits: number[] = [];
  readonly runs = new Map<number, number[]>();
  readonly intervals: { counter: number; from: number; to: number }[] = [];

  constructor(private readonly progs: readonly ProgShape[], private readonly held: Set<number>, private readonly record: boolean) {}

  private note(list: number[], s: number): void {
    if (this.record && list.length < EVENT_CAP) list.push(s);
  }

  /** bpf_sc_run(p), through the runner of the program's own path, or of the one whose counter is `c` (a second attachment). */
  run(p: number, c: number = this.progs[p]!.counter): void {
    if (this.held.has(c)) { this.step += RUNNER_REFUSED; return; } // __bpf_prog_enter_recur() refuses
    const from = this.step + RUNNER_ACTIVE_FROM;
    this.step += RUNNER_ENTER;
    if (this.record) {
      const list = this.runs.get(p) ?? [];
      this.note(list, this.step);
      this.runs.set(p, list);
    }
    this.held.add(c);
    this.activate(p, 0);
    this.held.delete(c);
    this.intervals.push({ counter: c, from, to: this.step + RUNNER_ACTIVE_AFTER });
    this.step += RUNNER_EXIT;
  }

  private activate(p: number, fi: number): void {
    const f = this.progs[p]!.funcs[fi]!;
    this.note(this.entries, this.step);
    this.step += prologueSteps(f.pushes, f.stack);
    f.calls.forEach((c, k) => {
      this.step += f.straight[k]!;
      this.note(this.calls, this.step);
      this.step += 1;
      if (c.kind === "helper") this.step += HELPER_STEPS[c.id]!;
      else if (c.kind === "subprog") this.activate(p, c.fi);
      else if (c.kind === "einval") this.step += KFUNC_EINVAL;
      else { this.step += KFUNC_ENTER; this.run(c.prog); this.step += KFUNC_EXIT; }
    });
    this.step += f.straight[f.calls.length]!;
    this.note(this.exits, this.step);
    this.step += epilogueSteps(f.pushes);
  }
}

/** The counters held at step `s` of a walk: those held from the start, and those of runs around `s`. */
function heldAt(w: Walk, initial: ReadonlySet<number>, s: number): Set<number> {
  const held = new Set(initial);
  for (const h of w.intervals) if (s >= h.from && s < h.to) held.add(h.counter);
  return held;
}

/** The task's run of program `task`, from do_syscall_64 to its return. */
export function timeline(progs: readonly ProgShape[], task: number, counter?: number): Timeline {
  const w = new Walk(progs, new Set(), true);
  w.step = SYSCALL_ENTER;
  w.run(task, counter);
  const none = new Set<number>();
  return { length: w.step + SYSCALL_EXIT, calls: w.calls, entries: w.entries, exits: w.exits, runs: w.runs, heldAt: (s) => heldAt(w, none, s) };
}

/** One bpf_sc_run(p) started with the counters in `held` already held: its steps (refusal included), and the counters held along it. */
export interface RunTrace {
  readonly steps: number;
  /** The counters held `s` steps after bpf_sc_run was entered. */
  heldAt(s: number): Set<number>;
}

export function traceRun(progs: readonly ProgShape[], p: number, held: ReadonlySet<number>, counter?: number): RunTrace {
  const w = new Walk(progs, new Set(held), false);
  w.run(p, counter);
  return { steps: w.step, heldAt: (s) => heldAt(w, held, s) };
}
