// `npm run bench`: prints the figures behind the budgets in design §9. Not a test: numbers only.
// The 2-core hosts are noisy (a plain arithmetic loop varies by about 25% run to run), so every
// figure is given as the median and the best of several runs, measured in process CPU time.
import { benchBroken, benchExhaustive20, benchScenarios, benchScenariosPooled } from "./campaign.ts";
import { benchSnapshots, benchThroughput } from "./machine.ts";
import { benchKernel } from "./kernel.ts";

function stats(xs: number[]): { median: number; best: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[s.length >> 1]!, best: s[s.length - 1]! };
}

benchThroughput(200_000); // warm-up: let V8 optimise the interpreter first
const runs = Array.from({ length: 9 }, () => benchThroughput(200_000));
const t = stats(runs.map((r) => r.mips));
console.log(`emulator: ${t.median.toFixed(1)} M insn/s median, ${t.best.toFixed(1)} best (9 runs of ${runs[0]!.insns} instructions; budget >= 40)`);
const snaps = Array.from({ length: 5 }, () => benchSnapshots(2_000));
const s = stats(snaps.map((r) => -r.perSnapshotUs));
console.log(`snapshot + step + restore + step: ${(-s.median).toFixed(2)} us per instruction boundary median, ${(-s.best).toFixed(2)} best (${snaps[0]!.snapshots} boundaries)`);

benchScenarios(50, 1, true); // warm-up
const small = Array.from({ length: 3 }, (_, i) => benchScenarios(300, 100 + i, true));
const sm = stats(small.map((r) => r.perSecond));
const full = benchScenarios(200, 7, false);
console.log(`end to end: ${sm.median.toFixed(0)} scenarios/s median, ${sm.best.toFixed(0)} best (small graphs: 2 programs of 2 functions, random interrupts; budget >= 1000); default generator: ${full.perSecond.toFixed(0)}/s`);
const pooled = await benchScenariosPooled(6000, 100, 2);
console.log(`end to end on 2 worker threads (check --workers 2): ${pooled.perSecond.toFixed(0)} scenarios/s over ${pooled.runs} small-graph scenarios, thread start-up included`);
const ex = Array.from({ length: 3 }, (_, i) => benchExhaustive20(11 + i));
console.log(`exhaustive, three scenarios of 20+ functions: ${ex.map((r) => `${r.functions} fn, ${r.runs} boundaries: ${r.ms.toFixed(0)} ms`).join("; ")} (budget < 1000 ms)`);
for (const [unwinder, policy] of [["frame", "strict"], ["orc-6.19", "reliable"]] as const) {
  for (const b of benchBroken(20261124, unwinder, policy)) {
    console.log(`broken ${b.name.padEnd(19)} ${`${unwinder}/${policy}`.padEnd(17)} ${b.what.padEnd(13)} found after ${String(b.runs).padStart(3)} scenario(s), shrunk in ${String(b.shrinks).padStart(3)} steps to ${b.functions} function(s): ${(b.ms / 1000).toFixed(2)} s (budget < 5 s)`);
  }
}
await benchKernel((s) => console.log(s));
