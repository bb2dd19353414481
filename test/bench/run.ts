// `npm run bench`: prints the figures behind the budgets in design §9. Not a test: numbers only.
import { benchSnapshots, benchThroughput } from "./machine.ts";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

benchThroughput(100_000); // warm-up: let V8 optimise the interpreter first
const runs = Array.from({ length: 5 }, () => benchThroughput(400_000));
console.log(`emulator: ${median(runs.map((r) => r.mips)).toFixed(1)} M insn/s (median of 5 runs of ${runs[0]!.insns} instructions; budget >= 40)`);
const snap = benchSnapshots(2_000);
console.log(`snapshot + step + restore: ${snap.perSnapshotUs.toFixed(2)} us per instruction boundary (${snap.snapshots} boundaries)`);
