#!/usr/bin/env node
// Entry shim: the CLI is written in TypeScript; it runs as compiled by `npm install` (dist/), or,
// when the sources are newer than that build, through tsx's ESM loader (bin/entry.js).
// With a user's strategy module (given with --strategy, or named in the corpus file given to
// replay or export) the command runs on a worker thread under a watchdog: loading
// the module, or one of its hooks, that does not return within --timeout seconds (default 30)
// ends the command with an input error naming the module, the hook and the function (exit 2).
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { BroadcastChannel, Worker } from "node:worker_threads";
import { cliMain, tuneV8 } from "./entry.js";

tuneV8(); // before anything is optimised (bin/entry.js V8_FLAGS)

// A reader that stops early (`stackcheck isa --json | head`) closes the pipe: end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

const argv = process.argv;
/** The values of an option, `--name v` or `--name=v`, in order. */
const values = (name) => argv.flatMap((a, i) => (a === name && i + 1 < argv.length ? [argv[i + 1]] : a.startsWith(`${name}=`) ? [a.slice(name.length + 1)] : []));
const isModule = (s) => typeof s === "string" && /\.(ts|js|mjs|mts)$/.test(s);
/**
 * Strategy modules a corpus file on the command line names (`replay <file>`, `export <file>`):
 * its `expect` keys and `found.strategy`, which those commands load (harness/cli/campaign-run.ts),
 * so they run under the same watchdog. Module (as written) -> the file naming it. A file that is
 * not a readable JSON object is left to the command's own error.
 */
function modulesNamedInFiles() {
  const named = new Map();
  const command = argv.slice(2).find((a) => !a.startsWith("-"));
  if (command !== "replay" && command !== "export") return named;
  for (const a of argv.slice(argv.indexOf(command) + 1)) {
    if (a.startsWith("-")) continue;
    let data;
    try {
      const st = statSync(a);
      if (!st.isFile() || st.size > 256 * 1024 * 1024) continue;
      data = JSON.parse(readFileSync(a, "utf8").replace(/^\uFEFF/, ""));
    } catch {
      continue;
    }
    if (data === null || typeof data !== "object") continue;
    const expect = data.expect !== null && typeof data.expect === "object" ? Object.keys(data.expect) : [];
    for (const m of [...expect, data.found?.strategy]) if (isModule(m) && !named.has(m)) named.set(m, a);
  }
  return named;
}
const inFiles = modulesNamedInFiles();
const modules = [...new Set([...values("--strategy").filter(isModule), ...inFiles.keys()])];
/** " (named in <file>)" when a watchdog message's module came from a corpus file, not --strategy. */
const namedIn = (where) => {
  for (const [m, file] of inFiles) if (where.startsWith(`strategy module ${resolve(m)}:`) && !values("--strategy").includes(m)) return ` (named in ${file})`;
  return "";
};
// JSON errors for --json and --format json (as harness/cli/options.ts wantsJson())
const json = argv.includes("--json") || argv.includes("--format=json") || argv.some((a, i) => a === "--format" && argv[i + 1] === "json");
/** Set once an error is reported: the command's own exit code, if it still sends one, does not replace it. */
let failed = false;
const fail = (message, code = 2) => {
  process.stderr.write(json ? `${JSON.stringify({ schema: 1, error: { kind: code === 2 ? "strategy" : "internal", message } }, null, 2)}\n` : `stackcheck: ${message}\n`);
  process.exitCode = code;
  failed = true;
};

if (modules.length === 0) {
  const { main } = await cliMain();
  process.exitCode = await main(argv);
} else {
  const given = values("--timeout").at(-1); // the last one, as commander takes it
  const seconds = given === undefined ? 30 : Number(given);
  if (!(seconds > 0)) {
    fail(`--timeout '${given}': expected a number of seconds above 0\n(see --help)`);
    process.exit(2);
  }
  const { default: pc } = await import("picocolors");
  const worker = new Worker(new URL("./stackcheck-worker.js", import.meta.url), { workerData: { argv, color: pc.isColorSupported } });
  // every thread of the command (the CLI's, and check --workers' pool threads) reports each hook
  // it enters and leaves (jit/strategies/guard.ts reportHooksToWatchdog())
  const running = new Map(); // thread id -> { where, since }
  const channel = new BroadcastChannel("stackcheck-watchdog");
  let done = false;
  const stop = () => { clearInterval(timer); channel.close(); };
  const timer = setInterval(() => {
    const late = [...running.values()].find((h) => Date.now() - h.since >= seconds * 1000);
    if (late === undefined) return;
    stop();
    done = true;
    fail(`${late.where} did not return within ${seconds} s (--timeout); stopped${namedIn(late.where)}`);
    // the CLI's thread, and with it the pool threads it started
    void worker.terminate().finally(() => process.exit());
  }, 100);
  channel.onmessage = ({ data: m }) => {
    if (m.enter !== undefined) running.set(m.thread, { where: m.enter, since: Date.now() });
    else if (m.leave) running.delete(m.thread);
  };
  worker.on("message", (m) => {
    if (m.exit !== undefined) { done = true; if (!failed) process.exitCode = m.exit; stop(); }
  });
  // An error escaping the command: the module's if its stack names one of the modules.
  worker.on("error", (e) => {
    stop();
    const stack = String(e?.stack ?? e);
    // (as written, `./m.mjs`, a stack never names it: its resolved path, as a file URL encodes it, too)
    const mod = modules.find((m) => [m, resolve(m)].some((p) => stack.includes(p) || stack.includes(encodeURI(p)) || stack.includes(encodeURIComponent(m))));
    if (mod) fail(`strategy module ${mod}: an error escaped it${done ? " after the command ended" : ""}: ${e?.message ?? e}${inFiles.has(mod) ? ` (named in ${inFiles.get(mod)})` : ""}`);
    else fail(`internal error, please report it with the command line: ${e?.message ?? e}`, 3);
    done = true;
  });
  worker.on("exit", (code) => {
    stop();
    if (done) return;
    // Exit code 13 is Node's "unsettled top-level await": the thread ran out of work while
    // awaiting, as when a module's top-level await waits on a promise nothing will settle.
    const loading = [...running.values()].find((h) => h.where.endsWith(": loading it"));
    if (code === 13 && loading !== undefined) fail(`${loading.where}: its top-level await never settled (nothing was left to run that could settle it; exit code 13)${namedIn(loading.where)}`);
    else if (code === 13) fail("the command ended without a result (exit code 13: a top-level await never settled): a strategy module awaited at its top level on something that never settles?");
    else fail(`the command ended without a result (exit code ${code}): a strategy module called process.exit()?`);
  });
}
