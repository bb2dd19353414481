// Work counted rather than timed (README "Tests, seeds and benchmarks"): the instructions the CPU
// executes for one unit of a phase, from one build of the code, to compare with another build's:
//
//   npx tsx test/bench/instructions.ts <build dir> [phase] [reps]
//
// On the shared 2-core hosts a run's time moves by 20-40% from one minute to the next; the
// instructions it executes do not. The phase runs `reps` and 2 x `reps` times, each in
// `node --single-threaded` (V8's compiler and collector then work on the one thread, so their
// work is counted too) under `valgrind --tool=cachegrind --cache-sim=no`; the difference of the
// two counts over the difference of the units leaves out start-up and warm-up. Repeats agree
// within 3-8% (a build can land in one of two modes about 6% apart, as V8's tiering falls).
// Phases, over 200 small plans (seed 42) under the baseline and the frame unwinder:
//   scenario  lowering and validating a plan (planToScenario(), scenarioOf())
//   image     building its image (the JIT)
//   start     setting up a run on the prebuilt image (startRun(), end())
//   run       a whole random-mode run on the prebuilt image (checkRandom())
//   irq, nmi  exhaustive mode's boundaries (the first 16 of the bench's plans, plans.ts): per boundary
// About a minute per phase at the default reps (3). Needs valgrind; says so and stops without.
import fc from "fast-check";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { EXHAUSTIVE_SEED, exhaustiveConstraints, SMALL } from "./plans.ts";

const PHASES = ["scenario", "image", "start", "run", "irq", "nmi"] as const;
type Phase = (typeof PHASES)[number];

/** The child: the phase `reps` times; prints the units of work done. */
async function child(d: string, phase: Phase, reps: number): Promise<void> {
  const { tuneV8 } = await import("../../bin/entry.js");
  tuneV8();
  const { planArb, planToScenario } = (await import(`${d}/generators/index.js`)) as typeof import("../../generators/index.ts");
  const { scenarioOf } = (await import(`${d}/harness/scenario.js`)) as typeof import("../../harness/scenario.ts");
  const { imageFor, checkRandom } = (await import(`${d}/harness/property.js`)) as typeof import("../../harness/property.ts");
  const { startRun, scheduleOf } = (await import(`${d}/harness/run.js`)) as typeof import("../../harness/run.ts");
  const { checkPlan } = (await import(`${d}/harness/campaign.js`)) as typeof import("../../harness/campaign.ts");
  const { BUILTIN_STRATEGIES } = (await import(`${d}/jit/strategies/index.js`)) as typeof import("../../jit/strategies/index.ts");
  const s = BUILTIN_STRATEGIES.find((x) => x.name === "baseline")!;
  const o = { strategy: s, unwinder: "frame" as const, policy: "strict" as const };
  let units = 0;
  if (phase === "irq" || phase === "nmi") {
    const plans = fc.sample(planArb(exhaustiveConstraints(phase)), { numRuns: 16, seed: EXHAUSTIVE_SEED });
    for (let i = 0; i < reps; i++) for (const p of plans) units += checkPlan(p, { ...o, exhaustive: true, kinds: [phase] }).verdict.runs - 1;
  } else {
    const plans = fc.sample(planArb(SMALL), { numRuns: 200, seed: 42 });
    const scs = plans.map((p) => scenarioOf(planToScenario(p), "generated"));
    const imgs = scs.map((sc) => imageFor(sc, s, {}));
    for (let i = 0; i < reps; i++) {
      if (phase === "scenario") plans.forEach((p) => scenarioOf(planToScenario(p), "generated"));
      else if (phase === "image") scs.forEach((sc) => imageFor(sc, s, {}));
      else if (phase === "start") scs.forEach((sc, k) => startRun(sc, s, { ...o, image: imgs[k]!, injections: scheduleOf(sc) }).end());
      else scs.forEach((sc, k) => { if (!checkRandom(sc, s, o, imgs[k]!).ok) throw new Error("the baseline failed a run"); });
      units += plans.length;
    }
  }
  console.log(`units ${units}`);
}

/** Instructions and units of `reps` repetitions, counted in a child under cachegrind (the two counts run at once: they do not time anything). */
function count(d: string, phase: Phase, reps: number): Promise<{ instructions: number; units: number }> {
  const self = fileURLToPath(import.meta.url);
  const argv = ["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", process.execPath, "--single-threaded", "--import", "tsx", self, "--child", d, phase, String(reps)];
  return new Promise((done) => execFile("valgrind", argv, { encoding: "utf8", maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
    const ir = /I\s+refs:\s+([\d,]+)/.exec(stderr), units = /^units (\d+)$/m.exec(stdout);
    if (err || !ir || !units) {
      console.error(`instructions: the ${phase} phase did not run under valgrind (${err ? `exit ${err.code}` : "no count"}): ${(stderr || stdout).trim().split("\n").slice(-5).join("\n")}`);
      process.exit(3);
    }
    done({ instructions: Number(ir[1]!.replaceAll(",", "")), units: Number(units[1]) });
  }));
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  await child(args[1]!, args[2] as Phase, Number(args[3]));
} else {
  const [dir, phaseArg = "run", repsArg = "3"] = args;
  const reps = Number(repsArg);
  if (!dir || !PHASES.includes(phaseArg as Phase) || !Number.isInteger(reps) || reps < 1) {
    console.error(`usage: npx tsx test/bench/instructions.ts <build dir (a dist/)> [${PHASES.join("|")}] [reps >= 1]`);
    process.exit(2);
  }
  if (spawnSync("valgrind", ["--version"]).status !== 0) {
    console.log("instructions: skipped (no valgrind; apt-get install -y valgrind)");
    process.exit(0);
  }
  const d = resolve(dir), phase = phaseArg as Phase;
  if (!existsSync(`${d}/harness/run.js`)) {
    console.error(`instructions: ${d} is not a build directory (no harness/run.js in it: npm run build, then give its dist/)`);
    process.exit(2);
  }
  const [a, b] = await Promise.all([count(d, phase, reps), count(d, phase, 2 * reps)]);
  const per = (b.instructions - a.instructions) / (b.units - a.units);
  console.log(`${phase}: ${Math.round(per).toLocaleString("en-US")} instructions per ${phase === "irq" || phase === "nmi" ? "boundary" : "plan"} (${b.units - a.units} units; ${d})`);
}
