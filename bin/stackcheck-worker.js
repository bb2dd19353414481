// The CLI on a worker thread, under bin/stackcheck.js's watchdog (a user's strategy module whose
// hook never returns): it reports where each hook is running (as every thread of the command
// does, check --workers' pool threads included: harness/cli/worker.js) and how the command ended.
import { parentPort, workerData } from "node:worker_threads";
import { moduleMain } from "./entry.js";

// compiled, the module's imports of this project sent to the same compiled modules; or, without
// a fresh build, the source, as the module imports it (bin/entry.js moduleMain())
const { main, reportHooksToWatchdog } = await moduleMain();
reportHooksToWatchdog();
const code = await main(workerData.argv, undefined, { color: workerData.color });
parentPort.postMessage({ exit: code });
