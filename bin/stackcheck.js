#!/usr/bin/env node
// Entry shim: the CLI is written in TypeScript; tsx's ESM loader runs it without a build step.
// With a user's strategy module the command runs on a worker thread under a watchdog: a hook
// that does not return within --timeout seconds (default 30) ends the command with an input
// error naming the module, the hook and the function (exit 2).
import { Worker } from "node:worker_threads";
import { register } from "tsx/esm/api";

// A reader that stops early (`stackcheck isa --json | head`) closes the pipe: end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

const argv = process.argv;
const module = argv.some((a, i) => argv[i - 1] === "--strategy" && /\.(ts|js|mjs|mts)$/.test(a));
if (!module) {
  register();
  const { main } = await import("../harness/cli/main.ts");
  process.exitCode = await main(argv);
} else {
  const t = argv.indexOf("--timeout");
  const seconds = t >= 0 ? Number(argv[t + 1]) : 30;
  if (!(seconds > 0)) {
    process.stderr.write(`stackcheck: --timeout '${argv[t + 1] ?? ""}': expected a number of seconds above 0\n(see --help)\n`);
    process.exit(2);
  }
  const { default: pc } = await import("picocolors");
  const worker = new Worker(new URL("./stackcheck-worker.js", import.meta.url), { workerData: { argv, color: pc.isColorSupported } });
  let where, since = 0;
  worker.on("message", (m) => {
    if (m.enter !== undefined) { where = m.enter; since = Date.now(); }
    else if (m.leave) where = undefined;
    else if (m.exit !== undefined) { process.exitCode = m.exit; clearInterval(timer); }
  });
  worker.on("error", (e) => { process.stderr.write(`stackcheck: internal error, please report it with the command line: ${e?.message ?? e}\n`); process.exitCode = 3; clearInterval(timer); });
  worker.on("exit", () => clearInterval(timer));
  const timer = setInterval(() => {
    if (where === undefined || Date.now() - since < seconds * 1000) return;
    clearInterval(timer);
    process.stderr.write(`stackcheck: ${where} did not return within ${seconds} s (--timeout); stopped\n`);
    process.exitCode = 2;
    void worker.terminate();
  }, 100);
}
