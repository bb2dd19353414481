// The regression corpus (design.md §8): one JSON file per counterexample worth keeping, under
// test/corpus/. A file holds the raw plan (what the generator produced, so it can be given back
// to fast-check and shrunk further), the scenario it lowers to (what runs; readable, and usable
// with `stackcheck run`), how it was found, and the expected verdict per strategy: "pass", or the
// first failure's class or check name. `npm test` replays every file under every strategy listed.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Plan } from "../generators/index.ts";
import { buildImage } from "../jit/image.ts";
import { TS_JIT, type JitBackend } from "../jit/backend.ts";
import type { Strategy } from "../jit/strategy.ts";
import type { Checked } from "./campaign.ts";
import { checkExhaustive, checkRandom, type CheckOptions, type Verdict } from "./property.ts";
import { UNWINDERS } from "./run.ts";
import { PRIVATE_STACK_KNOWLEDGE } from "../unwinder/index.ts";
import { loadScenario, parseScenario, ScenarioError, versionText, type Scenario, type ScenarioFile } from "./scenario.ts";

export const CORPUS_VERSION = 1;

const schema = z.strictObject({
  version: z.literal(CORPUS_VERSION, { error: (i) => versionText("corpus file", i.input, [CORPUS_VERSION]) }),
  name: z.string(),
  found: z.strictObject({
    strategy: z.string(),
    unwinder: z.enum(UNWINDERS),
    policy: z.enum(["strict", "reliable"]),
    exhaustive: z.boolean(),
    /** get_stack_info() knowledge of private stacks (--private-stacks); none when absent. */
    privateStacks: z.enum(PRIVATE_STACK_KNOWLEDGE).optional(),
    seed: z.number().int(),
    path: z.string(),
    failure: z.string(),
    /**
     * Found with the kernel's own JIT (`--jit kernel`): the JIT as its report named it (tree,
     * version, hash of bpf_jit_comp.c), and the tree and patched copy the command was given.
     * `expect` then holds the designs that tree implements, under that JIT. Absent: the
     * TypeScript JIT.
     */
    jit: z.strictObject({ backend: z.literal("kernel"), describe: z.string(), kernelTree: z.string().optional(), jitSource: z.string().optional() }).optional(),
    /** Found with code for a CPU with BMI2 (`--bmi2`: shifts by a register as shlx/shrx/sarx); `expect` is under it too. */
    bmi2: z.boolean().optional(),
  }),
  plan: z.unknown(),
  scenario: z.unknown(),
  /** At least one strategy: `npm test` and `replay` check a file against these, and none would check nothing. */
  expect: z.record(z.string(), z.string()).refine((r) => Object.keys(r).length > 0, {
    error: `lists no strategy, so a replay would check nothing: give the verdict expected under each, e.g. {"baseline": "pass"} (check --save lists every built-in design)`,
  }),
});
export type CorpusFile = z.infer<typeof schema>;

export interface CorpusEntry {
  readonly file: string;
  readonly data: CorpusFile;
  readonly scenario: Scenario;
}

/** "pass", or what failed first: a class (TRUNCATED), a check (semantics) or a run result (fault). */
export const verdictName = (v: Verdict): string => (v.ok ? "pass" : v.failure!.what);

export function loadCorpusFile(file: string): CorpusEntry {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ScenarioError(file, [{ code: "read", path: "", message: `cannot read a corpus file: ${(e as Error).message}` }]);
  }
  // a scenario file (programs, no found record): not a corpus entry, but `stackcheck run` takes it
  if (json !== null && typeof json === "object" && !Array.isArray(json) && !("found" in json) && "programs" in json) {
    throw new ScenarioError(file, [{ code: "scenario-file", path: "", message: `a scenario file, not a corpus file (found, plan, scenario, expect): run it with \`stackcheck run ${file}\`` }]);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ScenarioError(file, parsed.error.issues.map((i) => ({ code: i.code, path: i.path.join("."), message: i.message })));
  }
  const scenario = parseScenario(parsed.data.scenario, `${file} (scenario)`);
  return { file, data: parsed.data, scenario };
}

/**
 * A scenario file, or a corpus file (one with a "found" record) and its scenario. A file that
 * cannot be read or is not JSON gets the scenario loader's own error.
 */
export function loadScenarioOrCorpus(file: string): { readonly scenario: Scenario; readonly corpus?: CorpusEntry } {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return { scenario: loadScenario(file) }; // its own error: unreadable, or not JSON
  }
  if (json !== null && typeof json === "object" && "found" in json) {
    const corpus = loadCorpusFile(file);
    return { scenario: corpus.scenario, corpus };
  }
  return { scenario: parseScenario(json, file) };
}

/** How a corpus entry was found, which is how it is replayed. */
export type FoundUnder = Pick<CorpusFile["found"], "unwinder" | "policy" | "exhaustive" | "privateStacks">;

/** A scenario's verdict under one strategy, in the mode, unwinder and policy it was found with. */
export function verdictUnder(sc: Scenario, strategy: Strategy, f: FoundUnder, jit: JitBackend = TS_JIT): Verdict {
  const opts: CheckOptions = { unwinder: f.unwinder, policy: f.policy, privateStacks: f.privateStacks ?? "none", jit };
  const image = buildImage(sc.spec, strategy, undefined, undefined, jit);
  return f.exhaustive ? checkExhaustive(sc, strategy, opts, image) : checkRandom(sc, strategy, opts, image);
}

/** Check an entry's scenario under one strategy, as it was found. */
export const replayEntry = (e: CorpusEntry, strategy: Strategy, jit: JitBackend = TS_JIT): Verdict => verdictUnder(e.scenario, strategy, e.data.found, jit);

/** A file name from the failure: `<strategy>-<class>-<seed>.json`. */
export function saveCounterexample(dir: string, cx: Checked, found: CorpusFile["found"], expect: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  const data: CorpusFile = {
    version: CORPUS_VERSION,
    name: `${found.strategy} ${found.failure} under ${found.unwinder} (${found.policy}${found.exhaustive ? ", exhaustive" : ""}${found.privateStacks && found.privateStacks !== "none" ? `, private stacks ${found.privateStacks}` : ""})`,
    found, plan: cx.plan as Plan, scenario: cx.scenario.file as ScenarioFile, expect,
  };
  const file = join(dir, `${found.strategy}-${found.failure.toLowerCase()}-${found.seed >>> 0}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}
