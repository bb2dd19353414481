// Machines reused across images (harness/load.ts reusedMachine()): images of one layout share a
// machine, each loaded over the bare layout, so a run's outcome must not depend on which images
// ran on that machine before it.
import fc from "fast-check";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, test, vi } from "vitest";
import { planArb, planToScenario } from "../../../generators/index.ts";
import { POOL_SIZE, reusedMachine, startTask } from "../../../harness/load.ts";
import { driveRun, runScenario, scheduleOf, startRun, type RunOutcome } from "../../../harness/run.ts";
import { checkExhaustive } from "../../../harness/property.ts";
import { parseScenario } from "../../../harness/scenario.ts";
import { buildImage } from "../../../jit/image.ts";
import { Machine } from "../../../harness/machine/index.ts";
import { strategy } from "../../helpers/strategies.ts";

/** What a run says, down to the symbols its samples name and the checks that failed. */
const said = (o: RunOutcome) => ({
  result: o.result,
  samples: o.samples.map((s) => ({ kind: s.kind, where: s.where, class: s.class, truth: s.truth.map((t) => t.symbol), unwound: s.unwound.map((t) => t.symbol) })),
  failures: o.checks.failures,
  delivered: o.delivered.map((d) => d.symbol),
});

/** A small generated scenario whose run takes samples (seed 5 of the small plans). */
function sampledScenario(s: ReturnType<typeof strategy>) {
  return fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 4 }), { numRuns: 40, seed: 5 }).map((p, i) => parseScenario(planToScenario(p), `plan ${i}`))
    .find((x) => runScenario(x, s, { unwinder: "frame", injections: scheduleOf(x) }).samples.length > 0)!;
}

/** Full collections, each after the current job (a WeakRef's target stays until the job that made it ends), until every target is gone (at most `rounds`). */
async function collect(refs: readonly WeakRef<object>[], rounds = 3): Promise<void> {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  for (let i = 0; i < rounds && refs.some((r) => r.deref() !== undefined); i++) {
    await new Promise((r) => setTimeout(r, 0));
    gc();
  }
}

describe("machines shared by images of one layout", () => {
  test("every run, in any order after any other image, says what a run on a fresh machine says", () => {
    const s = strategy("r9-private");
    const scenarios = fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 4 }), { numRuns: 12, seed: 7 }).map((p, i) => parseScenario(planToScenario(p), `plan ${i}`));
    const images = scenarios.map((sc) => buildImage(sc.spec, s));
    // fresh: no image given, so startRun() loads the image into a machine of its own
    const fresh = scenarios.map((sc) => said(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc) })));
    // some images share a machine (else this test would not test it)
    const machines = new Set(images.map((img) => reusedMachine(img)));
    expect(machines.size).toBeLessThan(images.length);
    for (const order of [images.map((_, i) => i), images.map((_, i) => images.length - 1 - i), [0, 0, 3, 1, 3, 0, 5, 2, 5]]) {
      for (const i of order) {
        const out = runScenario(scenarios[i]!, s, { unwinder: "frame", injections: scheduleOf(scenarios[i]!), image: images[i]! });
        expect(said(out), `plan ${i}`).toEqual(fresh[i]);
      }
    }
  });
  test("an outcome kept after its run has ended keeps its samples, not its run's machine", async () => {
    const s = strategy("baseline");
    const sc = sampledScenario(s);
    // a machine of its own (no image given: loadImage()), ended as runScenario() ends it
    const opts = { unwinder: "frame" as const, injections: scheduleOf(sc) };
    const { outcome, machine } = ((): { outcome: RunOutcome; machine: WeakRef<Machine> } => {
      const run = startRun(sc, s, opts);
      try {
        return { outcome: driveRun(run, sc, opts), machine: new WeakRef(run.m) };
      } finally {
        run.end();
      }
    })();
    await collect([machine]);
    expect(machine.deref()).toBeUndefined();
    expect(said(outcome)).toEqual(said(runScenario(sc, s, opts))); // and its samples still read as they did
  });

  test("an outcome's samples, read only after its machine has run other images, name what they named when the run ended", () => {
    // (a run words its samples when they are first read: from the symbols its machine had then)
    const s = strategy("r9-private");
    const scenarios = fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 4 }), { numRuns: 12, seed: 7 }).map((p, i) => parseScenario(planToScenario(p), `plan ${i}`));
    const images = scenarios.map((sc) => buildImage(sc.spec, s));
    const run = (i: number) => runScenario(scenarios[i]!, s, { unwinder: "frame", injections: scheduleOf(scenarios[i]!), image: images[i]! });
    const now = scenarios.map((_, i) => said(run(i))); // read at once
    const unread = scenarios.map((_, i) => run(i)); // read after every other image has run
    for (let i = images.length - 1; i >= 0; i--) run(i);
    expect(unread.map(said)).toEqual(now);
    // BPF functions among the samples' frames (their names differ from image to image)
    expect(now.flatMap((x) => x.samples.flatMap((y) => y.truth)).filter((t) => t.startsWith("bpf_prog_")).length).toBeGreaterThan(0);
  });

  test("a machine taken over by an image of the same layout has that image's IDT gates, not the last one's", () => {
    // (images of one kernel have its vectors; a second image with fewer, on the same kernel, is
    // made by hand: the gates go with the image, and a vector it does not have has no gate)
    const s = strategy("baseline");
    const sc = fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 4 }), { numRuns: 60, seed: 3 }).map((p, i) => parseScenario(planToScenario(p), `plan ${i}`)).find((x) => (x.spec.irq?.length ?? 0) >= 1)!;
    const a = buildImage(sc.spec, s);
    const v = a.irqVectors[0]!;
    const b = { ...a, irqVectors: a.irqVectors.slice(1) };
    expect(reusedMachine(a)).toBe(reusedMachine(b)); // one layout
    const take = (img: typeof a) => {
      const m = reusedMachine(img);
      startTask(img, m);
      m.rflags |= 0x200; // IF: delivered at this boundary
      m.raise(v);
      return m.step();
    };
    expect(take(a)).toMatchObject({ kind: "paused" }); // delivered: the handler's first instruction ran
    expect(take(b)).toMatchObject({ kind: "exception", vector: v, message: expect.stringMatching(/has no IDT gate$/) });
    expect(take(a)).toMatchObject({ kind: "paused" });
  });

  test("a machine the pool lets go (more layouts than it keeps) is disposed, and its layout gets a new one that runs", () => {
    const s = strategy("baseline");
    const sc = parseScenario(planToScenario(fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 4 }), { numRuns: 1, seed: 11 })[0]!), "plan");
    const a = buildImage(sc.spec, s);
    const fresh = said(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc) }));
    const dispose = vi.spyOn(Machine.prototype, "dispose");
    try {
      const first = reusedMachine(a);
      // as many other layouts as the pool keeps (a kernel of its own each: another object, the same text), a's the least recently used
      for (let k = 0; k < POOL_SIZE; k++) reusedMachine({ ...a, kernel: Object.create(a.kernel) as typeof a.kernel });
      expect(dispose.mock.contexts).toContain(first);
      expect(reusedMachine(a)).not.toBe(first);
      expect(said(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc), image: a }))).toEqual(fresh);
    } finally {
      dispose.mockRestore();
    }
  });

  test("a run that is over leaves nothing of itself on the pooled machine: its samples can be collected", async () => {
    // (a pooled machine that kept its last run's hooks kept their closures, and through them every
    // sample and check of the run, until its layout ran again: run.ts RunSession.end())
    const s = strategy("baseline");
    const sc = sampledScenario(s);
    const img = buildImage(sc.spec, s);
    // (a sample's regs: an object the run itself made and kept, where the sample read from an
    // outcome is new, made as it is read)
    const refs = ((): WeakRef<object>[] => runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc), image: img }).samples.map((x) => new WeakRef(x.regs)))();
    expect(refs.length).toBeGreaterThan(0);
    await collect(refs);
    expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
    // and the image stays the machine's: its next run takes it as loaded, with nothing loaded again
    const pooled = reusedMachine(img);
    const loads = vi.spyOn(Machine.prototype, "setSymbols");
    try {
      expect(said(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc), image: img }))).toEqual(said(runScenario(sc, s, { unwinder: "frame", injections: scheduleOf(sc) })));
      expect(loads.mock.contexts.filter((m) => m === pooled)).toHaveLength(0);
    } finally {
      loads.mockRestore();
    }
    // exhaustive mode's session ends too, once its forks are done (its samples of the base run
    // are let go at the first fork's restore, so what shows is the machine's reset at the end:
    // one when the pool hands the machine over, one when the session ends)
    expect(reusedMachine(img)).toBe(pooled);
    const reset = vi.spyOn(Machine.prototype, "resetInstrumentation");
    try {
      expect(checkExhaustive(sc, s, { unwinder: "frame", kinds: ["nmi"] }, img).ok).toBe(true);
      expect(reset.mock.contexts).toHaveLength(2);
      for (const m of reset.mock.contexts) expect(m).toBe(pooled);
    } finally {
      reset.mockRestore();
    }
  });
});
