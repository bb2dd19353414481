// The campaign commands (design.md §8): `check` (a campaign under one strategy: pass, or the
// shrunk counterexample's report), `matrix` (every strategy × unwinder) and `replay` (a seed and
// path, or a corpus file). Long campaigns show a progress bar on a terminal; `--workers` runs
// shards on worker threads (piscina); `--shard i/n` splits a campaign across CI jobs.
// The commands are defined here, light; their work is campaign-run.ts, loaded when one runs.
import { Option, type Command } from "commander";
import type picocolors from "picocolors";
import type { Policy } from "../oracles/classify.ts";
import { PRIVATE_STACK_KNOWLEDGE, UNWINDERS, type PrivateStackKnowledge, type UnwinderName } from "../../unwinder/index.ts";
import { UsageError } from "./errors.ts";
import { collect, formatOption, int, seedOption, timeoutOption, type OutputFormat } from "./options.ts";
import { addJitOptions, type JitFlags } from "./jit-option.ts";
import { MAX_TASKS } from "../../jit/kernel/layout.ts";
import type { Shard } from "../campaign.ts";

/** The campaign commands' work, loaded when one runs. */
const work = () => import("./campaign-run.ts");

/** Tasks in generated scenarios unless --tasks says otherwise (issue: two by default). */
export const DEFAULT_TASKS = 2;

/** Colours for the report words (PASS, FAIL, MISMATCH); plain when the text is not for a terminal. */
export type Colors = ReturnType<typeof picocolors.createColors>;

export interface CampaignFlags extends JitFlags {
  strategy: string;
  unwinder: UnwinderName;
  policy: Policy;
  privateStacks: PrivateStackKnowledge;
  runs: number;
  seed?: number;
  exhaustive?: boolean;
  spinLoops?: boolean;
  tasks: number;
  uprobes: boolean;
  /** Programs attached through two paths (a second attachment) too. */
  links: boolean;
  /** kprobe, tracepoint and perf_event programs (bpf_prog_active's paths) too. */
  bpfProgActive: boolean;
  /** Interrupt schedules per generated plan (random mode). */
  schedules: number;
  /** Exhaustive mode's early end of forks: forced on or off (default: on for built-in designs). */
  earlyEnd?: boolean;
  json?: boolean;
  format?: OutputFormat;
}

export function parseShard(v: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const s = m ? { index: Number(m[1]), count: Number(m[2]) } : undefined;
  if (!s || s.count < 1 || s.index < 1 || s.index > s.count) throw new UsageError(`--shard '${v}': expected i/n with 1 ≤ i ≤ n, e.g. 2/4`);
  return s;
}


export function addCampaignCommands(program: Command, out: (s: string) => void, pc: Colors): void {
  const common = (c: Command) => addJitOptions(c)
    .addOption(new Option("--unwinder <name>", "the unwinder model").choices([...UNWINDERS]).default("frame"))
    .addOption(new Option("--policy <policy>", "which walk classes fail").choices(["strict", "reliable"]).default("strict"))
    .addOption(new Option("--private-stacks <knowledge>", "register private stacks with get_stack_info()").choices([...PRIVATE_STACK_KNOWLEDGE]).default("none"))
    .option("--exhaustive", "inject one IRQ and one NMI at every instruction boundary of each scenario, one run each")
    .option("--early-end", "exhaustive: end each fork when its interrupt has returned to the unforked run's state (the default for built-in designs)")
    .option("--no-early-end", "exhaustive: run every fork to its end (the default for a strategy module: the early end assumes nothing reads below rsp)")
    .option("--spin-loops", "let the task's main function run a loop only may_goto bounds (about a million instructions each; not with --exhaustive)")
    .option("--tasks <n>", `tasks on the CPU in generated scenarios, 1..${MAX_TASKS}: ticks, preemption, sleeps and attach paths with 2 or more; 1 turns them off`, int("--tasks", 1, MAX_TASKS), DEFAULT_TASKS)
    .option("--no-uprobes", "only attach paths with a recursion counter: no uprobe or uprobe_multi programs (with tasks)")
    .option("--no-links", "one attach path per program: no program attached twice (a uprobe and a kprobe, a syscall tracepoint and another; with tasks)")
    .option("--no-bpf-prog-active", "no kprobe, tracepoint or perf_event programs (the types whose runners take the global bpf_prog_active; their uprobe and faultable-tracepoint paths go with them): every counted run takes its own prog->active (design (g)'s paths)")
    .option("--schedules <k>", "interrupt schedules per generated plan, each a scenario on the same JITed image: faster per scenario, fewer plans (random mode)", int("--schedules", 1, 16), 1)
    .option("--json", "machine-readable output")
    .addOption(formatOption());

  common(program
    .command("check")
    .description("a campaign: random scenarios under one strategy; on failure, the shrunk counterexample's report (exit 1)")
    .requiredOption("--strategy <name|file>", "a built-in strategy or a strategy module (.ts/.js)")
    .addOption(timeoutOption()))
    .option("--runs <n>", "scenarios to generate", int("--runs", 1), 100)
    .option("--seed <n>", "the campaign's seed (printed when not given)", seedOption())
    .option("--workers <n>", "worker threads", int("--workers", 1), 1)
    .option("--shard <i/n>", "run shard i of n (CI jobs): its share of the runs, with its own seed", parseShard)
    .option("--save <dir>", "write a failure to this corpus directory (e.g. test/corpus)")
    .action(async (f: CampaignFlags & { workers: number; shard?: Shard; save?: string }) => (await work()).checkAction(f, out, pc));

  common(program
    .command("replay")
    .description("replay a counterexample from its seed and path, or a corpus file under every strategy it lists")
    .argument("[file]", "a corpus file (test/corpus/*.json)")
    .option("--strategy <name|file>", "the strategy (with --seed/--path; with a file: only this one)")
    .addOption(timeoutOption())
    .option("--seed <n>", "the seed a campaign printed", seedOption())
    .option("--path <path>", "the path a campaign printed"))
    .action(async (file: string | undefined, f: CampaignFlags & { path?: string }) => (await work()).replayAction(file, f, out, pc));

  common(program
    .command("export")
    .description("write a shrunk counterexample (a corpus file, a scenario file, or a campaign's seed and path) as a kernel selftest: progs/verifier_*.c style, __naked BPF assembly and __jited() lines of the strategy's listing")
    .argument("[file]", "a corpus file (test/corpus/*.json) or a scenario file")
    .requiredOption("--selftest", "the kind of export (the only one): a tools/testing/selftests/bpf/progs/ test")
    .option("--strategy <name|file>", "whose JIT output the __jited() lines hold (with a corpus file: default the strategy that found it; with --seed/--path: the campaign's)")
    .addOption(timeoutOption())
    .option("--seed <n>", "the seed a campaign printed", seedOption())
    .option("--path <path>", "the path a campaign printed")
    .option("--name <name>", "the test's name (a C identifier; default from the file or the strategy and seed)")
    .option("-o, --output <file>", "write the test there instead of to stdout"))
    .action(async (file: string | undefined, f: CampaignFlags & { path?: string; name?: string; output?: string }) => (await work()).exportAction(file, f, out));

  addJitOptions(program
    .command("matrix")
    .description("strategies × unwinders: a Markdown table of pass or the first failure's class, with the time each took (with --jit kernel: the strategies the tree implements)"))
    .option("--strategy <name|file>", "a strategy or strategy module to compare (repeatable; default every built-in one)", collect, [])
    .addOption(timeoutOption())
    .option("--unwinder <name>", `an unwinder column (repeatable; default ${UNWINDERS.join(", ")})`, collect, [])
    .option("--runs <n>", "scenarios per cell", int("--runs", 1), 30)
    .option("--seed <n>", "the seed of every cell (printed when not given)", seedOption())
    .addOption(new Option("--policy <policy>", "which walk classes fail").choices(["strict", "reliable"]).default("strict"))
    .addOption(new Option("--private-stacks <knowledge>", "register private stacks with get_stack_info()").choices([...PRIVATE_STACK_KNOWLEDGE]).default("none"))
    .option("--exhaustive", "exhaustive mode in every cell")
    .option("--early-end", "exhaustive: end forks early (the default for built-in designs)")
    .option("--no-early-end", "exhaustive: run every fork to its end")
    .option("--tasks <n>", `tasks on the CPU in generated scenarios, 1..${MAX_TASKS} (1: no scheduler)`, int("--tasks", 1, MAX_TASKS), DEFAULT_TASKS)
    .option("--schedules <k>", "interrupt schedules per generated plan (random mode)", int("--schedules", 1, 16), 1)
    .option("--no-uprobes", "only attach paths with a recursion counter (with tasks)")
    .option("--no-links", "one attach path per program (with tasks)")
    .option("--no-bpf-prog-active", "no kprobe, tracepoint or perf_event programs (bpf_prog_active's paths, and with them uprobes and faultable tracepoints)")
    .option("--workers <n>", "worker threads per cell (each cell's runs split as check splits them)", int("--workers", 1), 1)
    .option("--json", "machine-readable output")
    .action(async (f: Omit<CampaignFlags, "strategy" | "unwinder"> & { strategy: string[]; unwinder: string[]; workers: number }) => (await work()).matrixAction(f, out));
}
