// The kernel-tree backend's figures (issue 12 budgets): a cached `kernel fetch`, the fetch steps
// as the tree recorded them, one function through the shim, and jit-diff's throughput.
import { fetchTimings, fetchTree, KernelJit, type KernelTree } from "../../jit/tree/index.ts";
import { kernelBackend } from "../../jit/tree/backend.ts";
import { BUILTIN_STRATEGIES } from "../../jit/strategies/index.ts";
import { runJitDiff } from "../../harness/jit-diff.ts";
import { findTree, typicalProgram } from "../tree/helpers.ts";
import { defaultTreeDir, TREE_VERSIONS } from "../../jit/tree/index.ts";

export async function benchKernel(say: (s: string) => void): Promise<void> {
  const tree: KernelTree | undefined = findTree();
  if (tree === undefined) {
    say("kernel tree: skipped (no prepared tree; run `npx stackcheck kernel fetch`)");
    return;
  }
  const fetched = TREE_VERSIONS.find((v) => defaultTreeDir(v) === tree.dir);
  if (fetched !== undefined) {
    const t0 = performance.now();
    await fetchTree({ version: fetched });
    const steps = fetchTimings(tree.dir);
    const cold = Object.values(steps).reduce((n, s) => n + (s?.seconds ?? 0), 0);
    say(`kernel fetch ${fetched}: cached ${(performance.now() - t0).toFixed(0)} ms (budget < 10 s); cold, as recorded when fetched: ${cold.toFixed(0)} s (${Object.entries(steps).map(([k, s]) => `${k} ${s?.seconds} s`).join(", ")}; budget < 6 min)`);
  }
  const kjit = new KernelJit({ tree });
  try {
    // one function through the child process: requests of 2-4 functions, per function
    const reqs = Array.from({ length: 2000 }, (_, i) => typicalProgram(i + 1));
    for (const r of reqs.slice(0, 200)) kjit.jitOrThrow(r); // warm-up
    const rounds = [0, 1, 2].map(() => {
      let funcs = 0;
      const t0 = performance.now();
      for (const r of reqs) funcs += kjit.jitOrThrow(r).funcs.length;
      return ((performance.now() - t0) * 1000) / funcs;
    }).sort((a, b) => a - b);
    say(`kernel JIT through the shim (${tree.version}): ${rounds[1]!.toFixed(1)} us per function median of 3 rounds of ${reqs.length} programs (budget < 200 us)`);
    const strategies = BUILTIN_STRATEGIES.filter((s) => s.name === "baseline" || (tree.versionCode[0] >= 7 && s.name === "r9-private"));
    const r = runJitDiff({ kernel: kernelBackend(tree, kjit), strategies, runs: 1500, seed: 1 });
    say(`jit-diff (${tree.version}, ${strategies.map((s) => s.name).join(" + ")}): ${r.functions} functions in ${(r.elapsedMs / 1000).toFixed(1)} s, ${((r.elapsedMs * 1000) / r.functions).toFixed(0)} us per function (both JITs, generation and validation included), ${r.differences} differences`);
  } finally {
    await kjit.close();
  }
}
