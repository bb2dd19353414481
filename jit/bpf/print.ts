// Printing BPF in the kernel verifier / bpftool syntax: kernel/bpf/disasm.c print_bpf_insn() (7.2),
// its string tables and printf formats, without the leading "(%02x) " opcode column: `r1 = 42`,
// `w1 += w2`, `r1 s/= r2`, `r1 = (s8)r2`, `r1 = be16 r1`, `r1 = bswap64 r1`,
// `r0 = *(s16 *)(r10 -8)`, `lock *(u64 *)(r10 -8) += r1`, `r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)`,
// `r1 = 0x123456789abcdef0`, `if w1 > w2 goto pc+3`, `gotol pc+70000`, `may_goto pc+2`, `call pc+5`,
// `call bpf_helper#1`, `exit`. What disasm.c cannot print it prints as `BUG_…`, and so does this.
import {
  BPF_ABS, BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ATOMIC, BPF_CALL, BPF_CLASS, BPF_CMPXCHG, BPF_DIV, BPF_DW, BPF_END,
  BPF_EXIT, BPF_FETCH, BPF_IMM, BPF_IND, BPF_JA, BPF_JCOND, BPF_JMP, BPF_JMP32, BPF_LD, BPF_LD_IMM64, BPF_LDX,
  BPF_LOAD_ACQ, BPF_MAY_GOTO, BPF_MEM, BPF_MEMSX, BPF_MOD, BPF_MODE, BPF_MOV, BPF_NEG, BPF_OP, BPF_OR,
  BPF_PSEUDO_BTF_ID, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX,
  BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE, BPF_SIZE, BPF_SRC, BPF_ST, BPF_STORE_REL, BPF_STX, BPF_TO_BE,
  BPF_X, BPF_XCHG, BPF_XOR, BPF_ADDR_SPACE_CAST,
} from "./opcodes.ts";
import type { BpfInsn } from "./instruction.ts";
import type { Program } from "./program.ts";

// The string tables of disasm.c. Where C prints a NULL entry with %s, glibc and the kernel's
// vsnprintf print "(null)".
const ALU_STRING = ["+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "endian"]; // bpf_alu_string
const ALU_SIGN_STRING: Record<number, string> = { [BPF_DIV >> 4]: "s/=", [BPF_MOD >> 4]: "s%=" }; // bpf_alu_sign_string
const MOVSX_STRING = ["(s8)", "(s16)", undefined, "(s32)"]; // bpf_movsx_string, indexed (off >> 3) - 1
const ATOMIC_ALU_STRING: Record<number, string> = { [BPF_ADD >> 4]: "add", [BPF_AND >> 4]: "and", [BPF_OR >> 4]: "or", [BPF_XOR >> 4]: "xor" };
const JMP_STRING = ["jmp", "==", ">", ">=", "&", "!=", "s>", "s>=", "call", "exit", "<", "<=", "s<", "s<="]; // bpf_jmp_string
const LDST_STRING = ["u32", "u16", "u8", "u64"]; // bpf_ldst_string
const LDSX_STRING = ["s32", "s16", "s8"]; // bpf_ldsx_string
const CLASS_STRING = ["ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64"]; // bpf_class_string

/** Names for calls and 64-bit immediates, after disasm.c's bpf_insn_cbs (cb_call, cb_imm). */
export interface PrintCallbacks {
  helperName?(id: number): string | undefined;
  kfuncName?(btfId: number): string | undefined;
  /** cb_imm: the text of an ld_imm64's value (disasm.c prints `0x%llx`). */
  immName?(x: BpfInsn, full: bigint): string | undefined;
}

const str = (s: string | undefined) => s ?? "(null)";
const signed = (v: number) => (v >= 0 ? `+${v}` : `${v}`); // printf "%+d"
const hex32 = (v: number) => `0x${(v >>> 0).toString(16)}`; // printf "0x%x" of an int
const hex2 = (v: number) => v.toString(16).padStart(2, "0"); // printf "%02x"

/**
 * One instruction. An ld_imm64 needs its second half, `next` (printInsnAt() finds it); without it,
 * the line says so in disasm.c's BUG_ style.
 */
export function printInsn(x: BpfInsn, cbs: PrintCallbacks = {}, next?: BpfInsn): string {
  const cls = BPF_CLASS(x.code);
  const op = BPF_OP(x.code);
  if (cls === BPF_ALU || cls === BPF_ALU64) {
    const r = cls === BPF_ALU ? "w" : "r";
    if (op === BPF_END) {
      if (cls === BPF_ALU64) return `r${x.dst} = bswap${x.imm} r${x.dst}`; // print_bpf_bswap_insn
      return `r${x.dst} = ${BPF_SRC(x.code) === BPF_TO_BE ? "be" : "le"}${x.imm} r${x.dst}`; // print_bpf_end_insn
    }
    if (op === BPF_NEG) return `${r}${x.dst} = -${r}${x.dst}`;
    const isMovX = x.code === (BPF_ALU64 | BPF_MOV | BPF_X);
    if (isMovX && x.off === BPF_ADDR_SPACE_CAST) return `r${x.dst} = addr_space_cast(r${x.src}, ${(x.imm >>> 0) >>> 16}, ${x.imm & 0xffff})`;
    if (isMovX && x.off === -1) return `r${x.dst} = &(void __percpu *)(r${x.src})`; // BPF_ADDR_PERCPU
    const sdivSmod = (op === BPF_DIV || op === BPF_MOD) && x.off === 1;
    const s = str(sdivSmod ? ALU_SIGN_STRING[op >> 4] : ALU_STRING[op >> 4]);
    if (BPF_SRC(x.code) === BPF_X) {
      const movsx = op === BPF_MOV && (x.off === 8 || x.off === 16 || x.off === 32) ? str(MOVSX_STRING[(x.off >> 3) - 1]) : "";
      return `${r}${x.dst} ${s} ${movsx}${r}${x.src}`;
    }
    return `${r}${x.dst} ${s} ${x.imm}`;
  }
  const size = str(LDST_STRING[BPF_SIZE(x.code) >> 3]);
  const at = (reg: number) => `(r${reg} ${signed(x.off)})`;
  if (cls === BPF_STX) {
    const mode = BPF_MODE(x.code);
    if (mode === BPF_MEM) return `*(${size} *)${at(x.dst)} = r${x.src}`;
    if (mode === BPF_ATOMIC) {
      const a64 = BPF_SIZE(x.code) === BPF_DW ? "64" : "";
      const base = x.imm & ~BPF_FETCH;
      const isAlu = base === BPF_ADD || base === BPF_AND || base === BPF_OR || base === BPF_XOR;
      if (isAlu && !(x.imm & BPF_FETCH)) return `lock *(${size} *)${at(x.dst)} ${ALU_STRING[x.imm >> 4]} r${x.src}`;
      if (isAlu) return `r${x.src} = atomic${a64}_fetch_${ATOMIC_ALU_STRING[base >> 4]}((${size} *)${at(x.dst)}, r${x.src})`;
      if (x.imm === BPF_CMPXCHG) return `r0 = atomic${a64}_cmpxchg((${size} *)${at(x.dst)}, r0, r${x.src})`;
      if (x.imm === BPF_XCHG) return `r${x.src} = atomic${a64}_xchg((${size} *)${at(x.dst)}, r${x.src})`;
      if (x.imm === BPF_LOAD_ACQ) return `r${x.dst} = load_acquire((${size} *)${at(x.src)})`;
      if (x.imm === BPF_STORE_REL) return `store_release((${size} *)${at(x.dst)}, r${x.src})`;
    }
    return `BUG_${hex2(x.code)}`;
  }
  if (cls === BPF_ST) {
    if (BPF_MODE(x.code) === BPF_MEM) return `*(${size} *)${at(x.dst)} = ${x.imm}`;
    if (BPF_MODE(x.code) === 0xc0) return "nospec"; // BPF_NOSPEC, no UAPI
    return `BUG_st_${hex2(x.code)}`;
  }
  if (cls === BPF_LDX) {
    const mode = BPF_MODE(x.code);
    if (mode !== BPF_MEM && mode !== BPF_MEMSX) return `BUG_ldx_${hex2(x.code)}`;
    const t = str(mode === BPF_MEM ? LDST_STRING[BPF_SIZE(x.code) >> 3] : LDSX_STRING[BPF_SIZE(x.code) >> 3]);
    return `r${x.dst} = *(${t} *)${at(x.src)}`;
  }
  if (cls === BPF_LD) {
    const mode = BPF_MODE(x.code);
    if (mode === BPF_ABS) return `r0 = *(${size} *)skb[${x.imm}]`;
    if (mode === BPF_IND) return `r0 = *(${size} *)skb[r${x.src} + ${x.imm}]`;
    if (mode === BPF_IMM && BPF_SIZE(x.code) === BPF_DW) {
      if (next === undefined) return `BUG_ld_${hex2(x.code)}_without_second_half`;
      let full = (BigInt(next.imm >>> 0) << 32n) | BigInt(x.imm >>> 0);
      const isPtr = [BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_BTF_ID].includes(x.src);
      if (isPtr) full = 0n; // !allow_ptr_leaks: the loader's addresses are not shown
      return `r${x.dst} = ${cbs.immName?.(x, full) ?? `0x${full.toString(16)}`}`;
    }
    return `BUG_ld_${hex2(x.code)}`;
  }
  if (cls === BPF_JMP || cls === BPF_JMP32) {
    if (op === BPF_CALL) {
      if (x.src === BPF_PSEUDO_CALL) return `call pc${signed(x.imm)}`;
      const name = x.src === BPF_PSEUDO_KFUNC_CALL ? cbs.kfuncName?.(x.imm) ?? "kernel-function" : cbs.helperName?.(x.imm) ?? "unknown";
      return `call ${name}#${x.imm}`;
    }
    if (x.code === (BPF_JMP | BPF_JA)) return `goto pc${signed(x.off)}`;
    if (x.code === (BPF_JMP | BPF_JA | BPF_X)) return `gotox r${x.dst}`;
    if (x.code === (BPF_JMP | BPF_JCOND) && x.src === BPF_MAY_GOTO) return `may_goto pc${signed(x.off)}`;
    if (x.code === (BPF_JMP32 | BPF_JA)) return `gotol pc${signed(x.imm)}`;
    if (x.code === (BPF_JMP | BPF_EXIT)) return "exit";
    const r = cls === BPF_JMP32 ? "w" : "r";
    const s = str(JMP_STRING[op >> 4]);
    return BPF_SRC(x.code) === BPF_X
      ? `if ${r}${x.dst} ${s} ${r}${x.src} goto pc${signed(x.off)}`
      : `if ${r}${x.dst} ${s} ${hex32(x.imm)} goto pc${signed(x.off)}`;
  }
  return CLASS_STRING[cls]!;
}

/** Is insns[i] the second half of an ld_imm64 (which bpftool and the verifier log do not print)? */
export function isLdImm64SecondHalf(insns: readonly BpfInsn[], i: number): boolean {
  // It is when insns[i-1] is a first half. In the run of BPF_LD_IMM64 codes that ends at i-1, the
  // run's first one is a first half (what precedes it is not an ld_imm64), and halves alternate.
  let k = i - 1;
  while (k >= 0 && insns[k]!.code === BPF_LD_IMM64) k--;
  return (i - 1 - k) % 2 === 1;
}

/** Instruction `i` of a flat array, an ld_imm64 with its second half; undefined for a second half. */
export function printInsnAt(insns: readonly BpfInsn[], i: number, cbs: PrintCallbacks = {}): string | undefined {
  if (isLdImm64SecondHalf(insns, i)) return undefined;
  const x = insns[i]!;
  return printInsn(x, cbs, x.code === BPF_LD_IMM64 ? insns[i + 1] : undefined);
}

/** A whole program, one instruction per line with its index, each function under its name. */
export function printProgram(p: Program, cbs: PrintCallbacks = {}): string {
  const out: string[] = [];
  for (const f of p.funcs) {
    out.push(`${f.name}: ; stack ${f.stackDepth}`);
    for (let i = f.start; i < f.end; i++) {
      const line = printInsnAt(p.insns, i, cbs);
      if (line !== undefined) out.push(`${String(i).padStart(4)}: ${line}`);
    }
  }
  return out.join("\n");
}
