// eBPF instructions as plain frozen values shaped like `struct bpf_insn`, the items programs are
// written in (an instruction, possibly with a symbolic target, or a label), and the one checked
// raw constructor every family's DSL goes through (alu.ts, jump.ts, load-store.ts, atomic.ts,
// after cilium/ebpf's asm/alu.go, jump.go, load_store.go). insn.ts exports them all.
import type { BPF_B, BPF_DW, BPF_H, BPF_W } from "./opcodes.ts";

export interface BpfInsn {
  readonly code: number; // u8
  readonly dst: number;  // 0..10
  readonly src: number;  // 0..10, or the pseudo-call/pseudo-ld_imm64 kind
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

export type Size = typeof BPF_B | typeof BPF_H | typeof BPF_W | typeof BPF_DW;

/** How a refused instruction is named (built only then: every instruction of every program comes through insn()). */
const named = (code: number) => `insn code 0x${code.toString(16).padStart(2, "0")}`;

function checkReg(r: number, code: number): void {
  if (!Number.isInteger(r) || r < 0 || r > 10) throw new InsnError(`${named(code)}: register r${r} does not exist (r0..r10)`);
}
function checkS16(v: number, code: number): void {
  if (!Number.isInteger(v) || v < -0x8000 || v > 0x7fff) throw new InsnError(`${named(code)}: offset ${v} does not fit in s16`);
}
function checkS32(v: number, code: number): void {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new InsnError(`${named(code)}: immediate ${v} does not fit in s32`);
}

/** A raw instruction, checked: every field in range. */
export function insn(code: number, dst: number, src: number, off: number, imm: number): BpfInsn {
  if (!Number.isInteger(code) || code < 0 || code > 0xff) throw new InsnError(`opcode ${code} is not a u8`);
  checkReg(src, code);
  checkReg(dst, code);
  checkS16(off, code);
  checkS32(imm, code);
  return Object.freeze({ code, dst, src, off, imm });
}

/** An instruction item (for the family files). */
export const item = (i: BpfInsn, extra: { jumpTo?: string; callee?: string } = {}): Item => ({ kind: "insn", insn: i, ...extra });

export const label = (name: string): Item => ({ kind: "label", name });
