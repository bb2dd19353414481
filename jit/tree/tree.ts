// A prepared kernel tree: one fetchTree() made, or a developer's own (in place, or through
// $STACKCHECK_KERNEL_TREE). openTree() checks that the shim can be built against it (a Linux
// tree, configured, prepared, with the JIT on) and reads what the JIT's output depends on.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { TreeError } from "./errors.ts";
import { runSync } from "./exec.ts";
import { TREE_ENV } from "./paths.ts";

/** Options fetchTree() turns on; openTree() requires the first three (BPF_JIT_ALWAYS_ON and IBT change what is emitted, they are reported). */
export const FETCH_CONFIG_ENABLE = ["BPF_SYSCALL", "BPF_JIT", "BPF_JIT_ALWAYS_ON", "X86_KERNEL_IBT"] as const;
const REQUIRED = ["X86_64", "BPF_SYSCALL", "BPF_JIT"] as const;

/**
 * Kconfig options that change what arch/x86/net/bpf_jit_comp.c emits or how it is driven
 * (read from the 7.2 and 6.12 sources; `IS_ENABLED`/`#ifdef` there and in the headers it uses):
 * - X86_KERNEL_IBT: EMIT_ENDBR() emits endbr64 (do_jit, emit_prologue, emit_cfi).
 * - MITIGATION_SLS: int3 after ret and after indirect jumps (emit_return, emit_indirect_jump).
 * - MITIGATION_RETHUNK: lets X86_FEATURE_RETHUNK be set, so emit_return() jumps to x86_return_thunk.
 * - MITIGATION_RETPOLINE / MITIGATION_ITS: the thunks of emit_indirect_jump (tail calls).
 * - MITIGATION_CALL_DEPTH_TRACKING: x86_call_depth_emit_accounting() before calls.
 * - CFI (7.2; CFI_CLANG in 6.12), CALL_PADDING, FUNCTION_PADDING_CFI: the kCFI/FineIBT preamble
 *   before bpf_func (emit_cfi, cfi_get_offset).
 * - SMP: emit_priv_frame_ptr()'s `add r9, gs:[this_cpu_off]` (7.2), per-CPU addressing.
 * - UNWINDER_ORC: bpf_jit_supports_exceptions().
 * - BPF_JIT_ALWAYS_ON: no interpreter fallback (a JIT failure fails the load).
 */
export const JIT_CONFIG_KEYS = [
  "X86_64", "SMP", "BPF_SYSCALL", "BPF_JIT", "BPF_JIT_ALWAYS_ON", "X86_KERNEL_IBT", "MITIGATION_SLS", "MITIGATION_RETHUNK",
  "MITIGATION_RETPOLINE", "MITIGATION_ITS", "MITIGATION_CALL_DEPTH_TRACKING", "CALL_DEPTH_TRACKING", "CALL_PADDING",
  "FUNCTION_PADDING_CFI", "CFI", "CFI_CLANG", "FINEIBT", "UNWINDER_ORC", "UNWINDER_FRAME_POINTER", "FRAME_POINTER",
  "NR_CPUS", "PREEMPT_DYNAMIC", "STACKPROTECTOR", "FORTIFY_SOURCE", "MODULE_SIG_FORMAT",
] as const;
export type JitConfigKey = (typeof JIT_CONFIG_KEYS)[number];

export interface KernelTree {
  /** Absolute path of the tree. */
  readonly dir: string;
  /** The kernel release, `include/config/kernel.release` (e.g. "7.2.13"). */
  readonly version: string;
  /** VERSION, PATCHLEVEL, SUBLEVEL of the top Makefile. */
  readonly versionCode: readonly [number, number, number];
  /** arch/x86/net/bpf_jit_comp.c in the tree. */
  readonly jitSource: string;
  /** sha256 (hex) of jitSource. */
  readonly jitSourceHash: string;
  /** The JIT-relevant Kconfig values: "y", "m", a number or string, or undefined (not set). */
  readonly config: Readonly<Record<JitConfigKey, string | undefined>>;
}

const PREPARE_FIX = (dir: string) =>
  `cd ${dir} && make defconfig && ./scripts/config ${FETCH_CONFIG_ENABLE.map((o) => `-e ${o}`).join(" ")} && make olddefconfig && make -j$(nproc) prepare`;

/** Parse a .config into name (without CONFIG_) → value, quotes removed. */
export function parseConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m === null) continue;
    const v = m[2]!;
    out.set(m[1]!, v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v);
  }
  return out;
}

/** Whether `path` is a regular file (a symlink to one too); false for a directory or when it cannot be read. */
export function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function makefileVersion(dir: string): [number, number, number] | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, "Makefile"), "utf8").slice(0, 2000);
  } catch {
    return undefined;
  }
  const field = (name: string) => /^(\d+)$/.exec((new RegExp(`^${name}\\s*=\\s*(\\S*)`, "m").exec(text) ?? [])[1] ?? "")?.[1];
  const v = field("VERSION"), p = field("PATCHLEVEL"), s = field("SUBLEVEL");
  return v === undefined || p === undefined ? undefined : [Number(v), Number(p), Number(s ?? 0)];
}

/**
 * Open a prepared tree: `dir`, else $STACKCHECK_KERNEL_TREE. Throws a TreeError saying what
 * is missing and what to run.
 */
export function openTree(dir?: string, env: NodeJS.ProcessEnv = process.env): KernelTree {
  const given = dir ?? env[TREE_ENV];
  if (given === undefined || given === "") {
    throw new TreeError("usage", `no kernel tree given (pass a directory or set ${TREE_ENV})`, "npx stackcheck kernel fetch");
  }
  const root = resolve(given);
  const versionCode = makefileVersion(root);
  const jitSource = join(root, "arch/x86/net/bpf_jit_comp.c");
  if (versionCode === undefined || !existsSync(join(root, "Kconfig"))) {
    throw new TreeError("not-a-tree", `${root} is not a Linux source tree (no top-level Makefile with VERSION/PATCHLEVEL, or no Kconfig)`);
  }
  if (!existsSync(jitSource)) throw new TreeError("not-a-tree", `${root}: no arch/x86/net/bpf_jit_comp.c (not an x86 tree, or an unpacked subset)`);
  if (!isFile(jitSource)) throw new TreeError("not-a-tree", `${root}: arch/x86/net/bpf_jit_comp.c is not a regular file (a directory?)`);
  const configPath = join(root, ".config");
  if (!existsSync(configPath)) throw new TreeError("not-configured", `${root} is not configured (no .config)`, PREPARE_FIX(root));
  if (!isFile(configPath)) throw new TreeError("not-configured", `${root}: .config is not a regular file (a directory?)`);
  const autoconf = join(root, "include/generated/autoconf.h");
  for (const f of ["include/generated/autoconf.h", "include/config/auto.conf", "include/generated/asm-offsets.h", "include/generated/bounds.h", "arch/x86/include/generated/asm/orc_hash.h", "scripts/basic/fixdep"]) {
    if (!existsSync(join(root, f))) {
      throw new TreeError("not-prepared", `${root} is configured but not prepared: ${f} is missing`, `cd ${root} && make -j$(nproc) prepare`);
    }
  }
  if (statSync(configPath).mtimeMs > statSync(autoconf).mtimeMs) {
    throw new TreeError("not-prepared", `${root}: .config is newer than include/generated/autoconf.h (changed since the last make prepare)`, `cd ${root} && make olddefconfig && make -j$(nproc) prepare`);
  }
  const values = parseConfig(readFileSync(configPath, "utf8"));
  const off = REQUIRED.filter((k) => values.get(k) !== "y");
  if (off.length > 0) {
    throw new TreeError(
      "config",
      `${root}: the BPF JIT is not configured: ${off.map((k) => `CONFIG_${k}`).join(", ")} ${off.length === 1 ? "is" : "are"} not =y in .config`,
      `cd ${root} && ./scripts/config ${FETCH_CONFIG_ENABLE.map((o) => `-e ${o}`).join(" ")} && make olddefconfig && make -j$(nproc) prepare`,
    );
  }
  return {
    dir: root,
    version: kernelRelease(root),
    versionCode,
    jitSource,
    jitSourceHash: sha256File(jitSource),
    config: Object.fromEntries(JIT_CONFIG_KEYS.map((k) => [k, values.get(k)])) as Record<JitConfigKey, string | undefined>,
  };
}

/** include/config/kernel.release (written by `make prepare`), else `make -s kernelrelease`. */
function kernelRelease(root: string): string {
  try {
    const r = readFileSync(join(root, "include/config/kernel.release"), "utf8").trim();
    if (r !== "") return r;
  } catch {
    // fall through to make
  }
  const r = runSync("make", ["-s", "kernelrelease"], { cwd: root });
  const v = r.stdout.trim();
  if (r.code !== 0 || v === "") throw new TreeError("not-prepared", `${root}: no include/config/kernel.release and \`make kernelrelease\` failed`, `cd ${root} && make -j$(nproc) prepare`);
  return v;
}
