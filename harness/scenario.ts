// Scenario files: versioned JSON for programs plus what runs what (design.md §1). Read and
// validated with clear errors before anything runs: the schema (zod), then names and
// references, then every program through the BPF validator. Errors are data — a list of
// {code, path, message} — inside one ScenarioError whose message lists them all.
import { PROGRAMS_KEPT, RecentCache } from "../jit/recent-cache.ts";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { insn, type BpfInsn } from "../jit/bpf/insn.ts";
import { ATTACH_PATH_NAMES, ATTACH_PATHS, attachOf, PROG_TYPES, type Program } from "../jit/bpf/program.ts";
import { BPF_ALU64, BPF_CALL, BPF_JMP, BPF_K, BPF_MOV, BPF_PSEUDO_KFUNC_CALL } from "../jit/bpf/opcodes.ts";
import { jumpOffset } from "../jit/bpf/fields.ts";
import { MAX_TASKS } from "../jit/kernel/layout.ts";
import { validate, ValidationError } from "../jit/bpf/validate.ts";
import type { ImageSpec } from "../jit/image.ts";

/**
 * Version 2 adds tasks (`tasks`: the program each task's syscall runs, with the kernel's
 * scheduler), ticks in the schedule, and per-program attach paths and sleepability. Version 1
 * files load as they always did: one task, no scheduler.
 */
export const SCENARIO_VERSION = 2;

const ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,47}$/, "must be an identifier (letters, digits, _; at most 48)");
const int = (min: number, max: number) => z.number().int().min(min).max(max);
/** One instruction as the raw struct bpf_insn fields: [code, dst, src, off, imm]. */
const rawInsn = z.tuple([int(0, 255), int(0, 10), int(0, 10), int(-0x8000, 0x7fff), int(-0x80000000, 0x7fffffff)]);

const schema = z.strictObject({
  version: z.union([z.literal(1), z.literal(2)]),
  name: z.string().optional(),
  programs: z.array(z.strictObject({
    name: ident,
    type: z.enum(PROG_TYPES),
    privStackRequested: z.boolean().optional(),
    /** v2: how it is run (kernel-model-7.2.md A.4); its type's default when absent. */
    attach: z.enum(ATTACH_PATH_NAMES as [string, ...string[]]).optional(),
    /** v2: BPF_F_SLEEPABLE. */
    sleepable: z.boolean().optional(),
    funcs: z.array(z.strictObject({
      name: ident,
      stackDepth: int(0, 4096),
      insns: z.array(rawInsn).min(1),
    })).min(1),
  })).min(1).max(48),
  /** The program the task runs (version 1; in version 2, `tasks` instead, or this for one task). */
  task: ident.optional(),
  /** v2: the program each task runs, task 0 first; with it the kernel has its scheduler. */
  tasks: z.array(ident).min(1).max(MAX_TASKS).optional(),
  nested: z.array(ident).max(32).optional(),
  irq: z.array(z.strictObject({ vector: int(32, 255), program: ident })).optional(),
  nmi: ident.optional(),
  interrupts: z.array(z.discriminatedUnion("kind", [
    z.strictObject({ kind: z.literal("irq"), vector: int(32, 255), atStep: int(0, 1e9) }),
    z.strictObject({ kind: z.literal("nmi"), atStep: int(0, 1e9) }),
    z.strictObject({ kind: z.literal("tick"), atStep: int(0, 1e9) }),
  ])).optional(),
  strategy: z.string().optional(),
  unwinders: z.array(z.string()).optional(),
});
export type ScenarioFile = z.infer<typeof schema>;

export interface ScenarioIssue {
  readonly code: string;
  /** Where, as a JSON path: `programs[0].funcs[1].insns[3][0]`. */
  readonly path: string;
  readonly message: string;
}

export class ScenarioError extends Error {
  override name = "ScenarioError";
  constructor(readonly source: string, readonly issues: readonly ScenarioIssue[]) {
    super(`${source}: ${issues.length === 1 ? "1 problem" : `${issues.length} problems`}\n${issues.map((i) => `  ${i.path || "(top level)"}: ${i.message}`).join("\n")}`);
  }
}

export interface Scenario {
  readonly file: ScenarioFile;
  readonly programs: readonly Program[];
  /** What runs what, by program index, for buildImage(). */
  readonly spec: ImageSpec;
}

const pathText = (p: readonly PropertyKey[]) => p.reduce<string>((s, k) => (typeof k === "number" ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), "");

/**
 * The Program of each recent scenario entry already built: a campaign with several schedules per
 * plan gives every schedule's scenario the same entry objects (generators/_internals/lower.ts),
 * so the Program, and validate()'s result, which it keys by the Program, are made once while
 * they are among the last PROGRAMS_KEPT.
 */
const builtPrograms = new RecentCache<ScenarioFile["programs"][number], Program>(PROGRAMS_KEPT);

/** Build the Program of one scenario entry (functions flattened in file order). */
function toProgram(p: ScenarioFile["programs"][number]): Program {
  return builtPrograms.getOrMake(p, () => buildProgram(p));
}

function buildProgram(p: ScenarioFile["programs"][number]): Program {
  const insns: BpfInsn[] = [];
  const funcs = p.funcs.map((f) => {
    const start = insns.length;
    for (const [code, dst, src, off, imm] of f.insns) insns.push(insn(code, dst, src, off, imm));
    return { name: f.name, start, end: insns.length, stackDepth: f.stackDepth };
  });
  return {
    name: p.name, type: p.type, privStackRequested: p.privStackRequested ?? false, insns, funcs,
    ...(p.attach === undefined ? {} : { attach: p.attach as Program["attach"] & string }), ...(p.sleepable ? { sleepable: true } : {}),
  };
}

/** Validate parsed JSON as a scenario; `source` names it in errors (a file name). */
export function parseScenario(json: unknown, source = "scenario"): Scenario {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ScenarioError(source, parsed.error.issues.map((i) => ({ code: i.code, path: pathText(i.path), message: i.message })));
  }
  return scenarioOf(parsed.data, source);
}

/**
 * The checks past the schema (names, references, the verifier) on a file the caller built as a
 * ScenarioFile: generated plans, which the generator tests hold to the schema, skip the schema's
 * pass over every instruction tuple in campaigns.
 */
export function scenarioOf(file: ScenarioFile, source = "scenario"): Scenario {
  const issues: ScenarioIssue[] = [];
  const index = new Map<string, number>();
  file.programs.forEach((p, i) => {
    if (index.has(p.name)) issues.push({ code: "duplicate-program", path: `programs[${i}].name`, message: `program '${p.name}' is defined twice` });
    else index.set(p.name, i);
    const seen = new Set<string>();
    p.funcs.forEach((f, fi) => {
      if (seen.has(f.name)) issues.push({ code: "duplicate-function", path: `programs[${i}].funcs[${fi}].name`, message: `function '${f.name}' is defined twice in program '${p.name}'` });
      seen.add(f.name);
    });
  });
  const ref = (name: string, path: string): number => {
    const i = index.get(name);
    if (i === undefined) issues.push({ code: "unknown-program", path, message: `no program is named '${name}' (programs: ${[...index.keys()].join(", ")})` });
    return i ?? 0;
  };
  // version 2's fields need version 2
  if (file.version === 1) {
    const v2 = [
      ...(file.tasks ? ["tasks"] : []),
      ...file.programs.flatMap((p, i) => [...(p.attach !== undefined ? [`programs[${i}].attach`] : []), ...(p.sleepable !== undefined ? [`programs[${i}].sleepable`] : [])]),
      ...(file.interrupts ?? []).flatMap((x, i) => (x.kind === "tick" ? [`interrupts[${i}]`] : [])),
    ];
    for (const path of v2) issues.push({ code: "version", path, message: `needs "version": 2 (tasks, ticks, attach paths and sleepable programs came with it)` });
  }
  if (file.task === undefined && file.tasks === undefined) issues.push({ code: "no-task", path: "task", message: `say what the task runs: "task": <program> (or, version 2, "tasks": [<program>, ...])` });
  if (file.task !== undefined && file.tasks !== undefined && file.tasks[0] !== file.task) {
    issues.push({ code: "task-mismatch", path: "task", message: `task '${file.task}' is not tasks[0] ('${file.tasks[0]}'); give one of the two` });
  }
  const task = ref(file.tasks?.[0] ?? file.task ?? file.programs[0]!.name, file.tasks ? "tasks[0]" : "task");
  const tasks = file.tasks?.map((t, i) => (i === 0 ? task : ref(t, `tasks[${i}]`)));
  const nested = (file.nested ?? []).map((n, i) => ref(n, `nested[${i}]`));
  const irq = (file.irq ?? []).map((a, i) => ({ vector: a.vector, program: ref(a.program, `irq[${i}].program`) }));
  const nmi = file.nmi === undefined ? undefined : ref(file.nmi, "nmi");
  const vectors = new Set<number>();
  (file.irq ?? []).forEach((a, i) => {
    if (vectors.has(a.vector)) issues.push({ code: "duplicate-vector", path: `irq[${i}].vector`, message: `vector ${a.vector} has a program already` });
    vectors.add(a.vector);
  });
  (file.interrupts ?? []).forEach((x, i) => {
    if (x.kind === "irq" && !vectors.has(x.vector)) issues.push({ code: "unknown-vector", path: `interrupts[${i}].vector`, message: `no IRQ handler is set up for vector ${x.vector}; list it under 'irq'` });
    if (x.kind === "tick" && file.version === 2 && !file.tasks) issues.push({ code: "tick-without-tasks", path: `interrupts[${i}]`, message: `a tick needs the scheduler: list the tasks under "tasks"` });
  });
  const programs = file.programs.map((p, i) => {
    const prog = toProgram(p);
    try {
      validate(prog);
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      const fi = p.funcs.findIndex((f) => f.name === e.issue.func);
      const where = e.issue.insn >= 0 ? `programs[${i}].funcs[${fi}].insns[${e.issue.insn}]` : `programs[${i}].funcs[${fi}]`;
      issues.push({ code: `verifier:${e.issue.rule}`, path: e.issue.rule === "attach" || (e.issue.rule === "sleepable" && e.issue.insn < 0) ? `programs[${i}].${e.issue.rule}` : where, message: `${p.name}/${e.issue.func}: ${e.issue.message}` });
    }
    const byInterrupt = (file.irq ?? []).some((a) => a.program === p.name) || file.nmi === p.name;
    if (byInterrupt && ATTACH_PATHS[attachOf(prog)].task) {
      issues.push({ code: "task-path-in-interrupt", path: `programs[${i}].attach`, message: `${p.name} runs through ${attachOf(prog)}, which fires only in a task's own context, and an interrupt runs it (${TASK_ONLY_WHY})` });
    } else if (prog.sleepable && byInterrupt) {
      issues.push({ code: "sleepable-in-interrupt", path: `programs[${i}].sleepable`, message: `${p.name} is sleepable and an interrupt runs it: hardirq and NMI context cannot sleep (its attach paths run in task context)` });
    }
    if (prog.sleepable && !tasks) issues.push({ code: "sleepable-without-tasks", path: `programs[${i}].sleepable`, message: `${p.name} is sleepable, and sleeping needs the scheduler: list the tasks under "tasks"` });
    return prog;
  });
  if (!issues.length) issues.push(...nestingIssues(file, programs));
  if (issues.length) throw new ScenarioError(source, issues);
  return { file, programs, spec: { programs, task, nested, irq, ...(nmi === undefined ? {} : { nmi }), ...(tasks ? { tasks } : {}) } };
}

/** Why a task-context path (jit/bpf/program.ts ATTACH_PATHS `task`) runs in no interrupt and inside no kfunc, for scenario errors. */
const TASK_ONLY_WHY = "Linux 7.2 runs a uprobe program on the way back to user mode, uprobe_notify_resume(), or in the uprobe syscalls, and a faultable tracepoint's at syscall entry or exit";

/**
 * What scx_sc_run_nested() may not do. Which programs a program can run through it: the
 * `nested` entry its `r1 = <index>` names right before the call (the form generated programs
 * have), or, when the index is not such a constant, every one. Then:
 *   - a program on a path that fires only in a task's own context (uprobe, uprobe_multi,
 *     tp_faultable: ATTACH_PATHS `task`) must not be reachable at all, nor run by an interrupt.
 *     That also rules out the uprobes' recursion, which no counter would stop; a struct_ops
 *     program without a private stack has no counter either (program.ts counterOf()), and one
 *     that runs itself recurses as it would in 7.2, until a stack overflows (or, for a design
 *     that never runs off one, MAX_ACTIVATIONS ends the run);
 *   - a sleepable program must not be reachable from a program that cannot sleep (it would
 *     sleep in atomic context: "scheduling while atomic"; interrupts never run sleepable ones).
 */
function nestingIssues(file: ScenarioFile, programs: readonly Program[]): ScenarioIssue[] {
  const nested = (file.nested ?? []).map((n) => programs.findIndex((p) => p.name === n));
  const runs = programs.map((p) => {
    const out = new Set<number>();
    // a jump that lands on the call: r1 may come from elsewhere
    const targets = new Set(p.insns.flatMap((x, i) => { const off = jumpOffset(x); return off === undefined ? [] : [i + 1 + off]; }));
    p.insns.forEach((x, i) => {
      if (x.code !== (BPF_JMP | BPF_CALL) || x.src !== BPF_PSEUDO_KFUNC_CALL) return;
      const prev = p.insns[i - 1];
      const known = prev !== undefined && prev.code === (BPF_ALU64 | BPF_MOV | BPF_K) && prev.dst === 1 && !targets.has(i);
      if (known) { const t = nested[prev.imm]; if (t !== undefined) out.add(t); } else for (const t of nested) out.add(t);
    });
    return out;
  });
  const issues: ScenarioIssue[] = [];
  programs.forEach((q, qi) => {
    for (const t of runs[qi]!) {
      const p = programs[t]!;
      if (ATTACH_PATHS[attachOf(p)].task) {
        issues.push({ code: "task-path-nested", path: `nested[${nested.indexOf(t)}]`, message: `${p.name} runs through ${attachOf(p)}, which fires only in a task's own context, and ${q.name} runs it through scx_sc_run_nested(), from inside BPF code (${TASK_ONLY_WHY})` });
      } else if (p.sleepable && !q.sleepable) issues.push({ code: "sleep-in-atomic", path: `nested[${nested.indexOf(t)}]`, message: `${p.name} is sleepable, and ${q.name}, which cannot sleep, runs it through scx_sc_run_nested(): make ${q.name} sleepable too, or ${p.name} not` });
    }
  });
  return issues;
}

/** Read and validate a scenario file. */
export function loadScenario(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ScenarioError(path, [{ code: "read", path: "", message: `cannot read the file: ${(e as Error).message}` }]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(path, [{ code: "json", path: "", message: `not valid JSON: ${(e as Error).message}` }]);
  }
  return parseScenario(json, path);
}
