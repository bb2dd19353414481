// Worker-thread entry for `stackcheck check --workers` (piscina) under the compiled CLI with a
// user's strategy module: the compiled shard runner first, then tsx and the redirect of this
// project's sources to dist/ for the module (bin/entry.js withModuleHooks()).
import { withModuleHooks } from "./entry.js";

const [{ runShard }] = await withModuleHooks("harness/cli/worker-task.js");
export default runShard;
