// Worker-thread entry for `stackcheck check --workers` (piscina): the campaign code is TypeScript,
// loaded through tsx's ESM hooks, which each worker thread registers for itself.
import { register } from "tsx/esm/api";

register();
// under the CLI's watchdog (a strategy module): this thread's hooks are watched too
const { reportHooksToWatchdog } = await import("../../jit/strategies/guard.ts");
reportHooksToWatchdog();
const { runShard } = await import("./worker-task.ts");
export default runShard;
