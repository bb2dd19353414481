// The `stackcheck` command line (commander): `run` (one scenario, every sample and check),
// `disasm` (a scenario's JITed functions, or raw bytes), `isa` (the instruction forms the machine
// emulates), `strategies`, and the campaign commands of campaign.ts (check, matrix, replay,
// export), jit-diff and kernel. This module and the definitions are light: each command loads
// what it runs when it runs (commands.ts, campaign-run.ts, ...), so `--help` starts fast.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import pc from "picocolors";
import { PRIVATE_STACK_KNOWLEDGE, UNWINDERS } from "../../unwinder/index.ts";
import { RunFailed, UsageError } from "./errors.ts";
import { addJitDiffCommand } from "./jit-diff.ts";
import { addKernelCommands } from "./kernel.ts";
import { addCampaignCommands, type Colors } from "./campaign.ts";
import { JSON_SCHEMA } from "./json.ts";
import { collect, formatOption, timeoutOption, wantsJson, type OutputFormat } from "./options.ts";
import { addJitOptions, type JitFlags } from "./jit-option.ts";
import type { RunFlags } from "./commands.ts";

/** The command implementations, loaded when a command runs. */
const impl = () => import("./commands.ts");

type DisasmFlags = { strategy: string; syntax: "gas" | "llvm" | "intel"; base: bigint; ibt: boolean; sls?: boolean } & JitFlags;

const VERSION = "0.1.0";

function parseAddress(v: string): bigint {
  if (!/^(0x)?[0-9a-fA-F]{1,16}$/.test(v)) throw new InvalidArgumentError(`'${v}' is not a hex address (up to 16 hex digits)`);
  return BigInt(v.startsWith("0x") ? v : `0x${v}`);
}



export function buildProgram(out: (s: string) => void, writeErr: (s: string) => void = out, colors: Colors = pc.createColors(false)): Command {
  const program = new Command("stackcheck")
    .description("Conformance harness for the stack discipline of the Linux BPF x86-64 JIT")
    .version(VERSION)
    .enablePositionalOptions() // `kernel fetch --version 7.2` is the subcommand's option, not the program's
    .showHelpAfterError("(see --help)") // a usage error is its line and this, not the whole help
    .configureOutput({ writeOut: out, writeErr })
    .exitOverride(); // before the subcommands: they inherit it when they are created
  // --format json is --json; --json with another --format is a contradiction
  program.hook("preAction", (_, command) => {
    const o = command.opts<{ format?: OutputFormat; json?: boolean }>();
    if (o.json && o.format !== undefined && o.format !== "json") throw new UsageError(`${command.name()}: --json and --format ${o.format} ask for two layouts; give one`);
    if (o.format === "json") command.setOptionValue("json", true);
  });

  program
    .command("isa")
    .description("list the x86-64 instruction forms the machine emulates (what the JIT may emit)")
    .option("--json", "machine-readable output")
    .option("--user-mode", "only the forms that can run in user space (differential tests)")
    .action(async (o: { json?: boolean; userMode?: boolean }) => (await impl()).isaAction(o, out));

  const disasm = program
    .command("disasm")
    .description("JIT a scenario's programs and print each function like `bpftool prog dump jited` (with the BPF instructions as comments), or disassemble raw bytes")
    .argument("<scenario-or-bytes...>", "a scenario file (.json), or instruction bytes in hex ('55 48 89 e5')")
    .option("--strategy <name|file>", "a built-in strategy (see `stackcheck strategies`) or a strategy module (.ts/.js)", "baseline")
    .addOption(timeoutOption())
    .addOption(new Option("--syntax <syntax>", "assembler syntax; llvm: exactly test_progs' listing (func #i, mnemonic TAB operands), whose lines paste into __jited()").choices(["gas", "llvm", "intel"]).default("gas"))
    .addOption(new Option("--base <addr>", "address of the first byte (raw bytes only)").default(0xffffffffa0000000n, "ffffffffa0000000").argParser(parseAddress))
    .option("--no-ibt", "no endbr64 (CONFIG_X86_KERNEL_IBT off)")
    .option("--sls", "int3 after ret (CONFIG_MITIGATION_SLS)");
  addJitOptions(disasm).action(async (args: string[], o: DisasmFlags) => (await impl()).disasmAction(args, o, out));

  const run = program
    .command("run")
    .description("run scenarios: sample their stacks with an unwinder, class each walk against the truth, and run every run-level check (one file: the full report; several files or directories: one line each)")
    .argument("<paths...>", "scenario files (JSON; see the README), corpus files (test/corpus/*.json: their scenario), or directories of them")
    .option("--strategy <name|file>", "a built-in strategy or a strategy module (.ts/.js)", "baseline")
    .addOption(timeoutOption())
    .addOption(new Option("--unwinder <name>", "the unwinder model").choices([...UNWINDERS]).default("frame"))
    .addOption(new Option("--policy <policy>", "which classes fail").choices(["strict", "reliable"]).default("strict"))
    .addOption(new Option("--private-stacks <knowledge>", "register private stacks with get_stack_info() (an unwinder change)").choices([...PRIVATE_STACK_KNOWLEDGE]).default("none"))
    .option("--irq-at <where[:vector]>", "raise an IRQ at an instruction count, at `symbol+0xoff` (its first execution) or at `prog/func:insn N` (a BPF instruction's first x86 instruction) (repeatable; vector defaults to the scenario's first)", collect, [])
    .option("--nmi-at <where>", "raise an NMI there (the same forms; repeatable)", collect, [])
    .option("--exhaustive", "one run per instruction boundary with an IRQ (the scenario's first vector, or with tasks the tick) and one with an NMI there; the first failing run's report")
    .option("--early-end", "with --exhaustive: end each fork when its interrupt has returned to the unforked run's state (the default for built-in designs under the TypeScript JIT)")
    .option("--no-early-end", "with --exhaustive: run every fork to its end (the default for a strategy module and for --jit kernel)")
    .option("--trace", "print each executed instruction with its step number (the numbers --irq-at and --nmi-at take), then the report")
    .option("--stack-budget <stack=bytes>", "fail if a stack's high-water mark exceeds this (stack: task, irq, nmi, private; repeatable)", collect, [])
    .option("--no-schedule", "ignore the scenario's own interrupt schedule")
    .option("--json", "machine-readable output (several scenarios: one JSON object per line)")
    .addOption(formatOption());
  addJitOptions(run).action(async (paths: string[], o: RunFlags & JitFlags) => (await impl()).runAction(paths, o, out, writeErr));

  addCampaignCommands(program, out, colors);
  addJitDiffCommand(program, out);
  addKernelCommands(program, out, (s) => process.stderr.write(s));

  program
    .command("strategies")
    .description("list the built-in prologue strategies, one line each")
    .option("--json", "machine-readable output")
    .action(async (o: { json?: boolean }) => {
      const { BUILTIN_STRATEGIES } = await import("../../jit/strategies/index.ts");
      if (o.json) { out(`${JSON.stringify({ schema: JSON_SCHEMA, strategies: BUILTIN_STRATEGIES.map((s) => ({ name: s.name, summary: s.summary, recursionLimit: s.recursionLimit })) }, null, 2)}\n`); return; }
      for (const s of BUILTIN_STRATEGIES) out(`${s.name.padEnd(19)} ${s.summary}\n`);
    });

  return program;
}

/** Exit codes: 0 pass, 1 a run found a failure, 2 the command or its input is wrong. */
/** For the CLI's worker thread (bin/stackcheck-worker.js): its hooks reported to the watchdog, from this module graph's guard. */
export { reportHooksToWatchdog } from "../../jit/strategies/guard.ts";

export const EXIT = { pass: 0, failed: 1, usage: 2, harness: 3 } as const;

/** Input errors (exit 2) by class name, and the kind --json reports them as. */
const INPUT_ERRORS: Readonly<Record<string, string>> = { ScenarioError: "scenario", StrategyError: "strategy", ImageError: "image", TreeError: "kernel-tree" };

/**
 * Run the CLI; returns the process exit code. Input errors (options, scenario files, strategy
 * modules, images that cannot be built) exit 2 with one message naming the problem (3: the
 * harness failed on a generated plan, reported with its seed and path); with
 * `--json` that message is a JSON object `{ "error": { "kind", "message" } }` on the same stream.
 * Colour follows where the text goes: on stdout, picocolors' own rule (a terminal, FORCE_COLOR
 * or CI, unless NO_COLOR); a caller's own writer gets plain text unless it asks for colour.
 */
export async function main(argv: readonly string[], out?: (s: string) => void, options: { color?: boolean } = {}): Promise<number> {
  const color = options.color ?? (out === undefined && pc.isColorSupported);
  // results on stdout, errors and diagnostics on stderr (a caller's own writer gets both)
  const err = out ?? ((s: string) => process.stderr.write(s));
  out ??= (s) => process.stdout.write(s);
  const json = wantsJson(argv);
  const say = (kind: string, message: string) => err(json ? `${JSON.stringify({ schema: JSON_SCHEMA, error: { kind, message } }, null, 2)}\n` : `stackcheck: ${message}\n`);
  // commander prints its own errors; under --json they are collected and printed as JSON instead
  const program = buildProgram(out, json ? () => {} : err, pc.createColors(color && !json));
  try {
    await program.parseAsync([...argv]);
    return EXIT.pass;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return EXIT.pass; // --help, --version
      if (json) say("usage", e.message.replace(/^error: /, ""));
      return EXIT.usage;
    }
    if (e instanceof RunFailed) return EXIT.failed;
    // the error classes by name: their modules load only with the commands that throw them
    const x = e instanceof Error ? e : new Error(String(e));
    const named = e instanceof Error ? e.name : "";
    if (e instanceof UsageError || INPUT_ERRORS[named] !== undefined) {
      const kind = INPUT_ERRORS[named] ?? "usage";
      say(kind, kind === "usage" && !json ? `${x.message}\n(see --help)` : x.message);
      return EXIT.usage;
    }
    if (named === "JitError") {
      // the JIT refused a program the verifier model accepts (a kernel tree's JIT, or a strategy's code)
      say("jit", `FAIL: the JIT refused the program: ${x.message}`);
      return EXIT.failed;
    }
    if (named === "HarnessError" || named === "KernelJitCrash") {
      say("harness", `harness error, please report it: ${x.message}`);
      return EXIT.harness;
    }
    // Anything else is a bug of ours: one line naming it (the stack with STACKCHECK_DEBUG=1).
    const err = e instanceof Error ? e : new Error(String(e));
    const cause = err.cause instanceof Error ? ` (cause: ${err.cause.name}: ${err.cause.message})` : "";
    say("internal", `internal error, please report it with the command line: ${err.name}: ${err.message.split("\n")[0]}${cause}`);
    if (process.env.STACKCHECK_DEBUG) process.stderr.write(`${err.stack ?? ""}\n`);
    return EXIT.harness;
  }
}
