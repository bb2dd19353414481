// `stackcheck kernel fetch`: download, unpack, configure and prepare a kernel tree for
// `--jit kernel` and jit-diff (jit/tree/fetch.ts); progress on stderr, the prepared tree's path
// as the last line on stdout (so `T=$(npx stackcheck kernel fetch)` works). Idempotent and
// resumable: a rerun finishes an interrupted fetch, or answers at once for a finished one.
// `stackcheck kernel info`: what a tree is, as the backend sees it.
import { Option, type Command } from "commander";
import { JSON_SCHEMA } from "./json.ts";
import { buildShim, fetchTree, TREE_VERSIONS, type TreeVersion } from "../../jit/tree/index.ts";
import { describeTree, modelBpfDiffers, treeHasPrivateStacks, treeJitOptions, TREE_STRATEGIES } from "../../jit/tree/backend.ts";
import { addTreeOptions, mustBeJitSource, treeFromFlags } from "./jit-option.ts";
import { int } from "./options.ts";

export function addKernelCommands(program: Command, out: (s: string) => void, err: (s: string) => void): void {
  const kernel = program.command("kernel").description("kernel trees for --jit kernel and jit-diff: fetch one, or describe one");
  kernel
    .command("fetch")
    .description("download Debian's linux-source package, unpack it into the cache, configure it (defconfig + BPF_JIT, X86_KERNEL_IBT, ...) and run make prepare; prints the tree's path last")
    .addOption(new Option("--version <v>", "the kernel version").choices([...TREE_VERSIONS]).default("7.2"))
    .option("--dir <dir>", "where the tree goes (default: ~/.cache/stackcheck/trees/linux-<version>)")
    .option("--jobs <n>", "make -j (default: the number of CPUs)", int("--jobs", 1, 256))
    .option("--verbose", "also show every line the tools print")
    .action(async (f: { version: TreeVersion; dir?: string; jobs?: number; verbose?: boolean }) => {
      const tree = await fetchTree({
        version: f.version, ...(f.dir !== undefined ? { dir: f.dir } : {}), ...(f.jobs !== undefined ? { jobs: f.jobs } : {}),
        verbose: f.verbose ?? false, onProgress: (l) => err(`${l}\n`),
      });
      out(`${tree.dir}\n`);
    });
  addTreeOptions(kernel
    .command("info")
    .description("check a tree and say what the backend sees: version, the JIT's Kconfig, the strategies it implements, the shim"))
    .option("--json", "machine-readable output")
    .action((f: { kernelTree?: string; jitSource?: string; json?: boolean }) => {
      if (f.jitSource !== undefined) mustBeJitSource(f.jitSource);
      const tree = treeFromFlags(f.kernelTree);
      const shim = buildShim(tree, { ...(f.jitSource !== undefined ? { jitSource: f.jitSource } : {}), onProgress: (l) => err(`${l}\n`) });
      // a tree that does not take the model's programs runs none of them (jit-diff only)
      const differs = modelBpfDiffers(tree);
      const strategies = differs.length > 0 ? [] : treeHasPrivateStacks(tree) ? [...TREE_STRATEGIES] : ["baseline"];
      const config = Object.fromEntries(Object.entries(tree.config).filter(([, v]) => v !== undefined));
      if (f.json) {
        out(`${JSON.stringify({ schema: JSON_SCHEMA, dir: tree.dir, version: tree.version, jitSource: f.jitSource ?? tree.jitSource, jitSourceHash: shim.jitSourceHash, strategies, ...(differs.length > 0 ? { notModelBpf: differs } : {}), options: treeJitOptions(tree), config, shim: { path: shim.path, built: shim.built, seconds: shim.seconds } }, null, 2)}\n`);
        return;
      }
      out([
        describeTree(tree, f.jitSource),
        differs.length > 0
          ? `strategies (--jit kernel): none; the tree does not take the programs the model makes (7.2's), only jit-diff runs on it:${differs.map((w) => `\n  - ${w}`).join("")}`
          : `strategies (--jit kernel): ${strategies.join(", ")}`,
        `JIT options: endbr64 ${treeJitOptions(tree).ibt ? "on" : "off"} (X86_KERNEL_IBT), int3 after ret ${treeJitOptions(tree).sls ? "on" : "off"} (MITIGATION_SLS)`,
        `Kconfig: ${Object.entries(config).map(([k, v]) => `${k}=${v}`).join(" ")}`,
        `shim: ${shim.path} (${shim.built ? `built in ${shim.seconds} s` : "cached"})`,
      ].join("\n") + "\n");
    });
}
