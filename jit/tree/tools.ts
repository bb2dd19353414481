// The host tools fetching and preparing a tree needs, checked before any slow step starts, each
// with the Debian package that provides it.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { spawnSync } from "node:child_process";
import { TreeError } from "./errors.ts";

export interface Tool {
  /** What is needed: a command name, or a header as `<gelf.h>`. */
  readonly need: string;
  /** The apt package that provides it. */
  readonly pkg: string;
  /** Who needs it. */
  readonly why: string;
}

/** Everything `fetchTree` runs. Kbuild's own list is Documentation/process/changes.rst. */
export const FETCH_TOOLS: readonly Tool[] = [
  { need: "apt-get", pkg: "apt", why: "downloads the linux-source package" },
  { need: "dpkg-deb", pkg: "dpkg", why: "unpacks the .deb" },
  { need: "tar", pkg: "tar", why: "unpacks the source tarball" },
  { need: "xz", pkg: "xz-utils", why: "decompresses the source tarball" },
  { need: "make", pkg: "make", why: "runs kbuild" },
  { need: "gcc", pkg: "gcc", why: "compiles the kernel's host tools and the JIT" },
  { need: "flex", pkg: "flex", why: "builds scripts/kconfig (make defconfig)" },
  { need: "bison", pkg: "bison", why: "builds scripts/kconfig (make defconfig)" },
  { need: "bc", pkg: "bc", why: "generates include/generated/timeconst.h (make prepare)" },
  { need: "<gelf.h>", pkg: "libelf-dev", why: "builds objtool (make prepare with X86_KERNEL_IBT/ORC)" },
];

/** Needed only when `.config` has MODULE_SIG_FORMAT (scripts/sign-file is built by `make prepare`). */
export const OPENSSL_TOOL: Tool = { need: "<openssl/opensslv.h>", pkg: "libssl-dev", why: "builds scripts/sign-file (CONFIG_MODULE_SIG_FORMAT)" };

/** Compiling the shim against a prepared tree. */
export const BUILD_TOOLS: readonly Tool[] = [
  { need: "gcc", pkg: "gcc", why: "compiles the tree's JIT and the shim" },
  { need: "make", pkg: "make", why: "records the JIT's compile command (make arch/x86/net/bpf_jit_comp.o)" },
];

export function onPath(cmd: string, env: NodeJS.ProcessEnv = process.env): boolean {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** Whether the host C compiler finds `header` (e.g. `gelf.h`) on its default include path. */
function hasHeader(header: string, env: NodeJS.ProcessEnv): boolean {
  if (!onPath("gcc", env)) return false;
  const r = spawnSync("gcc", ["-E", "-x", "c", "-o", "/dev/null", "-"], { input: `#include <${header}>\n`, env, encoding: "utf8" });
  return r.status === 0;
}

/** The tools of `tools` that are missing. */
export function missingTools(tools: readonly Tool[], env: NodeJS.ProcessEnv = process.env): Tool[] {
  return tools.filter((t) => (t.need.startsWith("<") ? !hasHeader(t.need.slice(1, -1), env) : !onPath(t.need, env)));
}

/** Throw a TreeError naming every missing tool and the one apt-get command that installs them. */
export function requireTools(tools: readonly Tool[], env: NodeJS.ProcessEnv = process.env): void {
  const missing = missingTools(tools, env);
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((t) => t.pkg))];
  const list = missing.map((t) => `  ${t.need} (package ${t.pkg}): ${t.why}`).join("\n");
  throw new TreeError("missing-tool", `missing build tool${missing.length === 1 ? "" : "s"}:\n${list}`, `apt-get install -y ${pkgs.join(" ")}`);
}
