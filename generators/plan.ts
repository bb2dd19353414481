// The Plan: what the generators produce and what the corpus stores (design.md §7). It is plain
// JSON data — numbers, booleans, short strings, arrays and small records — and it is exactly the
// value the fast-check arbitrary builds, with no `.map` in between, so a stored plan shrinks as
// well as a fresh one. `planToScenario()` (lower.ts) turns any value of this type into a valid
// scenario file: indices wrap, counts and sizes are clamped, nothing is rejected.
//
// What a plan describes (kernel-model.md §2.3, §6; jit/kernel/kernel.ts):
//   - programs[0] is the task's program (do_syscall_64 → bpf_sc_run); every program is a main
//     function plus subprogs, and a call edge only goes forward, to a later function of the same
//     program, so the BPF call graph has no recursion by construction;
//   - a `nested` item runs another program through the kfunc scx_sc_run_nested (the sched_ext
//     scx_bpf_sub_dispatch shape), forward again: program i runs a later program, so chains of
//     kfunc-nested runs stay acyclic; one that would nest deeper than `nestLimit` levels runs the
//     next later program that nests less; the last program, which has no later one, runs
//     itself, and the runner refuses that re-entry (prog->active);
//   - `irq` attaches programs to IRQ vectors and `nmi` one to the NMI; the same program may be
//     the task's, a nested one and an interrupt's, which is how re-entry from IRQ is generated;
//   - `interrupts` is the schedule (below).
//
// Function bodies (lowering is in _internals/emit.ts): each function owns `slots.length` 8-byte
// stack slots at the bottom of its frame and an accumulator (BPF R6). Every value stored into a
// slot — the raw numbers of the plan — is read back exactly once and folded into the
// accumulator with add or xor, and every call result is folded in too, so the program's return
// value changes whenever any live stack slot is corrupted.
import type { ProgType } from "../jit/bpf/program.ts";

/** Store `value` into a slot (its low `width` bytes, repeated to fill all 8), after folding the old value. */
export interface PlanStore {
  readonly op: "store";
  /** Which slot: own slots first, then the pointer parameters (wraps). */
  readonly slot: number;
  readonly value: number;
  /** Bytes per store instruction: 8, 4, 2 or 1 (anything else is 8). */
  readonly width: number;
  /** `st` with an immediate, or `stx` from a register loaded with a 64-bit or a 32-bit move. */
  readonly how: "imm" | "reg64" | "reg32";
}

/** bpf_sc_rw(&slot, value): the helper reads and rewrites a stack slot through a pointer. */
export interface PlanRw {
  readonly op: "rw";
  readonly slot: number;
  readonly value: number;
}

/** acc = bpf_sc_mix(acc, value, value, value, value): a leaf helper. */
export interface PlanMix {
  readonly op: "mix";
  readonly value: number;
}

/** bpf_sc_get_stack(): the helper takes a stack sample (like bpf_get_stack()). */
export interface PlanSample {
  readonly op: "sample";
}

/**
 * acc = f(acc, &slot…): a BPF-to-BPF call of a later function, with pointers to the caller's
 * slots (or to its own pointer parameters) for the callee's parameters.
 */
export interface PlanCall {
  readonly op: "call";
  /** Which later function: `target mod (number of later functions)`; with none, a `sample`. */
  readonly target: number;
  /** Slot references (as PlanStore.slot) for the callee's pointer parameters, in order. */
  readonly ptrs: readonly number[];
}

/** acc ^= scx_sc_run_nested(program): run a later program (the last program runs itself). */
export interface PlanNested {
  readonly op: "nested";
  /** Which later program: `target mod (number of later programs)`, moved on while it would nest too deep. */
  readonly target: number;
}

/**
 * acc += f(a, b): one of the instruction set's computations (MATH_KINDS in
 * generators/_internals/emit.ts: mul, div, mod and their signed forms by an immediate or a
 * register, movsx, byte swaps, ld_imm64, a jmp32 condition), in R1 and R2; the accumulator
 * itself is only added to, so any corruption of it still shows.
 */
export interface PlanMath {
  readonly op: "math";
  /** Which computation (wraps). */
  readonly kind: number;
  readonly a: number;
  readonly b: number;
}

/**
 * An atomic on a slot (ATOMIC_KINDS: fetch_add, xchg, fetch_or and fetch_xor through the
 * cmpxchg loop, add, cmpxchg, load-acquire, store-release): whatever it reads of the slot is
 * folded into the accumulator, whatever it leaves there is read later.
 */
export interface PlanAtomic {
  readonly op: "atomic";
  readonly slot: number;
  readonly kind: number;
  readonly value: number;
}

/**
 * A loop with a may_goto in it: `passes` 1..8 counted passes (the may_goto never runs out), or
 * 0: a loop only may_goto bounds, which runs until the verifier's timed budget is spent (2 ×
 * BPF_MAX_TIMED_LOOPS passes, about a million instructions). The lowering takes a 0 as a
 * counted loop of 8 unless the plan allows such loops (`spinLoops`), and then only in the task's
 * main function, once.
 */
export interface PlanLoop {
  readonly op: "loop";
  readonly passes: number;
}

/**
 * acc += a read of the program's context (R1 at the main function's entry, kept in R7), at an
 * offset and width the program type allows (kprobe pt_regs, a tracepoint's record, raw_tp's
 * arguments); lowered as nothing in a subprog, after an entry call (R1 is gone by then) or
 * for a type whose context reads are not modelled.
 */
export interface PlanCtx {
  readonly op: "ctx";
  readonly off: number;
  /** Bytes: 8, 4, 2 or 1 (anything else is 8). */
  readonly width: number;
}

/**
 * bpf_sc_sleep(): the task sleeps (schedule()) and another runs. Lowered as a call only in a
 * sleepable program (PlanProgram.sleepable, on a path that allows it) of a plan with tasks;
 * elsewhere as nothing.
 */
export interface PlanSleep {
  readonly op: "sleep";
}

export type PlanCallItem = PlanMix | PlanSample | PlanCall | PlanNested;
export type PlanItem = PlanStore | PlanRw | PlanMath | PlanAtomic | PlanLoop | PlanCtx | PlanSleep | PlanCallItem;

export interface PlanFunc {
  /** Initial values of the function's 8-byte stack slots (at least one slot is used; at most MAX_SLOTS). */
  readonly slots: readonly number[];
  /** Stack bytes beyond the slots (rounded down to 8, then clamped to the verifier's limits). */
  readonly extra: number;
  /** Pointer parameters of a subprog (0..3, in R2..R4; R1 carries the accumulator). Ignored for main. */
  readonly params: number;
  /** A call placed right after the prologue (before any other body code). */
  readonly atEntry: PlanCallItem | null;
  readonly body: readonly PlanItem[];
  /** A call placed right before the epilogue (after the read-back), its result returned. */
  readonly atExit: PlanCallItem | null;
}

export interface PlanProgram {
  readonly type: ProgType;
  /** struct_ops: check_member() asked for a private stack (kernel-model.md §2.2). */
  readonly privStackRequested: boolean;
  /** The main function's initial accumulator. */
  readonly seed: number;
  /**
   * How it is run: an index (wrapping) into the attach paths of its type (program.ts
   * attachPathsOf(): kprobe, kprobe_multi, uprobe, uprobe_multi for kprobe; …). Absent: the
   * type's default. Only a plan with tasks uses it (it needs scenario version 2).
   */
  readonly attach?: number;
  /** BPF_F_SLEEPABLE, where the path allows it and the plan has tasks. */
  readonly sleepable?: boolean;
  /**
   * A second attachment of the same program (a plan with tasks; a version 3 scenario's `links`):
   * an index (wrapping) into the other attach paths of its type; none when its type has one
   * path (or, with `countedPaths`, one counted path). Tasks run the program through whichever
   * of the two fires only in task context (a uprobe, a syscall tracepoint), interrupts through
   * the other: 7.2 checks no program's other attachments (kernel/events/core.c
   * __perf_event_set_bpf_prog()). A sleepable program keeps its link only where both paths
   * allow sleeping, else it is lowered as not sleepable.
   */
  readonly link?: number | null;
  /** funcs[0] is the main function. */
  readonly funcs: readonly PlanFunc[];
}

/**
 * Where an interrupt goes, as a position in the task's run that does not depend on the run's
 * length: the lowering computes the run's timeline from the plan (a step model of the JIT and the
 * synthetic kernel, exact for `baseline`, a few steps off per call under other designs) and
 * places the point on it:
 *   - "start":    step n mod 64 from the start: do_syscall_64, the runner, the main prologue;
 *   - "anywhere": n/1024 of the way through the run;
 *   - "call":     the n-th call instruction (helper, subprog or kfunc), so d = 1.. is the callee's
 *                 prologue or the helper's body;
 *   - "entry":    the n-th BPF function entry, so d = 0.. is the prologue window;
 *   - "exit":     the n-th BPF epilogue, so d = 0.. is the pops, `leave`, `ret` window;
 *   - "own":      the n-th run of the program this interrupt runs, so its handler finds that
 *                 program active and the runner refuses it (re-entry from IRQ/NMI).
 * then plus d steps. Anchors that have no instance fall back to "anywhere". Steps spent in
 * earlier interrupts' handlers are added, so later points still land where they aim.
 */
export type PlanAnchor = "start" | "anywhere" | "call" | "entry" | "exit" | "own";

/** A second interrupt `delay` steps after the first is raised: inside its entry code or its program. */
export interface PlanFollowUp {
  readonly nmi: boolean;
  /** Which IRQ attachment (mod the number of attachments); ignored for an NMI. */
  readonly vector: number;
  readonly delay: number;
}

export interface PlanInterrupt {
  /** An NMI (vector 2, IST stack), or an IRQ of one of the attached vectors. */
  readonly nmi: boolean;
  /** A tick instead (LOCAL_TIMER_VECTOR: sched_tick(), and preemption at its return), in a plan with tasks. */
  readonly tick?: boolean;
  /** Which IRQ attachment (mod the number of attachments); an IRQ with no attachment is dropped. */
  readonly vector: number;
  readonly at: PlanAnchor;
  readonly n: number;
  readonly d: number;
  readonly then: PlanFollowUp | null;
}

export interface Plan {
  /** The deepest chain of kfunc-nested runs (0..MAX_NEST_LIMIT); sched_ext nests 4 levels. */
  readonly nestLimit: number;
  /** programs[0] runs as the task. At least one program is lowered (an empty list gets a trivial one). */
  readonly programs: readonly PlanProgram[];
  /** Program references (mod the number of programs) attached to IRQ_VECTORS[0], [1], … */
  readonly irq: readonly number[];
  /** The program attached to the NMI, or none. */
  readonly nmi: number | null;
  readonly interrupts: readonly PlanInterrupt[];
  /** Loops only may_goto bounds may run (PlanLoop with 0 passes; absent: no). */
  readonly spinLoops?: boolean;
  /**
   * Program references (mod the number of programs) for tasks 1, 2, … (task 0 runs
   * programs[0]). With at least one, the scenario has tasks and the kernel its scheduler: ticks,
   * preemption, sleeps. Absent or empty: one task, no scheduler (a version 1 scenario).
   */
  readonly tasks?: readonly number[];
  /** Only attach paths with a recursion counter (no uprobe, uprobe_multi; absent: every path). */
  readonly countedPaths?: boolean;
}

// ---- limits the lowering enforces (every plan lowers; these keep it valid and bounded) ----

/** Programs per scenario (the image and the kfunc's nested table hold 32). */
export const MAX_PROGRAMS = 32;
/** Functions per program: MAX_CALL_FRAMES, so a forward chain never exceeds the verifier's depth. */
export const MAX_FUNCS = 8;
/** Slots per function: 8 × 8 bytes, so 8 frames of minimal size fit the combined 512-byte limit. */
export const MAX_SLOTS = 8;
/** Body items per function. */
export const MAX_ITEMS = 32;
export const MAX_PARAMS = 3;
export const MAX_NEST_LIMIT = 8;
/** Interrupt points per plan (each may bring a follow-up). */
export const MAX_INTERRUPTS = 16;
/** IRQ vectors for irq[0..3]: LOCAL_TIMER_VECTOR (0xec), then device vectors. */
export const IRQ_VECTORS: readonly number[] = [236, 35, 64, 200];
/**
 * With tasks the timer's vector is the tick's (its handler runs sched_tick() and may preempt):
 * programs attach to device vectors only, and ticks are their own points.
 */
export const TASK_IRQ_VECTORS: readonly number[] = [34, 35, 64, 200];
/**
 * The NMI runs on a 4 KiB IST stack: its program may run at most this many kfunc-nested levels
 * (otherwise the next program that nests less is taken).
 */
export const NMI_NEST_LIMIT = 2;
/** Estimated steps one program run may take; calls beyond it are lowered as `sample`. */
export const RUN_BUDGET = 16_384;
