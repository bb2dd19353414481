// One shard of a campaign on a worker thread. Only plain data crosses the thread boundary: the
// strategy by name or module path, and back the verdict summary (seed and path of the first
// failure, unshrunk: the main thread replays and shrinks it for its report).
import { loadStrategy } from "../../jit/strategies/index.ts";
import { runCampaign } from "../campaign.ts";
import type { PlanConstraints } from "../../generators/index.ts";
import type { Policy } from "../oracles/classify.ts";
import type { CoverageKey } from "../property.ts";
import type { UnwinderName } from "../run.ts";
import type { PrivateStackKnowledge } from "../../unwinder/index.ts";
import { openJit, type JitFlags } from "./jit-option.ts";
import { reportHooksToWatchdog } from "../../jit/strategies/guard.ts";

// under the CLI's watchdog (a strategy module), this thread's hooks are watched too (with no
// watchdog listening, the reports go nowhere)
reportHooksToWatchdog();

export interface WorkerTask extends JitFlags {
  readonly strategy: string;
  readonly unwinder: UnwinderName;
  readonly policy: Policy;
  readonly privateStacks: PrivateStackKnowledge;
  readonly exhaustive: boolean;
  readonly runs: number;
  readonly seed: number;
  /** Plan sizes (the benchmark's small graphs); the generator's defaults if absent. */
  readonly constraints?: PlanConstraints;
  /** Interrupt schedules per generated plan. */
  readonly schedulesPerPlan?: number;
  /** Exhaustive mode's early end of forks, when forced on or off. */
  readonly shortcut?: boolean;
}

export interface WorkerResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly runs: number;
  readonly path?: string;
  readonly coverage: readonly [CoverageKey, number][];
}

export async function runShard(t: WorkerTask): Promise<WorkerResult> {
  const strategy = await loadStrategy(t.strategy);
  const jit = openJit(t); // this thread's own (a kernel tree's: its own shim process)
  try {
    const r = runCampaign({ strategy, jit: jit.backend, unwinder: t.unwinder, policy: t.policy, privateStacks: t.privateStacks, exhaustive: t.exhaustive, runs: t.runs, seed: t.seed, shrink: false, ...(t.constraints ? { constraints: t.constraints } : {}), ...(t.schedulesPerPlan ? { schedulesPerPlan: t.schedulesPerPlan } : {}), ...(t.shortcut !== undefined ? { shortcut: t.shortcut } : {}) });
    return { ok: r.ok, seed: r.seed, runs: r.runs, ...(r.path !== undefined ? { path: r.path } : {}), coverage: [...r.coverage] };
  } finally {
    await jit.close();
  }
}
