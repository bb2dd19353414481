// Which opcodes exist (kernel/bpf/core.c:1820 bpf_opcode_in_insntable(), fed by BPF_INSN_MAP at
// core.c:1676, 7.2), and their names as the uapi spells them (`BPF_ALU64|BPF_MOV|BPF_X`), for
// error messages.
import {
  BPF_ABS, BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_ATOMIC, BPF_B, BPF_CALL, BPF_CLASS, BPF_DIV, BPF_DW,
  BPF_END, BPF_EXIT, BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JCOND, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP,
  BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT, BPF_K, BPF_LD, BPF_LDX, BPF_LSH, BPF_MEM,
  BPF_MEMSX, BPF_MOD, BPF_MODE, BPF_MOV, BPF_MUL, BPF_NEG, BPF_OP, BPF_OR, BPF_RSH, BPF_SIZE, BPF_SRC, BPF_ST,
  BPF_STX, BPF_SUB, BPF_TO_BE, BPF_TO_LE, BPF_W, BPF_X, BPF_XOR,
} from "./opcodes.ts";

const ALU_OPS = [BPF_ADD, BPF_SUB, BPF_AND, BPF_OR, BPF_LSH, BPF_RSH, BPF_XOR, BPF_MUL, BPF_MOV, BPF_ARSH, BPF_DIV, BPF_MOD];
const COND_OPS = [BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JLT, BPF_JGE, BPF_JLE, BPF_JSGT, BPF_JSLT, BPF_JSGE, BPF_JSLE, BPF_JSET];
const SIZES = [BPF_B, BPF_H, BPF_W, BPF_DW];

const TABLE: ReadonlySet<number> = new Set([
  // BPF_INSN_MAP: 32- and 64-bit ALU, register and immediate
  ...[BPF_ALU, BPF_ALU64].flatMap((c) => ALU_OPS.flatMap((op) => [c | op | BPF_X, c | op | BPF_K])),
  BPF_ALU | BPF_NEG, BPF_ALU64 | BPF_NEG, // INSN_2(ALU, NEG): the BPF_X forms do not exist
  BPF_ALU | BPF_END | BPF_TO_BE, BPF_ALU | BPF_END | BPF_TO_LE, BPF_ALU64 | BPF_END | BPF_TO_LE, // no ALU64 TO_BE
  BPF_JMP | BPF_CALL, BPF_JMP | BPF_EXIT,
  ...[BPF_JMP, BPF_JMP32].flatMap((c) => COND_OPS.flatMap((op) => [c | op | BPF_X, c | op | BPF_K])),
  BPF_JMP | BPF_JA, BPF_JMP32 | BPF_JA,
  ...SIZES.map((s) => BPF_STX | BPF_ATOMIC | s),
  ...SIZES.flatMap((s) => [BPF_STX | BPF_MEM | s, BPF_ST | BPF_MEM | s, BPF_LDX | BPF_MEM | s]),
  BPF_LDX | BPF_MEMSX | BPF_B, BPF_LDX | BPF_MEMSX | BPF_H, BPF_LDX | BPF_MEMSX | BPF_W,
  BPF_LD | BPF_IMM | BPF_DW,
  // "UAPI exposed, but rewritten opcodes. cBPF carry-over." and the two 7.x additions (core.c:1828-1836)
  ...[BPF_B, BPF_H, BPF_W].flatMap((s) => [BPF_LD | BPF_ABS | s, BPF_LD | BPF_IND | s]),
  BPF_JMP | BPF_JA | BPF_X, BPF_JMP | BPF_JCOND,
]);

/** bpf_opcode_in_insntable() (core.c:1820): is `code` an opcode the kernel knows at all? */
export const opcodeInInsnTable = (code: number): boolean => TABLE.has(code);

const CLASS_NAMES = ["BPF_LD", "BPF_LDX", "BPF_ST", "BPF_STX", "BPF_ALU", "BPF_JMP", "BPF_JMP32", "BPF_ALU64"];
const ALU_NAMES = ["BPF_ADD", "BPF_SUB", "BPF_MUL", "BPF_DIV", "BPF_OR", "BPF_AND", "BPF_LSH", "BPF_RSH", "BPF_NEG", "BPF_MOD", "BPF_XOR", "BPF_MOV", "BPF_ARSH", "BPF_END"];
const JMP_NAMES = ["BPF_JA", "BPF_JEQ", "BPF_JGT", "BPF_JGE", "BPF_JSET", "BPF_JNE", "BPF_JSGT", "BPF_JSGE", "BPF_CALL", "BPF_EXIT", "BPF_JLT", "BPF_JLE", "BPF_JSLT", "BPF_JSLE", "BPF_JCOND"];
const SIZE_NAMES = ["BPF_W", "BPF_H", "BPF_B", "BPF_DW"];
const MODE_NAMES: Record<number, string> = { [BPF_IMM]: "BPF_IMM", [BPF_ABS]: "BPF_ABS", [BPF_IND]: "BPF_IND", [BPF_MEM]: "BPF_MEM", [BPF_MEMSX]: "BPF_MEMSX", [BPF_ATOMIC]: "BPF_ATOMIC" };
const hex = (v: number) => `0x${v.toString(16).padStart(2, "0")}`;

/** The opcode's name from its fields: `BPF_ALU64|BPF_MOV|BPF_X`, `BPF_LDX|BPF_MEMSX|BPF_H`, `BPF_JMP|BPF_JCOND`. */
export function opcodeName(code: number): string {
  const cls = BPF_CLASS(code), op = BPF_OP(code), src = BPF_SRC(code) === BPF_X ? "BPF_X" : "BPF_K";
  const parts = [CLASS_NAMES[cls]!];
  if (cls === BPF_ALU || cls === BPF_ALU64) {
    parts.push(ALU_NAMES[op >> 4] ?? `op ${hex(op)}`);
    if (op === BPF_END) parts.push(BPF_SRC(code) === BPF_TO_BE ? "BPF_TO_BE" : "BPF_TO_LE");
    else if (op !== BPF_NEG || BPF_SRC(code) === BPF_X) parts.push(src);
  } else if (cls === BPF_JMP || cls === BPF_JMP32) {
    parts.push(JMP_NAMES[op >> 4] ?? `op ${hex(op)}`);
    const bare = op === BPF_CALL || op === BPF_EXIT || op === BPF_JCOND || op === BPF_JA;
    if (!bare || BPF_SRC(code) === BPF_X) parts.push(src);
  } else {
    parts.push(MODE_NAMES[BPF_MODE(code)] ?? `mode ${hex(BPF_MODE(code))}`, SIZE_NAMES[BPF_SIZE(code) >> 3]!);
  }
  return parts.join("|");
}
