// The parts of the kernel-tree backend that need no kernel tree: the protocol's encoder and
// parser, kbuild command splitting, apt sources, the tool check, and openTree's diagnoses.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import {
  buildShim, describeFailure, encodeRequest, fetchTree, FETCH_TOOLS, JitRequestError, missingTools, openTree, parseHello, parseResponse, ProtocolError,
  readAptSources, requireTools, shellWords, sourcesFor, TreeError, type JitRequest,
} from "../../jit/tree/index.ts";
import { bpf, program } from "./helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "stackcheck-tree-units-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const thrown = (f: () => unknown): Error => {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
};

describe("protocol: requests", () => {
  const req: JitRequest = program(
    [{ insns: [bpf.movImm(1, 1), bpf.call(), bpf.callSub(1), bpf.exit()], depth: 20, priv: 0x600000001000n }, { insns: [bpf.movImm(0, -1), bpf.exit()] }],
    { calls: [{ insn: 1, target: 0xffffffff81000100n }], features: ["BMI2"], returnThunk: 0xffffffff81e00000n },
  );

  test("a request is `key value` lines between begin and end, numbers as the shim reads them", () => {
    expect(encodeRequest(7, req).split("\n")).toEqual([
      "begin 7", "type kprobe", "feature BMI2", "return_thunk ffffffff81e00000",
      "func 0 4 20 ffffffffa0000000", "priv 0 600000001000", "func 4 2 0 ffffffffa0001000",
      "insn 183 1 0 0 1", "insn 133 0 0 0 1", "insn 133 0 1 0 1", "insn 149 0 0 0 0", "insn 183 0 0 0 -1", "insn 149 0 0 0 0",
      "call 1 ffffffff81000100", "end", "",
    ]);
  });

  test.each([
    ["funcs", { funcs: [] }, /funcs: needs at least one function/],
    ["funcs[1].start", { funcs: [req.funcs[0]!, { ...req.funcs[1]!, start: 5 }] }, /funcs\[1\]\.start: must be 4/],
    ["funcs[0].image", { funcs: [{ ...req.funcs[0]!, image: 0n }, req.funcs[1]!] }, /funcs\[0\]\.image: must not be 0/],
    ["insns", { insns: req.insns.slice(1) }, /insns: the functions cover 6 instructions, insns has 5/],
    ["insns[2]", { insns: req.insns.map((x, i) => (i === 2 ? { ...x, dst: 16 } : x)) }, /insns\[2\]: code 0\.\.255, dst and src 0\.\.15/],
    ["calls[0].insn", { calls: [{ insn: 6, target: 1n }] }, /calls\[0\]\.insn: must be an instruction index 0\.\.5/],
    ["features[0]", { features: ["bmi2"] }, /features\[0\]: must be an X86_FEATURE_ name/],
  ] as const)("a malformed request names the field: %s", (path, patch, message) => {
    const e = thrown(() => encodeRequest(1, { ...req, ...patch } as JitRequest));
    expect(e).toBeInstanceOf(JitRequestError);
    expect((e as JitRequestError).path).toBe(path);
    expect(e.message).toMatch(message);
  });
});

describe("protocol: answers", () => {
  test("an ok answer: per function the addresses, bytes, addrs[], fp window, private stack, extable; log lines apart", () => {
    const r = parseResponse(3, [
      "result 3 ok 1",
      "func 0 ffffffffa0000000 ffffffffa0000000 4 4",
      "bytes 0 5589e5c3",
      "addrs 0 3 4",
      "fp 0 3 1",
      "priv 0 600000001000 80 8 0:eb9f12345678eb9f 72:eb9f12345678eb9f",
      "extable 0 0 ffffffffa0000002 -10 20 5",
      "log 3 bpf_jit: a \\x5cmessage\\x0a",
      "done 3",
    ]);
    expect(r).toEqual({
      ok: true,
      log: [{ level: 3, text: "bpf_jit: a \\message\n" }],
      funcs: [{
        image: 0xffffffffa0000000n, bpfFunc: 0xffffffffa0000000n, jitedLen: 4, imageLen: 4, bytes: Uint8Array.of(0x55, 0x89, 0xe5, 0xc3),
        addrs: [3, 4], fp: { start: 3, end: 1 },
        privStack: { ptr: 0x600000001000n, size: 80, align: 8, words: [{ off: 0, value: 0xeb9f12345678eb9fn }, { off: 72, value: 0xeb9f12345678eb9fn }] },
        extable: [{ insnAddr: 0xffffffffa0000002n, insn: -10, fixup: 20, data: 5 }],
      }],
    });
  });

  test("an error answer: function, place, instruction, do_jit()'s code and its name; describeFailure says it in one line", () => {
    const req = program([{ insns: [bpf.movImm(0, 0), bpf.raw(0xff), bpf.exit()] }]);
    const r = parseResponse(4, ["result 4 error", "error 0 insn 1 -22", "message bpf_int_jit_compile() left function 0 unJITed", "log 3 bpf_jit: unknown opcode ff", "done 4"]);
    expect(r).toEqual({
      ok: false, log: [{ level: 3, text: "bpf_jit: unknown opcode ff" }],
      error: { func: 0, where: "insn", insn: 1, rc: -22, errno: "EINVAL", message: "bpf_int_jit_compile() left function 0 unJITed" },
    });
    if (r.ok) return;
    expect(describeFailure(req, r)).toBe("function 0, instruction 1 (code 0xff): bpf_jit: unknown opcode ff; bpf_int_jit_compile() left function 0 unJITed (-EINVAL)");
  });

  test.each([
    ["another request's answer", ["result 2 ok 0", "done 2"]],
    ["no done line", ["result 3 ok 0"]],
    ["bytes that disagree with image_len", ["result 3 ok 1", "func 0 1 1 2 2", "bytes 0 55", "fp 0 unsupported", "done 3"]],
    ["an unknown line", ["result 3 ok 1", "func 0 1 1 1 1", "bytes 0 c3", "fp 0 unsupported", "frobnicate 0 1", "done 3"]],
    ["a malformed error", ["result 3 error", "error zero", "done 3"]],
  ])("a broken answer is a ProtocolError: %s", (_, lines) => {
    expect(() => parseResponse(3, lines)).toThrow(ProtocolError);
  });

  test("hello: protocol version, release and capabilities", () => {
    expect(parseHello("hello stackcheck-kjit 1 7.2.13 priv_stack,fp_window")).toEqual({ protocol: 1, release: "7.2.13", caps: new Set(["priv_stack", "fp_window"]) });
    expect(parseHello("hello stackcheck-kjit 1 6.12.118 -").caps.size).toBe(0);
    expect(() => parseHello("hello stackcheck-kjit 2 7.2.13 -")).toThrow(/protocol 2.*rebuild/);
  });
});

test("kbuild's recorded command splits as sh would", () => {
  expect(shellWords(`gcc -Wp,-MMD,a.d  -DKBUILD_MODFILE='"arch/x86/net/bpf_jit_comp"' -D"X=1 2" a\\ b -c -o x.o x.c  `)).toEqual([
    "gcc", "-Wp,-MMD,a.d", '-DKBUILD_MODFILE="arch/x86/net/bpf_jit_comp"', "-DX=1 2", "a b", "-c", "-o", "x.o", "x.c",
  ]);
});

describe("apt sources for the temporary configuration", () => {
  test("deb822 and one-line sources are read; 7.2 uses the archive with suite sid, 6.12 the machine's suites", () => {
    const etc = join(tmp, "etc-apt");
    mkdirSync(join(etc, "sources.list.d"), { recursive: true });
    writeFileSync(join(etc, "sources.list.d", "debian.sources"), [
      "Types: deb", "# a comment", "URIs: http://mirror.example/debian", "Suites: bookworm bookworm-updates", "Components: main", "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg", "",
      "Types: deb-src", "URIs: http://mirror.example/debian", "Suites: bookworm", "Components: main", "",
      "Types: deb", "URIs: http://mirror.example/debian-security", "Suites: bookworm-security", "Components: main", "",
    ].join("\n"));
    writeFileSync(join(etc, "sources.list"), "# nothing\ndeb [arch=amd64 signed-by=/k.gpg] http://other.example/debian bookworm-backports main contrib\n");
    const machine = readAptSources(etc);
    expect(machine.map((s) => `${s.uri} ${s.suites.join(",")} ${s.signedBy ?? "-"}`)).toEqual([
      "http://mirror.example/debian bookworm,bookworm-updates /usr/share/keyrings/debian-archive-keyring.gpg",
      "http://mirror.example/debian-security bookworm-security -",
      "http://other.example/debian bookworm-backports /k.gpg",
    ]);
    expect(sourcesFor("7.2", machine)).toEqual([{ uri: "http://mirror.example/debian", suites: ["sid"], components: ["main"], signedBy: "/usr/share/keyrings/debian-archive-keyring.gpg" }]);
    expect(sourcesFor("6.12", machine).flatMap((s) => s.suites)).toEqual(["bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports"]);
    expect(sourcesFor("7.2", [])[0]!.uri).toBe("http://deb.debian.org/debian");
    expect(sourcesFor("6.12", []).flatMap((s) => s.suites)).toEqual(["bookworm", "bookworm-updates", "bookworm-security"]);
  });
});

describe("missing tools", () => {
  test("each missing tool is named with its apt package, and the fix is one apt-get line", () => {
    const env = { ...process.env, PATH: join(tmp, "empty-path") };
    expect(missingTools(FETCH_TOOLS, env).map((t) => t.pkg)).toEqual(["apt", "dpkg", "tar", "xz-utils", "make", "gcc", "flex", "bison", "bc", "libelf-dev"]);
    const e = thrown(() => requireTools(FETCH_TOOLS, env));
    expect(e).toBeInstanceOf(TreeError);
    expect((e as TreeError).code).toBe("missing-tool");
    expect(e.message).toMatch(/^missing build tools:\n {2}apt-get \(package apt\): downloads/);
    expect(e.message).toMatch(/<gelf\.h> \(package libelf-dev\)/);
    expect((e as TreeError).fix).toBe("apt-get install -y apt dpkg tar xz-utils make gcc flex bison bc libelf-dev");
  });

  test("fetchTree checks the tools before anything slow starts", async () => {
    const env = { ...process.env, PATH: join(tmp, "empty-path"), XDG_CACHE_HOME: join(tmp, "cache") };
    const lines: string[] = [];
    await expect(fetchTree({ version: "7.2", dir: join(tmp, "fetch-here"), env, onProgress: (l) => lines.push(l) })).rejects.toMatchObject({ code: "missing-tool" });
    expect(lines).toEqual([]);
  });

  test("fetchTree refuses an unknown version and a directory it did not make", async () => {
    await expect(fetchTree({ version: "6.1" as "7.2" })).rejects.toThrow(/unknown kernel version "6\.1" \(known: 7\.2, 6\.12\)/);
    const mine = join(tmp, "someones-tree");
    mkdirSync(mine, { recursive: true });
    await expect(fetchTree({ version: "7.2", dir: mine })).rejects.toThrow(/exists and was not made by fetchTree/);
  });
});

describe("openTree says what is missing and what to run", () => {
  const fake = join(tmp, "linux");
  const put = (f: string, text = "") => {
    mkdirSync(join(fake, f, ".."), { recursive: true });
    writeFileSync(join(fake, f), text);
  };

  test("not a tree, not configured, not prepared, JIT off, stale prepare, and finally a usable tree", () => {
    expect(thrown(() => openTree(join(tmp, "nothing-here")))).toMatchObject({ code: "not-a-tree" });
    expect(thrown(() => openTree("", {}))).toMatchObject({ code: "usage", message: expect.stringMatching(/STACKCHECK_KERNEL_TREE/) });
    put("Makefile", "# SPDX\nVERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\nEXTRAVERSION =\n");
    put("Kconfig");
    expect(thrown(() => openTree(fake)).message).toMatch(/no arch\/x86\/net\/bpf_jit_comp\.c/);
    put("arch/x86/net/bpf_jit_comp.c", "/* the JIT */\n");
    const e1 = thrown(() => openTree(fake)) as TreeError;
    expect(e1).toMatchObject({ code: "not-configured" });
    expect(e1.fix).toMatch(/make defconfig && \.\/scripts\/config -e BPF_SYSCALL -e BPF_JIT -e BPF_JIT_ALWAYS_ON -e X86_KERNEL_IBT && make olddefconfig && make -j\$\(nproc\) prepare$/);
    put(".config", "CONFIG_X86_64=y\nCONFIG_BPF_SYSCALL=y\n# CONFIG_BPF_JIT is not set\nCONFIG_NR_CPUS=64\n");
    expect(thrown(() => openTree(fake))).toMatchObject({ code: "not-prepared", message: expect.stringMatching(/include\/generated\/autoconf\.h is missing/) });
    for (const f of ["include/generated/autoconf.h", "include/config/auto.conf", "include/generated/asm-offsets.h", "include/generated/bounds.h", "arch/x86/include/generated/asm/orc_hash.h", "scripts/basic/fixdep"]) put(f);
    put("include/config/kernel.release", "7.2.13\n");
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(fake, ".config"), old, old);
    expect(thrown(() => openTree(fake))).toMatchObject({ code: "config", message: expect.stringMatching(/CONFIG_BPF_JIT is not =y/) });
    put(".config", "CONFIG_X86_64=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\nCONFIG_X86_KERNEL_IBT=y\nCONFIG_FUNCTION_PADDING_CFI=11\n");
    expect(thrown(() => openTree(fake))).toMatchObject({ code: "not-prepared", message: expect.stringMatching(/\.config is newer than include\/generated\/autoconf\.h/) });
    utimesSync(join(fake, ".config"), old, old);
    const t = openTree(undefined, { STACKCHECK_KERNEL_TREE: fake });
    expect(t).toMatchObject({ dir: fake, version: "7.2.13", versionCode: [7, 2, 13], jitSource: join(fake, "arch/x86/net/bpf_jit_comp.c") });
    expect(t.jitSourceHash).toMatch(/^[0-9a-f]{64}$/);
    expect(t.config).toMatchObject({ X86_KERNEL_IBT: "y", FUNCTION_PADDING_CFI: "11", MITIGATION_SLS: undefined });
    // A kCFI/FineIBT tree: the preamble is chosen at boot, which the shim does not model.
    const cfi = thrown(() => buildShim({ ...t, config: { ...t.config, CFI: "y" } }));
    expect(cfi).toMatchObject({ code: "config", message: expect.stringMatching(/CONFIG_CFI is on, and the shim does not model kCFI\/FineIBT/) });
  });
});
