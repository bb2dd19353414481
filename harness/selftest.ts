// `stackcheck export --selftest`: a shrunk counterexample as a kernel selftest, in the style of
// tools/testing/selftests/bpf/progs/verifier_*.c (7.2): one `__naked` function of BPF inline
// assembly per program (its subprogs as `__used __naked static` functions it calls),
// `__description`, `__success`, `__arch_x86_64`, and `__jited("...")` lines holding stackcheck's
// own listing of the strategy's JIT output, as test_progs prints it (jit/disasm.ts
// testProgsLines()), with what differs from kernel to kernel (call targets, per-CPU addresses,
// this_cpu_off) left to `{{...}}` regular expressions. A developer drops the file into
// tools/testing/selftests/bpf/progs/ and adds it to prog_tests/verifier.c.
//
// Calls: stackcheck's helpers and kfuncs are models (jit/bpf/abi.ts), not the kernel's; each
// becomes a call of bpf_ktime_get_ns() (BPF_FUNC_ktime_get_ns, which neither the verifier nor
// the x86-64 JIT inlines: a plain call, so the JIT's call sequence is the same). Instructions an
// older clang cannot assemble (LLVM's cpu v4 forms, BPF_ST, may_goto; and for LLVM 14, Debian
// 12's clang, the atomics with a result) are written as their eight bytes (`.8byte`), which needs
// no assembler support and keeps every offset.
import { CALL_NAMES } from "../jit/bpf/abi.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_ATOMIC, BPF_CALL, BPF_CLASS, BPF_DIV, BPF_DW, BPF_END, BPF_EXIT,
  BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JNE, BPF_JSGE, BPF_JSGT,
  BPF_JSLE, BPF_JSLT, BPF_LD_IMM64, BPF_LDX, BPF_LSH, BPF_MEM, BPF_MODE, BPF_MOV, BPF_MUL, BPF_NEG, BPF_OP, BPF_OR,
  BPF_PSEUDO_CALL, BPF_RSH, BPF_SIZE, BPF_SRC, BPF_STX, BPF_SUB, BPF_TO_BE, BPF_X, BPF_XOR,
} from "../jit/bpf/opcodes.ts";
import type { BpfInsn } from "../jit/bpf/instruction.ts";
import { attachOf, calleeOf, type AttachPath, type Program } from "../jit/bpf/program.ts";
import { jumpOffset } from "../jit/bpf/fields.ts";
import { printInsnAt } from "../jit/bpf/print.ts";
import { testProgsLines } from "../jit/disasm.ts";
import { bpfProgs, type Image } from "../jit/image.ts";
import { wrapLine } from "./report.ts";

/** The real helper every model call becomes (include/uapi/linux/bpf.h: BPF_FUNC_ktime_get_ns). */
export const SELFTEST_HELPER = { name: "bpf_ktime_get_ns", id: 5 } as const;

/** The section (libbpf's SEC() name) for each attach path, as selftests load such programs. */
const SECTION: Readonly<Record<AttachPath, { plain: string; sleepable?: string }>> = {
  kprobe: { plain: "kprobe" },
  kprobe_multi: { plain: "kprobe.multi" },
  uprobe: { plain: "uprobe", sleepable: "uprobe.s" },
  uprobe_multi: { plain: "uprobe.multi", sleepable: "uprobe.multi.s" },
  tracepoint: { plain: "tracepoint" },
  // a TRACEPOINT program on a syscall tracepoint (libbpf's "tp+" and "tp.s+"; "tp_btf" would be a
  // TRACING program, run through __bpf_trace_run())
  tp_faultable: { plain: "tp/syscalls/sys_enter_getpid", sleepable: "tp.s/syscalls/sys_enter_getpid" },
  perf_event: { plain: "perf_event" },
  raw_tp: { plain: "raw_tp", sleepable: "raw_tp.s" },
  trampoline: { plain: "fentry/bpf_fentry_test1", sleepable: "fentry.s/bpf_fentry_test1" },
};

const SIZE = { [0x00]: "u32", [0x08]: "u16", [0x10]: "u8", [0x18]: "u64" } as Record<number, string>;
// What LLVM 14's BPF assembler (Debian 12's clang) parses: not `%=` (BPF_MOD) nor `if r1 & r2`
// (BPF_JSET); those are written as their bytes.
const ALU: Record<number, string> = {
  [BPF_ADD]: "+=", [BPF_SUB]: "-=", [BPF_MUL]: "*=", [BPF_DIV]: "/=", [BPF_OR]: "|=", [BPF_AND]: "&=", [BPF_LSH]: "<<=",
  [BPF_RSH]: ">>=", [BPF_XOR]: "^=", [BPF_MOV]: "=", [BPF_ARSH]: "s>>=",
};
const JMP: Record<number, string> = {
  [BPF_JEQ]: "==", [BPF_JGT]: ">", [BPF_JGE]: ">=", [BPF_JNE]: "!=", [BPF_JSGT]: "s>", [BPF_JSGE]: "s>=",
  [BPF_JLT]: "<", [BPF_JLE]: "<=", [BPF_JSLT]: "s<", [BPF_JSLE]: "s<=",
};
const ATOMIC_ALU: Record<number, string> = { [BPF_ADD]: "add", [BPF_AND]: "and", [BPF_OR]: "or", [BPF_XOR]: "xor" };

/** `(r10 - 8)`, as LLVM's BPF assembler writes a memory operand. */
const mem = (reg: number, off: number) => `(r${reg} ${off < 0 ? "-" : "+"} ${Math.abs(off)})`;

/** An instruction's eight bytes as one little-endian u64 (`.8byte`): struct bpf_insn's layout. */
export function insnWord(x: BpfInsn): bigint {
  return BigInt(x.code & 0xff) | (BigInt(((x.src & 0xf) << 4) | (x.dst & 0xf)) << 8n)
    | (BigInt(x.off & 0xffff) << 16n) | (BigInt(x.imm >>> 0) << 32n);
}

interface AsmContext {
  /** The label of the instruction at function-relative index k (a jump target). */
  label(k: number): string;
  /** The C function a BPF-to-BPF call at index k lands in. */
  callee(k: number): string;
}

/**
 * One instruction in LLVM's BPF assembler syntax, or undefined for what only its bytes can say
 * (v4 forms: sign-extending moves and loads, signed division, bswap, gotol; BPF_ST; may_goto;
 * load-acquire/store-release).
 */
function asmOf(insns: readonly BpfInsn[], k: number, ctx: AsmContext): string | undefined {
  const x = insns[k]!;
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), size = SIZE[BPF_SIZE(x.code)]!;
  if (cls === BPF_ALU || cls === BPF_ALU64) {
    const r = cls === BPF_ALU ? "w" : "r";
    if (x.off !== 0) return undefined; // movsx, sdiv/smod, address-space casts: v4
    if (op === BPF_END) return cls === BPF_ALU ? `r${x.dst} = ${BPF_SRC(x.code) === BPF_TO_BE ? "be" : "le"}${x.imm} r${x.dst}` : undefined;
    if (op === BPF_NEG) return `${r}${x.dst} = -${r}${x.dst}`;
    const s = ALU[op];
    if (s === undefined) return undefined;
    return BPF_SRC(x.code) === BPF_X ? `${r}${x.dst} ${s} ${r}${x.src}` : `${r}${x.dst} ${s} ${x.imm}`;
  }
  if (cls === BPF_LDX) return BPF_MODE(x.code) === BPF_MEM ? `r${x.dst} = *(${size} *)${mem(x.src, x.off)}` : undefined;
  if (cls === BPF_STX && BPF_MODE(x.code) === BPF_MEM) return `*(${size} *)${mem(x.dst, x.off)} = r${x.src}`;
  // the atomics without a result (LLVM 14 assembles no fetch, xchg or cmpxchg form)
  if (cls === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC && (size === "u64" || size === "u32") && ATOMIC_ALU[x.imm] !== undefined) {
    return `lock *(${size} *)${mem(x.dst, x.off)} ${ALU[x.imm]} ${size === "u64" ? "r" : "w"}${x.src}`;
  }
  if (x.code === BPF_LD_IMM64) {
    if (x.src !== 0) return undefined;
    const full = (BigInt(insns[k + 1]!.imm >>> 0) << 32n) | BigInt(x.imm >>> 0);
    return `r${x.dst} = 0x${full.toString(16)} ll`;
  }
  if (cls === BPF_JMP || cls === BPF_JMP32) {
    if (x.code === (BPF_JMP | BPF_EXIT)) return "exit";
    if (x.code === (BPF_JMP | BPF_CALL)) return x.src === BPF_PSEUDO_CALL ? `call ${ctx.callee(k)}` : `call %[${SELFTEST_HELPER.name}]`;
    if (x.code === (BPF_JMP | BPF_JA)) return `goto ${ctx.label(k + 1 + x.off)}`;
    const s = JMP[op];
    if (s === undefined) return undefined;
    const r = cls === BPF_JMP32 ? "w" : "r";
    return `if ${r}${x.dst} ${s} ${BPF_SRC(x.code) === BPF_X ? `${r}${x.src}` : x.imm} goto ${ctx.label(k + 1 + x.off)}`;
  }
  return undefined;
}

/** Jump targets inside a function (function-relative indices) that need a label. */
function jumpTargets(insns: readonly BpfInsn[]): Set<number> {
  const out = new Set<number>();
  insns.forEach((x, k) => {
    // (a jump written as bytes needs no label)
    const off = jumpOffset(x);
    if (off !== undefined && asmOf(insns, k, { label: () => "", callee: () => "" }) !== undefined) out.add(k + 1 + off);
  });
  return out;
}

/** A function's body as the lines of an `asm volatile` string (each ends in ` \`, as the selftests write them). */
function asmBody(p: Program, fi: number, cName: (fi: number) => string): string[] {
  const f = p.funcs[fi]!;
  const insns = p.insns.slice(f.start, f.end);
  const targets = jumpTargets(insns);
  const ctx: AsmContext = {
    label: (k) => `l${k}_%=`,
    callee: (k) => cName(calleeOf(p, f.start + k, insns[k]!.imm)),
  };
  const lines: string[] = [];
  for (let k = 0; k < insns.length; k++) {
    const x = insns[k]!;
    // the model's own text of what this instruction is, before raw bytes (the reader's only clue)
    const text = asmOf(insns, k, ctx);
    const label = targets.has(k) ? `${ctx.label(k)}:` : "";
    if (text !== undefined) {
      lines.push(`${label}\t${text};`);
      if (x.code === BPF_LD_IMM64) k++;
      continue;
    }
    const words = x.code === BPF_LD_IMM64 ? [x, insns[k + 1]!] : [x];
    for (const [i, w] of words.entries()) lines.push(`${i === 0 ? label : ""}\t.8byte 0x${insnWord(w).toString(16).padStart(16, "0")};`);
    k += words.length - 1;
  }
  return lines;
}

/** A C identifier from a name (programs and functions are already identifiers in scenarios). */
const ident = (s: string) => s.replace(/[^A-Za-z0-9_]/g, "_");

/**
 * A test_progs listing line as a `__jited()` pattern: literal text, with what the loading kernel
 * decides in `{{...}}` (test_loader.c compile_regex(): POSIX extended regular expressions, the
 * rest matched literally): call targets, 64-bit immediates (per-CPU addresses of private
 * stacks), and %gs offsets (this_cpu_off).
 */
export function jitedPattern(text: string): string {
  return text
    .replace(/^(L\d+:)?(\tcallq\t)0x[0-9a-f]+$/, "$1$20x{{[0-9a-f]+}}")
    .replace(/\$0x[0-9a-f]{8,}/g, "$$0x{{[0-9a-f]+}}")
    .replace(/%gs:0x[0-9a-f]+/g, "%gs:0x{{[0-9a-f]+}}");
}

/**
 * The order the loaded program has its functions in: libbpf appends each subprog (the exported
 * test's `.text` functions) the first time a call to it is met, and goes through the appended
 * one right away (tools/lib/bpf/libbpf.c bpf_object__reloc_code(), 7.2): depth first, by call
 * site; a subprog no call reaches is not loaded. Function indices, the main function first.
 */
export function libbpfOrder(p: Program): number[] {
  const order = [0];
  const visit = (fi: number) => {
    const f = p.funcs[fi]!;
    for (let k = f.start; k < f.end; k++) {
      const x = p.insns[k]!;
      if (x.code !== (BPF_JMP | BPF_CALL) || x.src !== BPF_PSEUDO_CALL) continue;
      const g = calleeOf(p, k, x.imm);
      if (g >= 0 && !order.includes(g)) { order.push(g); visit(g); }
    }
  };
  visit(0);
  return order;
}

/**
 * The `__jited()` patterns of one program: `func #i:` and every line of each function, in the
 * order the kernel will have them (libbpfOrder()), `...` between functions.
 */
export function jitedPatterns(img: Image, program: number): string[] {
  const { jit, program: p } = img.programs[program]!;
  return libbpfOrder(p).flatMap((fi, i) => [...(i > 0 ? ["..."] : []), `func #${i}:`, ...testProgsLines(jit.funcs[fi]!.image.bytes).map((l) => jitedPattern(l.text))]);
}

/** A C string literal (tabs as \t). */
const cString = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\t/g, "\\t")}"`;

export interface SelftestInfo {
  /** The test's name (a C identifier prefix). */
  readonly name: string;
  /** What was found, for the comment and __description. */
  readonly failure: string;
  /** The strategy the __jited lines are of, and where the counterexample came from (a replay command). */
  readonly strategy: string;
  readonly source: string;
}

/** The selftest file for the programs of an image (its scenario's programs, as the verifier sees them before its fix-ups). */
export function exportSelftest(img: Image, info: SelftestInfo): string {
  const base = ident(info.name);
  const comment = (text: string) => wrapLine(` * ${text.replace(/\*\//g, "* /")}`).map((l, i) => (i === 0 ? l : ` *${l.slice(2)}`));
  const out: string[] = [
    "// SPDX-License-Identifier: GPL-2.0",
    "/* Generated by stackcheck (export --selftest):",
    ...comment(`from ${info.source}`),
    ...comment(info.failure),
    ` *`,
    ` * The __jited() lines are stackcheck's listing of the ${info.strategy} design's JIT output (as`,
    ` * test_progs prints it); stackcheck's model helpers and kfuncs are each a call of`,
    ` * ${SELFTEST_HELPER.name}() here (the verifier and the x86-64 JIT inline neither, so the JIT's call`,
    ` * sequence is the same). Instructions written as .8byte are forms an older clang cannot`,
    ` * assemble; the comment above each function has the program in the verifier's syntax.`,
    ` */`,
    "",
    "#include <vmlinux.h>",
    "#include <bpf/bpf_helpers.h>",
    `#include "bpf_misc.h"`,
    "",
    "#if defined(__TARGET_ARCH_x86)",
  ];
  // (each bpf_prog once: a second attachment is the same program, and a selftest loads it once)
  bpfProgs(img).forEach(({ program: p }, pi) => {
    const cName = (fi: number) => (fi === 0 ? `${base}_${ident(p.name)}` : `${base}_${ident(p.name)}_${ident(p.funcs[fi]!.name)}`);
    const fn = (fi: number, head: string[]) => {
      const f = p.funcs[fi]!;
      const listing: string[] = [];
      for (let i = f.start; i < f.end; i++) {
        const t = printInsnAt(p.insns, i, CALL_NAMES);
        if (t !== undefined) listing.push(` * ${String(i - f.start).padStart(3)}: ${t}`);
      }
      out.push("", `/* ${p.name}/${f.name} (stack ${f.stackDepth}):`, ...listing, " */", ...head, `{`, `\tasm volatile ("\t\t\t\t\\`);
      out.push(...asmBody(p, fi, cName).map((l) => `${l}\t\\`));
      const usesHelper = p.insns.slice(f.start, f.end).some((x) => x.code === (BPF_JMP | BPF_CALL) && x.src !== BPF_PSEUDO_CALL);
      out.push(`"\t:`, usesHelper ? `\t: __imm(${SELFTEST_HELPER.name})` : "\t:", `\t: __clobber_all);`, `}`);
    };
    for (let fi = 1; fi < p.funcs.length; fi++) fn(fi, ["__used __naked static void " + `${cName(fi)}(void)`]);
    const sec = SECTION[attachOf(p)];
    fn(0, [
      `SEC(${cString(p.sleepable && sec.sleepable ? sec.sleepable : sec.plain)})`,
      `__description(${cString(`stackcheck ${info.name}: ${p.name}`)})`,
      "__success",
      "__arch_x86_64",
      ...jitedPatterns(img, pi).map((l) => `__jited(${cString(l)})`),
      `__naked void ${cName(0)}(void)`,
    ]);
  });
  out.push("", "#endif", "", `char _license[] SEC("license") = "GPL";`, "");
  return out.join("\n");
}

/**
 * test_loader.c's matching of expected messages (validate_msgs(), compile_regex(),
 * push_disasm_msg(), 7.2), for __jited() lines against a test_progs listing: each pattern is
 * searched from the end of the previous match (a plain substring, or a POSIX extended regular
 * expression where it has `{{...}}`); `...` lets the next one be anywhere further on, otherwise
 * it must match on the line after the previous match. The first failing pattern, or undefined.
 */
export function matchJited(log: string, patterns: readonly string[]): { index: number; pattern: string; why: "no match" | "wrong line" } | undefined {
  let at = 0, prevLine: number | undefined, onNextLine = true;
  for (const [index, pattern] of patterns.entries()) {
    if (pattern === "...") { onNextLine = false; continue; }
    let start: number, end: number;
    if (!pattern.includes("{{")) {
      start = log.indexOf(pattern, at);
      end = start + pattern.length;
    } else {
      const source = pattern.split(/(\{\{.*?\}\})/).map((part) => (part.startsWith("{{") && part.endsWith("}}") ? part.slice(2, -2) : part.replace(/[.[\]\\()*+?{}|^$]/g, "\\$&"))).join("");
      const re = new RegExp(source, "gm");
      re.lastIndex = at;
      const m = re.exec(log);
      start = m ? m.index : -1;
      end = m ? m.index + m[0].length : -1;
    }
    if (start < 0) return { index, pattern, why: "no match" };
    const line = log.slice(0, start).split("\n").length - 1;
    if (onNextLine && prevLine !== undefined && line !== prevLine + 1) return { index, pattern, why: "wrong line" };
    prevLine = line;
    at = end;
    onNextLine = true;
  }
  return undefined;
}
