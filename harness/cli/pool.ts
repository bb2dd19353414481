// A campaign on worker threads (piscina): worker w runs its share of the cases with seed + w
// (shardOf()), the same cases `--shard w+1/n` jobs would run. Used by `check --workers` and by
// the benchmark's two-core figure.
import { Piscina } from "piscina";
import { HarnessError, shardOf } from "../campaign.ts";
import type { WorkerResult, WorkerTask } from "./worker-task.ts";
import { StrategyError } from "../../jit/strategy.ts";
import { isStrategyModule } from "../../jit/strategies/index.ts";

export interface PooledRun {
  readonly results: readonly WorkerResult[];
  /** Wall time, the threads' start-up (each registers tsx and loads the harness) included. */
  readonly elapsedMs: number;
}

/** Each worker thread's old-generation heap (V8 collects before growing past it). */
export const WORKER_HEAP_MB = 256;

export async function runOnWorkers(task: Omit<WorkerTask, "runs" | "seed">, runs: number, seed: number, workers: number, progress: (done: number) => void = () => {}): Promise<PooledRun> {
  const started = performance.now();
  // compiled (dist/): the shard module itself, or with a strategy module bin/pool-worker.js,
  // which loads it and then lets the thread import the module against it. As TypeScript (tests,
  // a stale build): the compiled shard still when the build is fresh and the strategy built in
  // (only plain data crosses the threads; a strategy module must meet the same copy of this
  // project's modules as the thread that started the pool), else a shim that registers tsx
  // first, which costs each thread a second or two.
  const compiled = import.meta.url.endsWith(".js");
  const module = isStrategyModule(task.strategy);
  const dist = compiled || (!module && (await import("../../bin/entry.js")).distIsFresh());
  const filename = compiled ? (module ? "../../../bin/pool-worker.js" : "./worker-task.js") : dist ? "../../dist/harness/cli/worker-task.js" : "./worker.js";
  const pool = new Piscina<WorkerTask, WorkerResult>({
    filename: new URL(filename, import.meta.url).href,
    ...(filename.endsWith("worker-task.js") ? { name: "runShard" } : {}), maxThreads: workers, minThreads: workers,
    // a campaign's live heap stays under 100 MB; without a limit V8 lets each thread's garbage
    // grow to gigabytes before collecting it (a 10,000-scenario campaign peaked near 1 GB)
    resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
  });
  try {
    const shards = Array.from({ length: workers }, (_, i) => shardOf(runs, seed, { index: i + 1, count: workers }));
    let done = 0;
    const results = await Promise.all(shards.map(async (s) => {
      let r: WorkerResult;
      try {
        r = await pool.run({ ...task, runs: s.runs, seed: s.seed });
      } catch (e) {
        // errors cross the thread boundary as plain Errors: keep a harness error one
        if ((e as Error).name === "HarnessError") throw new HarnessError((e as Error).message, s.seed, undefined);
        if ((e as { code?: string }).code === "ERR_WORKER_OUT_OF_MEMORY") {
          throw new HarnessError(`a worker thread ran out of its ${WORKER_HEAP_MB} MB heap at seed ${s.seed} (--workers ${workers}); run the shard on the main thread to see the plan: check ... --workers 1 --seed ${s.seed} --runs ${s.runs}`, s.seed, undefined);
        }
        // a pool thread that ended under a task: only a strategy module's code can end it (process.exit())
        const exited = /^worker exited with code: (\S+)/.exec((e as Error).message ?? "");
        if (exited && isStrategyModule(task.strategy)) throw new StrategyError(`strategy module ${task.strategy}: a worker thread running it ended (exit code ${exited[1]}) at seed ${s.seed}: a hook called process.exit()?`);
        throw e;
      }
      progress((done += r.runs));
      return r;
    }));
    return { results, elapsedMs: performance.now() - started };
  } finally {
    await pool.destroy();
  }
}
