// `--jit ts|kernel`, `--kernel-tree DIR` and `--jit-source FILE`, shared by every command that
// JITs: which backend makes the BPF code (jit/backend.ts), and for the kernel's, which tree.
import { existsSync } from "node:fs";
import { Option, type Command } from "commander";
import { TS_JIT, TS_JIT_BMI2, type JitBackend } from "../../jit/backend.ts";
import { defaultTreeDir, KernelJit, openTree, TREE_ENV, TreeError, type KernelTree } from "../../jit/tree/index.ts";
import { kernelBackend, mustRunModelBpf } from "../../jit/tree/backend.ts";
import { isFile } from "../../jit/tree/tree.ts";

export interface JitFlags {
  readonly jit: "ts" | "kernel";
  /** A CPU with BMI2: shifts by a register as shlx/shrx/sarx (X86_FEATURE_BMI2). */
  readonly bmi2?: boolean;
  readonly kernelTree?: string;
  readonly jitSource?: string;
}

/** `--kernel-tree DIR` and `--jit-source FILE`: which tree, and which copy of its JIT (here, jit-diff, kernel info). */
export function addTreeOptions(c: Command): Command {
  return c
    .option("--kernel-tree <dir>", `the kernel tree (default: $${TREE_ENV}, else the 7.2 tree \`stackcheck kernel fetch\` prepared)`)
    .option("--jit-source <file>", "a patched copy of bpf_jit_comp.c, built against the tree instead of its own");
}

export function addJitOptions(c: Command): Command {
  return addTreeOptions(c
    .addOption(new Option("--jit <backend>", "which JIT makes the BPF code: ts (the TypeScript JIT) or kernel (the tree's own bpf_jit_comp.c, see --kernel-tree)").choices(["ts", "kernel"]).default("ts")))
    .option("--bmi2", "JIT for a CPU with BMI2 (shifts by a register as shlx/shrx/sarx, as on most x86 CPUs since 2013)");
}

/** The tree `--kernel-tree`, $STACKCHECK_KERNEL_TREE or the fetched 7.2 tree names, checked. */
export function treeFromFlags(dir: string | undefined, env: NodeJS.ProcessEnv = process.env): KernelTree {
  const given = dir ?? (env[TREE_ENV] !== undefined && env[TREE_ENV] !== "" ? env[TREE_ENV] : undefined);
  if (given !== undefined) return openTree(given, env);
  const fetched = defaultTreeDir("7.2", env);
  if (!existsSync(fetched)) throw new TreeError("usage", `--jit kernel needs a kernel tree: give --kernel-tree DIR, set ${TREE_ENV}, or fetch one`, "npx stackcheck kernel fetch");
  return openTree(fetched, env);
}

/** --jit-source: a file there, not a directory (before the tree is opened: the cheaper check first). */
export function mustBeJitSource(file: string): void {
  if (!existsSync(file)) throw new TreeError("usage", `--jit-source ${file}: no such file`);
  if (!isFile(file)) throw new TreeError("usage", `--jit-source ${file}: not a regular file (a directory?); give a copy of arch/x86/net/bpf_jit_comp.c`);
}

/** The backend the flags name, and how to let it go (the kernel's runs a shim process). */
export function openJit(f: JitFlags, env: NodeJS.ProcessEnv = process.env): { readonly backend: JitBackend; close(): Promise<void> } {
  if (f.jit !== "kernel") {
    if (f.kernelTree !== undefined || f.jitSource !== undefined) throw new TreeError("usage", "--kernel-tree and --jit-source go with --jit kernel");
    return { backend: f.bmi2 ? TS_JIT_BMI2 : TS_JIT, close: async () => {} };
  }
  if (f.jitSource !== undefined) mustBeJitSource(f.jitSource);
  const tree = treeFromFlags(f.kernelTree, env);
  mustRunModelBpf(tree); // (jit-diff, which shows the differences, opens its tree itself)
  const kjit = new KernelJit({ tree, ...(f.jitSource !== undefined ? { jitSource: f.jitSource } : {}) });
  return { backend: kernelBackend(tree, kjit, f.jitSource, { bmi2: f.bmi2 ?? false }), close: () => kjit.close() };
}
