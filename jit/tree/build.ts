// Build the shim binary for a tree: the tree's arch/x86/net/bpf_jit_comp.c (or a reviewer's
// patched copy) and the shim's kernel half compiled with the exact command kbuild recorded for
// the JIT (arch/x86/net/.bpf_jit_comp.o.cmd, plus -fno-stack-protector: the kernel's stack
// protector reads gs:, which is 0 here), the user half with the host compiler, linked into one
// static binary below 2 GiB (-static -no-pie: the -mcmodel=kernel objects use sign-extended
// 32-bit absolute addresses). The addresses the JIT embeds in code are link-time constants.
//
// Binaries are cached under <cache>/kjit/<key>/, the key being a hash of the tree (path, its
// generated autoconf.h, the recorded command), the JIT source's contents, the shim's sources and
// the model addresses: editing bpf_jit_comp.c or a patched copy rebuilds on the next use.
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TreeError } from "./errors.ts";
import { firstErrors, howEnded, runSync, tail } from "./exec.ts";
import { cacheRoot } from "./paths.ts";
import { BUILD_TOOLS, requireTools } from "./tools.ts";
import { isFile, type KernelTree } from "./tree.ts";

const SHIM_DIR = fileURLToPath(new URL("./shim/", import.meta.url));
const SHIM_FILES = ["shim.h", "kshim.h", "kstubs.c", "kdriver.c", "jit_tu.c", "user.c"] as const;
/** Bump when this file's build recipe changes in a way the hashed inputs do not show. */
const RECIPE = 1;

/**
 * Addresses of model-kernel symbols the JIT embeds in the code it emits. The defaults sit in
 * the kernel text range of the harness's kernel layout (jit/kernel/layout.ts: KTEXT), beyond
 * the synthetic kernel's own code, so reaching one in the emulator is a fault, not a silent run.
 */
export interface ModelSymbols {
  /**
   * `imm = target - __bpf_call_base` for helper and kfunc calls. 0 here, so that imm32 is the
   * target's low 32 bits and every target in the top or bottom 2 GiB is reachable (the kernel
   * layout and the user layouts alike). The kernel's own value is a kernel-text address; it only
   * shows in the placeholder target of the first pass (imm 1), never in the final bytes.
   */
  readonly __bpf_call_base: bigint;
  /** The per-CPU offset of this_cpu_off: emit_priv_frame_ptr's `add r9, gs:[this_cpu_off]` (layout.ts PCPU_THIS_CPU_OFF). */
  readonly this_cpu_off: bigint;
  /** x86_return_thunk's default value (emit_return with X86_FEATURE_RETHUNK); a request can override it. */
  readonly sc_model_return_thunk: bigint;
  readonly __x86_indirect_thunk_array: bigint;
  readonly __x86_indirect_jump_thunk_array: bigint;
  readonly __x86_indirect_its_thunk_array: bigint;
  readonly clear_bhb_loop: bigint;
  readonly __bpf_tramp_enter: bigint;
  readonly __bpf_tramp_exit: bigint;
  readonly bpf_trampoline_enter: bigint;
  readonly bpf_trampoline_exit: bigint;
  /** is_kernel_text() bounds (text poking only). */
  readonly _stext: bigint;
  readonly _etext: bigint;
}

export const MODEL_SYMBOLS: ModelSymbols = Object.freeze({
  __bpf_call_base: 0n,
  this_cpu_off: 0x10n,
  sc_model_return_thunk: 0xffffffff81e00000n,
  __x86_indirect_thunk_array: 0xffffffff81e01000n,
  __x86_indirect_jump_thunk_array: 0xffffffff81e02000n,
  __x86_indirect_its_thunk_array: 0xffffffff81e03000n,
  clear_bhb_loop: 0xffffffff81e04000n,
  __bpf_tramp_enter: 0xffffffff81e05000n,
  __bpf_tramp_exit: 0xffffffff81e05040n,
  bpf_trampoline_enter: 0xffffffff81e05080n,
  bpf_trampoline_exit: 0xffffffff81e050c0n,
  _stext: 0xffffffff81000000n,
  _etext: 0xffffffff82000000n,
});

export interface BuildOptions {
  /** A patched copy of bpf_jit_comp.c to compile against the tree instead of the tree's own. */
  readonly jitSource?: string;
  readonly symbols?: Partial<ModelSymbols>;
  /** Where binaries are cached (default <cache>/kjit). */
  readonly cacheDir?: string;
  readonly onProgress?: (line: string) => void;
  readonly env?: NodeJS.ProcessEnv;
}

export interface ShimBinary {
  readonly path: string;
  readonly key: string;
  /** The JIT source compiled, and its sha256. */
  readonly jitSource: string;
  readonly jitSourceHash: string;
  /** The build happened now (not found in the cache), and how long it took. */
  readonly built: boolean;
  readonly seconds: number;
}

const sha = (...parts: (string | Buffer)[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex");
};

/** Split a shell command line as sh would (quotes and backslashes; no expansions are used by kbuild here). */
export function shellWords(line: string): string[] {
  const out: string[] = [];
  let cur = "", inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'") {
      const j = line.indexOf("'", i + 1);
      if (j < 0) throw new Error(`unterminated ' in: ${line}`);
      cur += line.slice(i + 1, j);
      i = j;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === "\\" && j + 1 < line.length && '"\\$`'.includes(line[j + 1]!)) j++;
        cur += line[j];
      }
      if (j >= line.length) throw new Error(`unterminated " in: ${line}`);
      i = j;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (c === " " || c === "\t") {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/**
 * kbuild's recorded command for the JIT, as argv without its dependency-file option and its
 * `-c -o <obj> <src>` tail: the compiler and the flags.
 */
export function recordedJitCommand(tree: KernelTree, env: NodeJS.ProcessEnv = process.env): { argv: string[]; text: string } {
  const cmdFile = join(tree.dir, "arch/x86/net/.bpf_jit_comp.o.cmd");
  if (!existsSync(cmdFile)) {
    const r = runSync("make", ["-s", "arch/x86/net/bpf_jit_comp.o"], { cwd: tree.dir, env });
    if (r.code !== 0 || r.signal !== null) {
      throw new TreeError("make", `${tree.dir}: make arch/x86/net/bpf_jit_comp.o failed (${howEnded(r)}), so kbuild recorded no compile command:\n${tail(r)}`);
    }
    if (!existsSync(cmdFile)) {
      // make succeeded without kbuild: a top Makefile of another kind (make's built-in rule
      // compiles a .c to its .o and records nothing), or an object already up to date
      const output = tail(r);
      throw new TreeError("make", `${tree.dir}: make arch/x86/net/bpf_jit_comp.o succeeded but recorded no compile command (no arch/x86/net/.bpf_jit_comp.o.cmd): the top Makefile is not kbuild's, or the tree is not a prepared Linux tree${output === "" ? "" : `; make said:\n${output}`}`);
    }
  }
  const text = readFileSync(cmdFile, "utf8");
  const first = text.split("\n")[0] ?? "";
  const m = /^(?:saved)?cmd_[^ ]+ := (.*)$/.exec(first);
  if (m === null) throw new TreeError("build", `${cmdFile}: the first line is not kbuild's \`savedcmd_... := <command>\`: ${first.slice(0, 120)}`);
  const words = shellWords(m[1]!);
  const c = words.lastIndexOf("-c");
  if (c < 0 || words[c + 1] !== "-o" || words.length !== c + 4) {
    throw new TreeError("build", `${cmdFile}: the recorded command does not end in \`-c -o <object> <source>\``);
  }
  return { argv: words.slice(0, c).filter((w) => !w.startsWith("-Wp,-MMD,") && !w.startsWith("-Wp,-MD,")), text: first };
}

/** The cached shim binary for `tree` (building it first if needed). Throws TreeError("build", ...) with the compiler's first errors. */
export function buildShim(tree: KernelTree, opts: BuildOptions = {}): ShimBinary {
  const t0 = performance.now();
  const env = opts.env ?? process.env;
  const symbols: ModelSymbols = { ...MODEL_SYMBOLS, ...opts.symbols };
  if (tree.config.CFI === "y" || tree.config.CFI_CLANG === "y") {
    // cfi_mode (kCFI or FineIBT) and cfi_bpf_hash/cfi_bpf_subprog_hash are set at boot
    // (arch/x86/kernel/alternative.c); the shim does not model them, and would emit the
    // preamble of a kernel without CFI.
    throw new TreeError("config", `${tree.dir}: CONFIG_CFI${tree.config.CFI_CLANG === "y" ? "_CLANG" : ""} is on, and the shim does not model kCFI/FineIBT preambles`, `cd ${tree.dir} && ./scripts/config -d CFI -d CFI_CLANG && make olddefconfig && make -j$(nproc) prepare`);
  }
  const jitSource = resolve(opts.jitSource ?? tree.jitSource);
  if (!existsSync(jitSource)) throw new TreeError("usage", `JIT source ${jitSource} does not exist`);
  if (!isFile(jitSource)) throw new TreeError("usage", `JIT source ${jitSource} is not a regular file (a directory?); give a bpf_jit_comp.c`);
  if (/["\\\n]/.test(jitSource)) throw new TreeError("usage", `JIT source path ${JSON.stringify(jitSource)} contains a quote, backslash or newline`);
  const jitBytes = readFileSync(jitSource);
  const jitSourceHash = createHash("sha256").update(jitBytes).digest("hex");
  const cmd = recordedJitCommand(tree, env);
  const autoconf = readFileSync(join(tree.dir, "include/generated/autoconf.h"));
  const shimHash = sha(...SHIM_FILES.map((f) => readFileSync(join(SHIM_DIR, f))));
  const symText = Object.entries(symbols).map(([k, v]) => `${k}=0x${v.toString(16)}`).join(",");
  const key = sha(`recipe ${RECIPE}`, tree.dir, autoconf, cmd.text, jitSourceHash, shimHash, symText).slice(0, 24);
  const root = opts.cacheDir ?? join(cacheRoot(env), "kjit");
  const dir = join(root, key);
  const bin = join(dir, "stackcheck-kjit");
  if (existsSync(bin)) return { path: bin, key, jitSource, jitSourceHash, built: false, seconds: since(t0) };

  requireTools(BUILD_TOOLS, env);
  opts.onProgress?.(`building the kernel JIT shim for ${tree.dir} (${tree.version})${opts.jitSource !== undefined ? ` with ${jitSource}` : ""}`);
  mkdirSync(root, { recursive: true });
  const tmp = mkdtempSync(join(root, `.build-${key}-`));
  try {
    const [cc, ...kflags] = cmd.argv as [string, ...string[]];
    const kernelFlags = [...kflags, "-fno-stack-protector", `-I${SHIM_DIR}`];
    const compile = (what: string, argv: string[], cwd: string) => {
      const r = runSync(argv[0]!, argv.slice(1), { cwd, env });
      if (r.code !== 0) throw new TreeError("build", `compiling ${what} failed (${howEnded(r)}):\n${firstErrors(r)}`);
    };
    compile(`${jitSource} (through shim/jit_tu.c, with the tree's recorded flags)`,
      [cc, ...kernelFlags, `-DSC_JIT_SOURCE="${jitSource}"`, "-c", "-o", join(tmp, "jit.o"), join(SHIM_DIR, "jit_tu.c")], tree.dir);
    for (const f of ["kstubs", "kdriver"]) {
      compile(`shim/${f}.c (with the tree's recorded flags)`, [cc, ...kernelFlags, "-c", "-o", join(tmp, `${f}.o`), join(SHIM_DIR, `${f}.c`)], tree.dir);
    }
    compile("shim/user.c", ["gcc", "-O2", "-Wall", "-Werror", "-c", "-o", join(tmp, "user.o"), join(SHIM_DIR, "user.c")], tmp);
    const defsyms = Object.entries(symbols).map(([k, v]) => `-Wl,--defsym=${k}=0x${v.toString(16)}`);
    const out = join(tmp, "stackcheck-kjit");
    const r = runSync("gcc", ["-static", "-no-pie", "-o", out, ...["user", "kstubs", "kdriver", "jit"].map((f) => join(tmp, `${f}.o`)), ...defsyms], { cwd: tmp, env });
    if (r.code !== 0) throw new TreeError("build", `linking the shim failed (${howEnded(r)}):\n${firstErrors(r)}`);
    writeFileSync(join(tmp, "build.json"), JSON.stringify({
      tree: tree.dir, version: tree.version, jitSource, jitSourceHash, shimHash, symbols: symText, recorded: cmd.text, at: new Date().toISOString(),
    }, null, 2) + "\n");
    chmodSync(tmp, 0o755); // mkdtemp makes it private; the cache is meant to be shared
    mkdirSync(dirname(dir), { recursive: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // another process built the same key meanwhile: use theirs
      if (!existsSync(bin)) throw e;
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const seconds = since(t0);
  opts.onProgress?.(`built ${bin} in ${seconds} s`);
  pruneShims(root, key);
  return { path: bin, key, jitSource, jitSourceHash, built: true, seconds };
}

/** How many shim builds the cache keeps (each about 1 MB; a reviewer's patched copies add up). */
const KEEP_BUILDS = 32;

/** Remove the least recently built binaries beyond KEEP_BUILDS (never `keep`). */
function pruneShims(root: string, keep: string): void {
  let entries: { dir: string; at: number }[];
  try {
    entries = readdirSync(root)
      .filter((d) => /^[0-9a-f]{24}$/.test(d) && d !== keep)
      .map((d) => ({ dir: join(root, d), at: statSync(join(root, d)).mtimeMs }));
  } catch {
    return;
  }
  entries.sort((a, b) => b.at - a.at);
  for (const e of entries.slice(KEEP_BUILDS - 1)) rmSync(e.dir, { recursive: true, force: true });
}

const since = (t0: number) => Math.round((performance.now() - t0) / 100) / 10;
