// Lowering a whole plan: programs bottom-up (a program only runs later programs and a function
// only calls later functions, so what a call enters is lowered first and its cost and nesting
// height are known), then per program the functions no call reaches are dropped and the stack
// depths are fitted to the verifier's limits, then the task's timeline places the interrupts.
// Pure and linear in the size of the plan.
import { RecentCache } from "../../jit/recent-cache.ts";
import type { ScenarioFile } from "../../harness/scenario.ts";
import { recursionCounters } from "../../jit/bpf/interp.ts";
import { ATTACH_PATHS, attachPathsOf, DEFAULT_ATTACH, PROG_TYPES, type AttachPath, type Program, type ProgType } from "../../jit/bpf/program.ts";
import { LOCAL_TIMER_VECTOR, MAX_TASKS } from "../../jit/kernel/layout.ts";
import { privStackMode, roundUp16 } from "../../jit/bpf/validate.ts";
import { BPF_PRIV_STACK_MIN_SIZE, MAX_BPF_STACK } from "../../jit/bpf/opcodes.ts";
import {
  IRQ_VECTORS, TASK_IRQ_VECTORS, MAX_FUNCS, MAX_INTERRUPTS, MAX_NEST_LIMIT, MAX_PROGRAMS, NMI_NEST_LIMIT,
  type Plan, type PlanFunc, type PlanInterrupt, type PlanProgram,
} from "../plan.ts";
import { KFUNC_RUN_NESTED, lowerBody, paramsOf, type LoweredBody } from "./emit.ts";
import { clamp, s32, upTo, wrap } from "./num.ts";
import {
  IRQ_ENTER, IRQ_EXIT, KFUNC_EINVAL, KFUNC_ENTER, KFUNC_EXIT, nestedRunCost, NMI_ENTER, NMI_EXIT, NMI_NO_PROGRAM,
  RUNNER_REFUSED, timeline, traceRun, type Callee, type ProgShape, type RunTrace, type Timeline,
} from "./steps.ts";

type FileProgram = ScenarioFile["programs"][number];
type Tuple = [number, number, number, number, number];

/** One lowered function's frame, for tests and diagnostics (own slot k sits at r10 - slot0 + 8k). */
export interface FrameInfo {
  readonly name: string;
  /** Its stack depth: the deepest byte it touches (slot0 less the untouched slots below the first touched one). */
  readonly depth: number;
  /** Where own slot 0 sits below r10. */
  readonly slot0: number;
  /** Per instruction: the own slots (bit k) holding a value still to be read, just before it. */
  readonly live: readonly number[];
}

export interface Lowered {
  readonly file: ScenarioFile;
  /** Per program, per lowered function. */
  readonly frames: readonly (readonly FrameInfo[])[];
  /** The task's run as the step model sees it (interrupt points are placed on it). */
  readonly timeline: Timeline;
}

const EMPTY_FUNC: PlanFunc = { slots: [], extra: 0, params: 0, atEntry: null, body: [], atExit: null };
const TRIVIAL_PROGRAM: PlanProgram = { type: "struct_ops", privStackRequested: false, seed: 0, funcs: [EMPTY_FUNC] };

/** A Program with no code: what the kernel's type rules (privStackMode, recursionCounters) look at. */
const typeOnly = (type: ProgType, privStackRequested: boolean, attach?: AttachPath): Program => ({ name: "", type, privStackRequested, insns: [], funcs: [], ...(attach ? { attach } : {}) });

/** A plan program's path: its type's default, or (a plan with tasks) the one its index picks. */
const attachFor = (p: PlanProgram, type: ProgType, tasks: boolean, counted: boolean): AttachPath => {
  if (!tasks || p.attach === undefined) return DEFAULT_ATTACH[type];
  const paths = attachPathsOf(type).filter((a) => !counted || ATTACH_PATHS[a].counter !== "none");
  return paths[wrap(p.attach, paths.length)]!;
};

/**
 * A plan program's second attachment (PlanProgram.link, a plan with tasks): another path of its
 * type, as its index picks among them (counted ones only with `countedPaths`), or none.
 */
const linkFor = (p: PlanProgram, type: ProgType, attach: AttachPath, tasks: boolean, counted: boolean): AttachPath | undefined => {
  if (!tasks || p.link === undefined || p.link === null) return undefined;
  const paths = attachPathsOf(type).filter((a) => a !== attach && (!counted || ATTACH_PATHS[a].counter !== "none"));
  return paths.length ? paths[wrap(p.link, paths.length)] : undefined;
};

const progName = (i: number) => `p${i}`;
const funcName = (fi: number) => (fi === 0 ? "main" : `f${fi}`);

interface LoweredProgram {
  readonly file: FileProgram;
  readonly frames: readonly FrameInfo[];
  readonly shape: ProgShape;
  /** Steps of a run of its main function (nested runs counted as allowed). */
  readonly mainCost: number;
  /** The deepest chain of kfunc-nested runs it can start. */
  readonly height: number;
}

/** What lowering makes of a plan before its interrupts are placed (everything else in a Lowered). */
interface LoweredPrograms {
  readonly lowered: readonly LoweredProgram[];
  readonly names: readonly string[];
  readonly irq: readonly { readonly vector: number; readonly program: number }[];
  readonly nmi: number | undefined;
  readonly shapes: readonly ProgShape[];
  readonly timeline: Timeline;
  readonly taskRefs: readonly number[];
  readonly tasks: boolean;
  /** The programs' second attachments (ScenarioFile links), and per program the entry (program or link) tasks and interrupts run it through. */
  readonly links: NonNullable<ScenarioFile["links"]>;
  readonly taskEntry: readonly string[];
  readonly interruptEntry: readonly string[];
  /** Per program, the counter an interrupt's run of it takes when that is its link's (the step model's numbering); none without links. */
  readonly interruptCounters: readonly (number | undefined)[] | undefined;
}

/**
 * The last lowering of each plan's programs: a campaign with several schedules per plan lowers
 * one plan again with each schedule (`{ ...plan, interrupts }`), whose programs, and so their
 * scenario entries, are then the same objects (harness/scenario.ts validates each entry once).
 * Keyed by the programs array, checked against the plan's other fields. Plans are values: a plan,
 * and the scenario entries lowered from it, are never changed in place (nothing here or in the
 * harness does), or the memo would hand out a stale lowering.
 */
const programsOf = new RecentCache<readonly PlanProgram[], { readonly key: string; readonly value: LoweredPrograms }>(4);

/** The plan's fields other than programs and interrupts, as text (NaN and ±Infinity kept apart: the lowering clamps them apart). */
const otherFields = (plan: Plan): string =>
  JSON.stringify([plan.nestLimit, plan.irq, plan.nmi, plan.spinLoops, plan.tasks, plan.countedPaths], (_, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v));

export function lowerPlan(plan: Plan): Lowered {
  let value: LoweredPrograms;
  if (Array.isArray(plan.programs)) {
    const key = otherFields(plan);
    let memo = programsOf.get(plan.programs);
    if (memo?.key !== key) programsOf.set(plan.programs, (memo = { key, value: lowerPrograms(plan) }));
    value = memo.value;
  } else value = lowerPrograms(plan); // a hand-edited plan without programs: a trivial one
  const { lowered, names, irq, nmi, shapes, timeline: tl, taskRefs, tasks, links, taskEntry, interruptEntry, interruptCounters } = value;
  const interrupts = placeInterrupts(upTo(plan.interrupts, MAX_INTERRUPTS), tl, shapes, irq, nmi, tasks, interruptCounters);
  const file: ScenarioFile = {
    version: links.length ? 3 : tasks ? 2 : 1,
    name: "generated by stackcheck generators",
    programs: lowered.map((l) => l.file),
    ...(links.length ? { links } : {}),
    ...(tasks ? { tasks: [taskEntry[0]!, ...taskRefs.map((r) => taskEntry[wrap(r, lowered.length)]!)] } : { task: names[0]! }),
    nested: [...names],
    irq: irq.map((a) => ({ vector: a.vector, program: interruptEntry[a.program]! })),
    ...(nmi === undefined ? {} : { nmi: interruptEntry[nmi]! }),
    interrupts,
  };
  return { file, frames: lowered.map((l) => l.frames), timeline: tl };
}

function lowerPrograms(plan: Plan): LoweredPrograms {
  const given = upTo(plan.programs, MAX_PROGRAMS);
  const progs = given.length ? given : [TRIVIAL_PROGRAM];
  const n = progs.length;
  const nestLimit = clamp(plan.nestLimit, 0, MAX_NEST_LIMIT);
  const types = progs.map((p) => ((PROG_TYPES as readonly string[]).includes(p.type) ? p.type : "struct_ops"));
  // Tasks: with at least one more task, a version 2 scenario with the scheduler (ticks, sleeps, attach paths)
  const taskRefs = upTo(plan.tasks ?? [], MAX_TASKS - 1);
  const tasks = taskRefs.length > 0;
  const attach = progs.map((p, i) => attachFor(p, types[i]!, tasks, plan.countedPaths === true));
  const counters = recursionCounters(types.map((t, i) => typeOnly(t, progs[i]!.privStackRequested === true, attach[i])));
  const vectors = tasks ? TASK_IRQ_VECTORS : IRQ_VECTORS;
  // Second attachments (7.2 lets a KPROBE program be a uprobe's and a kprobe's at once, a
  // TRACEPOINT program a syscall tracepoint's and an ordinary one's): tasks run such a program
  // through whichever of its two paths fires only in task context, interrupts through the other.
  const link = progs.map((p, i) => linkFor(p, types[i]!, attach[i]!, tasks, plan.countedPaths === true));
  // Paths that fire only in a task's own context (uprobes, faultable tracepoints: ATTACH_PATHS
  // `task`) run in no interrupt and through no kfunc: an interrupt runs the first program from
  // its reference on that is on another path, or has a link on one (none: the IRQ is left out),
  // a nested run skips them.
  const taskOnly = attach.map((a) => ATTACH_PATHS[a].task);
  const inInterrupt = (c: number) => !taskOnly[c] || (link[c] !== undefined && !ATTACH_PATHS[link[c]!].task);
  const irq = upTo(plan.irq, vectors.length).flatMap((ref, k) => {
    const program = Array.from({ length: n }, (_, d) => wrap(ref + d, n)).find(inInterrupt);
    return program === undefined ? [] : [{ vector: vectors[k]!, program }];
  });
  const nmiRef = plan.nmi !== null && plan.nmi !== undefined ? wrap(plan.nmi, n) : undefined;
  // Sleeping is only for task context (kernel/sched/core.c __schedule_bug(): "scheduling while
  // atomic"): a program sleeps only if its path allows it, no interrupt runs it, and every
  // earlier program that may run it through the kfunc sleeps too (so runs it in task context).
  const sleepable: boolean[] = [];
  const nests = progs.map((p) => upTo(p.funcs, MAX_FUNCS).some((f) => [f.atEntry, f.atExit, ...f.body].some((it) => it?.op === "nested")));
  for (let i = 0; i < n; i++) {
    const interrupt = irq.some((a) => a.program === i) || nmiRef === i;
    // (a sleepable program may only be attached where sleeping is allowed: both its paths)
    const paths = [attach[i]!, ...(link[i] === undefined ? [] : [link[i]!])];
    sleepable.push(tasks && progs[i]!.sleepable === true && paths.every((a) => ATTACH_PATHS[a].sleepable) && !interrupt && sleepable.every((s, h) => s || !nests[h]));
  }
  // a sleepable raw_tp program attaches only to a faultable tracepoint (program.ts runsOnlyInTask()):
  // no kfunc runs it either (interrupts already do not: it sleeps)
  for (let i = 0; i < n; i++) if (sleepable[i] && attach[i] === "raw_tp") taskOnly[i] = true;
  const lowered: LoweredProgram[] = new Array(n);
  for (let i = n - 1; i >= 0; i--) {
    lowered[i] = lowerProgram(progs[i]!, i, types[i]!, counters[i]!, n, nestLimit, lowered, i === 0 && plan.spinLoops === true, { attach: attach[i]!, sleepable: sleepable[i]!, tasks, taskOnly });
  }

  const names = progs.map((_, i) => progName(i));
  // the NMI's program: the first from its reference on that nests shallowly enough and does not
  // sleep (the last program nests nothing; if every candidate sleeps, the NMI runs none)
  let nmi: number | undefined;
  for (let k = 0; nmiRef !== undefined && k < n && nmi === undefined; k++) {
    const c = (nmiRef + k) % n;
    if (lowered[c]!.height <= NMI_NEST_LIMIT && !sleepable[c] && inInterrupt(c)) nmi = c;
  }
  // (in a function of its own, which returns at once without links: written out here, it made the
  // lowering of plans without links take about a fifth more instructions)
  const sites = linkSites(lowered, names, types, link, taskOnly, taskRefs, irq, nmi);
  const shapes = lowered.map((l) => l.shape);
  const tl = timeline(shapes, 0, sites.taskCounter);
  return { lowered, names, irq, nmi, shapes, timeline: tl, taskRefs, tasks, ...sites };
}

function lowerProgram(p: PlanProgram, i: number, type: ProgType, counter: number, n: number, nestLimit: number, later: readonly LoweredProgram[], spinLoop: boolean,
  run: { readonly attach: AttachPath; readonly sleepable: boolean; readonly tasks: boolean; readonly taskOnly: readonly boolean[] }): LoweredProgram {
  const given = upTo(p.funcs, MAX_FUNCS);
  const funcs = given.length ? given : [EMPTY_FUNC];
  const m = funcs.length;
  const params = funcs.map((f, fi) => paramsOf(f, fi === 0));
  const bodies: LoweredBody[] = new Array(m);
  let height = 0;
  // A nested run: a later program, or, from the last program, itself (refused: prog->active),
  // unless its path has no counter (uprobes), where that would recurse, or fires only in task
  // context: an index the kfunc rejects. A struct_ops program has prog->active only when the
  // design's JIT gives it a private stack (program.ts counterOf(); for 7.2's, from the depths
  // the verifier finds), not known here: it never runs itself either.
  const nested = (target: number): { index: number; callee: Callee; cost: number } => {
    if (i === n - 1 && (ATTACH_PATHS[run.attach].counter === "none" || type === "struct_ops" || run.taskOnly[i])) return { index: n, callee: { kind: "einval" }, cost: KFUNC_EINVAL };
    if (i === n - 1) return { index: i, callee: { kind: "nested", prog: i }, cost: KFUNC_ENTER + RUNNER_REFUSED + KFUNC_EXIT };
    // Too deep for nestLimit, or on a task-context path: the next later program that is
    // neither; with none (nestLimit 0), still call the kfunc, with an index it rejects (-EINVAL).
    let j = i + 1 + wrap(target, n - i - 1);
    while (j < n && (1 + later[j]!.height > nestLimit || run.taskOnly[j])) j++;
    if (j === n) return { index: n, callee: { kind: "einval" }, cost: KFUNC_EINVAL };
    height = Math.max(height, 1 + later[j]!.height);
    return { index: j, callee: { kind: "nested", prog: j }, cost: nestedRunCost(later[j]!.mainCost) };
  };
  // The plan's one loop that only may_goto bounds, if it allows one: in the task's main function.
  let spinLeft = spinLoop;
  for (let fi = m - 1; fi >= 0; fi--) {
    bodies[fi] = lowerBody(funcs[fi]!, {
      isMain: fi === 0, type, seed: s32(p.seed), params: params[fi]!, nested, sleepable: run.sleepable,
      spin: () => {
        if (fi !== 0 || !spinLeft) return false;
        spinLeft = false;
        return true;
      },
      subprog: (target) => {
        if (fi === m - 1) return undefined;
        const g = fi + 1 + wrap(target, m - fi - 1);
        return { fi: g, params: params[g]!, cost: bodies[g]!.cost };
      },
    });
  }
  // Functions no call reaches would be unreachable code to the verifier: drop them.
  const kept = reachable(bodies);
  const depths = fitDepths(funcs, bodies, kept, privStackMode(typeOnly(type, p.privStackRequested === true)));
  const low = (fi: number) => 8 * lowestTouched(bodies[fi]!); // bytes of untouched slots below the first touched one
  const starts = new Map<number, number>();
  let at = 0;
  for (const fi of kept) { starts.set(fi, at); at += bodies[fi]!.insns.length; }
  const frames: FrameInfo[] = [];
  const fileFuncs = kept.map((fi) => {
    const depth = depths.get(fi)!, start = starts.get(fi)!, slot0 = depth + low(fi);
    frames.push({ name: funcName(fi), depth, slot0, live: bodies[fi]!.insns.map((s) => s.live) });
    const insns = bodies[fi]!.insns.map((s, k): Tuple => {
      const x = s.x;
      if (s.callee >= 0) return [x.code, x.dst, x.src, x.off, starts.get(s.callee)! - (start + k + 1)];
      if (s.at < 0) return [x.code, x.dst, x.src, x.off, x.imm];
      return s.field === "off" ? [x.code, x.dst, x.src, s.at - slot0, x.imm] : [x.code, x.dst, x.src, x.off, s.at - slot0];
    });
    return { name: funcName(fi), stackDepth: depth, insns };
  });
  return {
    file: {
      name: progName(i), type, ...(p.privStackRequested === true ? { privStackRequested: true } : {}),
      ...(run.tasks && run.attach !== DEFAULT_ATTACH[type] ? { attach: run.attach } : {}), ...(run.sleepable ? { sleepable: true } : {}), funcs: fileFuncs,
    },
    frames,
    shape: { funcs: bodies.map((b) => b.shape), counter },
    mainCost: bodies[0]!.cost,
    height,
  };
}

/**
 * Which attachment each site runs: tasks the task-context one, interrupts the other; the kfunc a
 * program's own (nested runs skip task-context programs). An attachment no site runs is left
 * out: a program whose own path nothing runs takes its link's path instead (one path, no link;
 * `lowered` and `link` are updated), so a counterexample that needs one path shrinks to a
 * program on it. The step model's counters for runs through a link (recursionCounters()'s
 * numbering: the global one is n, prog->active the program's own, none one of its own that
 * nothing holds).
 */
function linkSites(
  lowered: LoweredProgram[], names: readonly string[], types: readonly ProgType[], link: (AttachPath | undefined)[], taskOnly: readonly boolean[],
  taskRefs: readonly number[], irq: readonly { readonly program: number }[], nmi: number | undefined,
): Pick<LoweredPrograms, "links" | "taskEntry" | "interruptEntry" | "interruptCounters"> & { readonly taskCounter: number | undefined } {
  const n = names.length;
  if (link.every((a) => a === undefined)) return { links: [], taskEntry: names, interruptEntry: names, interruptCounters: undefined, taskCounter: undefined };
  const viaLink = (i: number, task: boolean) => link[i] !== undefined && taskOnly[i] !== task && ATTACH_PATHS[link[i]!].task === task;
  const linkCounter = (i: number) => { const c = ATTACH_PATHS[link[i]!].counter; return c === "global" ? n : c === "prog" ? i : n + 1 + i; };
  const byTask = new Set([0, ...taskRefs.map((r) => wrap(r, n))]), byInterrupt = new Set([...irq.map((a) => a.program), ...(nmi === undefined ? [] : [nmi])]);
  const byKfunc = new Set(lowered.flatMap((l) => nestedTargets(l.file)));
  for (let i = 0; i < n; i++) {
    if (link[i] === undefined) continue;
    const own = (byTask.has(i) && !viaLink(i, true)) || (byInterrupt.has(i) && !viaLink(i, false)) || byKfunc.has(i);
    const other = (byTask.has(i) && viaLink(i, true)) || (byInterrupt.has(i) && viaLink(i, false));
    if (!own && other) lowered[i] = { ...lowered[i]!, file: withAttach(lowered[i]!.file, link[i]!, types[i]!), shape: { ...lowered[i]!.shape, counter: linkCounter(i) } };
    if (!own || !other) link[i] = undefined;
  }
  const counterVia = (task: boolean) => names.map((_, i) => (viaLink(i, task) ? linkCounter(i) : undefined));
  // the links, after the programs in the scenario's list, each named for its program and path
  const links = link.flatMap((a, i) => (a === undefined ? [] : [{ name: `${names[i]}_${a}`, program: names[i]!, attach: a }]));
  const entry = (task: boolean) => names.map((name, i) => (viaLink(i, task) ? `${name}_${link[i]}` : name));
  return { links, taskEntry: entry(true), interruptEntry: entry(false), interruptCounters: counterVia(false), taskCounter: counterVia(true)[0] };
}

/** The programs a lowered program runs through the kfunc: `r1 = k` right before each call of it (the form lowerBody() emits). */
function nestedTargets(f: FileProgram): number[] {
  const out: number[] = [];
  for (const fn of f.funcs) {
    for (let k = 1; k < fn.insns.length; k++) {
      const x = fn.insns[k]!, prev = fn.insns[k - 1]!;
      if (x[0] === 0x85 && x[2] === 2 && x[4] === KFUNC_RUN_NESTED && prev[0] === 0xb7 && prev[1] === 1) out.push(prev[4]);
    }
  }
  return out;
}

/** A lowered program's file entry on another path (its type's default: no `attach`). */
function withAttach(f: FileProgram, attach: AttachPath, type: ProgType): FileProgram {
  const { attach: _, ...rest } = f;
  return attach === DEFAULT_ATTACH[type] ? rest : { ...rest, attach };
}

/** The functions reachable from main through calls, in index order. */
function reachable(bodies: readonly LoweredBody[]): number[] {
  const seen = new Set<number>([0]);
  for (let fi = 0; fi < bodies.length; fi++) if (seen.has(fi)) for (const g of bodies[fi]!.subprogs) seen.add(g);
  return [...seen].sort((a, b) => a - b);
}

/** The lowest own slot the body touches (every slot when it touches none: nothing below counts). */
function lowestTouched(b: LoweredBody): number {
  let k = b.nslots;
  for (const s of b.insns) if (s.at >= 0) k = Math.min(k, Math.floor(s.at / 8));
  return k;
}

/**
 * Stack depths within the verifier's limits (check_max_stack_depth(), kernel-model.md §2.2).
 * A depth is what the verifier finds (grow_stack_state(): the deepest byte touched), so a
 * function asks for 8 bytes per slot from the lowest one it touches up, plus `extra` between its
 * slots and r10 (none when it touches no slot); a function that will get a private stack
 * (eligible program type, depth ≥ 64 after rounding to 16) only has to fit MAX_BPF_STACK alone;
 * every other one counts towards the 512-byte sum of its call chain, so it gets what is left
 * once its callers (top-down) and the minimal needs of its callees (bottom-up) are paid for.
 */
function fitDepths(funcs: readonly PlanFunc[], bodies: readonly LoweredBody[], kept: readonly number[], privMode: boolean): Map<number, number> {
  const min = (fi: number) => 8 * (bodies[fi]!.nslots - lowestTouched(bodies[fi]!));
  const counted = (d: number) => (privMode && roundUp16(d) >= BPF_PRIV_STACK_MIN_SIZE ? 0 : roundUp16(d));
  const rest = new Map<number, number>(); // minimal counted depth of the deepest chain from here
  for (let k = kept.length - 1; k >= 0; k--) {
    const fi = kept[k]!;
    let below = 0;
    for (const g of bodies[fi]!.subprogs) below = Math.max(below, rest.get(g)!);
    rest.set(fi, counted(min(fi)) + below);
  }
  const above = new Map<number, number>([[0, 0]]); // counted depth of the deepest chain of callers
  const depths = new Map<number, number>();
  for (const fi of kept) {
    const want = min(fi) === 0 ? 0 : min(fi) + Math.floor(clamp(funcs[fi]!.extra, 0, MAX_BPF_STACK) / 8) * 8;
    const prefix = above.get(fi) ?? 0;
    let d: number;
    if (privMode && roundUp16(want) >= BPF_PRIV_STACK_MIN_SIZE) d = Math.min(want, MAX_BPF_STACK);
    else d = Math.max(min(fi), Math.min(want, MAX_BPF_STACK - prefix - (rest.get(fi)! - counted(min(fi)))));
    depths.set(fi, d);
    for (const g of bodies[fi]!.subprogs) above.set(g, Math.max(above.get(g) ?? 0, prefix + counted(d)));
  }
  return depths;
}

/** An interrupt source: an NMI, an IRQ vector and its program, or the tick. */
type Source = { readonly nmi: true; readonly prog: number | undefined } | { readonly nmi: false; readonly vector: number; readonly prog: number | undefined; readonly tick?: true };

/**
 * The tick's handler as the step model counts it: the IRQ path and sched_tick() (about 40 more
 * with two tasks). A tick that preempts runs another task for as long as it runs: points after
 * it drift by that much (the model follows one task).
 */
const TICK_STEPS = IRQ_ENTER + 40 + IRQ_EXIT;

/**
 * The schedule: each point is put on the task's timeline (its anchor, plus d), then points are
 * taken in timeline order and shifted by the steps earlier interrupts spend in their handlers.
 */
function placeInterrupts(points: readonly PlanInterrupt[], tl: Timeline, shapes: readonly ProgShape[], irq: readonly { vector: number; program: number }[], nmi: number | undefined, tasks: boolean, counters: readonly (number | undefined)[] | undefined): NonNullable<ScenarioFile["interrupts"]> {
  const source = (isNmi: boolean, vector: number, tick = false): Source | undefined => {
    if (tick && tasks) return { nmi: false, vector: LOCAL_TIMER_VECTOR, prog: undefined, tick: true };
    if (isNmi === true) return { nmi: true, prog: nmi };
    if (irq.length === 0) return undefined; // no vector has a handler to raise
    const a = irq[wrap(vector, irq.length)]!;
    return { nmi: false, vector: a.vector, prog: a.program };
  };
  const anywhere = (n: number) => Math.floor((wrap(n, 1024) * tl.length) / 1024);
  const pick = (list: readonly number[] | undefined, n: number) => (list && list.length ? list[wrap(n, list.length)]! : anywhere(n));
  const base = (p: PlanInterrupt, s: Source): number => {
    switch (p.at) {
      case "start": return wrap(p.n, 64);
      case "call": return pick(tl.calls, p.n);
      case "entry": return pick(tl.entries, p.n);
      case "exit": return pick(tl.exits, p.n);
      case "own": return pick(s.prog === undefined ? undefined : tl.runs.get(s.prog), p.n);
      default: return anywhere(p.n);
    }
  };
  /**
   * A handler: its steps (entry, bpf_sc_run of its program with the counters `held` by the
   * interrupted runs, exit) and the counters held `d` steps into it (where a nested NMI lands).
   */
  const handler = (s: Source, held: ReadonlySet<number>): RunTrace => {
    if (!s.nmi && s.tick) return { steps: TICK_STEPS, heldAt: () => new Set(held) };
    if (s.prog === undefined) return { steps: NMI_NO_PROGRAM, heldAt: () => new Set(held) };
    const enter = s.nmi ? NMI_ENTER : IRQ_ENTER;
    const run = counters === undefined ? traceRun(shapes, s.prog, held) : traceRun(shapes, s.prog, held, counters[s.prog]);
    return { steps: enter + run.steps + (s.nmi ? NMI_EXIT : IRQ_EXIT), heldAt: (d) => run.heldAt(d - enter) };
  };
  const placed: { b: number; first: Source; then: Source | undefined; delay: number }[] = [];
  for (const p of points) {
    const first = source(p.nmi, p.vector, p.tick === true);
    if (first === undefined) continue;
    // A point past the end wraps around into the run, so that it is raised.
    const b = Math.max(0, base(p, first) + clamp(p.d, -4096, 4096)) % tl.length;
    const then = p.then ? source(p.then.nmi, p.then.vector) : undefined;
    placed.push({ b, first, then, delay: p.then ? clamp(p.then.delay, 0, 4096) : 0 });
  }
  placed.sort((x, y) => x.b - y.b);
  // The first handlers always run (every b is inside the task's run), so the run lasts at
  // least L plus their steps: a follow-up past that comes at its last instruction instead.
  const firsts = placed.map((x) => handler(x.first, tl.heldAt(x.b)));
  const last = tl.length + firsts.reduce((n, h) => n + h.steps, 0) - 1;
  const out: NonNullable<ScenarioFile["interrupts"]> = [];
  const raise = (s: Source, atStep: number) => out.push(s.nmi ? { kind: "nmi", atStep } : s.tick ? { kind: "tick", atStep } : { kind: "irq", vector: s.vector, atStep });
  // Walk in time order: `shift` is the steps spent in handlers so far; a follow-up that comes
  // after its first handler has ended waits in `later` until the task reaches it.
  const later: { t: number; steps: number }[] = [];
  let shift = 0;
  placed.forEach((x, k) => {
    let at = x.b + shift;
    later.sort((a, b) => a.t - b.t);
    while (later.length && later[0]!.t <= at) { const f = later.shift()!; shift += f.steps; at += f.steps; }
    raise(x.first, at);
    const held = tl.heldAt(x.b), first = firsts[k]!;
    shift += first.steps;
    if (!x.then) return;
    const t = Math.min(at + x.delay, last);
    raise(x.then, t);
    if (x.delay < first.steps) {
      // Within the first handler an NMI nests in it; an IRQ waits for its iretq (IF is clear there).
      const nests = x.then.nmi && !x.first.nmi;
      shift += handler(x.then, nests ? first.heldAt(x.delay) : held).steps;
    } else later.push({ t, steps: handler(x.then, tl.heldAt(Math.min(x.b + x.delay - first.steps, tl.length - 1))).steps });
  });
  return out;
}
