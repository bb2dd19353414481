// The campaign commands' work (check, replay, export, matrix), loaded when one of them runs:
// campaign.ts defines the commands and is light, so that `--help` does not load the machine, the
// JIT and fast-check.
import { statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { basename } from "node:path";
import { BUILTIN_STRATEGIES, isStrategyModule, loadStrategy } from "../../jit/strategies/index.ts";
import { StrategyError, type Strategy } from "../../jit/strategy.ts";
import { runCampaign, shardOf, type CampaignResult, type Shard } from "../campaign.ts";
import { loadCorpusFile, loadScenarioOrCorpus, replayEntry, saveCounterexample, verdictName, verdictUnder, type CorpusFile } from "../corpus.ts";
import { POINT_CLASSES, SCHED_KEYS, type CoverageKey, type PointClass } from "../property.ts";
import { formatCounterexample, wrapText, type ReportFormat } from "../report.ts";
import { UNWINDERS, type UnwinderName } from "../../unwinder/index.ts";
import { RunFailed, UsageError } from "./errors.ts";
import { exhaustiveProgress, freshSeed, progressBar, type OutputFormat } from "./options.ts";
import { openJit } from "./jit-option.ts";
import type { JitBackend } from "../../jit/backend.ts";
import { runOnWorkers } from "./pool.ts";
import { buildImage } from "../../jit/image.ts";
import { exportSelftest } from "../selftest.ts";
import { bigintHex, JSON_SCHEMA } from "./json.ts";
import type { PlanConstraints } from "../../generators/index.ts";
import { DEFAULT_TASKS, type CampaignFlags, type Colors } from "./campaign.ts";

type Out = (s: string) => void;

/** The report layout the flags ask for (json is handled apart). */
const layoutOf = (f: { format?: OutputFormat }): ReportFormat => (f.format === "email" ? "email" : "text");


/** How walks are judged in a campaign: the unwinder, policy, private-stack knowledge and mode. */
const modeOf = (f: CampaignFlags) => ({ unwinder: f.unwinder, policy: f.policy, privateStacks: f.privateStacks, exhaustive: f.exhaustive ?? false });
/** What the generator may draw beyond its defaults. */
function generatorOf(f: CampaignFlags): { constraints: PlanConstraints; schedulesPerPlan: number; shortcut?: boolean } {
  if (f.exhaustive && f.schedules !== 1) throw new UsageError("--schedules and --exhaustive: exhaustive mode injects at every boundary itself, so a plan has no schedules to vary; use one or the other");
  if (f.spinLoops && f.exhaustive) throw new UsageError("--spin-loops and --exhaustive: a loop only may_goto bounds runs about a million instructions, and exhaustive mode forks at every one; use one or the other");
  return {
    constraints: { tasks: f.tasks, ...(f.spinLoops ? { spinLoops: true } : {}), ...(f.uprobes ? {} : { counterlessPaths: false }), ...(f.links ? {} : { links: false }), ...(f.bpfProgActive ? {} : { bpfProgActivePaths: false }) }, schedulesPerPlan: f.schedules,
    ...(f.earlyEnd !== undefined ? { shortcut: f.earlyEnd } : {}),
  };
}


function replayLine(f: Omit<CampaignFlags, "strategy" | "unwinder">, strategy: string, unwinder: string, seed: number | string, path: string): string {
  return [
    "npx stackcheck replay", `--strategy ${strategy}`, `--unwinder ${unwinder}`,
    ...(f.policy !== "strict" ? [`--policy ${f.policy}`] : []), ...(f.privateStacks !== "none" ? [`--private-stacks ${f.privateStacks}`] : []),
    ...(f.exhaustive ? ["--exhaustive"] : []), ...(f.earlyEnd === undefined ? [] : [f.earlyEnd ? "--early-end" : "--no-early-end"]), ...(f.spinLoops ? ["--spin-loops"] : []), ...(f.schedules !== 1 ? [`--schedules ${f.schedules}`] : []), ...(f.tasks !== DEFAULT_TASKS ? [`--tasks ${f.tasks}`] : []), ...(f.uprobes ? [] : ["--no-uprobes"]), ...(f.links ? [] : ["--no-links"]), ...(f.bpfProgActive ? [] : ["--no-bpf-prog-active"]),
    ...(f.bmi2 ? ["--bmi2"] : []),
    ...(f.jit === "kernel" ? ["--jit kernel", ...(f.kernelTree !== undefined ? [`--kernel-tree ${f.kernelTree}`] : []), ...(f.jitSource !== undefined ? [`--jit-source ${f.jitSource}`] : [])] : []),
    `--seed ${seed}`, `--path ${path}`,
  ].join(" ");
}

/** Text outside a report, cut to 80 columns under --format email. */
const narrow = (f: { format?: OutputFormat }, text: string): string => (layoutOf(f) === "email" ? wrapText(text) : text);

/** How many of the interrupt point classes were hit, and how often each. */
const coverageText = (c: ReadonlyMap<CoverageKey, number>) => {
  const points = [...c.entries()].filter(([k]) => (POINT_CLASSES as readonly string[]).includes(k)) as [PointClass, number][];
  const sched = SCHED_KEYS.filter((k) => c.has(k));
  return `${points.length} of ${POINT_CLASSES.length} kinds (${POINT_CLASSES.filter((k) => !c.has(k)).join(", ") || "none"} missed): ` +
    (points.sort((a, b) => a[0].localeCompare(b[0])).map(([k, n]) => `${k} ${n}`).join(", ") || "none") +
    (sched.length ? `\nscheduler: ${sched.map((k) => `${k} ${c.get(k)}`).join(", ")}` : "");
};


/** Run one campaign, on worker threads if asked; a failure is replayed here (seed + path) for its report. */
async function campaign(strategySpec: string, strategy: Strategy, f: CampaignFlags, jit: JitBackend, seed: number, runs: number, workers: number, bar: (n: number) => void): Promise<CampaignResult> {
  const mode = modeOf(f);
  const options = { ...mode, ...generatorOf(f), strategy, jit };
  if (workers <= 1) return runCampaign({ ...options, runs, seed, onCase: bar });
  const started = performance.now();
  // each worker thread runs its own JIT (a kernel tree's: its own shim)
  const jitTask = { jit: f.jit, ...(f.kernelTree !== undefined ? { kernelTree: f.kernelTree } : {}), ...(f.jitSource !== undefined ? { jitSource: f.jitSource } : {}), ...(f.bmi2 ? { bmi2: true } : {}) };
  const { results } = await runOnWorkers({ ...mode, ...generatorOf(f), ...jitTask, strategy: strategySpec }, runs, seed, workers, bar);
  const coverage = new Map<CoverageKey, number>();
  for (const r of results) for (const [k, n] of r.coverage) coverage.set(k, (coverage.get(k) ?? 0) + n);
  const failed = results.find((r) => !r.ok);
  const total = results.reduce((n, r) => n + r.runs, 0);
  if (!failed) return { ok: true, seed, runs: total, shrinks: 0, coverage, elapsedMs: performance.now() - started };
  // Workers stop at the first failure; its seed and path on this thread: the failure shrunk, with its report.
  const cx = runCampaign({ ...options, runs: 1, seed: failed.seed, path: failed.path! });
  return { ...cx, runs: total, coverage, elapsedMs: performance.now() - started };
}


/** What went wrong writing a file, in words: what its error code means (ENOENT, EISDIR, ...), else Node's message. */
function fileProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const why: Record<string, string> = {
    ENOENT: "its directory does not exist", EISDIR: "it is a directory", ENOTDIR: "a part of the path is not a directory",
    EACCES: "permission denied", EPERM: "permission denied", EROFS: "a read-only file system", EEXIST: "a file is in the way",
  };
  return code !== undefined && why[code] !== undefined ? why[code] : (e as Error)?.message ?? String(e);
}

/** --save's directory: absent (made when a failure is saved) or a directory, else a usage error before the campaign runs. */
function mustBeSaveDir(dir: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    // absent is fine (made at the first save); a path through a file is not
    if ((e as NodeJS.ErrnoException).code === "ENOTDIR") throw new UsageError(`check: --save ${dir}: ${fileProblem(e)}`);
    return;
  }
  if (!st.isDirectory()) throw new UsageError(`check: --save ${dir}: not a directory (a corpus directory, e.g. test/corpus)`);
}

/** `check`. */
export async function checkAction(f: CampaignFlags & { workers: number; shard?: Shard; save?: string }, out: Out, pc: Colors): Promise<void> {
  if (f.save !== undefined) mustBeSaveDir(f.save);
  const strategy = await loadStrategy(f.strategy);
  const campaignSeed = f.seed ?? freshSeed();
  const { runs } = f.shard ? shardOf(f.runs, campaignSeed, f.shard) : { runs: f.runs };
  const workers = Math.min(f.workers, cpus().length * 4, runs);
  // Seeds: worker w of shard i runs campaign seed + (i-1)·workers + w, so no two parts of a
  // sharded campaign share one (with the same --workers in every job).
  const seed = (campaignSeed + (f.shard ? (f.shard.index - 1) * workers : 0)) | 0;
  const bar = progressBar(runs, !f.json && runs >= 50);
  const jit = openJit(f);
  // (open until the end: a counterexample saved with --save is checked under every design the JIT lowers)
  try {
    let r: CampaignResult;
    try {
      r = await campaign(f.strategy, strategy, f, jit.backend, seed, runs, workers, bar.tick);
    } finally {
      bar.stop();
    }
    const seeds = workers > 1 ? `seeds ${seed}..${(seed + workers - 1) | 0} (${workers} workers)` : `seed ${seed}`;
    const head = `stackcheck check: strategy ${strategy.name}, unwinder ${f.unwinder}, policy ${f.policy}${f.exhaustive ? ", exhaustive" : ""}, ${seeds}${f.shard ? `, shard ${f.shard.index}/${f.shard.count} of campaign seed ${campaignSeed}` : ""}${jit.backend.name === "ts" ? "" : `\njit: ${jit.backend.describe}`}`;
    if (r.ok) {
      if (f.json) out(`${JSON.stringify({ schema: JSON_SCHEMA, ok: true, strategy: strategy.name, unwinder: f.unwinder, policy: f.policy, exhaustive: f.exhaustive ?? false, jit: jit.backend.describe, seed, runs: r.runs, elapsedMs: Math.round(r.elapsedMs), coverage: Object.fromEntries(r.coverage) }, null, 2)}\n`);
      else out(`${narrow(f, `${head}\n${pc.green("PASS")}: ${r.runs} scenarios in ${(r.elapsedMs / 1000).toFixed(1)} s\ninterrupt points hit: ${coverageText(r.coverage)}`)}\n`);
      return;
    }
    const cx = r.counterexample!;
    const replay = replayLine(f, f.strategy, f.unwinder, r.seed, r.path!);
    const report = formatCounterexample(cx.scenario, cx.image, cx.verdict, {
      strategy: strategy.name, unwinder: f.unwinder, policy: f.policy, replay, found: `found after ${r.runs} scenarios, shrunk in ${r.shrinks} steps`,
    }, f.json ? "text" : layoutOf(f));
    const under = modeOf(f);
    let saved: string | undefined;
    let notSaved: string | undefined;
    if (f.save) {
      // each design's verdict under the JIT that found it (a patched kernel JIT is not the
      // TypeScript one): under --jit kernel, the designs the tree implements
      const expect: Record<string, string> = {};
      for (const s of builtinsFor(jit.backend)) expect[s.name] = verdictName(verdictUnder(cx.scenario, s, under, jit.backend));
      // a strategy module is listed by its path, which `replay <file>` loads
      if (!BUILTIN_STRATEGIES.some((s) => s.name === strategy.name)) expect[f.strategy] = verdictName(cx.verdict);
      const found = f.jit === "kernel"
        ? { jit: { backend: "kernel" as const, describe: jit.backend.describe, ...(f.kernelTree !== undefined ? { kernelTree: f.kernelTree } : {}), ...(f.jitSource !== undefined ? { jitSource: f.jitSource } : {}) } }
        : {};
      try {
        saved = saveCounterexample(f.save, cx, { ...under, strategy: strategy.name, seed: r.seed, path: r.path!, failure: verdictName(cx.verdict), ...found, ...(f.bmi2 ? { bmi2: true } : {}) }, expect);
      } catch (e) {
        // the report is printed all the same; then the command ends with this input error (exit 2)
        notSaved = `check: --save ${f.save}: cannot save the counterexample there: ${fileProblem(e)}`;
      }
    }
    if (f.json) {
      out(`${JSON.stringify({
        schema: JSON_SCHEMA,
        ok: false, strategy: strategy.name, unwinder: f.unwinder, policy: f.policy, exhaustive: f.exhaustive ?? false, jit: jit.backend.describe, seed: r.seed, path: r.path, runs: r.runs, shrinks: r.shrinks,
        elapsedMs: Math.round(r.elapsedMs), failure: cx.verdict.failure, injection: cx.verdict.injection, plan: cx.plan, scenario: cx.scenario.file, replay, saved, report,
      }, bigintHex, 2)}\n`);
    } else {
      out(`${narrow(f, head)}\n${pc.red("FAIL")}\n${report}${saved ? `${narrow(f, `saved: ${saved}`)}\n` : ""}`);
    }
    if (notSaved !== undefined) throw new UsageError(notSaved);
    throw new RunFailed();
  } finally {
    await jit.close();
  }
}

/** `replay`. */
export async function replayAction(file: string | undefined, f: CampaignFlags & { path?: string }, out: Out, pc: Colors): Promise<void> {
  const jit = openJit(f);
  try {
    await replay(file, f, jit.backend, out, pc);
  } finally {
    await jit.close();
  }
}


/** Whether a JIT lowers a design (the kernel's: only those its tree implements). */
function admits(jit: JitBackend, s: Strategy): boolean {
  try {
    jit.admit(s);
    return true;
  } catch (err) {
    if (err instanceof StrategyError) return false;
    throw err;
  }
}

/** The built-in designs a JIT lowers: all for the TypeScript one, the tree's own for the kernel's (baseline alone before 6.13). */
const builtinsFor = (jit: JitBackend): Strategy[] => BUILTIN_STRATEGIES.filter((s) => admits(jit, s));

/** The kernel JIT a corpus entry was found with, when it is not `jit` (undefined: the TypeScript JIT found it, or this one). */
function kernelJitElsewhere(found: CorpusFile["found"], jit: JitBackend): NonNullable<CorpusFile["found"]["jit"]> | undefined {
  return found.jit !== undefined && found.jit.describe !== jit.describe ? found.jit : undefined;
}

/** What replay says of an entry found with another JIT, or other code (BMI2), than `jit`: how to replay it as found ("" if as found). */
function replayedElsewhere(found: CorpusFile["found"], jit: JitBackend): string {
  const fj = kernelJitElsewhere(found, jit);
  if (fj !== undefined) {
    const flags = ["--jit kernel", ...(fj.kernelTree !== undefined ? [`--kernel-tree ${fj.kernelTree}`] : []), ...(fj.jitSource !== undefined ? [`--jit-source ${fj.jitSource}`] : []), ...(found.bmi2 ? ["--bmi2"] : [])];
    return `  found with the kernel's JIT (${fj.describe}), replayed here on ${jit.describe}: give ${flags.join(" ")} to replay it there\n`;
  }
  const bmi2 = found.bmi2 ?? false;
  if (found.jit !== undefined || bmi2 === (jit.options?.bmi2 ?? false)) return "";
  return `  found with code for a CPU ${bmi2 ? "with" : "without"} BMI2, replayed here ${bmi2 ? "without" : "with"}: ${bmi2 ? "give" : "leave out"} --bmi2 to replay it as found\n`;
}

/** A strategy a corpus file names (`where`: an expect key, found.strategy): its errors name the file and the key. */
async function strategyNamedIn(file: string, where: string, spec: string): Promise<Strategy> {
  try {
    return await loadStrategy(spec);
  } catch (e) {
    if (e instanceof StrategyError) throw new StrategyError(`${file}: ${where}: ${e.message}`);
    throw e;
  }
}

/**
 * The strategy that found a corpus entry. `check --save` records a module's name in
 * found.strategy and its path among the expect keys: the module of that name there, as replay
 * takes it, before a built-in design of the name.
 */
async function foundStrategy(file: string, data: CorpusFile): Promise<Strategy> {
  for (const key of Object.keys(data.expect)) {
    if (!isStrategyModule(key)) continue;
    const s = await strategyNamedIn(file, `expect key '${key}'`, key);
    if (s.name === data.found.strategy) return s;
  }
  return strategyNamedIn(file, "found.strategy", data.found.strategy);
}

/** `replay`: a corpus file under every strategy it lists, or a campaign's seed and path. */
async function replay(file: string | undefined, f: CampaignFlags & { path?: string }, jit: JitBackend, out: Out, pc: Colors): Promise<void> {
    if (file !== undefined) {
      // (as export: a file's entry is replayed as it was found; a seed and path name another)
      if (f.seed !== undefined || f.path !== undefined) throw new UsageError("replay: give a corpus file, or --strategy, --seed and --path, not both");
      const e = loadCorpusFile(file);
      const names = f.strategy ? [f.strategy] : Object.keys(e.data.expect);
      const rows: { strategy: string; expected: string; got: string }[] = [];
      const loaded: Strategy[] = [];
      // Without --strategy, the strategies the file lists that this JIT cannot lower (the kernel's
      // implements only its own designs) are left out, and said to be; asked for by name, refused.
      const leftOut: string[] = [];
      for (const n of names) {
        const s = f.strategy ? await loadStrategy(n) : await strategyNamedIn(file, `expect key '${n}'`, n);
        if (!f.strategy && !admits(jit, s)) {
          leftOut.push(n);
          continue;
        }
        loaded.push(s);
        // a module is listed by the path it was given as (check --save), a built-in by its name
        rows.push({ strategy: s.name, expected: e.data.expect[n] ?? e.data.expect[s.name] ?? "(not listed)", got: verdictName(replayEntry(e, s, jit)) });
      }
      if (loaded.length === 0 && leftOut.length > 0) {
        throw new UsageError(`replay: ${file} lists ${names.join(", ")}, none of them a design the tree's JIT implements (${builtinsFor(jit).map((x) => x.name).join(", ")}); replay it without --jit kernel`);
      }
      const bad = rows.filter((x) => x.expected !== x.got);
      // the full report of the run as it was found (under the strategy that found it, or the one asked for)
      // the strategy that found it: a module of that name before a built-in one of the same name
      const named = loaded.filter((x) => x.name === e.data.found.strategy);
      // (when designs were left out, the one that found it may be among them: a module is left out by its path, found by its name)
      const s = f.strategy ? loaded[0]! : named.find((x) => x.origin !== undefined) ?? named[0] ?? (leftOut.length > 0 ? loaded[0]! : await strategyNamedIn(file, "found.strategy", e.data.found.strategy));
      const verdict = verdictUnder(e.scenario, s, e.data.found, jit);
      const report = verdict.ok ? undefined : formatCounterexample(e.scenario, buildImage(e.scenario.spec, s, undefined, undefined, jit), verdict, {
        strategy: s.name, unwinder: e.data.found.unwinder, policy: e.data.found.policy, replay: `npx stackcheck replay ${file}`,
      }, f.json ? "text" : layoutOf(f));
      const skipped = leftOut.length ? `  left out: ${leftOut.join(", ")} (not designs the tree's JIT implements)\n` : "";
      const other = replayedElsewhere(e.data.found, jit);
      if (f.json) out(`${JSON.stringify({ schema: JSON_SCHEMA, file, ok: bad.length === 0, rows, ...(leftOut.length ? { leftOut } : {}), ...(other ? { note: other.trim() } : {}), ...(report ? { report } : {}) }, null, 2)}\n`);
      else {
        out(`${narrow(f, `${file}: ${e.data.name}${jit.name === "ts" ? "" : `\njit: ${jit.describe}`}`)}\n${rows.map((x) => `  ${x.strategy.padEnd(19)} expected ${x.expected.padEnd(10)} got ${x.got}${x.expected === x.got ? "" : pc.red("  MISMATCH")}`).join("\n")}\n${skipped}${other}`);
        out(report ? `\n${report}` : `\n${s.name}: the scenario passes\n`);
      }
      if (bad.length) throw new RunFailed();
      return;
    }
    mustNameCounterexample(f, "replay: give a corpus file");
    const strategy = await loadStrategy(f.strategy);
    const progress = exhaustiveProgress(f.exhaustive === true && !f.json);
    let r: CampaignResult;
    try {
      r = replayAt("replay", f.path!, { ...modeOf(f), ...generatorOf(f), strategy, jit, runs: 1, seed: f.seed!, path: f.path, onBoundary: progress.onBoundary, onShrink: progress.onShrink });
    } finally {
      progress.stop();
    }
    if (r.ok) {
      out(f.json ? `${JSON.stringify({ schema: JSON_SCHEMA, ok: true, seed: f.seed, path: f.path }, null, 2)}\n` : `seed ${f.seed}, path ${f.path}: the scenario there passes under ${strategy.name} (a different strategy, unwinder or policy than the campaign's?)\n`);
      return;
    }
    const cx = r.counterexample!;
    const report = formatCounterexample(cx.scenario, cx.image, cx.verdict, { strategy: strategy.name, unwinder: f.unwinder, policy: f.policy, replay: replayLine(f, f.strategy, f.unwinder, f.seed, f.path) }, f.json ? "text" : layoutOf(f));
    out(f.json ? `${JSON.stringify({ schema: JSON_SCHEMA, ok: false, jit: jit.describe, failure: cx.verdict.failure, plan: cx.plan, scenario: cx.scenario.file, report }, null, 2)}\n` : `${jit.name === "ts" ? "" : `jit: ${jit.describe}\n`}${report}`);
    throw new RunFailed();
}

/** `export --selftest`. */
export async function exportAction(file: string | undefined, f: CampaignFlags & { path?: string; name?: string; output?: string }, out: Out): Promise<void> {
  const jit = openJit(f);
  try {
    const t = await selftestOf(file, f, jit.backend);
    if (f.output) {
      try {
        writeFileSync(f.output, t.text);
      } catch (e) {
        throw new UsageError(`export: -o ${f.output}: cannot write the test there: ${fileProblem(e)}`);
      }
      out(f.json ? `${JSON.stringify({ schema: JSON_SCHEMA, ok: true, output: f.output, name: t.name, strategy: t.strategy }, null, 2)}\n` : `wrote ${f.output}: selftest ${t.name} (${t.strategy}'s listing)\n`);
    } else out(f.json ? `${JSON.stringify({ schema: JSON_SCHEMA, ok: true, name: t.name, strategy: t.strategy, text: t.text }, null, 2)}\n` : t.text);
  } finally {
    await jit.close();
  }
}


/** `export --selftest`: the test's text, from a file or a campaign's seed and path. */
/**
 * A campaign's counterexample named by --strategy, --seed and --path, all three and a path as
 * campaigns print it, or a usage error that starts with `usage` (which says what else the
 * command takes).
 */
function mustNameCounterexample(f: CampaignFlags & { path?: string }, usage: string): asserts f is CampaignFlags & { seed: number; path: string } {
  const command = usage.split(":")[0]!;
  if (!f.strategy || f.seed === undefined || f.path === undefined) throw new UsageError(`${usage}, or --strategy, --seed and --path (as \`stackcheck check\` printed them)`);
  if (!/^\d+(:\d+)*$/.test(f.path)) throw new UsageError(`${command}: --path '${f.path}': expected the path a campaign printed, like 12:0:3`);
  const steps = f.path.split(":");
  const big = steps.findIndex((n) => n.replace(/^0+(?=\d)/, "").length > 10 || Number(n) > MAX_PATH_STEP);
  if (big >= 0) {
    throw new UsageError(`${command}: --path '${f.path.length > 60 ? `${f.path.slice(0, 60)}…` : f.path}': ${big === 0 ? "the run index" : `shrink step ${big}`} ${steps[big]!.length > 24 ? `${steps[big]!.slice(0, 24)}…` : steps[big]} is above ${MAX_PATH_STEP}, the largest this command replays (expected the path a campaign printed, like 12:0:3)`);
  }
}

/**
 * A campaign's case from its seed and --path. A path fast-check cannot follow (more shrink steps
 * than the case has, in a path no campaign printed) is an input error, not a harness bug.
 */
function replayAt(command: string, path: string, o: Parameters<typeof runCampaign>[0]): CampaignResult {
  try {
    return runCampaign(o);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("Unable to replay")) {
      throw new UsageError(`${command}: --path '${path.length > 60 ? `${path.slice(0, 60)}…` : path}': no case of this campaign is there (expected the path a campaign printed, with its seed and options, like 12:0:3)`);
    }
    throw e;
  }
}

/**
 * The largest number in a --path. The first is the index of the failing run among the
 * campaign's (fast-check draws and skips every run before it: about 0.5 µs each, so 10,000,000
 * is some 5 s, and a campaign that long, at about 600 scenarios a second, would take hours); the
 * later ones pick a shrink candidate, far fewer of them. A larger number is not a path a
 * campaign printed, and 1e20 would never finish being skipped.
 */
const MAX_PATH_STEP = 10_000_000;

async function selftestOf(file: string | undefined, f: CampaignFlags & { path?: string; name?: string }, jit: JitBackend): Promise<{ text: string; name: string; strategy: string }> {
  const name = (fallback: string) => {
    const n = f.name ?? fallback.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=\d)/, "t_");
    if (!/^[A-Za-z_]\w*$/.test(n)) throw new UsageError(`export: --name '${n}': expected a C identifier`);
    return n;
  };
  if (file !== undefined) {
    if (f.seed !== undefined || f.path !== undefined) throw new UsageError("export: give a file, or --strategy, --seed and --path, not both");
    const { scenario, corpus } = loadScenarioOrCorpus(file);
    const s = f.strategy === undefined && corpus !== undefined ? await foundStrategy(file, corpus.data) : await loadStrategy(f.strategy ?? "baseline");
    jit.admit(s);
    const n = name(basename(file, ".json"));
    // a file found with another JIT (a kernel's, maybe patched) says whose listing this is
    const fj = corpus === undefined ? undefined : kernelJitElsewhere(corpus.data.found, jit);
    const jitNote = fj !== undefined ? ` (found with the kernel's JIT: ${fj.describe}; the __jited() lines are from ${jit.describe})` : "";
    const from = corpus ? { source: `${file}; replay: npx stackcheck replay ${file}`, failure: `found: ${corpus.data.name}${jitNote}` } : { source: file, failure: `scenario: ${scenario.file.name ?? basename(file)}` };
    return { name: n, strategy: s.name, text: exportSelftest(buildImage(scenario.spec, s, undefined, undefined, jit), { name: n, strategy: s.name, ...from }) };
  }
  mustNameCounterexample(f, "export: give a corpus or scenario file");
  const strategy = await loadStrategy(f.strategy);
  const r = replayAt("export", f.path!, { ...modeOf(f), ...generatorOf(f), strategy, jit, runs: 1, seed: f.seed!, path: f.path });
  if (r.ok) throw new UsageError(`export: the scenario at seed ${f.seed}, path ${f.path} passes under ${strategy.name}: no counterexample to export (a different unwinder, policy or --tasks than the campaign's?)`);
  const cx = r.counterexample!;
  const n = name(`${strategy.name}_${f.seed}_${f.path}`);
  const replay = replayLine(f, f.strategy, f.unwinder, f.seed, f.path);
  return { name: n, strategy: strategy.name, text: exportSelftest(cx.image, { name: n, strategy: strategy.name, source: replay, failure: `found: ${cx.verdict.failure ? `${cx.verdict.failure.kind} ${cx.verdict.failure.what}: ${cx.verdict.failure.message.split("\n")[0]}` : "a failure"} (unwinder ${f.unwinder}, policy ${f.policy})` }) };
}

/** `matrix`. */
export async function matrixAction(f: Omit<CampaignFlags, "strategy" | "unwinder"> & { strategy: string[]; unwinder: string[]; workers: number }, out: Out): Promise<void> {
  const seed = f.seed ?? freshSeed();
  const cells: { strategy: string; spec: string; row: number; unwinder: string; verdict: string; functions?: number; runs: number; ms: number; path?: string }[] = [];
  const jit = openJit(f);
  const unwinders = f.unwinder.length ? f.unwinder : [...UNWINDERS];
  for (const u of unwinders) if (!(UNWINDERS as readonly string[]).includes(u)) throw new UsageError(`matrix: --unwinder '${u}': expected one of ${UNWINDERS.join(", ")}`);
  const specs = f.strategy.length ? f.strategy : builtinsFor(jit.backend).map((s) => s.name);
  const strategies: { spec: string; s: Strategy }[] = [];
  for (const spec of specs) {
    const s = await loadStrategy(spec);
    jit.backend.admit(s);
    strategies.push({ spec, s });
  }
  const bar = progressBar(strategies.length * unwinders.length, !f.json);
  try {
    for (const [row, { spec, s }] of strategies.entries()) {
      for (const u of unwinders) {
        const r = await campaign(spec, s, { ...f, strategy: spec, unwinder: u as UnwinderName }, jit.backend, seed, f.runs, f.workers, () => {});
        const cx = r.counterexample;
        cells.push({
          strategy: s.name, spec, row, unwinder: u, verdict: r.ok ? "pass" : verdictName(cx!.verdict), runs: r.runs, ms: Math.round(r.elapsedMs),
          ...(cx ? { functions: cx.scenario.file.programs.reduce((n, p) => n + p.funcs.length, 0), path: r.path, seed: r.seed } : {}),
        });
        bar.tick(cells.length);
      }
    }
  } finally {
    bar.stop();
    await jit.close();
  }
  if (f.json) { out(`${JSON.stringify({ schema: JSON_SCHEMA, seed, runs: f.runs, policy: f.policy, privateStacks: f.privateStacks, tasks: f.tasks, uprobes: f.uprobes, links: f.links, bpfProgActive: f.bpfProgActive, jit: jit.backend.describe, cells }, null, 2)}\n`); return; }
  const lines = [
    `stackcheck matrix: ${f.runs} scenarios per cell, seed ${seed}, policy ${f.policy}, ${f.tasks} task(s)${f.uprobes ? "" : ", no uprobes"}${f.links ? "" : ", no links"}${f.bpfProgActive ? "" : ", no bpf_prog_active paths"}${f.privateStacks === "none" ? "" : `, private stacks ${f.privateStacks}`}${f.exhaustive ? ", exhaustive" : ""}${jit.backend.name === "ts" ? "" : `, jit ${jit.backend.describe}`}`, "",
    `| strategy | ${unwinders.join(" | ")} |`, `|---|${unwinders.map(() => "---").join("|")}|`,
  ];
  for (const [k, { s }] of strategies.entries()) {
    const row = unwinders.map((u) => {
      const c = cells.find((x) => x.row === k && x.unwinder === u)!;
      return `${c.verdict === "pass" ? `pass (${c.runs})` : `${c.verdict}, ${c.functions} fn`} ${(c.ms / 1000).toFixed(1)} s`;
    });
    lines.push(`| ${s.name} | ${row.join(" | ")} |`);
  }
  // (the campaign's own flags, --jit kernel and its tree included, as check's replay line has them)
  lines.push("", `A failing cell replays with: ${replayLine(f, "<s>", "<u>", f.workers > 1 ? "<seed>" : seed, "<path>")} (seeds and paths: --json).`);
  out(`${lines.join("\n")}\n`);
}
