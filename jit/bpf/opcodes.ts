// eBPF opcode fields (include/uapi/linux/bpf.h, bpf_common.h, include/linux/filter.h; Linux 7.2).
// An instruction is `struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }`.

/** Instruction classes (code & 0x07). */
export const BPF_LD = 0x00, BPF_LDX = 0x01, BPF_ST = 0x02, BPF_STX = 0x03;
export const BPF_ALU = 0x04, BPF_JMP = 0x05, BPF_JMP32 = 0x06, BPF_ALU64 = 0x07;

/** Load/store sizes (code & 0x18). */
export const BPF_W = 0x00, BPF_H = 0x08, BPF_B = 0x10, BPF_DW = 0x18;
/**
 * Load/store modes (code & 0xe0). BPF_ABS/BPF_IND are the cBPF packet loads, BPF_MEMSX the
 * sign-extending loads, BPF_ATOMIC the atomic operations (the operation is in `imm`).
 */
export const BPF_IMM = 0x00, BPF_ABS = 0x20, BPF_IND = 0x40, BPF_MEM = 0x60, BPF_MEMSX = 0x80, BPF_ATOMIC = 0xc0;

/** Operand source (code & 0x08). */
export const BPF_K = 0x00, BPF_X = 0x08;
/** BPF_END's direction, in the source bit (bpf.h: cpu_to_le / cpu_to_be). */
export const BPF_TO_LE = 0x00, BPF_TO_BE = 0x08;

/** ALU operations (code & 0xf0). */
export const BPF_ADD = 0x00, BPF_SUB = 0x10, BPF_MUL = 0x20, BPF_DIV = 0x30, BPF_OR = 0x40, BPF_AND = 0x50;
export const BPF_LSH = 0x60, BPF_RSH = 0x70, BPF_NEG = 0x80, BPF_MOD = 0x90, BPF_XOR = 0xa0, BPF_MOV = 0xb0;
export const BPF_ARSH = 0xc0, BPF_END = 0xd0;

/** Jump operations (code & 0xf0). BPF_JCOND holds the conditional pseudo jumps (may_goto). */
export const BPF_JA = 0x00, BPF_JEQ = 0x10, BPF_JGT = 0x20, BPF_JGE = 0x30, BPF_JSET = 0x40, BPF_JNE = 0x50;
export const BPF_JSGT = 0x60, BPF_JSGE = 0x70, BPF_CALL = 0x80, BPF_EXIT = 0x90;
export const BPF_JLT = 0xa0, BPF_JLE = 0xb0, BPF_JSLT = 0xc0, BPF_JSLE = 0xd0, BPF_JCOND = 0xe0;

/** src_reg of a BPF_JMP|BPF_JCOND (enum bpf_cond_pseudo_jmp). */
export const BPF_MAY_GOTO = 0;

/**
 * Atomic operations, in `imm` of BPF_STX|BPF_ATOMIC: BPF_ADD/AND/OR/XOR, each optionally with
 * BPF_FETCH (the old value goes to src_reg), BPF_XCHG, BPF_CMPXCHG (R0 is compared and gets the
 * old value), BPF_LOAD_ACQ (dst_reg = *(src_reg + off)), BPF_STORE_REL (*(dst_reg + off) = src_reg).
 */
export const BPF_FETCH = 0x01;
export const BPF_XCHG = 0xe0 | BPF_FETCH, BPF_CMPXCHG = 0xf0 | BPF_FETCH;
export const BPF_LOAD_ACQ = 0x100, BPF_STORE_REL = 0x110;

/** src_reg of a call: a helper (0), a BPF-to-BPF call, a kfunc. */
export const BPF_HELPER_CALL = 0, BPF_PSEUDO_CALL = 1, BPF_PSEUDO_KFUNC_CALL = 2;

/** src_reg of the first half of an ld_imm64: a plain constant (0) or what the loader resolves (bpf.h). */
export const BPF_PSEUDO_MAP_FD = 1, BPF_PSEUDO_MAP_VALUE = 2, BPF_PSEUDO_BTF_ID = 3, BPF_PSEUDO_FUNC = 4;
export const BPF_PSEUDO_MAP_IDX = 5, BPF_PSEUDO_MAP_IDX_VALUE = 6;

/** `off` of BPF_ALU64|BPF_MOV|BPF_X that makes it an arena cast (bpf.h enum bpf_addr_space_cast). */
export const BPF_ADDR_SPACE_CAST = 1;

/** The code of an ld_imm64's first half (BPF_LD|BPF_IMM|BPF_DW); its second half has code 0. */
export const BPF_LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW;

export const BPF_CLASS = (code: number) => code & 0x07;
export const BPF_SIZE = (code: number) => code & 0x18;
export const BPF_MODE = (code: number) => code & 0xe0;
export const BPF_OP = (code: number) => code & 0xf0;
export const BPF_SRC = (code: number) => code & 0x08;

/** Registers: R0 result, R1-R5 arguments, R6-R9 callee-saved, R10 the read-only frame pointer. */
export const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R7 = 7, R8 = 8, R9 = 9, R10 = 10;
export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
/**
 * BPF_REG_AX (include/linux/filter.h, 7.2: MAX_BPF_REG + 1, after BPF_REG_PARAMS): the register
 * the verifier's fix-ups use (jit/bpf/fixups.ts), never a program as written; the JIT's r10.
 */
export const BPF_REG_AX = 12;

/** Bytes accessed by a load/store size. */
export function sizeBytes(size: number): 1 | 2 | 4 | 8 {
  switch (size) {
    case BPF_B: return 1;
    case BPF_H: return 2;
    case BPF_W: return 4;
    default: return 8;
  }
}

/** MAX_BPF_STACK (include/linux/filter.h) and BPF_PRIV_STACK_MIN_SIZE (kernel/bpf/verifier.c, 7.2). */
export const MAX_BPF_STACK = 512;
export const BPF_PRIV_STACK_MIN_SIZE = 64;
/** include/linux/bpf_verifier.h:409 (7.2; it was 8 up to 6.19). */
export const MAX_CALL_FRAMES = 16;
/** Instructions the verifier processes at most (include/linux/bpf.h:2412). */
export const BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000;
/** may_goto budgets (include/linux/bpf.h:2419): the count of the plain form and of the timed one x86-64 uses. */
export const BPF_MAX_LOOPS = 8 * 1024 * 1024, BPF_MAX_TIMED_LOOPS = 0xffff;
