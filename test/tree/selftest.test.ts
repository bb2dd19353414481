// `export --selftest` compiled: each exported test is built with clang as the kernel's
// selftests build theirs (--target=bpf, the tree's tools/lib and selftests headers, a stand-in
// for vmlinux.h), and what clang assembled, read back with llvm-objdump, is the program itself,
// instruction for instruction (the model's calls as bpf_ktime_get_ns(), BPF-to-BPF calls as the
// relocations libbpf resolves). Corpus files, generated scenarios and whole-ISA programs. Needs
// a prepared tree and clang (Debian: `apt-get install clang`); without either, one line and a skip.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { loadCorpusFile } from "../../harness/corpus.ts";
import { scenarioOf } from "../../harness/scenario.ts";
import { exportSelftest, insnWord, SELFTEST_HELPER } from "../../harness/selftest.ts";
import { planArb, planToScenario } from "../../generators/index.ts";
import { isaProgramArb } from "../../generators/programs.ts";
import { BPF_CALL, BPF_JMP, BPF_LD_IMM64, BPF_PSEUDO_CALL } from "../../jit/bpf/opcodes.ts";
import type { BpfInsn } from "../../jit/bpf/instruction.ts";
import type { Program } from "../../jit/bpf/program.ts";
import { buildImage, type ImageSpec } from "../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../jit/strategies/index.ts";
import { treeOrSkip } from "./helpers.ts";
import { hostTimeout } from "../helpers/runs.ts";

const tree = treeOrSkip();
const has = (tool: string) => spawnSync(tool, ["--version"], { encoding: "utf8" }).status === 0;
const tools = has("clang") && has("llvm-objdump");
if (tree !== undefined && !tools) {
  writeSync(2, "export --selftest compile test skipped: no clang/llvm-objdump (Debian: apt-get install clang)\n");
  test.skip("export --selftest: clang is not installed", () => {});
}

const r9 = BUILTIN_STRATEGIES.find((s) => s.name === "r9-private")!;

/** The words clang must have assembled for a function: model calls as bpf_ktime_get_ns(), BPF-to-BPF calls whatever their offset. */
function expectedWords(insns: readonly BpfInsn[]): string[] {
  const out: string[] = [];
  for (let k = 0; k < insns.length; k++) {
    const x = insns[k]!;
    const call = x.code === (BPF_JMP | BPF_CALL);
    const y: BpfInsn = call && x.src !== BPF_PSEUDO_CALL ? { code: x.code, dst: 0, src: 0, off: 0, imm: SELFTEST_HELPER.id } : x;
    const bytes = (w: BpfInsn) => Array.from({ length: 8 }, (_, i) => Number((insnWord(w) >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, "0")).join(" ");
    // a BPF-to-BPF call's offset is the linker's and libbpf's: -1 and a relocation across
    // sections, the distance within .text (subprog to subprog)
    if (call && x.src === BPF_PSEUDO_CALL) { out.push(`${bytes(y).slice(0, 11)} imm`); continue; }
    // llvm-objdump prints an ld_imm64 as one line of 16 bytes
    if (x.code === BPF_LD_IMM64) out.push(`${bytes(y)} ${bytes(insns[++k]!)}`);
    else out.push(bytes(y));
  }
  return out;
}

/** llvm-objdump -d's instructions by function (label symbols inside a function belong to it). */
function disassembled(object: string, functions: ReadonlySet<string>): Map<string, string[]> {
  const r = spawnSync("llvm-objdump", ["-d", object], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of r.stdout.split("\n")) {
    const head = /^[0-9a-f]+ <(.+)>:$/.exec(line);
    if (head) { if (functions.has(head[1]!)) out.set(head[1]!, (cur = [])); continue; }
    const insn = /^\s+\d+:\t((?:[0-9a-f]{2} )*[0-9a-f]{2})\t/.exec(line);
    if (insn && cur) cur.push(insn[1]!.startsWith("85 10 00 00 ") ? "85 10 00 00 imm" : insn[1]!);
  }
  return out;
}

if (tree !== undefined && tools) describe(`export --selftest compiled with clang against ${tree.dir}`, () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-selftest-"));
  // the stand-in for bpftool's vmlinux.h: the UAPI types the selftest headers use; and the one
  // helper the tests call, declared as scripts/bpf_doc.py declares it in bpf_helper_defs.h
  writeFileSync(join(dir, "vmlinux.h"), "#include <linux/types.h>\n#include <linux/bpf.h>\n");
  writeFileSync(join(dir, "bpf_helper_defs.h"), `static __u64 (* const ${SELFTEST_HELPER.name})(void) = (void *) ${SELFTEST_HELPER.id};\n`);
  const compile = (name: string, spec: ImageSpec) => {
    const img = buildImage(spec, r9);
    const c = join(dir, `${name}.c`), o = join(dir, `${name}.o`);
    writeFileSync(c, exportSelftest(img, { name, failure: "a test of the export", strategy: r9.name, source: name }));
    const r = spawnSync("clang", ["--target=bpf", "-O2", "-mcpu=v3", "-D__TARGET_ARCH_x86", `-I${dir}`, `-I${tree.dir}/tools/lib`,
      `-I${tree.dir}/tools/testing/selftests/bpf/progs`, "-idirafter", "/usr/include", "-idirafter", "/usr/include/x86_64-linux-gnu", "-c", c, "-o", o], { encoding: "utf8" });
    expect(r.status, `${c}: ${r.stderr}`).toBe(0);
    const names = new Map<string, { p: Program; fi: number }>();
    spec.programs.forEach((p) => p.funcs.forEach((_, fi) => names.set(fi === 0 ? `${name}_${p.name}` : `${name}_${p.name}_${p.funcs[fi]!.name}`, { p, fi })));
    const got = disassembled(o, new Set(names.keys()));
    for (const [fn, { p, fi }] of names) {
      const f = p.funcs[fi]!;
      expect(got.get(fn), `${c}: ${fn}`).toEqual(expectedWords(p.insns.slice(f.start, f.end)));
    }
  };

  test("corpus files: clang assembles each program exactly", () => {
    const corpus = fileURLToPath(new URL("../corpus/", import.meta.url));
    for (const f of readdirSync(corpus).filter((x) => x.endsWith(".json"))) compile(f.replace(/\W/g, "_").replace(/_json$/, ""), loadCorpusFile(join(corpus, f)).scenario.spec);
  }, hostTimeout(60_000));

  test("generated scenarios and whole-ISA programs (v4 forms as .8byte): clang assembles each exactly", () => {
    fc.sample(planArb({ maxPrograms: 3, maxFuncs: 3 }), { numRuns: 8, seed: 3 }).forEach((plan, i) => compile(`plan${i}`, scenarioOf(planToScenario(plan), "generated").spec));
    fc.sample(isaProgramArb, { numRuns: 10, seed: 4 }).forEach((p, i) => compile(`isa${i}`, { programs: [p], task: 0 }));
  }, hostTimeout(60_000));
});
