#!/usr/bin/env node
// Entry shim: the CLI is written in TypeScript; tsx's ESM loader runs it without a build step.
import { register } from "tsx/esm/api";

register();
// A reader that stops early (`stackcheck isa --json | head`) closes the pipe: end quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}
const { main } = await import("../harness/cli/main.ts");
process.exitCode = await main(process.argv);
