// The memory oracle: live frames of other contexts and private-stack guards (harness/oracles/memory.ts).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { parseScenario, type Scenario } from "../../../harness/scenario.ts";
import { runScenario, scheduleOf } from "../../../harness/run.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { perCpuObjects } from "../../../harness/oracles/memory.ts";
import { buildImage } from "../../../jit/image.ts";
import { watchRun } from "../../../harness/oracles/run.ts";
import { emitThisCpuPtr } from "../../../jit/percpu.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { strategy } from "../../helpers/strategies.ts";

const path = fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url));
const file = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
const memoryFailures = (sc: Scenario, s: Strategy) => {
  const o = runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc) });
  return { o, memory: o.checks.failures.filter((f) => f.check === "memory").map((f) => f.message) };
};

describe("memory oracle", () => {
  test.each(BUILTIN_STRATEGIES.map((s) => s.name))("%s: the example scenario writes into no other context's live frame", (name) => {
    expect(memoryFailures(parseScenario(file, path), strategy(name)).memory).toEqual([]);
  });

  // outer runs itself through the kfunc. The kernel refuses that (prog->active, exactly-1); a
  // design that let it run (recursion limit 2) on the one per-CPU private stack per function
  // would have the inner activation write over the outer's live private frame.
  const reentrant = parseScenario({ ...file, nested: ["outer"] }, path);

  test("r9-private, as merged: the re-entered run is refused, nothing is clobbered", () => {
    const { o, memory } = memoryFailures(reentrant, strategy("r9-private"));
    expect(o.result.kind).toBe("completed");
    expect(memory).toEqual([]);
    expect(o.checks.failures.filter((f) => f.check === "semantics" || f.check === "misses")).toEqual([]); // refused, counted, as the interpreter says
  });

  test("r9-private allowed to re-enter: the inner activation's writes land on the outer's live private frame", () => {
    const reentering: Strategy = { ...strategy("r9-private"), name: "r9-private-reentrant", recursionLimit: 2 };
    const { memory } = memoryFailures(reentrant, reentering);
    expect(memory.length).toBeGreaterThan(0);
    expect(memory[0]).toMatch(/^8-byte write at [0-9a-f]{16} by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ \(inside bpf_prog_[0-9a-f]{16}_main \(called from bpf_sc_run\+0x[0-9a-f]+\)\) lands in the private outer\/main stack inside [0-9a-f]{16}\.\.[0-9a-f]{16}, written by bpf_prog_[0-9a-f]{16}_main \(called from bpf_sc_run\+0x[0-9a-f]+\), which is still live$/);
  });

  test("limited-recursion gives each level its own slot: the same re-entry clobbers nothing", () => {
    const { o, memory } = memoryFailures(reentrant, strategy("limited-recursion"));
    expect(o.result.kind).toBe("completed");
    expect(memory).toEqual([]);
  });

  test("a main program that writes above its return address hits the runner's live frame: reported with the instruction", () => {
    const base = strategy("baseline");
    const scribbler: Strategy = {
      ...base, name: "scribbler",
      prologue: (e, f) => { base.prologue(e, f); if (f.isMain) e.st(8, "rbp", 16, 0); },
    };
    const { memory } = memoryFailures(parseScenario(file, path), scribbler);
    expect(memory[0]).toMatch(/^8-byte write at [0-9a-f]{16} by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ \(inside bpf_prog_[0-9a-f]{16}_main \(called from bpf_sc_run\+0x[0-9a-f]+\)\) lands at or above rsp [0-9a-f]{16} that bpf_prog_[0-9a-f]{16}_main \(called from bpf_sc_run\+0x[0-9a-f]+\) left on the task stack: live data of the context it was called from$/);
  });

  test("a write into a private stack's guard word is reported when it happens, and again at teardown", () => {
    const r9 = strategy("r9-private");
    const overflow: Strategy = {
      ...r9, name: "overflow",
      prologue: (e, f) => { r9.prologue(e, f); if (f.isMain && f.priv) e.st(8, "r9", f.priv.guards[0]! - f.priv.framePtrOffset, 0); },
    };
    const { o, memory } = memoryFailures(parseScenario(file, path), overflow);
    expect(memory[0]).toMatch(/^8-byte write at [0-9a-f]{16} by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ hits the private-stack guard of outer\/main at [0-9a-f]{16}$/);
    expect(o.checks.failures.some((f) => f.check === "guard" && f.message.includes("BPF private stack overflow/underflow detected for prog main"))).toBe(true);
  });

  test("a read of a private stack's guard word by BPF code is out of bounds, reported with the instruction", () => {
    const r9 = strategy("r9-private");
    const overread: Strategy = {
      ...r9, name: "overread",
      prologue: (e, f) => { r9.prologue(e, f); if (f.isMain && f.priv) e.ldx(8, "r11", "r9", f.priv.guards[0]! - f.priv.framePtrOffset); },
    };
    const { o, memory } = memoryFailures(parseScenario(file, path), overread);
    // once per run of a main with a private stack: outer on the task, leaf nested, on the IRQ and on the NMI
    expect(memory.map((x) => /guard of (\w+)\/main/.exec(x)?.[1])).toEqual(["outer", "leaf", "leaf", "leaf"]);
    for (const x of memory) expect(x).toMatch(/^8-byte read at ([0-9a-f]{16}) by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ reads the private-stack guard of \w+\/main at \1: out of the stack's bounds$/);
    expect(o.checks.failures.filter((f) => f.check === "guard")).toEqual([]); // intact: only the read tells
  });

  test("an access that jumps over the guard is reported with the object it lands in (the guards never see it)", () => {
    const r9 = strategy("r9-private");
    const jumper: Strategy = {
      ...r9, name: "jumper",
      // 4 bytes below outer's bottom guard: past the guard, into the per-CPU allocation before it
      prologue: (e, f) => { r9.prologue(e, f); if (f.isMain && f.priv && f.prog.name === "outer") e.st(4, "r9", f.priv.guards[0]! - f.priv.framePtrOffset - 4, 0); },
    };
    const { o, memory } = memoryFailures(parseScenario(file, path), jumper);
    expect(memory).toHaveLength(1);
    expect(memory[0]).toMatch(/^4-byte write at [0-9a-f]{16} by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ \(BPF code of outer\) writes leaf->misses, which BPF code never writes: out of bounds$/);
    expect(o.checks.failures.filter((f) => f.check === "guard")).toEqual([]); // the guards never see it
  });

  test("BPF code that writes a per-CPU counter (its prog->active) is out of bounds; reading it is what limited-recursion does", () => {
    const base = strategy("baseline");
    const counter: Strategy = {
      ...base, name: "counter",
      prologue: (e, f) => { base.prologue(e, f); if (f.isMain && f.prog.name === "outer") { emitThisCpuPtr(e, f, "r11", f.activePtr); e.st(8, "r11", 0, 0); } },
    };
    const { memory } = memoryFailures(parseScenario(file, path), counter);
    expect(memory).toHaveLength(1);
    expect(memory[0]).toMatch(/^8-byte write at [0-9a-f]{16} by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ \(BPF code of outer\) writes outer->active, which BPF code never writes: out of bounds$/);
    expect(memoryFailures(parseScenario(file, path), strategy("limited-recursion")).memory).toEqual([]);
  });

  test("an access to per-CPU memory that holds no object names the nearest one", () => {
    const r9 = strategy("r9-private");
    const far: Strategy = {
      ...r9, name: "far",
      prologue: (e, f) => { r9.prologue(e, f); if (f.isMain && f.priv && f.prog.name === "outer") e.st(8, "r9", 0x1000, 0); },
    };
    const { memory } = memoryFailures(parseScenario(file, path), far);
    expect(memory).toHaveLength(1);
    expect(memory[0]).toMatch(/^8-byte write at [0-9a-f]{16} by bpf_prog_[0-9a-f]{16}_main\+0x[0-9a-f]+ is out of the bounds of every per-CPU object: \d+ bytes above private leaf\/main stack \[[0-9a-f]{16}, [0-9a-f]{16}\)$/);
  });

  test("per-CPU objects do not overlap; a per-level slot design has one stack object per slot between its guards", () => {
    const sc = parseScenario(file, path);
    const objects = perCpuObjects(buildImage(sc.spec, strategy("limited-recursion")));
    for (let i = 1; i < objects.length; i++) expect(objects[i]!.begin >= objects[i - 1]!.end).toBe(true);
    const outer = objects.filter((o) => o.name.includes("outer/main"));
    expect(outer.map((o) => o.name)).toEqual([
      "the guard of private outer/main", "private outer/main slot 0 stack", "private outer/main slot 1 stack",
      "private outer/main slot 2 stack", "private outer/main slot 3 stack", "the guard of private outer/main",
    ]);
    expect(outer.map((o) => Number(o.end - o.begin))).toEqual([8, 0x4000, 0x4000, 0x4000, 0x4000, 8]);
  });
});

describe("misses", () => {
  // outer runs itself through the kfunc: the runner refuses it and counts it in misses.
  const reentrant = parseScenario({ ...file, nested: ["outer"], interrupts: [] }, path);
  const run = (tamper: boolean) => {
    const img = buildImage(reentrant.spec, strategy("r9-private"));
    const m = loadImage(img);
    const checks = watchRun(img, m);
    const outer = img.programs.findIndex((p) => p.program.name === "outer");
    // a kernel that forgets the count: misses back to 0 whenever a run of outer ends
    if (tamper) m.addHook(img.kernel.addr("run_exit"), (mm) => { if (Number(mm.reg("r12")) === outer) mm.load(img.thisCpu(img.programs[outer]!.misses), new Uint8Array(8)); });
    startTask(img, m);
    expect(m.run().kind).toBe("completed");
    return checks.report().failures.filter((f) => f.check === "misses").map((f) => f.message);
  };

  test("a refused run counted in misses passes; one the kernel did not count is reported", () => {
    expect(run(false)).toEqual([]);
    expect(run(true)).toEqual(["outer: 1 refused run(s), misses counted 0"]);
  });
});
