// eBPF opcode fields (include/uapi/linux/bpf.h, bpf_common.h). An instruction is
// `struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }`.

/** Instruction classes (code & 0x07). */
export const BPF_LD = 0x00, BPF_LDX = 0x01, BPF_ST = 0x02, BPF_STX = 0x03;
export const BPF_ALU = 0x04, BPF_JMP = 0x05, BPF_JMP32 = 0x06, BPF_ALU64 = 0x07;

/** Load/store sizes (code & 0x18) and modes (code & 0xe0). */
export const BPF_W = 0x00, BPF_H = 0x08, BPF_B = 0x10, BPF_DW = 0x18;
export const BPF_IMM = 0x00, BPF_MEM = 0x60;

/** Operand source (code & 0x08). */
export const BPF_K = 0x00, BPF_X = 0x08;

/** ALU operations (code & 0xf0). */
export const BPF_ADD = 0x00, BPF_SUB = 0x10, BPF_MUL = 0x20, BPF_DIV = 0x30, BPF_OR = 0x40, BPF_AND = 0x50;
export const BPF_LSH = 0x60, BPF_RSH = 0x70, BPF_NEG = 0x80, BPF_MOD = 0x90, BPF_XOR = 0xa0, BPF_MOV = 0xb0;
export const BPF_ARSH = 0xc0, BPF_END = 0xd0;

/** Jump operations (code & 0xf0). */
export const BPF_JA = 0x00, BPF_JEQ = 0x10, BPF_JGT = 0x20, BPF_JGE = 0x30, BPF_JSET = 0x40, BPF_JNE = 0x50;
export const BPF_JSGT = 0x60, BPF_JSGE = 0x70, BPF_CALL = 0x80, BPF_EXIT = 0x90;
export const BPF_JLT = 0xa0, BPF_JLE = 0xb0, BPF_JSLT = 0xc0, BPF_JSLE = 0xd0;

/** src_reg of a call: a helper (0), a BPF-to-BPF call, a kfunc. */
export const BPF_HELPER_CALL = 0, BPF_PSEUDO_CALL = 1, BPF_PSEUDO_KFUNC_CALL = 2;

export const BPF_CLASS = (code: number) => code & 0x07;
export const BPF_SIZE = (code: number) => code & 0x18;
export const BPF_MODE = (code: number) => code & 0xe0;
export const BPF_OP = (code: number) => code & 0xf0;
export const BPF_SRC = (code: number) => code & 0x08;

/** Registers: R0 result, R1-R5 arguments, R6-R9 callee-saved, R10 the read-only frame pointer. */
export const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R7 = 7, R8 = 8, R9 = 9, R10 = 10;
export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;

/** Bytes accessed by a load/store size. */
export function sizeBytes(size: number): 1 | 2 | 4 | 8 {
  switch (size) {
    case BPF_B: return 1;
    case BPF_H: return 2;
    case BPF_W: return 4;
    default: return 8;
  }
}

/** MAX_BPF_STACK and friends (include/linux/filter.h, include/linux/bpf.h). */
export const MAX_BPF_STACK = 512;
export const MAX_CALL_FRAMES = 8;
export const BPF_PRIV_STACK_MIN_SIZE = 64;
