// The instructions the emitter writes, as it knows them while writing: the iced-x86 Code of each
// form and its operands, the read-only view of an iced `Instruction` that the machine's decoder
// reads (harness/machine/decode.ts convert()). The machine builds its decoded records for a JIT
// image from these instead of decoding the bytes it was just given (issue 14); the records are
// the same either way (test/unit/jit/forms.test.ts: every emitter form, and every function of
// generated programs under every built-in strategy). Only numbers from iced's enums are used
// here: encoding stays encode.ts's. iced-x86 is loaded the first time a form is made (by the
// machine, which has loaded it already), not with the emitter: the CLI starts without it.
import { createRequire } from "node:module";
import type * as Iced from "iced-x86";
import type { X86Reg } from "./encode.ts";
import { REG_NUM } from "./encode.ts";

/** iced's enums and the tables made from them, on first use. */
interface Enums {
  readonly C: Record<string, number>;
  /** iced's Register of each encoding-order register number at each width (bytes 1, 2, 4, 8). */
  readonly REGS: Readonly<Record<1 | 2 | 4 | 8, readonly number[]>>;
  readonly MEM_SIZE: Readonly<Record<1 | 2 | 4 | 8, number>>;
  readonly REG_NONE: number; readonly REG_GS: number; readonly MEM_UNKNOWN: number;
  readonly K_REGISTER: number; readonly K_MEMORY: number; readonly K_IMMEDIATE: number; readonly K_NEAR: number;
  readonly NOPD: number; readonly NOPW: number; readonly NOP_RM16: number; readonly NOP_RM32: number;
}
let enums: Enums | undefined;
function iced(): Enums {
  if (enums !== undefined) return enums;
  const { Code, MemorySize, OpKind, Register } = createRequire(import.meta.url)("iced-x86") as typeof Iced;
  const R = Register as unknown as Record<string, number>, C = Code as unknown as Record<string, number>;
  const low = ["AL", "CL", "DL", "BL", "SPL", "BPL", "SIL", "DIL"], w16 = ["AX", "CX", "DX", "BX", "SP", "BP", "SI", "DI"];
  const names = (f: (i: number) => string) => Array.from({ length: 16 }, (_, i) => R[f(i)]!);
  return (enums = {
    C,
    REGS: {
      1: names((i) => (i < 8 ? low[i]! : `R${i}L`)),
      2: names((i) => (i < 8 ? w16[i]! : `R${i}W`)),
      4: names((i) => (i < 8 ? `E${w16[i]!}` : `R${i}D`)),
      8: names((i) => (i < 8 ? `R${w16[i]!}` : `R${i}`)),
    },
    MEM_SIZE: { 1: MemorySize.UInt8, 2: MemorySize.UInt16, 4: MemorySize.UInt32, 8: MemorySize.UInt64 },
    REG_NONE: Register.None, REG_GS: Register.GS, MEM_UNKNOWN: MemorySize.Unknown,
    K_REGISTER: OpKind.Register, K_MEMORY: OpKind.Memory, K_IMMEDIATE: OpKind.Immediate32to64, K_NEAR: OpKind.NearBranch64,
    NOPD: C.Nopd!, NOPW: C.Nopw!, NOP_RM16: C.Nop_rm16!, NOP_RM32: C.Nop_rm32!,
  });
}

/** iced's Code by name; a name iced does not have is a bug here (forms.test.ts makes every form once). */
export function code(name: string): number {
  const c = iced().C[name];
  if (c === undefined) throw new Error(`iced-x86 has no Code '${name}'`);
  return c;
}

/** An operand of an emitted instruction. */
export type Operand =
  | { readonly kind: "reg"; readonly reg: number }
  | { readonly kind: "mem"; readonly base: number; readonly disp: bigint; readonly size: number; readonly gs?: boolean }
  | { readonly kind: "imm"; readonly value: bigint }
  | { readonly kind: "near"; readonly target: bigint };

/** A register operand: `r` at `width` bytes. */
export const reg = (r: X86Reg | number, width: 1 | 2 | 4 | 8 = 8): Operand => ({ kind: "reg", reg: iced().REGS[width][typeof r === "number" ? r : REG_NUM[r]]! });
/**
 * `[base + disp]` of `size` bytes (0: lea's, no size); `base` undefined: an absolute disp32.
 * The displacement as the bytes hold it: a disp8 or disp32 field, sign-extended (`| 0`), so a
 * value the field cannot hold is recorded as what the CPU will use, not as given.
 */
export const mem = (base: X86Reg | undefined, disp: number, size: 0 | 1 | 2 | 4 | 8, gs = false): Operand =>
  ({ kind: "mem", base: base === undefined ? iced().REG_NONE : iced().REGS[8][REG_NUM[base]]!, disp: BigInt.asUintN(64, BigInt(disp | 0)), size: size === 0 ? iced().MEM_UNKNOWN : iced().MEM_SIZE[size], gs });
/**
 * An immediate as the CPU extends it to the operand's size (a u64 sign-extended from the
 * encoded bits): a number is an imm32 field or narrower (`| 0`: what Code.u32() writes, the
 * narrower ones masked to the operand's size by the decoder); a bigint, movabs's imm64.
 */
export const immediate = (v: number | bigint): Operand => ({ kind: "imm", value: BigInt.asUintN(64, typeof v === "bigint" ? v : BigInt(v | 0)) });
/** A rel8 or rel32 field's displacement as the CPU reads it (sign-extended from its bits). */
export const relField = (rel: number, short: boolean): number => (short ? (rel << 24) >> 24 : rel | 0);
/** A near branch's absolute target. */
export const near = (target: bigint): Operand => ({ kind: "near", target: BigInt.asUintN(64, target) });

/**
 * One emitted instruction, with the members of iced's Instruction that the decoder reads
 * (convert()'s `InsnView`).
 */
export class EmittedInsn {
  readonly isInvalid = false;
  readonly opCount: number;
  readonly memoryBase: number;
  readonly memoryIndex: number;
  readonly memoryIndexScale = 1;
  readonly memoryDisplacement: bigint = 0n;
  readonly memorySize: number;
  readonly segmentPrefix: number;
  readonly nearBranch64: bigint = 0n;
  private readonly kinds: number[] = [];
  private readonly regs: number[] = [];
  private readonly imm: bigint = 0n;

  constructor(readonly code: number, readonly length: number, ops: readonly Operand[], readonly hasLockPrefix = false) {
    const e = iced();
    this.opCount = ops.length;
    this.memoryBase = this.memoryIndex = this.segmentPrefix = e.REG_NONE;
    this.memorySize = e.MEM_UNKNOWN;
    for (const o of ops) {
      if (o.kind === "reg") { this.kinds.push(e.K_REGISTER); this.regs.push(o.reg); continue; }
      this.regs.push(e.REG_NONE);
      if (o.kind === "imm") { this.kinds.push(e.K_IMMEDIATE); this.imm = o.value; }
      else if (o.kind === "near") { this.kinds.push(e.K_NEAR); this.nearBranch64 = o.target; }
      else {
        this.kinds.push(e.K_MEMORY);
        this.memoryBase = o.base; this.memoryDisplacement = o.disp; this.memorySize = o.size;
        if (o.gs === true) this.segmentPrefix = e.REG_GS;
      }
    }
  }

  opKind(i: number): number { return this.kinds[i]!; }
  opRegister(i: number): number { return this.regs[i]!; }
  immediate(_i: number): bigint { return this.imm; }
}

/** The nops emit_nops() writes for `len` bytes, as instructions (x86_nops[], asm/nops.h): 1 and 2 bytes have no operand, the rest a memory one. */
export function nopForms(len: number): EmittedInsn[] {
  const out: EmittedInsn[] = [];
  for (let left = len; left > 0;) {
    const n = Math.min(left, 11);
    // 66h-prefixed ones (2, 6, 10, 11 bytes) are the 16-bit nop
    const word = n === 2 || n === 6 || n === 10 || n === 11;
    const e = iced();
    out.push(n <= 2 ? new EmittedInsn(word ? e.NOPW : e.NOPD, n, []) : new EmittedInsn(word ? e.NOP_RM16 : e.NOP_RM32, n, [mem("rax", 0, word ? 2 : 4)]));
    left -= n;
  }
  return out;
}
