// eBPF instructions as plain frozen values shaped like `struct bpf_insn`, and the DSL that builds
// them (`alu64.mov.imm(R1, 42)`, `stx(BPF_DW, R10, R1, -256)`, `jmp.jgt.imm(R1, 3, "out")`).
// Jump targets are labels, calls to subprogs name the function; both are resolved in one pass
// when the program is put together (program.ts), as cilium/ebpf's asm package does.
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_CALL, BPF_DW, BPF_EXIT, BPF_HELPER_CALL, BPF_JA, BPF_JEQ,
  BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT,
  BPF_K, BPF_LDX, BPF_LSH, BPF_MEM, BPF_MOV, BPF_NEG, BPF_OR, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, BPF_RSH,
  BPF_ST, BPF_STX, BPF_SUB, BPF_X, BPF_XOR, BPF_B, BPF_H, BPF_W, type Reg,
} from "./opcodes.ts";

export interface BpfInsn {
  readonly code: number; // u8
  readonly dst: number;  // 0..10
  readonly src: number;  // 0..10, or the pseudo-call kind
  readonly off: number;  // s16
  readonly imm: number;  // s32
}

/** A source item: an instruction, possibly with a symbolic target, or a label. */
export type Item =
  | { readonly kind: "insn"; readonly insn: BpfInsn; readonly jumpTo?: string; readonly callee?: string }
  | { readonly kind: "label"; readonly name: string };

export class InsnError extends Error {
  override name = "InsnError";
}

function checkReg(r: number, what: string): void {
  if (!Number.isInteger(r) || r < 0 || r > 10) throw new InsnError(`${what}: register r${r} does not exist (r0..r10)`);
}
function checkS16(v: number, what: string): void {
  if (!Number.isInteger(v) || v < -0x8000 || v > 0x7fff) throw new InsnError(`${what}: offset ${v} does not fit in s16`);
}
function checkS32(v: number, what: string): void {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new InsnError(`${what}: immediate ${v} does not fit in s32`);
}

/** A raw instruction, checked: every field in range. */
export function insn(code: number, dst: number, src: number, off: number, imm: number): BpfInsn {
  if (!Number.isInteger(code) || code < 0 || code > 0xff) throw new InsnError(`opcode ${code} is not a u8`);
  const what = `insn code 0x${code.toString(16).padStart(2, "0")}`;
  checkReg(src, what);
  checkReg(dst, what);
  checkS16(off, what);
  checkS32(imm, what);
  return Object.freeze({ code, dst, src, off, imm });
}

const item = (i: BpfInsn, extra: { jumpTo?: string; callee?: string } = {}): Item => ({ kind: "insn", insn: i, ...extra });

type AluFamily = { imm(dst: Reg, imm: number): Item; reg(dst: Reg, src: Reg): Item };
function aluOp(cls: number, op: number): AluFamily {
  return {
    imm: (dst, imm) => item(insn(cls | op | BPF_K, dst, 0, 0, imm)),
    reg: (dst, src) => item(insn(cls | op | BPF_X, dst, src, 0, 0)),
  };
}
function aluClass(cls: number) {
  return {
    mov: aluOp(cls, BPF_MOV), add: aluOp(cls, BPF_ADD), sub: aluOp(cls, BPF_SUB), and: aluOp(cls, BPF_AND),
    or: aluOp(cls, BPF_OR), xor: aluOp(cls, BPF_XOR), lsh: aluOp(cls, BPF_LSH), rsh: aluOp(cls, BPF_RSH),
    arsh: aluOp(cls, BPF_ARSH), neg: (dst: Reg) => item(insn(cls | BPF_NEG | BPF_K, dst, 0, 0, 0)),
  };
}
/** 64-bit ALU (`r1 += 22`). */
export const alu64 = aluClass(BPF_ALU64);
/** 32-bit ALU (`w1 += 22`; the upper half of the destination is zeroed). */
export const alu32 = aluClass(BPF_ALU);

export type Size = typeof BPF_B | typeof BPF_H | typeof BPF_W | typeof BPF_DW;
/** `dst = *(size *)(src + off)` */
export const ldx = (size: Size, dst: Reg, src: Reg, off: number): Item => item(insn(BPF_LDX | BPF_MEM | size, dst, src, off, 0));
/** `*(size *)(dst + off) = src` */
export const stx = (size: Size, dst: Reg, src: Reg, off: number): Item => item(insn(BPF_STX | BPF_MEM | size, dst, src, off, 0));
/** `*(size *)(dst + off) = imm` */
export const st = (size: Size, dst: Reg, off: number, imm: number): Item => item(insn(BPF_ST | BPF_MEM | size, dst, 0, off, imm));

type JumpFamily = { imm(dst: Reg, imm: number, target: string): Item; reg(dst: Reg, src: Reg, target: string): Item };
function jumpOp(cls: number, op: number): JumpFamily {
  return {
    imm: (dst, imm, target) => item(insn(cls | op | BPF_K, dst, 0, 0, imm), { jumpTo: target }),
    reg: (dst, src, target) => item(insn(cls | op | BPF_X, dst, src, 0, 0), { jumpTo: target }),
  };
}
function jumpClass(cls: number) {
  return {
    jeq: jumpOp(cls, BPF_JEQ), jne: jumpOp(cls, BPF_JNE), jgt: jumpOp(cls, BPF_JGT), jge: jumpOp(cls, BPF_JGE),
    jlt: jumpOp(cls, BPF_JLT), jle: jumpOp(cls, BPF_JLE), jsgt: jumpOp(cls, BPF_JSGT), jsge: jumpOp(cls, BPF_JSGE),
    jslt: jumpOp(cls, BPF_JSLT), jsle: jumpOp(cls, BPF_JSLE), jset: jumpOp(cls, BPF_JSET),
  };
}
/** Conditional jumps on 64-bit values, plus `ja` (goto). Forward targets only (validator). */
export const jmp = { ...jumpClass(BPF_JMP), ja: (target: string): Item => item(insn(BPF_JMP | BPF_JA, 0, 0, 0, 0), { jumpTo: target }) };
/** Conditional jumps on the low 32 bits. */
export const jmp32 = jumpClass(BPF_JMP32);

export const call = {
  /** A helper by its BPF_FUNC_* id (`call bpf_name#id`). */
  helper: (id: number): Item => item(insn(BPF_JMP | BPF_CALL, 0, BPF_HELPER_CALL, 0, id)),
  /** A kfunc by its BTF id (`BPF_PSEUDO_KFUNC_CALL`). */
  kfunc: (btfId: number): Item => item(insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, btfId)),
  /** A BPF-to-BPF call of a function of the same program, by name (`BPF_PSEUDO_CALL`, imm resolved later). */
  subprog: (name: string): Item => item(insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, 0), { callee: name }),
};

export const exit = (): Item => item(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
export const label = (name: string): Item => ({ kind: "label", name });
