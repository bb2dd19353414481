// Scenario files: versioned JSON for programs plus what runs what (design.md §1). Read and
// validated with clear errors before anything runs: the schema (zod), then names and
// references, then every program through the BPF validator. Errors are data — a list of
// {code, path, message} — inside one ScenarioError whose message lists them all.
import { PROGRAMS_KEPT, RecentCache } from "../jit/recent-cache.ts";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { insn, type BpfInsn } from "../jit/bpf/insn.ts";
import { ATTACH_PATH_NAMES, attachOf, PROG_TYPES, runsOnlyInTask, type Program } from "../jit/bpf/program.ts";
import { BPF_ALU64, BPF_CALL, BPF_JMP, BPF_K, BPF_MOV, BPF_PSEUDO_KFUNC_CALL } from "../jit/bpf/opcodes.ts";
import { jumpOffset } from "../jit/bpf/fields.ts";
import { KD, MAX_TASKS } from "../jit/kernel/layout.ts";
import { validate, ValidationError } from "../jit/bpf/validate.ts";
import type { ImageSpec } from "../jit/image.ts";

/**
 * Version 2 adds tasks (`tasks`: the program each task's syscall runs, with the kernel's
 * scheduler), ticks in the schedule, and per-program attach paths and sleepability. Version 3
 * adds `links`: a program's further attachments, each through a path of its own (a name that
 * what-runs-what may use wherever it takes a program). Version 1 files load as they always did:
 * one task, no scheduler.
 */
export const SCENARIO_VERSION = 3;

const ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,47}$/, "must be an identifier (letters, digits, _; at most 48)");
const int = (min: number, max: number) => z.number().int().min(min).max(max);
/** One instruction as the raw struct bpf_insn fields: [code, dst, src, off, imm]. */
const rawInsn = z.tuple([int(0, 255), int(0, 10), int(0, 10), int(-0x8000, 0x7fff), int(-0x80000000, 0x7fffffff)]);

/** A bad or missing `version`, saying which versions this stackcheck reads. */
export function versionText(what: string, got: unknown, supported: readonly number[]): string {
  const list = supported.length === 1 ? `${supported[0]}` : `${supported.slice(0, -1).join(", ")} and ${supported.at(-1)}`;
  const value = got === undefined ? "missing" : `${JSON.stringify(got) ?? String(got)} is not supported`;
  return `${value}: this stackcheck reads ${what} version${supported.length === 1 ? "" : "s"} ${list}${typeof got === "string" ? " (a number, not a string)" : ""}`;
}

const schema = z.strictObject({
  version: z.union([z.literal(1), z.literal(2), z.literal(3)], { error: (i) => versionText("scenario file", i.input, [1, 2, 3]) }),
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
  /**
   * v3: further attachments of programs (program.ts Program.linkOf): `name` runs `program`, the
   * same bpf_prog (code, prog->active, misses, private stacks), through `attach`'s runner.
   */
  links: z.array(z.strictObject({
    name: ident,
    program: ident,
    attach: z.enum(ATTACH_PATH_NAMES as [string, ...string[]]),
  })).max(16).optional(),
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
});

/**
 * Keys once in the schema that nothing read (a scenario runs under the strategy and unwinder
 * the command line gives): refused, saying where they go, rather than silently ignored.
 */
const COMMAND_LINE_KEYS: Readonly<Record<string, string>> = {
  strategy: "not a scenario field: a scenario runs under the strategy the command gives (--strategy <name|file>)",
  unwinders: "not a scenario field: the unwinder is the command's (--unwinder <name>; matrix: one --unwinder per column)",
};

/** zod's issues as ours; an unknown key that belongs on the command line says so. */
function schemaIssues(issues: readonly z.core.$ZodIssue[]): ScenarioIssue[] {
  return issues.flatMap((i): ScenarioIssue[] => {
    if (i.code !== "unrecognized_keys" || i.path.length > 0) return [{ code: i.code, path: pathText(i.path), message: i.message }];
    const ours = i.keys.filter((k) => Object.hasOwn(COMMAND_LINE_KEYS, k));
    const rest = i.keys.filter((k) => !ours.includes(k));
    return [
      ...ours.map((k) => ({ code: "command-line-key", path: k, message: COMMAND_LINE_KEYS[k]! })),
      ...(rest.length ? [{ code: i.code, path: "", message: `Unrecognized key${rest.length === 1 ? "" : "s"}: ${rest.map((k) => JSON.stringify(k)).join(", ")}` }] : []),
    ];
  });
}
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
    throw new ScenarioError(source, schemaIssues(parsed.error.issues));
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
  /** Programs with two functions of one name: the verifier's issues name a function by name, so they are not run on them (the duplicate is the issue). */
  const twiceNamed = new Set<number>();
  file.programs.forEach((p, i) => {
    if (index.has(p.name)) issues.push({ code: "duplicate-program", path: `programs[${i}].name`, message: `program '${p.name}' is defined twice` });
    else index.set(p.name, i);
    const seen = new Set<string>();
    p.funcs.forEach((f, fi) => {
      if (seen.has(f.name)) {
        issues.push({ code: "duplicate-function", path: `programs[${i}].funcs[${fi}].name`, message: `function '${f.name}' is defined twice in program '${p.name}' (function names must be unique within a program)` });
        twiceNamed.add(i);
      }
      seen.add(f.name);
    });
  });
  const links = file.links ?? [];
  const linkOf = links.length ? nameLinks(file, links, index, issues) : [];
  if (file.programs.length + links.length > KD.maxProgs) issues.push({ code: "too-many-programs", path: links.length ? "links" : "programs", message: `${file.programs.length} programs and ${links.length} links: an image runs at most ${KD.maxProgs} in all` });
  const ref = (name: string, path: string): number => {
    const i = index.get(name);
    if (i === undefined) {
      const names = [...index.keys()], programs = names.slice(0, file.programs.length).join(", ");
      issues.push({ code: "unknown-program", path, message: links.length ? `no program or link is named '${name}' (programs: ${programs}; links: ${names.slice(file.programs.length).join(", ")})` : `no program is named '${name}' (programs: ${programs})` });
    }
    return i ?? -1; // (a name that is not there: the issue above, and no program runs)
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
  if (file.version < 3 && file.links !== undefined) issues.push({ code: "version", path: "links", message: `needs "version": 3 (links came with it)` });
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
    if (x.kind === "tick" && file.version >= 2 && !file.tasks) issues.push({ code: "tick-without-tasks", path: `interrupts[${i}]`, message: `a tick needs the scheduler: list the tasks under "tasks"` });
  });
  const own = file.programs.map(toProgram);
  // a link is its program under another path (its name stays the program's: reports name the
  // bpf_prog, and the path it ran through)
  // (a link of a program that is not there: its issue above, and a stand-in that is not checked)
  const programs: Program[] = links.length ? [...own, ...links.map((l, k) => ({ ...own[Math.max(0, linkOf[k]!)]!, attach: l.attach as Program["attach"] & string, linkOf: Math.max(0, linkOf[k]!) }))] : own;
  for (let i = 0; i < programs.length; i++) {
    if (i >= own.length && linkOf[i - own.length]! < 0) continue;
    let byInterrupt = nmi === i;
    for (const a of irq) byInterrupt ||= a.program === i;
    const verify = !twiceNamed.has(i < own.length ? i : linkOf[i - own.length]!);
    checkProgram(file, linkOf, programs[i]!, i, byInterrupt, tasks !== undefined, issues, verify);
  }
  if (!issues.length) issues.push(...nestingIssues(programs, nested, (i) => entryOf(file, linkOf, i).name));
  if (issues.length) throw new ScenarioError(source, issues);
  return { file, programs, spec: { programs, task, nested, irq, ...(nmi === undefined ? {} : { nmi }), ...(tasks ? { tasks } : {}) } };
}

/**
 * Links (v3): a further attachment of a program, runnable wherever a program is named, after the
 * programs in the image's list (jit/image.ts: what runs what, by index). Their names go into
 * `index`; the index of each link's program (-1: not one), with the issues.
 */
function nameLinks(file: ScenarioFile, links: NonNullable<ScenarioFile["links"]>, index: Map<string, number>, issues: ScenarioIssue[]): number[] {
  const linkOf = links.map((l, k) => {
    const i = index.get(l.program);
    if (i === undefined) {
      const why = links.some((x) => x.name === l.program) ? `'${l.program}' is a link: a link attaches a program (bpf_link → bpf_prog), not another link` : `no program is named '${l.program}'`;
      issues.push({ code: "unknown-program", path: `links[${k}].program`, message: `${why} (programs: ${[...index.keys()].join(", ")})` });
    }
    return i ?? -1;
  });
  links.forEach((l, k) => {
    if (index.has(l.name)) issues.push({ code: "duplicate-program", path: `links[${k}].name`, message: `'${l.name}' names a program or a link already` });
    else index.set(l.name, file.programs.length + k);
  });
  return linkOf;
}

/** Entry i of what runs what (a program, or past them a link): its name and where the file gives its path and sleepability, for issues. */
function entryOf(file: ScenarioFile, linkOf: readonly number[], i: number): { name: string; at: string; sleepableAt: string } {
  const n = file.programs.length;
  return i < n ? { name: file.programs[i]!.name, at: `programs[${i}]`, sleepableAt: `programs[${i}].sleepable` } : { name: file.links![i - n]!.name, at: `links[${i - n}]`, sleepableAt: `programs[${linkOf[i - n]}].sleepable` };
}

/** The verifier on entry i, and where it may run: an interrupt (`byInterrupt`), and sleeping only with tasks. */
function checkProgram(file: ScenarioFile, linkOf: readonly number[], prog: Program, i: number, byInterrupt: boolean, tasks: boolean, issues: ScenarioIssue[], verify = true): void {
  const own = i < file.programs.length;
  // (entryOf() only for an issue: no closure or string per program of every scenario)
  try {
    if (verify) validate(prog);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    const { name, at } = entryOf(file, linkOf, i);
    if (own) {
      const p = file.programs[i]!, fi = p.funcs.findIndex((f) => f.name === e.issue.func);
      const insn = e.issue.insn >= 0 ? `${at}.funcs[${fi}].insns[${e.issue.insn}]` : `${at}.funcs[${fi}]`;
      issues.push({ code: `verifier:${e.issue.rule}`, path: e.issue.rule === "attach" || (e.issue.rule === "sleepable" && e.issue.insn < 0) ? `${at}.${e.issue.rule}` : insn, message: `${name}/${e.issue.func}: ${e.issue.message}` });
    } else if (e.issue.rule === "attach" || e.issue.rule === "sleepable") {
      // (the code is its program's, checked there: only the path's own rules can refuse a link)
      issues.push({ code: `verifier:${e.issue.rule}`, path: `${at}.attach`, message: `${name} (a link of ${prog.name}): ${e.issue.message}` });
    }
  }
  if (byInterrupt && runsOnlyInTask(prog)) {
    const { name, at } = entryOf(file, linkOf, i);
    issues.push({ code: "task-path-in-interrupt", path: `${at}.attach`, message: `${name} runs through ${throughText(prog)}, which fires only in a task's own context, and an interrupt runs it (${TASK_ONLY_WHY})` });
  } else if (prog.sleepable && byInterrupt) {
    const { name, sleepableAt } = entryOf(file, linkOf, i);
    issues.push({ code: "sleepable-in-interrupt", path: sleepableAt, message: `${name} is sleepable and an interrupt runs it: hardirq and NMI context cannot sleep (its attach paths run in task context)` });
  }
  if (prog.sleepable && !tasks && own) {
    const { name, sleepableAt } = entryOf(file, linkOf, i);
    issues.push({ code: "sleepable-without-tasks", path: sleepableAt, message: `${name} is sleepable, and sleeping needs the scheduler: list the tasks under "tasks"` });
  }
}

/** Why a task-context path (jit/bpf/program.ts runsOnlyInTask()) runs in no interrupt and inside no kfunc, for scenario errors. */
const TASK_ONLY_WHY = "Linux 7.2 runs a uprobe program on the way back to user mode, uprobe_notify_resume(), or in the uprobe syscalls, and a faultable tracepoint's at syscall entry or exit; a sleepable raw_tp program attaches only to those (bpf_raw_tp_link_attach())";
/** A program's path in scenario errors (a sleepable raw_tp is one of its own). */
const throughText = (p: Program) => `${attachOf(p)}${p.sleepable && attachOf(p) === "raw_tp" ? " as a sleepable program" : ""}`;

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
function nestingIssues(programs: readonly Program[], nested: readonly number[], nameOf: (i: number) => string): ScenarioIssue[] {
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
      // (the names only for an issue: this runs for every scenario, generated ones included)
      const p = programs[t]!;
      if (runsOnlyInTask(p)) {
        issues.push({ code: "task-path-nested", path: `nested[${nested.indexOf(t)}]`, message: `${nameOf(t)} runs through ${throughText(p)}, which fires only in a task's own context, and ${nameOf(qi)} runs it through scx_sc_run_nested(), from inside BPF code (${TASK_ONLY_WHY})` });
      } else if (p.sleepable && !q.sleepable) {
        const pn = nameOf(t), qn = nameOf(qi);
        issues.push({ code: "sleep-in-atomic", path: `nested[${nested.indexOf(t)}]`, message: `${pn} is sleepable, and ${qn}, which cannot sleep, runs it through scx_sc_run_nested(): make ${qn} sleepable too, or ${pn} not` });
      }
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
