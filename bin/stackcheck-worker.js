// The CLI on a worker thread, under bin/stackcheck.js's watchdog (a user's strategy module whose
// hook never returns): it reports where each hook is running and how the command ended.
import { parentPort, workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
const { hookWatch } = await import("../jit/strategies/guard.ts");
hookWatch.enter = (where) => parentPort.postMessage({ enter: where });
hookWatch.leave = () => parentPort.postMessage({ leave: true });
const { main } = await import("../harness/cli/main.ts");
const code = await main(workerData.argv, undefined, { color: workerData.color });
parentPort.postMessage({ exit: code });
