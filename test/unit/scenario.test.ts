// Scenario files: the shipped example loads and runs; every kind of bad input gets an error that
// names the file, the JSON path and the problem.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { loadScenario, parseScenario } from "../../harness/scenario.ts";
import { scenarioIssues as issues } from "../helpers/scenario-issues.ts";
import { buildImage } from "../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../jit/strategies/index.ts";
import { loadImage, startTask } from "../../harness/load.ts";

const example = fileURLToPath(new URL("../scenarios/nested.json", import.meta.url));


const minimal = () => ({
  version: 1,
  programs: [{ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, insns: [[0xb7, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]] }] }],
  task: "p",
});

describe("the shipped example", () => {
  test("loads, builds and runs under every sound design with one result", () => {
    const s = loadScenario(example);
    expect(s.programs.map((p) => p.name)).toEqual(["outer", "leaf"]);
    const results = BUILTIN_STRATEGIES.filter((x) => x.name !== "r9-no-save").map((st) => {
      const img = buildImage(s.spec, st);
      const m = loadImage(img);
      startTask(img, m);
      const r = m.run({ maxSteps: 100_000 });
      return r.kind === "completed" ? r.rax : r.kind;
    });
    expect(new Set(results)).toEqual(new Set([1078n]));
  });
});

describe("bad scenarios are named precisely", () => {
  test("a minimal scenario is accepted", () => {
    expect(parseScenario(minimal()).spec).toEqual({ programs: expect.any(Array), task: 0, nested: [], irq: [] });
  });
  test("schema problems carry their JSON paths", () => {
    const s = minimal() as Record<string, unknown>;
    s.version = 4;
    s.extra = true;
    (s.programs as { funcs: { insns: number[][] }[] }[])[0]!.funcs[0]!.insns[0]![0] = 300;
    expect(issues(s)).toEqual([
      "version: 4 is not supported: this stackcheck reads scenario file versions 1, 2 and 3",
      "programs[0].funcs[0].insns[0][0]: Too big: expected number to be <=255",
      ": Unrecognized key: \"extra\"",
    ]);
  });
  test("two functions of one name: that is the problem reported, at the second; no verifier issue placed at the first by name", () => {
    const s = minimal();
    const f = s.programs[0]!.funcs[0]!;
    const twice = { ...s, programs: [{ ...s.programs[0]!, funcs: [f, { ...f }] }] };
    expect(issues(twice)).toEqual([`programs[0].funcs[1].name: function '${f.name}' is defined twice in program '${s.programs[0]!.name}' (function names must be unique within a program)`]);
  });
  test("strategy and unwinders (never read: the command line chooses both) are refused, saying where they go", () => {
    expect(issues({ ...minimal(), strategy: "r9-private", unwinders: ["frame"], extra: 1 })).toEqual([
      "strategy: not a scenario field: a scenario runs under the strategy the command gives (--strategy <name|file>)",
      "unwinders: not a scenario field: the unwinder is the command's (--unwinder <name>; matrix: one --unwinder per column)",
      ": Unrecognized key: \"extra\"",
    ]);
  });
  test("version 2's fields in a version 1 file, and what they need", () => {
    const p = { ...minimal().programs[0]!, attach: "uprobe", sleepable: true };
    expect(issues({ ...minimal(), programs: [p], tasks: ["p", "p"], interrupts: [{ kind: "tick", atStep: 3 }] })).toEqual([
      "tasks: needs \"version\": 2 (tasks, ticks, attach paths and sleepable programs came with it)",
      "programs[0].attach: needs \"version\": 2 (tasks, ticks, attach paths and sleepable programs came with it)",
      "programs[0].sleepable: needs \"version\": 2 (tasks, ticks, attach paths and sleepable programs came with it)",
      "interrupts[0]: needs \"version\": 2 (tasks, ticks, attach paths and sleepable programs came with it)",
    ]);
    const v2 = { ...minimal(), version: 2 };
    expect(issues({ ...v2, task: undefined, programs: [p], interrupts: [{ kind: "tick", atStep: 3 }] })).toEqual([
      "task: say what the task runs: \"task\": <program> (or, version 2, \"tasks\": [<program>, ...])",
      "interrupts[0]: a tick needs the scheduler: list the tasks under \"tasks\"",
      "programs[0].sleepable: p is sleepable, and sleeping needs the scheduler: list the tasks under \"tasks\"",
    ]);
    expect(issues({ ...v2, tasks: ["q"] })).toEqual(["task: task 'p' is not tasks[0] ('q'); give one of the two", "tasks[0]: no program is named 'q' (programs: p)"]);
    expect(issues({ ...v2, programs: [{ ...p, attach: "raw_tp", sleepable: false }] })).toEqual([
      "programs[0].attach: p/main: a kprobe program cannot be run through raw_tp (that path runs raw_tp programs)",
    ]);
    expect(issues({ ...v2, programs: [{ ...p, attach: "kprobe" }], tasks: ["p"], task: undefined })).toEqual([
      "programs[0].sleepable: p/main: Program of this type cannot be sleepable (kprobe through kprobe; sleepable kprobe programs run through uprobe, uprobe_multi)",
    ]);
    // bpf_sc_sleep (helper 4) in a program that is not sleepable
    const sleeps = { ...minimal().programs[0]!, funcs: [{ name: "main", stackDepth: 0, insns: [[0x85, 0, 0, 0, 4], [0x95, 0, 0, 0, 0]] }] };
    expect(issues({ ...v2, programs: [sleeps] })).toEqual(["programs[0].funcs[0].insns[0]: p/main: sleepable helper bpf_sc_sleep#4 in non-sleepable prog"]);
    expect(parseScenario({ ...v2, task: undefined, tasks: ["p", "p"], programs: [{ ...sleeps, attach: "uprobe", sleepable: true }] }).spec.tasks).toEqual([0, 0]);
  });
  test("what the kfunc may run: nothing sleepable from a program that cannot sleep, nothing on a task-context path", () => {
    const fn = (insns: number[][]) => [{ name: "main", stackDepth: 0, insns }];
    const nests = fn([[0xb7, 1, 0, 0, 0], [0x85, 0, 2, 0, 1000], [0x95, 0, 0, 0, 0]]);
    const sleeps = fn([[0x85, 0, 0, 0, 4], [0x95, 0, 0, 0, 0]]);
    const plain = fn([[0xb7, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]]);
    const base = { version: 2, tasks: ["q"], nested: ["p"] };
    // a sleepable fentry program (tracing, through the trampoline)
    const p = { name: "p", type: "tracing", sleepable: true, funcs: sleeps };
    expect(issues({ ...base, programs: [{ name: "q", type: "kprobe", funcs: nests }, p] })).toEqual([
      "nested[0]: p is sleepable, and q, which cannot sleep, runs it through scx_sc_run_nested(): make q sleepable too, or p not",
    ]);
    // the same with a sleepable caller is fine
    expect(parseScenario({ ...base, programs: [{ name: "q", type: "kprobe", attach: "uprobe", sleepable: true, funcs: nests }, p] }).spec.tasks).toEqual([0]);
    // r1 may come from elsewhere when a jump lands on the call: every nested program counts
    const jumps = fn([[0xb7, 1, 0, 0, 1], [0x15, 1, 0, 1, 1], [0xb7, 1, 0, 0, 0], [0x85, 0, 2, 0, 1000], [0x95, 0, 0, 0, 0]]);
    expect(issues({ ...base, nested: ["p", "q"], programs: [{ name: "q", type: "kprobe", funcs: jumps }, p] })[0])
      .toMatch(/^nested\[0\]: p is sleepable, and q, which cannot sleep, runs it/);
    // a uprobe or a faultable tracepoint fires only in its task's own context: no kfunc runs one
    // (and so no uprobe program, with no recursion counter, runs itself)
    const why = "Linux 7.2 runs a uprobe program on the way back to user mode, uprobe_notify_resume(), or in the uprobe syscalls, and a faultable tracepoint's at syscall entry or exit; a sleepable raw_tp program attaches only to those (bpf_raw_tp_link_attach())";
    expect(issues({ version: 2, tasks: ["u"], nested: ["u"], programs: [{ name: "u", type: "kprobe", attach: "uprobe", funcs: nests }] })).toEqual([
      `nested[0]: u runs through uprobe, which fires only in a task's own context, and u runs it through scx_sc_run_nested(), from inside BPF code (${why})`,
    ]);
    expect(issues({ ...base, programs: [{ name: "q", type: "kprobe", funcs: nests }, { name: "p", type: "tracepoint", attach: "tp_faultable", funcs: plain }] })).toEqual([
      `nested[0]: p runs through tp_faultable, which fires only in a task's own context, and q runs it through scx_sc_run_nested(), from inside BPF code (${why})`,
    ]);
    // nor an interrupt
    expect(issues({ version: 2, tasks: ["u"], irq: [{ vector: 34, program: "u" }], nmi: "v", programs: [{ name: "u", type: "kprobe", attach: "uprobe_multi", funcs: plain }, { name: "v", type: "tracepoint", attach: "tp_faultable", funcs: plain }] })).toEqual([
      `programs[0].attach: u runs through uprobe_multi, which fires only in a task's own context, and an interrupt runs it (${why})`,
      `programs[1].attach: v runs through tp_faultable, which fires only in a task's own context, and an interrupt runs it (${why})`,
    ]);
    // with a counter (kprobe: bpf_prog_active) the second run is refused: fine
    expect(parseScenario({ version: 2, tasks: ["u"], nested: ["u"], programs: [{ name: "u", type: "kprobe", funcs: nests }] }).spec.nested).toEqual([0]);
  });
  test("unknown programs in what-runs-what", () => {
    expect(issues({ ...minimal(), task: "q", nested: ["p", "r"], nmi: "s" })).toEqual([
      "task: no program is named 'q' (programs: p)",
      "nested[1]: no program is named 'r' (programs: p)",
      "nmi: no program is named 's' (programs: p)",
    ]);
  });
  test("a scheduled IRQ needs a handler for its vector", () => {
    expect(issues({ ...minimal(), interrupts: [{ kind: "irq", vector: 40, atStep: 3 }] })).toEqual([
      "interrupts[0].vector: no IRQ handler is set up for vector 40; list it under 'irq'",
    ]);
  });
  test("a verifier rejection points at the instruction", () => {
    const s = minimal();
    s.programs[0]!.funcs[0]!.insns = [[0xbf, 0, 2, 0, 0], [0x95, 0, 0, 0, 0]]; // r0 = r2
    expect(issues(s)).toEqual(["programs[0].funcs[0].insns[0]: p/main: R2 !read_ok"]);
  });
  test("duplicate names", () => {
    const s = minimal();
    s.programs.push(s.programs[0]!);
    expect(issues(s)).toEqual(["programs[1].name: program 'p' is defined twice"]);
  });
  test("files that are not there or not JSON", () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-scenario-"));
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ version: 1 ");
    expect(() => loadScenario(bad)).toThrow(`${bad}: 1 problem\n  (top level): not valid JSON:`);
    expect(() => loadScenario(join(dir, "none.json"))).toThrow("cannot read the file");
  });
});
