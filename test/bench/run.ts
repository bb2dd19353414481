// `npm run bench`: the figures behind the budgets in design §9. Not a test: numbers only, as text
// lines, or with `--json` as one JSON object on stdout (the lines go to stderr). The 2-core
// hosts are noisy (a plain arithmetic loop varies by about 25% run to run), so a figure measured
// several times is the median (and the best), in process CPU time unless it says wall.
import { spawnSync } from "node:child_process";
import { constants as perfConstants, PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { benchBroken, benchExhaustive20, benchExhaustiveRate, benchScenarios, benchScenariosPooled, COMPILED } from "./campaign.ts";
import { benchSnapshots, benchThroughput } from "./machine.ts";
import { benchKernel } from "./kernel.ts";
import { gdbStepBacktracePerSecond } from "./gdb.ts";
import { tuneV8 } from "../../bin/entry.js";

tuneV8(); // as the CLI runs (bin/entry.js V8_FLAGS)

const json = process.argv.includes("--json");
const root = fileURLToPath(new URL("../..", import.meta.url));
const say = (s: string) => (json ? process.stderr : process.stdout).write(`${s}\n`);
const figures: Record<string, number | null> = {};
const put = (k: string, v: number | undefined) => { figures[k] = v === undefined ? null : Math.round(v * 100) / 100; };

function stats(xs: number[]): { median: number; best: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[s.length >> 1]!, best: s[s.length - 1]! };
}

/**
 * The host's own speed, for reading the figures of a slow hour: a fixed workload of small
 * objects made and dropped (as a campaign's are) that no change here can move, in millions of
 * objects per second of CPU, the median of five. Taken at the start and at the end of the bench.
 */
function hostSpeed(): number {
  const rates = Array.from({ length: 5 }, () => {
    const c0 = process.cpuUsage();
    let keep: { a: number; b: number[] }[] = [], sum = 0;
    for (let i = 0; i < 2_000_000; i++) {
      keep.push({ a: i, b: [i, i >> 1] });
      if (keep.length === 512) { sum += keep[i & 511]!.b[1]!; keep = []; }
    }
    const c = process.cpuUsage(c0);
    return sum === -1 ? 0 : 2 / ((c.user + c.system) / 1e6);
  });
  return stats(rates).median;
}
const hostAtStart = hostSpeed();

// the emulator, under tsx (this process) and under vitest (a child)
benchThroughput(200_000); // warm-up: let V8 optimise the interpreter first
const runs = Array.from({ length: 9 }, () => benchThroughput(200_000));
const t = stats(runs.map((r) => r.mips));
put("emulator_minstr_per_s_tsx", t.median);
say(`emulator (tsx): ${t.median.toFixed(1)} M insn/s median, ${t.best.toFixed(1)} best (9 runs of ${runs[0]!.insns} instructions; budget >= 50)`);
const vt = spawnSync(process.execPath, [`${root}node_modules/vitest/vitest.mjs`, "run", "--config", "test/bench/vitest.bench.config.ts"], { cwd: root, encoding: "utf8" });
const vm = /EMULATOR_MIPS ([\d.]+) ([\d.]+)/.exec(vt.stdout);
put("emulator_minstr_per_s_vitest", vm ? Number(vm[1]) : undefined);
say(vm ? `emulator (vitest): ${Number(vm[1]).toFixed(1)} M insn/s median, ${Number(vm[2]).toFixed(1)} best (budget >= 50, as under tsx)` : `emulator (vitest): could not run (${vt.stderr.split("\n")[0]})`);
const snaps = Array.from({ length: 5 }, () => benchSnapshots(2_000));
const s = stats(snaps.map((r) => -r.perSnapshotUs));
put("snapshot_step_restore_us", -s.median);
say(`snapshot + step + restore + step: ${(-s.median).toFixed(2)} us per instruction boundary median, ${(-s.best).toFixed(2)} best (${snaps[0]!.snapshots} boundaries)`);

// end to end
say(`campaigns below: ${COMPILED ? "the compiled code (dist/), as the CLI runs it" : "the TypeScript sources through tsx, about a tenth slower (the build is stale: npm run build)"}`);
benchScenarios(200, 1, true); // warm-up
const small = Array.from({ length: 3 }, (_, i) => benchScenarios(1000, 100 + i, true));
const sm = stats(small.map((r) => r.perSecond));
const full = benchScenarios(200, 7, false);
const four = stats(Array.from({ length: 3 }, (_, i) => benchScenarios(300, 100 + i, true, 4).perSecond));
put("e2e_small_per_s", sm.median);
put("e2e_small_per_s_4schedules", four.median);
put("e2e_default_per_s", full.perSecond);
say(`end to end: ${sm.median.toFixed(0)} scenarios/s median, ${sm.best.toFixed(0)} best (small graphs: 2 programs of 2 functions, random interrupts; budget >= 1500); with 4 schedules per plan (--schedules 4) ${four.median.toFixed(0)}/s; default generator: ${full.perSecond.toFixed(0)}/s`);
// Past V8's warm-up: a campaign's rate rises over its first several thousand scenarios, as V8
// optimises the harness function by function (375 to 810/s over five rounds of 2,000 in one
// process); 6,000 more scenarios, then the median of three rounds of 1,000
for (let i = 0; i < 6; i++) benchScenarios(1000, 200 + i, true);
// and the garbage collector's pauses in those 3,000 scenarios, by collection (V8's own
// accounting: less noisy than the rates, and what a change that keeps a scenario's objects
// alive longer, into V8's old generation, moves first; README "what V8 kept alive")
const gcMs = { young: 0, full: 0 };
const gcSeen = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if ((e as { readonly detail?: { readonly kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcMs.young += e.duration;
    else gcMs.full += e.duration;
  }
});
gcSeen.observe({ entryTypes: ["gc"] });
const warm = stats(Array.from({ length: 3 }, (_, i) => benchScenarios(1000, 300 + i, true).perSecond));
await new Promise((r) => setTimeout(r, 20)); // (the entries are delivered by a timer)
gcSeen.disconnect();
put("e2e_small_per_s_warm", warm.median);
put("e2e_small_gc_ms_per_1000_warm", (gcMs.young + gcMs.full) / 3);
say(`end to end past the warm-up (after some 10,000 scenarios in this process): ${warm.median.toFixed(0)} scenarios/s median, ${warm.best.toFixed(0)} best (small graphs); the collector's pauses: ${((gcMs.young + gcMs.full) / 3).toFixed(0)} ms per 1,000 scenarios (young generation ${(gcMs.young / 3).toFixed(0)}, full ${(gcMs.full / 3).toFixed(0)})`);
// two worker threads, and one, each from a cold start: what the second core adds
const pooled = await benchScenariosPooled(6000, 100, 2);
const single = await benchScenariosPooled(6000, 100, 1);
put("e2e_small_per_s_2workers", pooled.perSecond);
put("e2e_small_per_s_1worker", single.perSecond);
say(`end to end on 2 worker threads (check --workers 2): ${pooled.perSecond.toFixed(0)} scenarios/s over ${pooled.runs} small-graph scenarios, thread start-up included (budget >= 2500); on 1 worker thread, the same scenarios: ${single.perSecond.toFixed(0)}/s`);

// exhaustive mode: the walk checks (an NMI at every boundary) and the IRQ forks, per boundary
const gdb = gdbStepBacktracePerSecond();
put("gdb_step_bt_per_s", gdb);
say(gdb === undefined ? "gdb single-stepping with a backtrace per step: skipped (no gdb or cc)" : `gdb single-stepping a native program with a backtrace per step: ${gdb.toFixed(0)} steps/s`);
// The rate of a campaign in exhaustive mode, past V8's warm-up: one pass over the scenarios
// first (a first pass ran at half the rate of the next ones, IRQ forks 2,800 against 6,400 to
// 7,100/s), then the median of three passes over the same scenarios
const exhaustive = (kind: "irq" | "nmi", scenarios: number) => {
  benchExhaustiveRate(kind, scenarios);
  const runs = [0, 1, 2].map(() => benchExhaustiveRate(kind, scenarios));
  return { ...runs[0]!, perSecond: stats(runs.map((r) => r.perSecond)).median, perWallSecond: stats(runs.map((r) => r.perWallSecond)).median };
};
const walk = exhaustive("nmi", 48), irq = exhaustive("irq", 24);
put("exhaustive_walk_boundaries_per_s", walk.perSecond);
put("exhaustive_walk_boundaries_per_wall_s", walk.perWallSecond);
put("exhaustive_irq_boundaries_per_s", irq.perSecond);
put("exhaustive_irq_boundaries_per_wall_s", irq.perWallSecond);
say(`exhaustive (median of 3 passes after one of warm-up), NMI walk checks: ${walk.perSecond.toFixed(0)} boundaries/s of CPU, ${walk.perWallSecond.toFixed(0)}/s of wall time (${walk.boundaries} boundaries of ${walk.scenarios} scenarios; budget >= 100 x gdb${gdb === undefined ? "" : ` = ${(100 * gdb).toFixed(0)}`}, gdb's figure in wall time); IRQ forks: ${irq.perSecond.toFixed(0)} boundaries/s of CPU, ${irq.perWallSecond.toFixed(0)}/s of wall time (${irq.boundaries} of ${irq.scenarios}; budget >= 10000)`);
const ex = Array.from({ length: 3 }, (_, i) => benchExhaustive20(11 + i));
say(`exhaustive, three scenarios of 20+ functions: ${ex.map((r) => `${r.functions} fn, ${r.runs} runs: ${r.ms.toFixed(0)} ms`).join("; ")}`);

// each broken design found and shrunk (seeds 20261124, 1 and 2: the median per design, the worst design)
const found: { name: string; seconds: number[] }[] = [];
for (const [unwinder, policy] of [["frame", "strict"], ["orc-6.19", "reliable"]] as const) {
  for (const seed of [20261124, 1, 2]) {
    for (const b of benchBroken(seed, unwinder, policy)) {
      const key = `${b.name} ${unwinder}/${policy}`;
      (found.find((x) => x.name === key) ?? (found.push({ name: key, seconds: [] }), found[found.length - 1]!)).seconds.push(b.ms / 1000);
      if (seed === 20261124) say(`broken ${b.name.padEnd(19)} ${`${unwinder}/${policy}`.padEnd(17)} ${b.what.padEnd(13)} found after ${String(b.runs).padStart(3)} scenario(s), shrunk in ${String(b.shrinks).padStart(3)} steps to ${b.functions} function(s): ${(b.ms / 1000).toFixed(2)} s`);
    }
  }
}
const medians = found.map((f) => ({ name: f.name, median: stats(f.seconds).median }));
const worst = medians.reduce((a, b) => (b.median > a.median ? b : a));
put("find_shrink_max_s", worst.median);
put("find_shrink_median_s", stats(medians.map((m) => m.median)).median);
say(`broken designs found and shrunk, median of 3 seeds each: the worst ${worst.name} ${worst.median.toFixed(2)} s (budget < 2), the median design ${stats(medians.map((m) => m.median)).median.toFixed(2)} s (budget < 1)`);

// peak memory of a 10,000-scenario campaign, and the CLI's start (wall, a fresh process each)
// the CLI's own process, whose maximum resident set covers its worker threads
const script = `import { cliMain } from "./bin/entry.js";
const { main } = await cliMain();
await main(["node", "stackcheck", "check", "--strategy", "baseline", "--runs", "10000", "--seed", "1", "--workers", "2"], () => {});
process.stderr.write("PEAK_RSS_KB " + process.resourceUsage().maxRSS + "\\n");`;
const rss = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: root, encoding: "utf8" });
const peak = /PEAK_RSS_KB (\d+)/.exec(rss.stderr);
put("peak_rss_mb_10k", peak ? Number(peak[1]) / 1024 : undefined);
say(peak ? `a 10,000-scenario campaign (check --workers 2): peak RSS ${(Number(peak[1]) / 1024).toFixed(0)} MB (budget < 500)` : `a 10,000-scenario campaign: could not run (${rss.stderr.split("\n")[0]})`);
const start = (args: string[]) => stats(Array.from({ length: 5 }, () => {
  const t0 = performance.now();
  spawnSync(process.execPath, ["bin/stackcheck.js", ...args], { cwd: root, encoding: "utf8" });
  return (performance.now() - t0) / 1000;
})).median;
const help = start(["--help"]), strategies = start(["strategies"]);
put("cli_start_s", Math.max(help, strategies));
say(`CLI start (wall, median of 5): --help ${help.toFixed(2)} s, strategies ${strategies.toFixed(2)} s (budget < 0.4)`);

await benchKernel(say);
const hostAtEnd = hostSpeed();
put("host_mobjects_per_s_start", hostAtStart);
put("host_mobjects_per_s_end", hostAtEnd);
say(`the host's own speed (small objects made and dropped, M/s of CPU, median of 5): ${hostAtStart.toFixed(1)} at the start, ${hostAtEnd.toFixed(1)} at the end (a slower hour shows here first)`);
if (json) process.stdout.write(`${JSON.stringify({ schema: 1, ...figures }, null, 2)}\n`);
