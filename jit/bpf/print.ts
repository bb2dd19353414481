// Printing BPF in the kernel verifier / bpftool syntax, after kernel/bpf/disasm.c
// print_bpf_insn(): `r1 = 42`, `w1 += w2`, `*(u64 *)(r10 -256) = r1`, `r0 = *(u32 *)(r1 +8)`,
// `if r1 > 0x3 goto pc+2`, `goto pc-4`, `call pc+5`, `call bpf_helper#1`, `exit`.
import {
  BPF_ALU, BPF_ALU64, BPF_CALL, BPF_CLASS, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32, BPF_LDX, BPF_MEM, BPF_MODE, BPF_NEG,
  BPF_OP, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, BPF_SIZE, BPF_SRC, BPF_ST, BPF_STX, BPF_X,
} from "./opcodes.ts";
import type { BpfInsn } from "./insn.ts";
import type { Program } from "./program.ts";

// The string tables of disasm.c, indexed by op >> 4 and size >> 3.
const ALU_STRING = ["+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "endian"];
const JMP_STRING = ["jmp", "==", ">", ">=", "&", "!=", "s>", "s>=", "call", "exit", "<", "<=", "s<", "s<="];
const LDST_STRING = ["u32", "u16", "u8", "u64"];

/** Names for calls, after disasm.c's bpf_insn_cbs. */
export interface PrintCallbacks {
  helperName?(id: number): string | undefined;
  kfuncName?(btfId: number): string | undefined;
}

const signed = (v: number) => (v >= 0 ? `+${v}` : `${v}`); // printf "%+d"
const hex32 = (v: number) => `0x${(v >>> 0).toString(16)}`; // printf "0x%x" of an int

export function printInsn(x: BpfInsn, cbs: PrintCallbacks = {}): string {
  const cls = BPF_CLASS(x.code);
  const op = BPF_OP(x.code);
  if (cls === BPF_ALU || cls === BPF_ALU64) {
    const r = cls === BPF_ALU ? "w" : "r";
    if (op === BPF_NEG) return `${r}${x.dst} = -${r}${x.dst}`;
    const s = ALU_STRING[op >> 4] ?? `BUG_alu_${x.code.toString(16)}`;
    return BPF_SRC(x.code) === BPF_X ? `${r}${x.dst} ${s} ${r}${x.src}` : `${r}${x.dst} ${s} ${x.imm}`;
  }
  const size = LDST_STRING[BPF_SIZE(x.code) >> 3]!;
  if (cls === BPF_STX && BPF_MODE(x.code) === BPF_MEM) return `*(${size} *)(r${x.dst} ${signed(x.off)}) = r${x.src}`;
  if (cls === BPF_ST && BPF_MODE(x.code) === BPF_MEM) return `*(${size} *)(r${x.dst} ${signed(x.off)}) = ${x.imm}`;
  if (cls === BPF_LDX && BPF_MODE(x.code) === BPF_MEM) return `r${x.dst} = *(${size} *)(r${x.src} ${signed(x.off)})`;
  if (cls === BPF_JMP || cls === BPF_JMP32) {
    if (op === BPF_CALL) {
      if (x.src === BPF_PSEUDO_CALL) return `call pc${signed(x.imm)}`;
      const name = x.src === BPF_PSEUDO_KFUNC_CALL ? cbs.kfuncName?.(x.imm) ?? "kernel-function" : cbs.helperName?.(x.imm) ?? "unknown";
      return `call ${name}#${x.imm}`;
    }
    if (cls === BPF_JMP && op === BPF_JA) return `goto pc${signed(x.off)}`;
    if (cls === BPF_JMP && op === BPF_EXIT) return "exit";
    const r = cls === BPF_JMP32 ? "w" : "r";
    const s = JMP_STRING[op >> 4];
    return BPF_SRC(x.code) === BPF_X
      ? `if ${r}${x.dst} ${s} ${r}${x.src} goto pc${signed(x.off)}`
      : `if ${r}${x.dst} ${s} ${hex32(x.imm)} goto pc${signed(x.off)}`;
  }
  return `BUG_${x.code.toString(16).padStart(2, "0")}`;
}

/** A whole program, one instruction per line with its index, each function under its name. */
export function printProgram(p: Program, cbs: PrintCallbacks = {}): string {
  const out: string[] = [];
  for (const f of p.funcs) {
    out.push(`${f.name}: ; stack ${f.stackDepth}`);
    for (let i = f.start; i < f.end; i++) out.push(`${String(i).padStart(4)}: ${printInsn(p.insns[i]!, cbs)}`);
  }
  return out.join("\n");
}
