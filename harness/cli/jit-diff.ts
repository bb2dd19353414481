// `stackcheck jit-diff`: the TypeScript JIT against a kernel tree's own (harness/jit-diff.ts).
// Exit 0 when every function agrees, 1 when one differs (the first, shrunk, printed side by side).
import { JSON_SCHEMA } from "./json.ts";
import { Option, type Command } from "commander";
import type { DiffCase } from "../jit-diff.ts";
import { DIFF_FIELDS, DIFF_SOURCES, type DiffField } from "../jit-diff-kinds.ts";
import { RunFailed, UsageError } from "./errors.ts";
import { addTreeOptions, treeFromFlags } from "./jit-option.ts";
import { collect, freshSeed, int, progressBar, seedOption } from "./options.ts";

interface JitDiffFlags {
  kernelTree?: string;
  jitSource?: string;
  runs: number;
  seed?: number;
  path?: string;
  strategy: string[];
  syntax: "gas" | "llvm" | "intel";
  json?: boolean;
  bmi2?: boolean;
  ignore: string[];
  source: string[];
}

export function addJitDiffCommand(program: Command, out: (s: string) => void): void {
  addTreeOptions(program
    .command("jit-diff")
    .description("JIT random programs with the TypeScript JIT and a kernel tree's bpf_jit_comp.c at the same addresses; compare bytes, addrs[], fp_start/fp_end, frame windows and private stacks; shrink and show the first difference (exit 1)")
    .option("--runs <n>", "cases to generate (each: a plan's programs, or one or two ISA-heavy programs)", int("--runs", 1), 1000)
    .option("--seed <n>", "the seed (printed when not given)", seedOption())
    .option("--path <path>", "replay: the path a difference was reported with (with its --seed)")
    .option("--strategy <name>", "baseline or r9-private (repeatable; default: what the tree implements)", collect, [] as string[])
    .option("--bmi2", "both JITs for a CPU with BMI2 (shifts by a register as shlx/shrx/sarx)")
    .option("--source <source>", `where cases come from (repeatable; default all): ${DIFF_SOURCES.join(", ")}`, collect, [] as string[])
    .option("--ignore <field>", `leave a field out of the comparison (repeatable): ${DIFF_FIELDS.join(", ")}`, collect, [] as string[])
    .addOption(new Option("--syntax <syntax>", "assembler syntax of the listings").choices(["gas", "llvm", "intel"]).default("gas"))
    .option("--json", "machine-readable output"))
    .action(async (f: JitDiffFlags) => {
      // loaded when the command runs (--help defines it without them)
      const [{ BUILTIN_STRATEGIES }, { KernelJit }, { kernelBackend, mustBeTreeStrategy, treeHasPrivateStacks }, { formatDiff, runJitDiff }] = await Promise.all([
        import("../../jit/strategies/index.ts"), import("../../jit/tree/index.ts"), import("../../jit/tree/backend.ts"), import("../jit-diff.ts"),
      ]);
      if (f.path !== undefined && (f.seed === undefined || !/^\d+(:\d+)*$/.test(f.path))) throw new UsageError("jit-diff: --path needs the --seed it was printed with, and looks like 12:0:3");
      const tree = treeFromFlags(f.kernelTree);
      const names = f.strategy.length ? f.strategy : treeHasPrivateStacks(tree) ? ["baseline", "r9-private"] : ["baseline"];
      const strategies = names.map((n) => {
        const s = BUILTIN_STRATEGIES.find((x) => x.name === n);
        if (!s) throw new UsageError(`jit-diff: --strategy '${n}': not a built-in strategy`);
        mustBeTreeStrategy(tree, s);
        return s;
      });
      for (const x of f.ignore) if (!(DIFF_FIELDS as readonly string[]).includes(x)) throw new UsageError(`jit-diff: --ignore '${x}': expected one of ${DIFF_FIELDS.join(", ")}`);
      const ignore = new Set(f.ignore as DiffField[]);
      for (const x of f.source) if (!(DIFF_SOURCES as readonly string[]).includes(x)) throw new UsageError(`jit-diff: --source '${x}': expected one of ${DIFF_SOURCES.join(", ")}`);
      const sources = f.source.length ? (f.source as DiffCase["source"][]) : undefined;
      const seed = f.seed ?? freshSeed();
      const kjit = new KernelJit({ tree, ...(f.jitSource !== undefined ? { jitSource: f.jitSource } : {}) });
      const kernel = kernelBackend(tree, kjit, f.jitSource, { bmi2: f.bmi2 ?? false });
      const bar = progressBar(f.path ? 1 : f.runs, !f.json && f.runs >= 100);
      let r;
      try {
        r = runJitDiff({ kernel, strategies, runs: f.runs, seed, ignore, ...(sources ? { sources } : {}), ...(f.path !== undefined ? { path: f.path } : {}), onCase: bar.tick });
      } finally {
        bar.stop();
        await kjit.close();
      }
      const fields = Object.entries(r.byField).map(([k, n]) => `${k} ${n}`).join(", ");
      const summary = `jit-diff: ${r.functions} functions compared, ${r.differences} differences`;
      const replay = r.first ? `npx stackcheck jit-diff${f.kernelTree ? ` --kernel-tree ${f.kernelTree}` : ""}${f.jitSource ? ` --jit-source ${f.jitSource}` : ""}${f.bmi2 ? " --bmi2" : ""}${f.ignore.map((x) => ` --ignore '${x}'`).join("")}${f.source.map((x) => ` --source ${x}`).join("")}${f.strategy.map((s) => ` --strategy ${s}`).join("")} --seed ${seed} --path ${r.first.path}` : undefined;
      if (f.json) {
        out(`${JSON.stringify({
          schema: JSON_SCHEMA,
          ok: r.differences === 0, jit: kernel.describe, strategies: names, seed, runs: r.runs, functions: r.functions, differences: r.differences, bothRefused: r.bothRefused, refusedBecause: r.refusedBecause, byField: r.byField, bySource: r.bySource, elapsedMs: Math.round(r.elapsedMs),
          ...(r.first ? { first: { path: r.first.path, shrinks: r.first.shrinks, strategy: r.first.diff.strategy, program: r.first.diff.program.name, function: r.first.diff.fi, fields: r.first.diff.fields, report: formatDiff(r.first.diff, f.syntax), replay } } : {}),
        }, null, 2)}\n`);
      } else {
        const lines = [`stackcheck jit-diff: ${kernel.describe}; strategies ${names.join(", ")}; seed ${seed}${f.path ? `, path ${f.path}` : ""}; ${r.runs} cases in ${(r.elapsedMs / 1000).toFixed(1)} s${r.bothRefused ? `; ${r.bothRefused} functions both JITs refused (e.g. ${r.refusedBecause})` : ""}`];
        if (r.first) lines.push("", `first difference (shrunk in ${r.first.shrinks} steps):`, formatDiff(r.first.diff, f.syntax), `replay: ${replay}`, ...(fields ? [`differing functions by what differs: ${fields}`] : []));
        lines.push(summary);
        out(`${lines.join("\n")}\n`);
      }
      if (r.differences > 0 || r.first) throw new RunFailed();
    });
}
