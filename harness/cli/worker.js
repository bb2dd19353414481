// Worker-thread entry for `stackcheck check --workers` (piscina): the campaign code is TypeScript,
// loaded through tsx's ESM hooks, which each worker thread registers for itself.
import { register } from "tsx/esm/api";

register();
const { runShard } = await import("./worker-task.ts");
export default runShard;
