#!/usr/bin/env node
// Entry shim: the CLI is written in TypeScript; tsx's ESM loader runs it without a build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../harness/cli/main.ts");
process.exitCode = await main(process.argv);
