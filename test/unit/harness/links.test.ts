// One program attached through two paths (a scenario's `links`, jit/bpf/program.ts
// Program.linkOf): 7.2 lets a KPROBE program be a uprobe's and a kprobe's at once, and a
// TRACEPOINT program a syscall tracepoint's and an ordinary one's (kernel/events/core.c
// __perf_event_set_bpf_prog() checks each attachment against the program's type only). Each
// path's runner takes its own counter, so the two counters never see each other's runs: the
// hypothesis of kernel-model-7.2.md A.4 ("[derived]": either path can nest over the other on one
// CPU), checked here on the machine. Verdicts from machine state and the oracles only.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { loadScenario, parseScenario, scenarioOf, type ScenarioFile } from "../../../harness/scenario.ts";
import { scenarioIssues as issues } from "../../helpers/scenario-issues.ts";
import { runScenario, scheduleOf, type RunOutcome } from "../../../harness/run.ts";
import { checkExhaustive, firstFailure } from "../../../harness/property.ts";
import { runCampaign } from "../../../harness/campaign.ts";
import { bpfProgs, buildImage } from "../../../jit/image.ts";
import { privateStacks } from "../../../jit/private-stacks.ts";
import { planArb, planToScenario } from "../../../generators/index.ts";
import { lowerPlan } from "../../../generators/_internals/lower.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import type { Plan } from "../../../generators/plan.ts";
import { strategy } from "../../helpers/strategies.ts";

const file = (f: string) => new URL(`../../scenarios/${f}`, import.meta.url).pathname;
const run = (f: string, s: string): RunOutcome => {
  const sc = loadScenario(file(f));
  return runScenario(sc, strategy(s), { unwinder: "frame", policy: "strict", injections: scheduleOf(sc) });
};
const main = [{ name: "main", stackDepth: 64, insns: [[0x7a, 10, 0, -64, 1], [0xb7, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]] }];
const linked = (over: Record<string, unknown> = {}) => ({
  version: 3, programs: [{ name: "p", type: "kprobe", attach: "uprobe", funcs: main }], links: [{ name: "pk", program: "p", attach: "kprobe" }], task: "p", irq: [{ vector: 34, program: "pk" }], ...over,
});

describe("the scenario format", () => {
  test("a link is its program under another path, after the programs, wherever a program is named", () => {
    const sc = parseScenario(linked());
    expect(sc.spec.programs.length).toBe(2);
    const [p, k] = sc.spec.programs;
    expect({ name: k!.name, attach: k!.attach, linkOf: k!.linkOf, type: k!.type }).toEqual({ name: "p", attach: "kprobe", linkOf: 0, type: "kprobe" });
    expect(k!.insns).toBe(p!.insns); // the same bpf_prog's code
    expect(sc.spec.irq).toEqual([{ vector: 34, program: 1 }]);
    expect(sc.spec.task).toBe(0);
  });

  test("what a link may not be, each at its JSON path", () => {
    expect(issues({ ...linked(), version: 2 })).toEqual(['links: needs "version": 3 (links came with it)']);
    expect(issues(linked({ links: [{ name: "pk", program: "q", attach: "kprobe" }] }))).toEqual(["links[0].program: no program is named 'q' (programs: p)"]);
    expect(issues(linked({ links: [{ name: "pk", program: "p", attach: "kprobe" }, { name: "pm", program: "pk", attach: "kprobe_multi" }] }))).toEqual([
      "links[1].program: 'pk' is a link: a link attaches a program (bpf_link → bpf_prog), not another link (programs: p)",
    ]);
    expect(issues(linked({ links: [{ name: "p", program: "p", attach: "kprobe" }], irq: [] }))).toEqual(["links[0].name: 'p' names a program or a link already"]);
    expect(issues(linked({ irq: [{ vector: 34, program: "pz" }] }))).toEqual(["irq[0].program: no program or link is named 'pz' (programs: p; links: pk)"]);
    // an image runs 48 programs and links in all (the schema allows 48 programs and 16 links;
    // scenarioOf(), which files built in code go through, checks the sum with or without links)
    const many = (n: number, links: { name: string; program: string; attach: string }[]) => ({ ...linked(), programs: Array.from({ length: n }, (_, k) => ({ name: k ? `p${k}` : "p", type: "kprobe", attach: "uprobe", funcs: main })), links, irq: [] });
    expect(issues(many(48, [{ name: "pk", program: "p", attach: "kprobe" }]))).toEqual(["links: 48 programs and 1 links: an image runs at most 48 in all"]);
    expect(() => scenarioOf(many(49, []) as unknown as ScenarioFile)).toThrow(/programs: 49 programs and 0 links: an image runs at most 48 in all/);
    // the path's own rules: the type's paths, a sleepable program only where it may sleep
    // (__perf_event_set_bpf_prog(): "only uprobe programs are allowed to be sleepable")
    expect(issues(linked({ links: [{ name: "pk", program: "p", attach: "raw_tp" }], irq: [] }))).toEqual([
      "links[0].attach: pk (a link of p): a kprobe program cannot be run through raw_tp (that path runs raw_tp programs)",
    ]);
    expect(issues(linked({ programs: [{ name: "p", type: "kprobe", attach: "uprobe", sleepable: true, funcs: main }], irq: [], tasks: ["p"], task: undefined }))).toEqual([
      "links[0].attach: pk (a link of p): Program of this type cannot be sleepable (kprobe through kprobe; sleepable kprobe programs run through uprobe, uprobe_multi)",
    ]);
    // a link through a task-context path runs in no interrupt
    expect(issues(linked({ programs: [{ name: "p", type: "kprobe", funcs: main }], links: [{ name: "pu", program: "p", attach: "uprobe_multi" }], irq: [{ vector: 34, program: "pu" }] }))[0])
      .toMatch(/^links\[0\]\.attach: pu runs through uprobe_multi, which fires only in a task's own context, and an interrupt runs it/);
  });

  test("a sleepable raw_tp program attaches only to a faultable tracepoint: no kfunc runs it (bpf_raw_tp_link_attach())", () => {
    const nests = [{ name: "main", stackDepth: 0, insns: [[0xb7, 1, 0, 0, 0], [0x85, 0, 2, 0, 1000], [0x95, 0, 0, 0, 0]] }];
    const plain = [{ name: "main", stackDepth: 0, insns: [[0xb7, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]] }];
    const json = (sleepable: boolean) => ({ version: 2, tasks: ["q"], nested: ["r"], programs: [{ name: "q", type: "raw_tp", sleepable: true, funcs: nests }, { name: "r", type: "raw_tp", sleepable, funcs: plain }] });
    expect(issues(json(true))).toEqual([expect.stringMatching(/^nested\[0\]: r runs through raw_tp as a sleepable program, which fires only in a task's own context, and q runs it through scx_sc_run_nested\(\)/)]);
    expect(parseScenario(json(false)).spec.nested).toEqual([1]);
  });
});

describe("the image", () => {
  test("a link shares its program's code, prog->active, misses and private stacks; its runner takes its own path's counter", () => {
    const sc = parseScenario(linked());
    const img = buildImage(sc.spec, strategy("r9-private"));
    const [p, k] = img.programs;
    expect(k!.linkOf).toBe(0);
    expect(k!.jit).toBe(p!.jit);
    expect([k!.progActive, k!.misses]).toEqual([p!.progActive, p!.misses]);
    expect([p!.counter, k!.counter]).toEqual(["none", "global"]); // uprobe: none; kprobe: bpf_prog_active
    expect(k!.active).toBe(img.bpfProgActive);
    // listed once: its functions' symbols and its private stack
    expect(img.symbols.filter((s) => s.kind === "bpf").length).toBe(1);
    expect(privateStacks(img).map((x) => x.name)).toEqual(["private p/main"]);
    expect(img.guards.length).toBe(p!.jit.privates.reduce((n, x) => n + x.guards.length, 0));
    expect(bpfProgs(img)).toEqual([p]);
    // links come after every program (bpfProgs() is the prefix before them)
    const [a, b] = sc.spec.programs;
    expect(() => buildImage({ ...sc.spec, programs: [a!, b!, { ...a!, name: "q", insns: [...a!.insns] }] }, strategy("r9-private"))).toThrow(/program 1 \(p\) is a link, and a program that is not one comes after it/);
  });
});

describe("two paths, two counters, one private stack", () => {
  test.each([
    ["uprobe-kprobe-link.json", "uprobe", "kprobe"],
    ["syscall-tp-link.json", "tp_faultable", "tracepoint"],
  ])("%s: r9-private: the interrupt's run writes over the task's live private frame; the baseline passes", (f, taskPath, irqPath) => {
    const o = run(f, "r9-private");
    expect(firstFailure(o)?.what).toBe("memory");
    const memory = o.checks.failures.filter((x) => x.check === "memory").map((x) => x.message);
    expect(memory[0]).toMatch(new RegExp(`\\(probe through ${irqPath}, called from bpf_sc_run\\+0x[0-9a-f]+\\)\\) lands in the private probe/main stack inside [0-9a-f]+\\.\\.[0-9a-f]+, written by bpf_prog_\\w+_main \\(probe through ${taskPath}, called from bpf_sc_run\\+0x[0-9a-f]+\\), which is still live$`));
    // and the task's run returns what it did not compute: its slot was overwritten
    expect(o.checks.failures.some((x) => x.check === "semantics")).toBe(true);
    expect(o.checks.invocations).toBe(2);
    const base = run(f, "baseline");
    expect(firstFailure(base)).toBeUndefined();
    expect(base.checks.invocations).toBe(2);
  });

  test("bpf_get_stack() walks as the attachment that ran: through a uprobe link, the uprobe's user-mode regs; through the kprobe, the kprobe's", () => {
    const sc = loadScenario(file("uprobe-kprobe-link.json"));
    // the task runs the link (uprobe), the IRQ the program itself (kprobe)
    const swapped = parseScenario({ ...sc.file, programs: [{ ...sc.file.programs[0]!, attach: "kprobe" }], links: [{ name: "probe_uprobe", program: "probe", attach: "uprobe" }], task: "probe_uprobe", irq: [{ vector: 34, program: "probe" }] });
    for (const x of [sc, swapped]) {
      const o = runScenario(x, strategy("baseline"), { unwinder: "frame", injections: scheduleOf(x) });
      expect(o.ok).toBe(true);
      // in the task's run, then the IRQ's (its helper call comes first: the IRQ lands after the task's store)
      const hows = o.samples.filter((y) => y.kind === "bpf_get_stack (helper)").map((y) => y.where.replace(/^.*?, /, ""));
      expect(hows.sort()).toEqual(["from the kprobe's regs (int3 at the runner's entry)", "the uprobe's user-mode regs: no kernel frames (get_perf_callchain())"]);
    }
  });

  test("two attachments that take prog->active take the program's one: a second task's run through the other is refused while the first is preempted", () => {
    // one TRACEPOINT program on two syscall tracepoints (tp_faultable twice): task 0 runs it
    // through one, a tick preempts it inside the program, task 1 runs it through the other
    const sc = loadScenario(file("syscall-tp-link.json"));
    const json = (atStep: number) => ({
      ...sc.file, links: [{ name: "probe_other", program: "probe", attach: "tp_faultable" }], task: undefined, tasks: ["probe", "probe_other"], irq: [],
      interrupts: [{ kind: "tick", atStep }],
    });
    const runs = Array.from({ length: 20 }, (_, k) => {
      const x = parseScenario(json(28 + k));
      return runScenario(x, strategy("r9-private"), { unwinder: "frame", injections: scheduleOf(x) });
    }).filter((o) => o.sched.preemptedInBpf === 1);
    expect(runs.length).toBeGreaterThan(3);
    for (const o of runs) {
      expect(o.ok, o.checks.failures.map((x) => x.message).join("\n")).toBe(true);
      expect(o.checks.invocations).toBe(2);
    }
  });

  test("kprobe and kprobe_multi share bpf_prog_active: the IRQ's run is refused, counted once in the program's misses", () => {
    const sc = loadScenario(file("uprobe-kprobe-link.json"));
    const both = parseScenario({ ...sc.file, programs: [{ ...sc.file.programs[0]!, attach: "kprobe" }], links: [{ name: "probe_kprobe", program: "probe", attach: "kprobe_multi" }] });
    const o = runScenario(both, strategy("r9-private"), { unwinder: "frame", injections: scheduleOf(both) });
    expect(o.ok, o.checks.failures.map((x) => x.message).join("\n")).toBe(true);
    expect(o.checks.invocations).toBe(2);
    const img = buildImage(both.spec, strategy("r9-private"));
    expect(img.programs.map((p) => p.active)).toEqual([img.bpfProgActive, img.bpfProgActive]);
  });

  test("exhaustive mode finds it at the boundaries inside the task's run, and its early end keeps the verdicts", () => {
    const sc = loadScenario(file("uprobe-kprobe-link.json"));
    const s = strategy("r9-private");
    const image = buildImage(sc.spec, s);
    const fast = checkExhaustive(sc, s, { unwinder: "frame", shortcut: true, kinds: ["irq"] }, image);
    const full = checkExhaustive(sc, s, { unwinder: "frame", shortcut: false, kinds: ["irq"] }, image);
    expect(fast.ok).toBe(false);
    expect(fast.failure!.what).toBe("memory");
    expect({ failure: fast.failure, injection: fast.injection, runs: fast.runs }).toEqual({ failure: full.failure, injection: full.injection, runs: full.runs });
    expect(checkExhaustive(sc, strategy("baseline"), { unwinder: "frame", kinds: ["irq", "nmi"] }).ok).toBe(true);
  });
});

describe("the generators", () => {
  const lowered = (p: Plan): ScenarioFile => planToScenario(p);
  test("a link: tasks run the program through its task-context path, interrupts through the other; version 3", () => {
    const func = { slots: [1], extra: 64, params: 0, atEntry: null, body: [], atExit: null };
    const plan: Plan = {
      nestLimit: 0, irq: [0], nmi: null, interrupts: [], tasks: [0],
      programs: [{ type: "kprobe", privStackRequested: false, seed: 0, attach: 0, link: 1, funcs: [func] }],
    };
    const f = lowered(plan);
    expect(f.version).toBe(3);
    expect(f.links).toEqual([{ name: "p0_uprobe", program: "p0", attach: "uprobe" }]); // kprobe's other paths: kprobe_multi, uprobe, uprobe_multi
    expect(f.tasks).toEqual(["p0_uprobe", "p0_uprobe"]);
    expect(f.irq).toEqual([{ vector: 34, program: "p0" }]);
    expect(() => parseScenario(f)).not.toThrow();
    // a program on a task-only path with a link: interrupts take the link
    const up = lowered({ ...plan, programs: [{ ...plan.programs[0]!, attach: 2, link: 0 }] });
    expect([up.programs[0]!.attach, up.links, up.tasks, up.irq]).toEqual(["uprobe", [{ name: "p0_kprobe", program: "p0", attach: "kprobe" }], ["p0", "p0"], [{ vector: 34, program: "p0_kprobe" }]]);
    // an attachment nothing runs is left out: with no interrupt, the program is on its link's path
    // alone (so a counterexample that needs one path shrinks to one program on it)
    const alone = lowered({ ...plan, irq: [] });
    expect([alone.version, alone.programs[0]!.attach, alone.links, alone.tasks]).toEqual([2, "uprobe", undefined, ["p0", "p0"]]);
    expect(lowered({ ...plan, irq: [], tasks: [0], programs: [{ ...plan.programs[0]!, attach: 2, link: 0 }] }).links).toBeUndefined();
    // no tasks, no links (a version 1 scenario); a type with one path has none
    expect(lowered({ ...plan, tasks: [] }).links).toBeUndefined();
    expect(lowered({ ...plan, programs: [{ ...plan.programs[0]!, type: "raw_tp" }] }).links).toBeUndefined();
  });

  test("the step model runs a program through the link's counter: a kprobe program the task runs as a uprobe does not hold bpf_prog_active, so the kprobe program it nests runs", () => {
    const f = (body: Plan["programs"][number]["funcs"][number]["body"]) => ({ slots: [1], extra: 0, params: 0, atEntry: null, body, atExit: null });
    const plan: Plan = {
      nestLimit: 2, irq: [], nmi: null, interrupts: [], tasks: [0],
      programs: [
        { type: "kprobe", privStackRequested: false, seed: 0, attach: 0, link: 1, funcs: [f([{ op: "nested", target: 0 }])] },
        { type: "kprobe", privStackRequested: false, seed: 0, funcs: [f([])] },
      ],
    };
    const low = lowerPlan(plan);
    expect(low.file.programs[0]!.attach).toBe("uprobe"); // (only the tasks run it: one path)
    const sc = parseScenario(low.file);
    const img = buildImage(sc.spec, strategy("baseline"));
    const m = loadImage(img);
    const seen: number[] = [];
    for (const x of img.symbols.filter((y) => y.kind === "bpf")) m.addHook(x.start, (mm) => { seen.push(mm.steps); });
    startTask(img, m);
    expect(m.run({ maxSteps: 100_000 }).kind).toBe("completed");
    // task 0's run enters p0's main, then p1's (not refused); with tasks the runner's preemption
    // bookkeeping puts the machine a few steps behind the model (it follows one task, no scheduler)
    expect(low.timeline.entries.length).toBe(2);
    low.timeline.entries.forEach((step, k) => expect(Math.abs(seen[k]! - step), `entry ${k}: model ${step}, machine ${seen[k]}`).toBeLessThanOrEqual(4));
  });

  test("generated scenarios with links are valid, and `links: false` draws none", () => {
    const files = fc.sample(planArb({ maxPrograms: 3, maxFuncs: 2, maxItems: 3 }), { numRuns: 200, seed: 7 }).map(lowered);
    // (a link is kept only where both attachments run: 6 of these 200)
    const withLinks = files.filter((f) => f.links?.length);
    expect(withLinks.length).toBeGreaterThan(3);
    for (const f of withLinks) {
      const link = f.links![0]!, runs = [...(f.tasks ?? []), ...(f.irq ?? []).map((a) => a.program), ...(f.nmi ? [f.nmi] : [])];
      expect(runs, JSON.stringify(f.links)).toContain(link.name);
    }
    for (const f of withLinks) expect(() => parseScenario(f)).not.toThrow();
    expect(fc.sample(planArb({ maxPrograms: 3, links: false }), { numRuns: 100, seed: 7 }).map(lowered).filter((f) => f.links)).toEqual([]);
  });

  test("a campaign on the counted paths finds the mixed attachment (r9-private)", () => {
    // a search at a seed where it is found (after 392 scenarios; at seeds 2-8 not in 400): the
    // campaign's seed, not FC_SEED's
    const r = runCampaign({ strategy: strategy("r9-private"), unwinder: "frame", policy: "strict", runs: 400, seed: 1, constraints: { maxPrograms: 2, maxFuncs: 2, maxItems: 4, counterlessPaths: false } });
    expect(r.ok).toBe(false);
    const cx = r.counterexample!;
    expect(cx.verdict.failure!.what).toBe("memory");
    expect(cx.scenario.file.links?.map((l) => l.attach)).toEqual(["tp_faultable"]);
    expect(cx.verdict.failure!.message).toMatch(/p0 through tracepoint.* written by .*p0 through tp_faultable/);
  });
});
