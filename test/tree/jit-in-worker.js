// Runs KernelJit inside a worker_threads Worker (kernel-jit.test.ts): the TypeScript is loaded
// through tsx, as harness/cli/worker.js does for campaign workers.
import { parentPort, workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
const { KernelJit } = await import("../../jit/tree/child.ts");
const kj = new KernelJit({ binary: workerData.binary });
const out = [];
for (let i = 0; i < workerData.times; i++) {
  const r = kj.jit(workerData.request);
  out.push(r.ok ? Buffer.from(r.funcs[0].bytes).toString("hex") : `error: ${r.error.message}`);
}
const pid = kj.pid;
await kj.close(); // the shim is reaped on this thread's event loop: before the thread ends
parentPort.postMessage({ out, pid });
