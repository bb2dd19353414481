// What a change that must not move any verdict (speed work) is held to: hashes of the outcomes of
// generated scenarios under every built-in design, from one build of the code, to compare with
// another build's:
//
//   npx tsx test/bench/verdicts.ts <build dir> [plans] [exhaustive plans]
//
// <build dir> is a dist/ (npm run build), this checkout's or another's (git worktree add ...;
// npm run build there). Random mode: `plans` default plans (seed 31) x every built-in design x
// the frame and orc-6.19 unwinders; per pair, one line with the failures and a hash of every
// scenario's result, steps, check failures, samples' classes, high-water marks, invocations and
// scheduler counts. Exhaustive mode: `exhaustive plans` small plans (seed 77) x five designs,
// frame; a hash of every verdict, its runs, early ends, virtual NMIs, failure, injection and
// coverage. Two builds with the same verdicts print the same lines.
import fc from "fast-check";
import { createHash } from "node:crypto";
import { resolve } from "node:path";

const [dir, plansArg = "150", exhaustiveArg = "40"] = process.argv.slice(2);
if (!dir) {
  console.error("usage: npx tsx test/bench/verdicts.ts <build dir (a dist/)> [plans] [exhaustive plans]");
  process.exit(2);
}
const d = resolve(dir);
const load = async <T>(path: string): Promise<T> => {
  try {
    return (await import(`${d}/${path}`)) as T;
  } catch (e) {
    console.error(`verdicts: cannot load ${d}/${path}: ${(e as Error).message} (is it a build directory? npm run build)`);
    process.exit(2);
  }
};
type Gen = typeof import("../../generators/index.ts");
type Scen = typeof import("../../harness/scenario.ts");
type Prop = typeof import("../../harness/property.ts");
type Strats = typeof import("../../jit/strategies/index.ts");
const { planArb, planToScenario } = await load<Gen>("generators/index.js");
const { scenarioOf } = await load<Scen>("harness/scenario.js");
const { checkRandom, checkExhaustive } = await load<Prop>("harness/property.js");
const { BUILTIN_STRATEGIES } = await load<Strats>("jit/strategies/index.js");

const json = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString(16) : x));
const digest = (h: ReturnType<typeof createHash>) => h.digest("hex").slice(0, 16);

const plans = fc.sample(planArb({}), { numRuns: Number(plansArg), seed: 31 });
for (const s of BUILTIN_STRATEGIES) {
  for (const unwinder of ["frame", "orc-6.19"] as const) {
    const h = createHash("sha1");
    let fails = 0;
    plans.forEach((p, i) => {
      const v = checkRandom(scenarioOf(planToScenario(p), "generated"), s, { unwinder, policy: "strict" });
      const o = v.outcome;
      h.update(json({
        i, ok: v.ok, result: o.result.kind, steps: "steps" in o.result ? o.result.steps : undefined, failures: o.checks.failures.map((f) => `${f.check}:${f.message}:${f.at ?? ""}`),
        samples: o.samples.map((x) => x.class + x.where), highWater: o.checks.highWater, invocations: o.checks.invocations, sched: o.sched,
      }));
      if (!v.ok) fails++;
    });
    console.log(`random ${s.name} ${unwinder}: ${fails} of ${plans.length} fail; ${digest(h)}`);
  }
}

const small = fc.sample(planArb({ maxPrograms: 2, maxFuncs: 2, maxItems: 3 }), { numRuns: Number(exhaustiveArg), seed: 77 });
for (const name of ["baseline", "r9-private", "limited-recursion", "r9-no-save", "split-stack"]) {
  const s = BUILTIN_STRATEGIES.find((x) => x.name === name)!;
  const h = createHash("sha1");
  let fails = 0, runs = 0;
  for (const p of small) {
    const v = checkExhaustive(scenarioOf(planToScenario(p), "generated"), s, { unwinder: "frame", policy: "strict" });
    runs += v.runs;
    if (!v.ok) fails++;
    h.update(json({ ok: v.ok, runs: v.runs, earlyEnds: v.earlyEnds, virtualNmis: v.virtualNmis, failure: v.failure && v.failure.what + v.failure.message, at: v.injection?.atStep, coverage: [...v.coverage] }));
  }
  console.log(`exhaustive ${name} frame: ${fails} of ${small.length} fail, ${runs} runs; ${digest(h)}`);
}
