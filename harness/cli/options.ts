// Option parsers and the progress bar shared by the commands that run many cases (check,
// matrix, jit-diff).
import cliProgress from "cli-progress";
import { Option } from "commander";
import { UsageError } from "./errors.ts";

/** An integer option in min..max, or a usage error naming the option. */
export const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => (v: string): number => {
  if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${name} '${v}': expected an integer in ${min}..${max}`);
  return Number(v);
};

/** fast-check seeds are 32-bit signed integers. */
export const seedOption = () => int("--seed", -0x80000000, 0x7fffffff);

/** A fresh seed when none is given; printed with every result so the run can be repeated. */
export const freshSeed = () => (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;

/** A progress bar on stderr when it is a terminal (and `enabled`); otherwise nothing. */
export function progressBar(total: number, enabled: boolean): { tick(n: number): void; stop(): void } {
  if (!enabled || !process.stderr.isTTY) return { tick() {}, stop() {} };
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: "  {bar} {value}/{total} cases | {duration_formatted}", hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(total, 0);
  return { tick: (n) => bar.update(n), stop: () => bar.stop() };
}

/** --format: how a report is laid out (json: the same as --json). */
export const formatOption = () => new Option("--format <format>", "text (a terminal), email (80 columns, why each walk stopped, the failing function's disassembly) or json (as --json)").choices(["text", "email", "json"]);
export type OutputFormat = "text" | "email" | "json";

/** Is JSON asked for, by --json or --format json (also before commander has parsed the line: errors in JSON)? */
export const wantsJson = (argv: readonly string[]): boolean =>
  argv.includes("--json") || argv.includes("--format=json") || argv.some((a, i) => a === "--format" && argv[i + 1] === "json");

/**
 * Progress of one long exhaustive check (replay --exhaustive, run --exhaustive): the instruction
 * boundaries of the run being forked and, once the shrink starts, the candidate plans it has
 * tried. On stderr when it is a terminal (and `enabled`); otherwise nothing.
 */
export function exhaustiveProgress(enabled: boolean): { onBoundary(done: number, total: number): void; onShrink(tried: number): void; stop(): void } {
  if (!enabled || !process.stderr.isTTY) return { onBoundary() {}, onShrink() {}, stop() {} };
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: "  {phase}boundary {value}/{total} | {duration_formatted}", hideCursor: true }, cliProgress.Presets.shades_classic);
  let phase = "", started = false;
  return {
    onBoundary(done, total) {
      if (!started) { bar.start(total, done, { phase }); started = true; return; }
      bar.setTotal(total);
      bar.update(done, { phase });
    },
    onShrink(tried) { phase = `shrinking: candidate ${tried}, `; },
    stop() { if (started) bar.stop(); },
  };
}

/** A repeatable option's values, in order. */
export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/**
 * --timeout: how long a strategy module's loading or one of its hooks may run before the command
 * stops (bin/stackcheck.js's watchdog enforces it; here only checked).
 */
export const timeoutOption = () => new Option("--timeout <seconds>", "with a strategy module: how long loading it or one of its hooks may run before the command stops (default 30)")
  .argParser((v: string) => {
    if (!(Number(v) > 0)) throw new UsageError(`--timeout '${v}': expected a number of seconds above 0`);
    return Number(v);
  });
