// `npm run bench`: prints the figures behind the budgets in design §9. Not a test: numbers only.
// The 2-core hosts are noisy (a plain arithmetic loop varies by about 25% run to run), so every
// figure is given as the median and the best of several runs, measured in process CPU time.
import { benchSnapshots, benchThroughput } from "./machine.ts";

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
