// Campaigns with tasks (kernel-model-7.2.md A.4): the merged design on the uprobe paths, and
// design (g)'s per-level frames under preemption; split from campaign.test.ts so that vitest
// runs the two files side by side.
import { describe, expect, test } from "vitest";
import { runCampaign, type CampaignResult } from "../../../harness/campaign.ts";
import { r9Levels } from "../../helpers/r9-levels.ts";
import { strategy } from "../../helpers/strategies.ts";

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : 20261124;
const RUNS = process.env.FC_NUM_RUNS ? Number(process.env.FC_NUM_RUNS) : 90;
const where = (r: CampaignResult) => `seed ${r.seed}, path ${r.path}`;

// Tasks and preemption (kernel-model-7.2.md A.4): the uprobe paths run programs with no
// recursion counter, preemptibly; r9-private gives a KPROBE program a private stack all the same.
// Counterexamples name the two writers: two tasks running the program.
describe("tasks and preemption", () => {
  test("r9-private on every attach path: a uprobe program's private stack is written by a second run of it", () => {
    // a search at a seed where it is found soon (after 18 scenarios; at the default seed after
    // 1,841, at seeds 1-7 after 18 to 2,860): the campaign's seed, not FC_SEED's
    // (one attach path per program: two, a second attachment, is the test after this one)
    const r = runCampaign({ strategy: strategy("r9-private"), unwinder: "frame", policy: "strict", runs: 300, seed: 2, constraints: { maxPrograms: 2, maxFuncs: 2, maxItems: 6, links: false } });
    expect(r.ok, "r9-private is not sound on the uprobe paths").toBe(false);
    const cx = r.counterexample!;
    expect(["memory", "semantics"], where(r)).toContain(cx.verdict.failure!.what);
    const file = cx.scenario.file;
    const uprobes = file.programs.filter((p) => p.attach === "uprobe" || p.attach === "uprobe_multi").map((p) => p.name);
    expect(uprobes.length, where(r)).toBeGreaterThan(0);
    // the second run: another task's (a uprobe fires only in its task's own context: no
    // interrupt or kfunc runs the program, jit/bpf/program.ts ATTACH_PATHS)
    expect((file.tasks ?? []).filter((t) => uprobes.includes(t)).length, where(r)).toBeGreaterThanOrEqual(2);
    expect([...(file.irq ?? []).map((a) => a.program), file.nmi].filter((x) => x !== undefined && uprobes.includes(x)), where(r)).toEqual([]);
    expect(cx.scenario.programs.length, where(r)).toBeLessThanOrEqual(2);
    // the write lands in the uprobe program's private stack, written by the run that is still live
    if (cx.verdict.failure!.what === "memory") expect(cx.verdict.failure!.message).toMatch(new RegExp(`private (${uprobes.join("|")})/\\w+ stack .*(still live|switched out)`));
  });

  test("design (g) with per-level frames picked from prog->active: sound with one task, two tasks alias a level", () => {
    // one program that runs itself through the kfunc (prog->active allows 4 levels), in one task and in two
    // on the paths whose runner raises prog->active (on bpf_prog_active's it stays 0, and the
    // design's level is -1 with one task: its own test below)
    const small = { maxPrograms: 1, maxFuncs: 2, maxItems: 4, bpfProgActivePaths: false } as const;
    const one = runCampaign({ strategy: r9Levels, unwinder: "frame", policy: "strict", runs: Math.round(RUNS / 2), seed: SEED, constraints: { ...small, tasks: 1 } });
    expect(one.ok, where(one)).toBe(true);
    // a search at a seed where it is found soon (found after 58 scenarios; at the default seed
    // after 336; at seeds 1, 5 and 7 not in 600): the campaign's seed, not FC_SEED's
    const two = runCampaign({ strategy: r9Levels, unwinder: "frame", policy: "strict", runs: 300, seed: 3, constraints: { ...small, counterlessPaths: false, links: false } });
    expect(two.ok).toBe(false);
    const cx = two.counterexample!;
    expect(cx.verdict.failure!.what, where(two)).toBe("memory");
    expect(cx.verdict.failure!.message, where(two)).toMatch(/task \d \(inside .*\) writes into the private .* slot \d stack .* live data of task \d/);
    expect(cx.scenario.file.tasks?.length, where(two)).toBe(2);
  });

  test("design (g) on bpf_prog_active's paths: prog->active stays 0 there (trace_call_bpf()), so one task's one run takes level -1", () => {
    const r = runCampaign({ strategy: r9Levels, unwinder: "frame", policy: "strict", runs: 100, seed: SEED, constraints: { maxPrograms: 1, maxFuncs: 2, maxItems: 4, tasks: 1 } });
    expect(r.ok).toBe(false);
    const cx = r.counterexample!;
    expect(cx.scenario.file.programs.map((p) => p.type), where(r)).toEqual([expect.stringMatching(/^(kprobe|tracepoint|perf_event)$/)]);
    expect(`${cx.verdict.failure!.what}: ${cx.verdict.failure!.message}`, where(r)).toMatch(/^memory: \d+-byte write at \w+ by bpf_prog_\w+_main\+0x[0-9a-f]+ is out of the bounds of every per-CPU object/); // below level 0
  });
});

