// `fetchTree()`: download Debian's linux-source package, unpack, configure and prepare it so the
// shim can compile the tree's arch/x86/net/bpf_jit_comp.c with kbuild's own flags.
//
// Steps, each recorded by a marker when it finishes (a rerun skips finished steps; an
// interrupted step is redone from its start, and redoing a step redoes the ones after it):
//   download  apt-get update + apt-get download linux-source-<version>, through a private apt
//             configuration under the cache root (the system's sources, lists and cache are
//             untouched); marker <cache>/debs/linux-source-<version>.done, next to the .deb
//   unpack    dpkg-deb -x, then the tarball inside, into <dir>.unpack/, renamed to <dir> when complete
//   config    make defconfig; scripts/config -e BPF_SYSCALL -e BPF_JIT -e BPF_JIT_ALWAYS_ON -e X86_KERNEL_IBT; make olddefconfig
//   prepare   make -j$(nproc) prepare
//   jit       make arch/x86/net/bpf_jit_comp.o (kbuild records its command in .bpf_jit_comp.o.cmd)
// The markers of the last four (and a copy of the download's) are in <dir>/.stackcheck-fetch/.
//
// Measured on the 2-core machine (Debian 12 host, gcc 12): 7.2.13 cold in 90 s (download 9,
// unpack 27, config 19, prepare 31, jit 4), 6.12.118 in 86 s (5, 22, 13, 40, 6); a fetched tree
// in about 10 ms.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, closeSync, unlinkSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { TreeError } from "./errors.ts";
import { howEnded, run, tail, type RunResult } from "./exec.ts";
import { cacheRoot, defaultTreeDir, TREE_VERSIONS, type TreeVersion } from "./paths.ts";
import { FETCH_TOOLS, OPENSSL_TOOL, requireTools } from "./tools.ts";
import { FETCH_CONFIG_ENABLE, openTree, parseConfig, type KernelTree } from "./tree.ts";

export interface FetchOptions {
  readonly version: TreeVersion;
  /** Where the tree goes (default `<cache>/trees/linux-<version>`). fetchTree owns this directory. */
  readonly dir?: string;
  /** Progress lines (for stderr). */
  readonly onProgress?: (line: string) => void;
  /** Also pass every line the tools print to onProgress. */
  readonly verbose?: boolean;
  /** make -j (default: the number of CPUs). */
  readonly jobs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/** What each finished step recorded in its marker. */
export interface StepRecord {
  readonly seconds: number;
  readonly at: string;
  readonly detail?: string;
}

const STATE_DIR = ".stackcheck-fetch";
const STEPS = ["download", "unpack", "config", "prepare", "jit"] as const;
type Step = (typeof STEPS)[number];

const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";
const FALLBACK_URI = "http://deb.debian.org/debian";

/** One apt source: `deb [signed-by=...] uri suite components...`. */
export interface AptSource {
  readonly uri: string;
  readonly suites: readonly string[];
  readonly components: readonly string[];
  readonly signedBy?: string;
}

/** The machine's `deb` sources, from /etc/apt/sources.list.d/*.sources (deb822) and /etc/apt/sources.list (one-line). */
export function readAptSources(etc = "/etc/apt"): AptSource[] {
  const out: AptSource[] = [];
  const files: string[] = [];
  const partsDir = join(etc, "sources.list.d");
  if (existsSync(partsDir)) for (const f of readdirSync(partsDir).sort()) files.push(join(partsDir, f));
  files.push(join(etc, "sources.list"));
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    if (file.endsWith(".sources")) out.push(...parseDeb822(text));
    else if (file.endsWith(".list")) out.push(...parseOneLine(text));
  }
  return out;
}

function parseDeb822(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const f = new Map<string, string>();
    let last = "";
    for (const line of para.split("\n")) {
      if (line.startsWith("#")) continue;
      if (/^\s/.test(line) && last !== "") { f.set(last, `${f.get(last)} ${line.trim()}`); continue; }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m !== null) { last = m[1]!.toLowerCase(); f.set(last, m[2]!.trim()); }
    }
    if (!(f.get("types") ?? "").split(/\s+/).includes("deb") || f.get("enabled") === "no") continue;
    const signedBy = f.get("signed-by");
    for (const uri of (f.get("uris") ?? "").split(/\s+/).filter(Boolean)) {
      out.push({
        uri, suites: (f.get("suites") ?? "").split(/\s+/).filter(Boolean), components: (f.get("components") ?? "main").split(/\s+/).filter(Boolean),
        ...(signedBy !== undefined && signedBy.startsWith("/") ? { signedBy } : {}),
      });
    }
  }
  return out.filter((s) => s.suites.length > 0);
}

function parseOneLine(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (m === null) continue;
    const signedBy = /signed-by=(\S+)/.exec(m[1] ?? "")?.[1];
    out.push({ uri: m[2]!, suites: [m[3]!], components: (m[4] ?? "main").split(/\s+/).filter(Boolean), ...(signedBy !== undefined ? { signedBy } : {}) });
  }
  return out;
}

/**
 * The sources the temporary apt configuration lists for `version`: for 7.2 the machine's Debian
 * archive URI with suite `sid`; for 6.12 the machine's own suites (bookworm, -updates,
 * -security). Without usable machine sources, deb.debian.org.
 */
export function sourcesFor(version: TreeVersion, machine: readonly AptSource[]): AptSource[] {
  const keyring = existsSync(DEBIAN_KEYRING) ? { signedBy: DEBIAN_KEYRING } : {};
  const isArchive = (s: AptSource) => !s.suites.every((x) => x.endsWith("-security")) && !/security/.test(s.uri);
  if (version === "7.2") {
    const archive = machine.find(isArchive);
    return [{ uri: archive?.uri ?? FALLBACK_URI, suites: ["sid"], components: ["main"], ...(archive?.signedBy !== undefined ? { signedBy: archive.signedBy } : keyring) }];
  }
  if (machine.length > 0) return machine.map((s) => ({ ...s, components: ["main"] }));
  return [
    { uri: FALLBACK_URI, suites: ["bookworm", "bookworm-updates"], components: ["main"], ...keyring },
    { uri: "http://deb.debian.org/debian-security", suites: ["bookworm-security"], components: ["main"], ...keyring },
  ];
}

function sourcesListText(sources: readonly AptSource[]): string {
  return sources.flatMap((s) => s.suites.map((suite) => `deb ${s.signedBy !== undefined ? `[signed-by=${s.signedBy}] ` : ""}${s.uri} ${suite} ${s.components.join(" ")}`)).join("\n") + "\n";
}

/** Fetch, unpack, configure and prepare a tree (or finish an earlier, interrupted fetch). */
export async function fetchTree(opts: FetchOptions): Promise<KernelTree> {
  if (!(TREE_VERSIONS as readonly string[]).includes(opts.version)) {
    throw new TreeError("usage", `unknown kernel version "${String(opts.version)}" (known: ${TREE_VERSIONS.join(", ")})`);
  }
  const env = opts.env ?? process.env;
  const dir = resolve(opts.dir ?? defaultTreeDir(opts.version, env));
  const say = opts.onProgress ?? (() => {});
  const onLine = opts.verbose === true ? (l: string) => say(`    ${l}`) : undefined;
  const jobs = opts.jobs ?? availableParallelism();
  const state = join(dir, STATE_DIR);
  const done = (s: Step) => existsSync(join(state, `${s}.done`));

  if (STEPS.every(done)) {
    say(`linux-${opts.version}: ${dir} is fetched and prepared`);
    return openTree(dir, env);
  }
  if (existsSync(dir) && !existsSync(state)) {
    throw new TreeError("usage", `${dir} exists and was not made by fetchTree (no ${STATE_DIR}/); remove it or pass another directory`);
  }
  requireTools(FETCH_TOOLS, env);
  const unlock = lock(`${dir}.lock`);
  try {
    const root = cacheRoot(env);
    const pkg = `linux-source-${opts.version}`;

    // download: recorded next to the .deb (the tree does not exist yet); copied into the tree's state.
    const debDir = join(root, "debs");
    const debRecord = join(debDir, `${pkg}.done`);
    let deb = existsSync(debRecord) ? (JSON.parse(readFileSync(debRecord, "utf8")) as StepRecord) : undefined;
    if (!done("unpack")) {
      if (deb === undefined || deb.detail === undefined || !existsSync(deb.detail)) {
        say(`linux-${opts.version}: download: apt-get update + apt-get download ${pkg}`);
        const t0 = performance.now();
        const path = await download(opts.version, pkg, root, debDir, env, onLine);
        deb = { seconds: since(t0), at: new Date().toISOString(), detail: path };
        writeFileSync(debRecord, JSON.stringify(deb) + "\n");
        say(`linux-${opts.version}: download: ${deb.seconds} s (${path})`);
      } else say(`linux-${opts.version}: download: done before (${deb.detail})`);

      // unpack into <dir>.unpack/tree, write the markers there, then rename it to <dir>.
      say(`linux-${opts.version}: unpack: dpkg-deb -x + tar`);
      const t0 = performance.now();
      const staging = `${dir}.unpack`, tree = join(staging, "tree"), debRoot = join(staging, "deb");
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(tree, { recursive: true });
      mustRun(await run("dpkg-deb", ["-x", deb.detail!, debRoot], { env, onLine }), "download", `dpkg-deb -x ${deb.detail}`);
      const srcDir = join(debRoot, "usr/src");
      const tarball = existsSync(srcDir) ? readdirSync(srcDir).find((f) => /^linux-source-.*\.tar\.xz$/.test(f)) : undefined;
      if (tarball === undefined) throw new TreeError("download", `${deb.detail}: no usr/src/linux-source-*.tar.xz inside the package`);
      // xz -T0: Debian's tarball is written in blocks, so decompression uses every CPU.
      mustRun(await run("tar", ["-I", "xz -T0", "-xf", join(srcDir, tarball), "-C", tree, "--strip-components=1"], { env, onLine }), "download", `tar -xf ${tarball}`);
      mkdirSync(join(tree, STATE_DIR), { recursive: true });
      writeFileSync(join(tree, STATE_DIR, "download.done"), JSON.stringify(deb) + "\n");
      const rec: StepRecord = { seconds: since(t0), at: new Date().toISOString(), detail: tarball };
      writeFileSync(join(tree, STATE_DIR, "unpack.done"), JSON.stringify(rec) + "\n");
      rmSync(dir, { recursive: true, force: true });
      renameSync(tree, dir);
      rmSync(staging, { recursive: true, force: true });
      say(`linux-${opts.version}: unpack: ${rec.seconds} s`);
    } else say(`linux-${opts.version}: download, unpack: done before`);

    const step = async (s: Step, what: string, body: () => Promise<void>) => {
      if (done(s)) {
        say(`linux-${opts.version}: ${s}: done before`);
        return;
      }
      // what came after this step was made from its old result
      for (const later of STEPS.slice(STEPS.indexOf(s) + 1)) rmSync(join(state, `${later}.done`), { force: true });
      say(`linux-${opts.version}: ${s}: ${what}`);
      const t0 = performance.now();
      await body();
      const rec: StepRecord = { seconds: since(t0), at: new Date().toISOString() };
      writeFileSync(join(state, `${s}.done`), JSON.stringify(rec) + "\n");
      say(`linux-${opts.version}: ${s}: ${rec.seconds} s`);
    };
    const make = async (args: string[], what: string) => mustRun(await run("make", args, { cwd: dir, env, onLine }), "make", `make ${args.join(" ")} (${what}) in ${dir}`);

    await step("config", `make defconfig; scripts/config ${FETCH_CONFIG_ENABLE.map((o) => `-e ${o}`).join(" ")}; make olddefconfig`, async () => {
      await make(["defconfig"], "configure");
      mustRun(await run(join(dir, "scripts/config"), ["--file", join(dir, ".config"), ...FETCH_CONFIG_ENABLE.flatMap((o) => ["-e", o])], { cwd: dir, env, onLine }), "make", "scripts/config");
      await make(["olddefconfig"], "configure");
      const cfg = parseConfig(readFileSync(join(dir, ".config"), "utf8"));
      const off = FETCH_CONFIG_ENABLE.filter((o) => cfg.get(o) !== "y");
      if (off.length > 0) throw new TreeError("config", `${dir}: make olddefconfig turned ${off.map((o) => `CONFIG_${o}`).join(", ")} off again (a dependency is missing from this toolchain?)`);
    });
    if (parseConfig(readFileSync(join(dir, ".config"), "utf8")).get("MODULE_SIG_FORMAT") === "y") requireTools([OPENSSL_TOOL], env);
    await step("prepare", `make -j${jobs} prepare`, async () => {
      await make([`-j${jobs}`, "prepare"], "prepare");
    });
    await step("jit", "make arch/x86/net/bpf_jit_comp.o (records the compile command)", async () => {
      await make([`-j${jobs}`, "arch/x86/net/bpf_jit_comp.o"], "compile the JIT once");
      if (!existsSync(join(dir, "arch/x86/net/.bpf_jit_comp.o.cmd"))) throw new TreeError("make", `${dir}: make arch/x86/net/bpf_jit_comp.o left no .bpf_jit_comp.o.cmd`);
    });
    const tree = openTree(dir, env);
    say(`linux-${opts.version}: ready: ${tree.dir} (${tree.version})`);
    return tree;
  } finally {
    unlock();
  }
}

/** The timings fetchTree recorded for a tree's steps (for reports). */
export function fetchTimings(dir: string): Partial<Record<Step, StepRecord>> {
  const out: Partial<Record<Step, StepRecord>> = {};
  for (const s of STEPS) {
    try {
      out[s] = JSON.parse(readFileSync(join(dir, STATE_DIR, `${s}.done`), "utf8")) as StepRecord;
    } catch {
      // not done
    }
  }
  return out;
}

const since = (t0: number) => Math.round((performance.now() - t0) / 100) / 10;

async function download(version: TreeVersion, pkg: string, root: string, debDir: string, env: NodeJS.ProcessEnv, onLine?: (l: string) => void): Promise<string> {
  const aptDir = join(root, "apt");
  const lists = join(aptDir, "lists"), cache = join(aptDir, "cache");
  for (const d of [join(lists, "partial"), join(cache, "archives", "partial"), debDir]) mkdirSync(d, { recursive: true });
  const listFile = join(aptDir, `sources-${version}.list`);
  writeFileSync(listFile, sourcesListText(sourcesFor(version, readAptSources())));
  const aptOpts = [
    "-o", `Dir::Etc::SourceList=${listFile}`, "-o", "Dir::Etc::SourceParts=/dev/null",
    "-o", `Dir::State::Lists=${lists}`, "-o", `Dir::Cache=${cache}`,
    // The system's pinning and default release must not pick another version of the package.
    "-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=/dev/null", "-o", "APT::Default-Release=",
  ];
  const upd = await run("apt-get", [...aptOpts, "update"], { env, onLine });
  mustRun(upd, "download", `apt-get update (sources: ${listFile})`);
  // `apt-get update` exits 0 when a source fails to download: it warns. The package must then be missing.
  const before = new Set(readdirSync(debDir));
  const dl = await run("apt-get", [...aptOpts, "download", pkg], { cwd: debDir, env, onLine });
  mustRun(dl, "download", `apt-get download ${pkg} (sources: ${listFile}; apt-get update said:\n${tail(upd, 8)})`);
  const debs = readdirSync(debDir).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
  const fresh = debs.filter((f) => !before.has(f));
  const pick = (fresh.length > 0 ? fresh : debs).sort().at(-1);
  if (pick === undefined) throw new TreeError("download", `apt-get download ${pkg} left no ${pkg}_*.deb in ${debDir}`);
  return join(debDir, pick);
}

function mustRun(r: RunResult, code: "download" | "make", what: string): void {
  if (r.code === 0) return;
  throw new TreeError(code, `${what} failed (${howEnded(r)}):\n${tail(r)}`);
}

/** An exclusive lock file holding our pid; a stale one (its process gone) is taken over. */
function lock(path: string): () => void {
  mkdirSync(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new TreeError("usage", `another fetch (pid ${pid}) is working on ${path.slice(0, -".lock".length)}; wait for it, or remove ${path} if it is gone`);
      }
      unlinkSync(path);
    }
  }
  throw new TreeError("usage", `could not take the lock ${path}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
