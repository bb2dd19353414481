// Worker-thread entry for `stackcheck check --workers` (piscina) when the campaign code runs as
// TypeScript: loaded through tsx's ESM hooks, which each worker thread registers for itself.
// (Compiled, pool.ts starts dist/'s worker-task.js directly, or with a strategy module
// bin/pool-worker.js.)
import { register } from "tsx/esm/api";

register();
const { runShard } = await import("./worker-task.ts");
export default runShard;
