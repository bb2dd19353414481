// The one declarative table of the x86-64 instructions the machine implements.
//
// Every iced-x86 `Code` listed here decodes to one of our own small op ids; anything else
// decodes to UNSUPPORTED and stops the run with the instruction text, address and symbol.
// The same table is what the JIT checks its output against ("we only emit what we emulate")
// and what the differential tests draw instruction forms from.
import { Code } from "../../jit/iced.ts";

/** Our op ids. Dense small integers: the machine dispatches through an array indexed by them. */
export const Op = {
  UNSUPPORTED: 0,
  MOV: 1, MOVZX: 2, MOVSX: 3, LEA: 4,
  ADD: 5, OR: 6, AND: 7, SUB: 8, XOR: 9, CMP: 10, TEST: 11,
  NEG: 12, NOT: 13, INC: 14, DEC: 15,
  SHL: 16, SHR: 17, SAR: 18,
  IMUL2: 19, IMUL3: 20,
  PUSH: 21, POP: 22,
  CALL: 23, CALL_IND: 24, RET: 25, LEAVE: 26,
  JMP: 27, JMP_IND: 28, JCC: 29,
  NOP: 30, INT3: 31, CLI: 32, STI: 33, PUSHF: 34, POPF: 35, IRETQ: 36, UD2: 37,
  // Specialised forms, chosen at decode time for the hottest shapes (same semantics as the
  // generic op; not in FAMILIES): 64-bit register moves, loads and stores, push/pop of a
  // register, and 64-bit add/sub/cmp with an immediate.
  MOV_RR64: 38, MOV_LOAD64: 39, MOV_STORE64: 40, PUSH_R: 41, POP_R: 42, ADD_RI64: 43, SUB_RI64: 44, CMP_RI64: 45,
  // What the Linux 7.2 JIT's lowerings add (BPF_DIV/MOD, BPF_END, BMI2 shifts, atomics, arena casts).
  DIV: 46, IDIV: 47, CBW: 48, CWD: 49, BSWAP: 50, ROL: 51, ROR: 52, SHLX: 53, SHRX: 54, SARX: 55,
  XADD: 56, XCHG: 57, CMPXCHG: 58, CMOVCC: 59,
  // More specialised forms: 64-bit register-register ALU ops, 32-bit xor of registers (the
  // zeroing idiom and BPF's ALU32 xor), and a register loaded with an immediate.
  ADD_RR64: 60, SUB_RR64: 61, AND_RR64: 62, OR_RR64: 63, XOR_RR64: 64, CMP_RR64: 65, TEST_RR64: 66, XOR_RR32: 67, MOV_RI: 68,
} as const;
export type OpId = (typeof Op)[keyof typeof Op];
export const OP_COUNT = 69;

/** The generic op of each op id: a specialised form's generic op, else itself (for code that reads instructions by meaning). */
export const GENERIC_OP: Uint8Array = (() => {
  const t = Uint8Array.from({ length: OP_COUNT }, (_, i) => i);
  t[Op.MOV_RR64] = Op.MOV; t[Op.MOV_LOAD64] = Op.MOV; t[Op.MOV_STORE64] = Op.MOV; t[Op.PUSH_R] = Op.PUSH; t[Op.POP_R] = Op.POP;
  t[Op.ADD_RI64] = Op.ADD; t[Op.SUB_RI64] = Op.SUB; t[Op.CMP_RI64] = Op.CMP;
  t[Op.ADD_RR64] = Op.ADD; t[Op.SUB_RR64] = Op.SUB; t[Op.AND_RR64] = Op.AND; t[Op.OR_RR64] = Op.OR; t[Op.XOR_RR64] = Op.XOR;
  t[Op.CMP_RR64] = Op.CMP; t[Op.TEST_RR64] = Op.TEST; t[Op.XOR_RR32] = Op.XOR; t[Op.MOV_RI] = Op.MOV;
  return t;
})();

/** Names for messages and tests, indexed by op id. */
export const OP_NAMES: readonly string[] = Object.entries(Op).sort((a, b) => a[1] - b[1]).map(([k]) => k.toLowerCase());

/**
 * One op and its forms. `lock`: the forms take a `lock` prefix when their destination is memory
 * (SDM Vol. 2A LOCK: ADD, AND, CMPXCHG, DEC, INC, NEG, NOT, OR, SUB, XADD, XCHG, XOR); anywhere
 * else the prefix raises #UD. `requires`: a CPUID feature the forms need (the machine emulates
 * them regardless; the differential tests draw them only on a host that has it).
 */
type Family = {
  readonly op: OpId; readonly codes: readonly string[]; readonly userMode: boolean;
  readonly lock?: true; readonly requires?: "bmi2";
};

const sizes = ["8", "16", "32", "64"] as const;
const aluForms = (m: string): string[] => [
  ...sizes.map((s) => `${m}_rm${s}_r${s}`),
  ...sizes.map((s) => `${m}_r${s}_rm${s}`),
  `${m}_AL_imm8`, `${m}_AX_imm16`, `${m}_EAX_imm32`, `${m}_RAX_imm32`,
  `${m}_rm8_imm8`, `${m}_rm16_imm16`, `${m}_rm32_imm32`, `${m}_rm64_imm32`,
  `${m}_rm16_imm8`, `${m}_rm32_imm8`, `${m}_rm64_imm8`,
];
const unaryForms = (m: string): string[] => sizes.map((s) => `${m}_rm${s}`);
const shiftForms = (m: string): string[] => sizes.flatMap((s) => [`${m}_rm${s}_1`, `${m}_rm${s}_CL`, `${m}_rm${s}_imm8`]);
const ccNames = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];
const jccNames = ccNames.map((c) => `J${c}`);
const cmovNames = ccNames.map((c) => `Cmov${c}`);
const wideSizes = ["16", "32", "64"] as const;

/**
 * The table. `userMode: false` marks privileged forms that cannot run in user space (they stay
 * covered by unit tests, not by the differential tests against the real CPU).
 */
export const FAMILIES: readonly Family[] = [
  { op: Op.MOV, userMode: true, codes: [
    ...sizes.map((s) => `Mov_rm${s}_r${s}`), ...sizes.map((s) => `Mov_r${s}_rm${s}`),
    "Mov_r8_imm8", "Mov_r16_imm16", "Mov_r32_imm32", "Mov_r64_imm64",
    "Mov_rm8_imm8", "Mov_rm16_imm16", "Mov_rm32_imm32", "Mov_rm64_imm32",
  ] },
  { op: Op.MOVZX, userMode: true, codes: ["Movzx_r16_rm8", "Movzx_r32_rm8", "Movzx_r64_rm8", "Movzx_r16_rm16", "Movzx_r32_rm16", "Movzx_r64_rm16"] },
  { op: Op.MOVSX, userMode: true, codes: ["Movsx_r16_rm8", "Movsx_r32_rm8", "Movsx_r64_rm8", "Movsx_r16_rm16", "Movsx_r32_rm16", "Movsx_r64_rm16", "Movsxd_r64_rm32"] },
  { op: Op.LEA, userMode: true, codes: ["Lea_r16_m", "Lea_r32_m", "Lea_r64_m"] },
  { op: Op.ADD, userMode: true, lock: true, codes: aluForms("Add") },
  { op: Op.OR, userMode: true, lock: true, codes: aluForms("Or") },
  { op: Op.AND, userMode: true, lock: true, codes: aluForms("And") },
  { op: Op.SUB, userMode: true, lock: true, codes: aluForms("Sub") },
  { op: Op.XOR, userMode: true, lock: true, codes: aluForms("Xor") },
  { op: Op.CMP, userMode: true, codes: aluForms("Cmp") },
  { op: Op.TEST, userMode: true, codes: [
    ...sizes.map((s) => `Test_rm${s}_r${s}`),
    "Test_AL_imm8", "Test_AX_imm16", "Test_EAX_imm32", "Test_RAX_imm32",
    "Test_rm8_imm8", "Test_rm16_imm16", "Test_rm32_imm32", "Test_rm64_imm32",
  ] },
  { op: Op.NEG, userMode: true, lock: true, codes: unaryForms("Neg") },
  { op: Op.NOT, userMode: true, lock: true, codes: unaryForms("Not") },
  { op: Op.INC, userMode: true, lock: true, codes: unaryForms("Inc") },
  { op: Op.DEC, userMode: true, lock: true, codes: unaryForms("Dec") },
  { op: Op.SHL, userMode: true, codes: shiftForms("Shl") },
  { op: Op.SHR, userMode: true, codes: shiftForms("Shr") },
  { op: Op.SAR, userMode: true, codes: shiftForms("Sar") },
  { op: Op.IMUL2, userMode: true, codes: ["Imul_r16_rm16", "Imul_r32_rm32", "Imul_r64_rm64"] },
  { op: Op.IMUL3, userMode: true, codes: ["Imul_r16_rm16_imm16", "Imul_r32_rm32_imm32", "Imul_r64_rm64_imm32", "Imul_r16_rm16_imm8", "Imul_r32_rm32_imm8", "Imul_r64_rm64_imm8"] },
  { op: Op.PUSH, userMode: true, codes: ["Push_r64", "Pushq_imm8", "Pushq_imm32", "Push_rm64"] },
  { op: Op.POP, userMode: true, codes: ["Pop_r64", "Pop_rm64"] },
  { op: Op.CALL, userMode: true, codes: ["Call_rel32_64"] },
  { op: Op.CALL_IND, userMode: true, codes: ["Call_rm64"] },
  { op: Op.RET, userMode: true, codes: ["Retnq", "Retnq_imm16"] },
  { op: Op.LEAVE, userMode: true, codes: ["Leaveq"] },
  { op: Op.JMP, userMode: true, codes: ["Jmp_rel8_64", "Jmp_rel32_64"] },
  { op: Op.JMP_IND, userMode: true, codes: ["Jmp_rm64"] },
  { op: Op.JCC, userMode: true, codes: jccNames.flatMap((j) => [`${j}_rel8_64`, `${j}_rel32_64`]) },
  // Reservednop_rm64_r64_0F1E: `ibhf` (f3 48 0f 1e f8), a hint that is a NOP where not implemented,
  // emitted by emit_spectre_bhb_barrier() for classic BPF.
  { op: Op.NOP, userMode: true, codes: ["Nopd", "Nopw", "Nopq", "Nop_rm16", "Nop_rm32", "Nop_rm64", "Endbr64", "Pause", "Lfence", "Reservednop_rm64_r64_0F1E"] },
  { op: Op.PUSHF, userMode: true, codes: ["Pushfq"] },
  { op: Op.POPF, userMode: true, codes: ["Popfq"] },
  // BPF_DIV/BPF_MOD (push rax/rdx; xor edx,edx or cdq/cqo; div/idiv r32/r64): every size.
  { op: Op.DIV, userMode: true, codes: unaryForms("Div") },
  { op: Op.IDIV, userMode: true, codes: unaryForms("Idiv") },
  // Sign extension of the accumulator: cbw/cwde/cdqe in place, cwd/cdq/cqo into rdx.
  { op: Op.CBW, userMode: true, codes: ["Cbw", "Cwde", "Cdqe"] },
  { op: Op.CWD, userMode: true, codes: ["Cwd", "Cdq", "Cqo"] },
  // BPF_END: bswap r32/r64; `ror r16, 8` for 16 bits. Bswap_r16 is refused (REFUSED below).
  { op: Op.BSWAP, userMode: true, codes: ["Bswap_r32", "Bswap_r64"] },
  // `rol r64, 32` in the arena's cast to user addresses; rotates take the shifts' count forms.
  { op: Op.ROL, userMode: true, codes: shiftForms("Rol") },
  { op: Op.ROR, userMode: true, codes: shiftForms("Ror") },
  // Shifts by a register on a CPU with BMI2 (emit_shiftx): VEX-encoded, no flags.
  { op: Op.SHLX, userMode: true, requires: "bmi2", codes: ["VEX_Shlx_r32_rm32_r32", "VEX_Shlx_r64_rm64_r64"] },
  { op: Op.SHRX, userMode: true, requires: "bmi2", codes: ["VEX_Shrx_r32_rm32_r32", "VEX_Shrx_r64_rm64_r64"] },
  { op: Op.SARX, userMode: true, requires: "bmi2", codes: ["VEX_Sarx_r32_rm32_r32", "VEX_Sarx_r64_rm64_r64"] },
  // Atomics: lock xadd (fetch add), xchg (implicitly locked), lock cmpxchg (cmpxchg and the
  // and/or/xor-with-fetch loop).
  { op: Op.XADD, userMode: true, lock: true, codes: sizes.map((s) => `Xadd_rm${s}_r${s}`) },
  { op: Op.XCHG, userMode: true, lock: true, codes: [...sizes.map((s) => `Xchg_rm${s}_r${s}`), "Xchg_r16_AX", "Xchg_r32_EAX", "Xchg_r64_RAX"] },
  { op: Op.CMPXCHG, userMode: true, lock: true, codes: sizes.map((s) => `Cmpxchg_rm${s}_r${s}`) },
  // cmove r64, r11: the arena's cast to user addresses (addr_space_cast); every condition and size.
  { op: Op.CMOVCC, userMode: true, codes: cmovNames.flatMap((c) => wideSizes.map((s) => `${c}_r${s}_rm${s}`)) },
  { op: Op.INT3, userMode: false, codes: ["Int3"] },
  { op: Op.UD2, userMode: false, codes: ["Ud2"] },
  { op: Op.CLI, userMode: false, codes: ["Cli"] },
  { op: Op.STI, userMode: false, codes: ["Sti"] },
  { op: Op.IRETQ, userMode: false, codes: ["Iretq"] },
];

/** The iced `Code` value of a form by its name (an error naming it if iced has none). */
export function codeValue(name: string): number {
  const v = (Code as unknown as Record<string, number | undefined>)[name];
  if (v === undefined) throw new Error(`isa.ts: iced-x86 has no Code.${name}`);
  return v;
}

/** iced `Code` value → our op id (0 = unsupported). Built once at load time. */
export const CODE_TO_OP: Uint8Array = (() => {
  let max = 0;
  for (const k of Object.keys(Code)) {
    const v = (Code as unknown as Record<string, number>)[k];
    if (typeof v === "number" && v > max) max = v;
  }
  const t = new Uint8Array(max + 1);
  for (const f of FAMILIES) for (const c of f.codes) t[codeValue(c)] = f.op;
  return t;
})();

/** Ops whose forms take a lock prefix with a memory destination (indexed by op id). */
export const LOCKABLE_OP: Uint8Array = (() => {
  const t = new Uint8Array(OP_COUNT);
  for (const f of FAMILIES) if (f.lock) t[f.op] = 1;
  return t;
})();

/**
 * Operand size in bytes of the forms whose operands are all implicit (iced reports none), by
 * iced Code.
 */
export const IMPLICIT_SIZE: ReadonlyMap<number, number> = new Map(
  ([["Cbw", 2], ["Cwde", 4], ["Cdqe", 8], ["Cwd", 2], ["Cdq", 4], ["Cqo", 8]] as const).map(([n, s]) => [codeValue(n), s]),
);

/**
 * Forms that decode but that the machine refuses on purpose, with the reason (the `unsupported`
 * result says it): what the SDM leaves undefined, the JIT never emits.
 */
export const REFUSED: ReadonlyMap<number, string> = new Map([
  [codeValue("Bswap_r16"), "bswap of a 16-bit register (its result is undefined: SDM Vol. 2A, BSWAP; the JIT uses `ror r16, 8`)"],
]);

/** Every supported iced Code name, with its op and whether it can run in user mode. */
export function supportedCodes(): { code: string; op: string; userMode: boolean }[] {
  return FAMILIES.flatMap((f) => f.codes.map((code) => ({ code, op: OP_NAMES[f.op]!, userMode: f.userMode })));
}

/** Jcc condition codes in encoding order (low nibble of 0x7x / 0x0f 0x8x). */
export const COND = { O: 0, NO: 1, B: 2, AE: 3, E: 4, NE: 5, BE: 6, A: 7, S: 8, NS: 9, P: 10, NP: 11, L: 12, GE: 13, LE: 14, G: 15 } as const;
export const JCC_CODE_TO_COND: ReadonlyMap<number, number> = new Map(
  jccNames.flatMap((j, cond) => [[codeValue(`${j}_rel8_64`), cond] as const, [codeValue(`${j}_rel32_64`), cond] as const]),
);
/** The condition of every form that has one: jcc and cmovcc. */
export const CODE_TO_COND: ReadonlyMap<number, number> = new Map([
  ...JCC_CODE_TO_COND,
  ...cmovNames.flatMap((c, cond) => wideSizes.map((s) => [codeValue(`${c}_r${s}_rm${s}`), cond] as const)),
]);
