// One scenario run: the image under a strategy, the interrupt schedule, samples at the kernel's
// sample points walked by the chosen unwinder and classed against the truth, and the run-level
// oracles. What `stackcheck run` prints, as data.
import { PROGRAMS_KEPT, RecentCache } from "../jit/recent-cache.ts";
import { REG_NAMES, toInternal, type Machine, type MachineSnapshot, type RegName, type RunResult, type SymbolTable, type TruthEntry } from "./machine/index.ts";
import { allowances, classify, expectedChain, fails, type Allowance, type Policy, type StackClass } from "./oracles/classify.ts";
import { getStackSample } from "./get-stack.ts";
import { frameWindows, type FrameCode } from "./oracles/window.ts";
import { watchRun, type RunReport, type StackBudgets } from "./oracles/run.ts";
import type { Scenario } from "./scenario.ts";
import { buildImage, type Image } from "../jit/image.ts";
import type { JitBackend } from "../jit/backend.ts";
import type { Strategy } from "../jit/strategy.ts";
import { PT_REGS, PT_REGS_SIZE } from "../arch/ptrace.ts";
import { findLoops } from "../jit/bpf/loops.ts";
import { isLdImm64SecondHalf } from "../jit/bpf/print.ts";
import type { Program } from "../jit/bpf/program.ts";
import { LOCAL_TIMER_VECTOR, TASK, TASK_DEAD } from "../jit/kernel/layout.ts";
import { stackAreas, stackPicture, type StackPicture } from "./picture.ts";
import { currentTask, loadImage, reusedMachine, startTask } from "./load.ts";
import { unwinderFor } from "./unwind-env.ts";
import { archStackWalk, archStackWalkReliable, perfCallchainKernel, UNWINDERS, type PrivateStackKnowledge, type UnwinderName, type Walk } from "../unwinder/index.ts";

export { UNWINDERS, type UnwinderName };

/** An interrupt raised at a step: an IRQ, an NMI, or the tick (an IRQ on LOCAL_TIMER_VECTOR, whose handler runs sched_tick()). */
export interface Injection { readonly kind: "irq" | "nmi" | "tick"; readonly atStep: number; readonly vector: number }

export interface Sample {
  readonly kind: "NMI (perf, from regs)" | "IRQ handler" | "bpf_get_stack (helper)" | "blocked task (reliable walk)";
  /** Where the sample was taken: the interrupted ip (NMI) or the sampling function. */
  readonly where: string;
  readonly step: number;
  /** The machine at the sampling point (the sampling code's own registers, not the interrupted ones). */
  readonly regs: { readonly rip: bigint; readonly rsp: bigint; readonly rbp: bigint };
  /** For an NMI sample, the interrupted context as its pt_regs hold it (what perf unwinds from). */
  readonly interrupted?: { readonly ip: bigint; readonly sp: bigint; readonly bp: bigint };
  readonly class: StackClass;
  readonly failed: boolean;
  readonly truth: readonly { ip: bigint; symbol: string }[];
  readonly unwound: readonly { ip: bigint; symbol: string }[];
  readonly error: boolean;
  readonly warnings: readonly string[];
  /** Why the walk stopped, as the unwinder gives it, with the stack holding the address it could not follow. */
  readonly stopped?: string;
  /** A picture of the stacks at this moment (only for the sample RunOptions.picture names). */
  readonly picture?: StackPicture;
}

/** A sample as a run keeps it: the expected chain and the walk, not yet in words (wordSamples(), when an outcome's samples are read). */
type KeptSample = Omit<Sample, "truth" | "unwound" | "error" | "warnings" | "stopped" | "picture"> & {
  readonly expected: readonly bigint[];
  readonly walk: Walk;
  readonly picture: StackPicture | undefined;
};

/** An interrupt that was raised: when, and the instruction it interrupted (the next to run). */
export interface Raised extends Injection { readonly ip: bigint; readonly symbol: string }

export interface RunOutcome {
  readonly strategy: string;
  readonly unwinder: UnwinderName;
  readonly policy: Policy;
  readonly result: RunResult;
  readonly samples: readonly Sample[];
  readonly checks: RunReport;
  /** Injections the run ended before reaching: never raised, so they sampled nothing. */
  readonly unraised: readonly Injection[];
  /** The injections that were raised, with the instruction that was next when each was raised. */
  readonly raised: readonly Raised[];
  /** Interrupts as delivered (an IRQ raised while IF is clear waits), with the instruction each interrupted. */
  readonly delivered: readonly Raised[];
  /** With several tasks: what the scheduler did (counts). */
  readonly sched: SchedCounts;
  /** Tasks on the CPU (1 without a scheduler). */
  readonly tasks: number;
  readonly ok: boolean;
}

/** Scheduling events of a run with several tasks. */
export interface SchedCounts {
  /** Ticks delivered. */
  readonly ticks: number;
  /** Preemptions at interrupt return (preempt_schedule_irq()) whose interrupted code was BPF, or kernel code. */
  readonly preemptedInBpf: number;
  readonly preemptedInKernel: number;
  /** Preemptions at preempt_enable_notrace() (preempt_schedule_notrace()). */
  readonly preemptedAtEnable: number;
  /** Calls of the sleeping helper. */
  readonly sleeps: number;
  /** Reliable walks of blocked tasks (at every switch, of every task switched out), and how many of them failed (-EINVAL). */
  readonly blockedWalks: number;
  readonly blockedUnreliable: number;
}

export interface RunOptions {
  readonly unwinder: UnwinderName;
  readonly policy?: Policy;
  readonly injections?: readonly Injection[];
  readonly privateStacks?: PrivateStackKnowledge;
  readonly maxSteps?: number;
  readonly budgets?: StackBudgets;
  /** The image of this scenario under this strategy, if already built (it is read-only). */
  readonly image?: Image;
  /** Which JIT makes the BPF code when the image is not given (default the TypeScript JIT). */
  readonly jit?: JitBackend;
  /** Draw the stacks at this sample (its index), for reports. */
  readonly picture?: number;
}

/** The last images' frame-window caches (an image's runs come one after another: schedules, forks, a report's re-run). */
const windowCaches = new RecentCache<Image, Map<string, FrameCode>>(4);

/** The frame windows of an image's functions, read once per image (text is read-only). */
function windowCache(img: Image): Map<string, FrameCode> {
  return windowCaches.getOrMake(img, () => new Map());
}

/** A run set up and started (the task entered), with its samples and checks attached. */
export interface RunSession {
  readonly m: Machine;
  /** Describe an address (`symbol+off`). */
  readonly sym: (a: bigint) => string;
  /**
   * Keep the machine and every sample and check now: `restore()` puts them back (any number of
   * times); `machine` and `sched` are the machine's snapshot and the scheduler's counts then.
   */
  save(): SavedRun;
  /**
   * The run is over: its machine lets go of its hooks, observer and watchers, and with them of
   * every sample and check of the run. (A machine reused across images, load.ts
   * reusedMachine(), would otherwise keep them until its layout's next run, long enough for V8
   * to move them into its old generation, whose collections cost far more.)
   */
  end(): void;
  /** The outcome of the run as it ended with `result`. */
  finish(result: RunResult, schedule: readonly Injection[], raised: readonly Raised[]): RunOutcome;
  /** Has a sample or a check failed so far, the end-of-run checks as they stand now included? */
  failing(): boolean;
  /**
   * What coverage counts of the run so far, without an outcome: the interrupts delivered and the
   * scheduler's counts, live (read them before a restore()).
   */
  coverageNow(): Pick<RunOutcome, "delivered" | "sched">;
  /**
   * Exhaustive mode's virtual NMI: the pt_regs asm_exc_nmi would save for the instruction about
   * to run (`words`: the fields that are not registers, as a real NMI left them), written where
   * it saves them (`regs`), and the perf walk nmi_sample() would make from them, classed as its
   * sample is. Whether that sample fails. The words it wrote are put back.
   */
  nmiWalkFails(regs: bigint, words: Readonly<Record<"orig_ax" | "cs" | "ss", bigint>>): boolean;
  /** The pt_regs at `regs` as words, by field (what a real NMI saved: to learn nmiWalkFails's layout). */
  ptRegsAt(regs: bigint): Record<keyof typeof PT_REGS, bigint>;
  /** The pt_regs an NMI would save now, by field (orig_ax, cs and ss as given). */
  ptRegsNow(words: Readonly<Record<"orig_ax" | "cs" | "ss", bigint>>): Record<keyof typeof PT_REGS, bigint>;
}

/** A run's state kept by RunSession.save(). */
export interface SavedRun {
  restore(): void;
  readonly machine: MachineSnapshot;
  readonly sched: SchedCounts;
}

const REG_OF: Readonly<Partial<Record<keyof typeof PT_REGS, RegName>>> = {
  r15: "r15", r14: "r14", r13: "r13", r12: "r12", bp: "rbp", bx: "rbx", r11: "r11", r10: "r10", r9: "r9", r8: "r8",
  ax: "rax", cx: "rcx", dx: "rdx", si: "rsi", di: "rdi", sp: "rsp",
};

/** pt_regs's fields in order, each with its offset and the register it saves, if one. */
const PT_FIELDS = (Object.entries(PT_REGS) as [keyof typeof PT_REGS, number][]).map(([name, off]) => ({ name, off, reg: REG_OF[name], index: REG_OF[name] === undefined ? -1 : REG_NAMES.indexOf(REG_OF[name]!) }));

/**
 * Instructions a run may take before it is a hang, when no program has a loop a may_goto bounds
 * (else stepBudget() gives more).
 */
export const RUN_STEP_BUDGET = 4_000_000;

/** Per program: has some function a loop that a may_goto bounds (findLoops(), the validator's own loop analysis)? */
const mayGotoLoops = new RecentCache<Program, boolean>(PROGRAMS_KEPT);

/**
 * Does some program have a loop a may_goto bounds (loops.ts findLoops(): one on every iteration
 * that leaves the loop; the generators' counted loops have one too)? Whatever else bounds such
 * a loop, may_goto lets it run 2 × BPF_MAX_TIMED_LOOPS passes (the verifier's timed fix-up;
 * jit/bpf/interp.ts), about 1.2 million steps for the generators' spin loop
 * `l: may_goto out; r2 += 1; goto l` (generators/_internals/steps.ts SPIN_LOOP_STEPS).
 */
function hasMayGotoLoop(sc: Scenario): boolean {
  return sc.programs.some((p) => {
    return mayGotoLoops.getOrMake(p, () => p.funcs.some((f) => {
      const found = findLoops(p.insns, f.start, f.end, (i) => isLdImm64SecondHalf(p.insns, i));
      return "loops" in found && found.loops.some((L) => L.mayGoto !== undefined);
    }));
  });
}

/** At most this many runs' worth of steps (a scenario file may list any number of interrupts). */
const MAX_BUDGET_RUNS = 32;

/**
 * The step budget of a run: RUN_STEP_BUDGET (room for about three such loops), and with a loop
 * a may_goto bounds, as much again for every start of a run (each task, each of `injected`
 * interrupts), up to MAX_BUDGET_RUNS times in all, since each may run the loop's program
 * (and nested runs within it may run it again). With 4 million steps whatever ran, a sound
 * scenario of two tasks and two IRQs all running such a program (four loops, about 4.7 million
 * steps) ended as a hang (`check --strategy baseline --spin-loops --runs 30 --seed 5`).
 */
export function stepBudget(sc: Scenario, injected: number): number {
  return hasMayGotoLoop(sc) ? RUN_STEP_BUDGET * Math.min(MAX_BUDGET_RUNS, 1 + (sc.spec.tasks?.length ?? 1) + injected) : RUN_STEP_BUDGET;
}

export function runScenario(sc: Scenario, strategy: Strategy, o: RunOptions): RunOutcome {
  const s = startRun(sc, strategy, o);
  try {
    return driveRun(s, sc, o);
  } finally {
    s.end();
  }
}

/** A started run (startRun() with the same options) driven to its end: the schedule's interrupts raised at their steps. */
export function driveRun(s: RunSession, sc: Scenario, o: RunOptions): RunOutcome {
  const budget = o.maxSteps ?? stepBudget(sc, o.injections?.length ?? 0);
  const schedule = [...(o.injections ?? [])].sort((a, b) => a.atStep - b.atStep);
  let result: RunResult = { kind: "paused", steps: 0, rip: s.m.rip };
  const raised: Raised[] = [];
  for (const x of schedule) {
    result = s.m.runUntil(x.atStep, { maxSteps: budget });
    if (result.kind !== "paused") break;
    raised.push({ ...x, ip: s.m.rip, symbol: s.sym(s.m.rip) });
    s.m.raise(x.kind === "nmi" ? 2 : x.vector);
  }
  if (result.kind === "paused") result = s.m.run({ maxSteps: budget });
  return s.finish(result, schedule, raised);
}

/**
 * A run's outcome, its samples worded when first read: their chains symbolised from `table` (the
 * machine's symbols when the run ended), why each walk stopped named from `img`'s stacks. Most
 * runs pass, and nothing reads their samples. Made here, not in the run's own scope, so that an
 * outcome keeps its samples, symbols and image alive, not the run (its machine, hooks and checks).
 */
function outcomeOf(
  head: Pick<RunOutcome, "strategy" | "unwinder" | "policy" | "result">, kept: readonly KeptSample[], table: SymbolTable, img: Image,
  tail: Omit<RunOutcome, keyof typeof head | "samples">,
): RunOutcome {
  let worded: readonly Sample[] | undefined;
  return { ...head, get samples() { return (worded ??= wordSamples(kept, table, img)); }, ...tail };
}

/** Kept samples in words: each chain's symbols, and why its walk stopped, naming the stack (or the symbol) of the address it could not follow. */
function wordSamples(kept: readonly KeptSample[], table: SymbolTable, img: Image): Sample[] {
  let areas: ReturnType<typeof stackAreas> | undefined; // built at the first walk that stopped off its stacks
  const stopText = (w: NonNullable<Walk["stopped"]>): string => {
    const area = w.at === undefined ? undefined : (areas ??= stackAreas(img)).find((x) => w.at! >= x.begin && w.at! < x.end);
    return `${w.why}${area ? ` (it is in the ${area.name})` : ""}${w.note ? `; ${w.note}` : ""}`;
  };
  const named = (ip: bigint) => ({ ip, symbol: table.describe(ip) });
  return kept.map(({ expected, walk, picture, ...rest }) => ({
    ...rest, truth: expected.map(named), unwound: walk.ips.map(named), error: walk.error, warnings: walk.warnings,
    ...(walk.stopped ? { stopped: stopText(walk.stopped) } : {}), ...(picture === undefined ? {} : { picture }),
  }));
}

/** Set up a run (machine, samples, checks) and enter the task; runScenario() drives it, exhaustive mode forks it. */
export function startRun(sc: Scenario, strategy: Strategy, o: RunOptions): RunSession {
  const policy = o.policy ?? "strict";
  const img: Image = o.image ?? buildImage(sc.spec, strategy, undefined, undefined, o.jit);
  const m: Machine = o.image ? reusedMachine(img) : loadImage(img); // a prebuilt image: one run after another
  const checks = watchRun(img, m, o.privateStacks ?? "none", o.budgets ?? {});
  const unwinder = unwinderFor(o.unwinder, img, m, o.privateStacks ?? "none");
  // The kernel's own stacks only: theirs is the rsp/rbp split that is the kernel's blind spot
  // (call_on_irqstack()); a design that splits rsp and rbp across a private stack is what the
  // oracles are there to catch. With tasks, the switch's blind spot and where new tasks' stacks start.
  const windows = frameWindows(img, m, windowCache(img));
  const sym = (a: bigint) => m.symbols.describe(a);
  /** The samples so far, their chains as addresses (wordSamples() words them when an outcome's samples are read). */
  const samples: KeptSample[] = [];
  /** A sample: the walk against the chain a correct walk gives (the truth from `from`, or as given). */
  const record = (kind: Sample["kind"], where: string, from: number | { expected: readonly bigint[]; allow: () => readonly Allowance[] }, walk: Walk, interrupted?: Sample["interrupted"]) => {
    const truth = m.truth();
    const picture = o.picture === samples.length ? stackPicture(img, m, truth, interrupted?.bp ?? m.reg("rbp")) : undefined;
    const expected = typeof from === "number" ? expectedChain(truth, from) : from.expected;
    const c = classify(expected, walk, typeof from === "number" ? () => allowances(truth, from, windows) : from.allow);
    samples.push({
      kind, where, step: m.steps, regs: { rip: m.rip, rsp: m.reg("rsp"), rbp: m.reg("rbp") }, ...(interrupted ? { interrupted } : {}), class: c.class, failed: fails(c.class, policy),
      expected, walk, picture,
    });
  };
  // dump_stack()/stack_trace_save() from the sampling function itself: arch_stack_walk() of current, no regs
  const fromFrame = (mm: Machine): Walk => archStackWalk(unwinder, { kind: "current", ip: mm.rip, sp: mm.reg("rsp"), bp: mm.reg("rbp") });
  m.addHook(img.kernel.addr("nmi_sample"), (mm) => {
    const truth = mm.truth();
    const k = truth.findIndex((t) => t.kind === "interrupt");
    const ip = (truth[k] as { ip: bigint }).ip;
    const regs = mm.reg("rdi");
    const field = (f: keyof typeof PT_REGS) => mm.peek64(regs + BigInt(PT_REGS[f])) ?? 0n;
    const interrupted = { ip: field("ip"), sp: field("sp"), bp: field("bp") };
    record("NMI (perf, from regs)", sym(ip), k, perfCallchainKernel(unwinder, regs), interrupted);
  });
  // Delivery: the gate's first instruction runs with rsp at the hardware frame's RIP word.
  const delivered: Raised[] = [];
  const onGate = (kind: "irq" | "nmi", vector: number) => (mm: Machine) => {
    const ip = mm.peek64(mm.reg("rsp")) ?? 0n;
    delivered.push({ kind, vector, atStep: mm.steps, ip, symbol: sym(ip) });
  };
  for (const v of img.irqVectors) m.addHook(img.kernel.addr(`irq_entry_${v}`), onGate("irq", v));
  m.addHook(img.kernel.addr("asm_exc_nmi"), onGate("nmi", 2));
  m.addHook(img.kernel.addr("irq_sample"), (mm) => record("IRQ handler", sym(mm.rip), 0, fromFrame(mm)));
  // Which attachment each task's innermost BPF run came through (the runner's table index, from
  // bpf_sc_run's entry to run_exit): what bpf_get_stack() finds in its context decides how it
  // walks, and a second attachment (Program.linkOf) runs its program's code, so the code cannot
  // say. Kept only for an image that has one.
  const attachments = img.programs.some((p) => p.linkOf !== undefined) ? new Map<number, number[]>() : undefined;
  if (attachments) {
    const runsOf = (mm: Machine) => {
      const t = img.multitask ? currentTask(img, mm) : 0;
      let a = attachments.get(t);
      if (a === undefined) attachments.set(t, (a = []));
      return a;
    };
    m.addHook(img.kernel.addr("bpf_sc_run"), (mm) => { runsOf(mm).push(Number(mm.reg("rdi"))); });
    m.addHook(img.kernel.addr("run_exit"), (mm) => { runsOf(mm).pop(); });
  }
  m.addHook(img.kernel.addr("bpf_sc_get_stack_sample"), (mm) => {
    const s = getStackSample(img, mm, mm.truth(), unwinder, windows, attachments?.get(img.multitask ? currentTask(img, mm) : 0)?.at(-1));
    record("bpf_get_stack (helper)", `${sym(mm.rip)}, ${s.how}`, s, s.walk);
  });

  startTask(img, m);
  const k = img.kernel;
  const sched = { ticks: 0, preemptedInBpf: 0, preemptedInKernel: 0, preemptedAtEnable: 0, sleeps: 0, blockedWalks: 0, blockedUnreliable: 0 };
  if (img.multitask) {
    m.addHook(k.addr(`irq_entry_${LOCAL_TIMER_VECTOR}`), () => { sched.ticks++; });
    m.addHook(k.addr("preempt_schedule_irq"), (mm) => {
      const interrupted = mm.truth().find((t) => t.kind === "interrupt");
      if (interrupted && mm.symbols.kindOf(interrupted.ip) === "bpf") sched.preemptedInBpf++;
      else sched.preemptedInKernel++;
    });
    m.addHook(k.addr("preempt_schedule_notrace"), () => { sched.preemptedAtEnable++; });
    m.addHook(k.addr("bpf_sc_sleep"), () => { sched.sleeps++; });
    // At every switch (after the ground truth changed tasks: startTask()'s hook runs first), a
    // reliable walk of every task switched out, as livepatch makes (arch_stack_walk_reliable()
    // from its switch frame, kernel/livepatch/transition.c klp_check_stack()). Classed like any
    // sample; only a walk that says it is reliable and is not exact fails (livepatch would trust
    // it): -EINVAL is the contract's answer for what the unwinder cannot vouch for (FLAGGED), and
    // livepatch tries again later.
    m.addHook(k.addr("switch_current"), (mm) => {
      for (const t of mm.parkedTasks()) {
        const task = img.tasks[t]!;
        const threadSp = mm.peek64(task.struct + BigInt(TASK.threadSp)) ?? 0n;
        if (threadSp === 0n || (mm.peek64(task.struct + BigInt(TASK.state)) ?? 0n) === BigInt(TASK_DEAD)) continue;
        const truth = mm.parkedTruth(t, k.addr("__switch_to_asm"));
        const expected = expectedChain(truth, 0);
        const r = archStackWalkReliable(unwinder, { kind: "task", task: { stack: task.stack, threadSp, ptRegs: task.ptRegs } }, unwinder.name === "frame");
        const walk: Walk = { ips: r.ips, error: !r.ok, reachedEnd: r.ok, warnings: r.warnings, stopped: r.stopped };
        const c = classify(expected, walk);
        sched.blockedWalks++;
        if (!r.ok) sched.blockedUnreliable++;
        samples.push({
          kind: "blocked task (reliable walk)", where: `task ${t}, switched out at ${sym(expected[0] ?? 0n)}${r.ok ? "" : ` (-EINVAL: ${r.why})`}`, step: mm.steps,
          regs: { rip: mm.rip, rsp: mm.reg("rsp"), rbp: mm.reg("rbp") }, class: c.class, failed: r.ok && c.class !== "EXACT", expected, walk, picture: undefined,
        });
      }
    });
  }
  // the bytes of the pt_regs a virtual NMI writes (nmiWalkFails(), at every boundary)
  const ptBytes = new Uint8Array(PT_REGS_SIZE), ptView = new DataView(ptBytes.buffer), ptOld = new Uint8Array(PT_REGS_SIZE);
  /** A pt_regs field as an NMI would save it now: its register, rip, rflags, or as `words` gives it. */
  const ptWord = (f: (typeof PT_FIELDS)[number], words: Readonly<Record<"orig_ax" | "cs" | "ss", bigint>>): bigint =>
    f.reg !== undefined ? m.reg(f.reg) : f.name === "ip" ? m.rip : f.name === "flags" ? BigInt(m.rflags) : words[f.name as "orig_ax" | "cs" | "ss"];
  return {
    m, sym,
    end: () => m.resetInstrumentation(),
    failing: () => samples.some((x) => x.failed) || checks.failing(),
    coverageNow: () => ({ delivered, sched }),
    ptRegsAt(regs) {
      const out = {} as Record<keyof typeof PT_REGS, bigint>;
      for (const f of PT_FIELDS) out[f.name] = m.peek64(regs + BigInt(f.off)) ?? 0n;
      return out;
    },
    ptRegsNow(words) {
      const out = {} as Record<keyof typeof PT_REGS, bigint>;
      for (const f of PT_FIELDS) out[f.name] = ptWord(f, words);
      return out;
    },
    nmiWalkFails(regs, words) {
      // (per boundary: the registers go straight from the register file into the bytes, no
      // object by field or bigint in between; loadAt() copies them)
      const bytes = ptBytes, dv = ptView, { lo, hi } = m.regFile;
      for (const f of PT_FIELDS) {
        if (f.index >= 0) { dv.setUint32(f.off, lo[f.index]!, true); dv.setUint32(f.off + 4, hi[f.index]!, true); }
        else dv.setBigUint64(f.off, BigInt.asUintN(64, ptWord(f, words)), true);
      }
      // (data memory, no code: straight into the pages, and back from a copy kept per run)
      const at = toInternal(regs)!;
      if (!m.memory.peekInto(at, ptOld)) throw new Error(`virtual NMI: pt_regs at ${regs.toString(16)} are not all mapped`);
      m.memory.loadAt(at, bytes);
      try {
        // the truth nmi_sample() would see from the interrupt down: the NMI's entry (its hardware
        // frame is pt_regs's iret frame), then the interrupted context
        // (its verdict only: no report reads this truth, so the NMI's entry has no symbol text,
        // which would be a string made at every boundary)
        // (the expected chain, expectedChain(truth, 0), is the interrupted ip and every return
        // address, the running task's root activation's included: the truth itself only for
        // what a walk that is not EXACT may miss)
        const ip = m.rip;
        const truth = (): TruthEntry[] => [{ kind: "interrupt", vector: 2, name: "NMI", ip, symbol: "", rsp: m.reg("rsp"), frame: regs + BigInt(PT_REGS.ip), bp: m.reg("rbp") }, ...m.truth()];
        const c = classify([ip, ...m.returnAddresses()], perfCallchainKernel(unwinder, regs), () => allowances(truth(), 0, windows));
        return fails(c.class, policy);
      } finally {
        m.memory.loadAt(at, ptOld); // the NMI stack as it was
      }
    },
    save() {
      const machine = m.snapshot(), nSamples = samples.length, nDelivered = delivered.length, restoreChecks = checks.save(), counts = { ...sched };
      const runs = attachments && [...attachments].map(([t, a]) => [t, a.slice()] as const);
      return {
        machine, sched: counts,
        restore() {
          if (attachments) { attachments.clear(); for (const [t, a] of runs!) attachments.set(t, a.slice()); }
          Object.assign(sched, counts);
          m.restore(machine);
          samples.length = nSamples;
          delivered.length = nDelivered;
          restoreChecks();
        },
      };
    },
    finish(result, schedule, raised) {
      const report: RunReport = checks.report();
      const ok = result.kind === "completed" && report.failures.length === 0 && samples.every((x) => !x.failed);
      // (the samples and symbols as they are now: a pooled machine takes another image's
      // symbols at its next run, and exhaustive mode rewinds this session)
      return outcomeOf({ strategy: strategy.name, unwinder: o.unwinder, policy, result }, samples.slice(), m.symbols, img, {
        checks: report, unraised: schedule.slice(raised.length), raised: [...raised], delivered: [...delivered], sched: { ...sched }, tasks: img.multitask ? img.tasks.length : 1, ok,
      });
    },
  };
}

/** The scenario's own schedule as injections. */
export function scheduleOf(sc: Scenario): Injection[] {
  return (sc.file.interrupts ?? []).map((x) => (x.kind === "nmi" ? { kind: "nmi", atStep: x.atStep, vector: 2 } : x.kind === "tick" ? { kind: "tick", atStep: x.atStep, vector: LOCAL_TIMER_VECTOR } : { kind: "irq", atStep: x.atStep, vector: x.vector }));
}
