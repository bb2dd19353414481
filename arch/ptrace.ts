// struct pt_regs (x86-64), as arch/x86/include/asm/ptrace.h (7.2) lays it out: 21 words, the
// callee-saved registers first (lowest address), then the callee-clobbered ones, orig_ax, and
// the hardware iret frame (ip, cs, flags, sp, ss) at the top. The one definition the synthetic
// kernel's entry code, both unwinders, the run oracles and the stack picture read offsets from.
//
// This folder holds x86 kernel ABI definitions shared by jit/ (the synthetic kernel), unwinder/
// and harness/, as the kernel's arch/x86/include/asm headers are shared by entry code, the
// unwinders and perf: owned by none of them, so that neither leaf imports the other.

/** Byte offsets of struct pt_regs's fields. */
export const PT_REGS = {
  r15: 0, r14: 8, r13: 16, r12: 24, bp: 32, bx: 40, r11: 48, r10: 56, r9: 64, r8: 72, ax: 80, cx: 88, dx: 96,
  si: 104, di: 112, orig_ax: 120, ip: 128, cs: 136, flags: 144, sp: 152, ss: 160,
} as const;
export type PtRegsField = keyof typeof PT_REGS;

/** sizeof(struct pt_regs). */
export const PT_REGS_SIZE = 168;
/** IRET_FRAME_OFFSET = offsetof(struct pt_regs, ip): where the hardware frame starts. */
export const IRET_FRAME_OFFSET = PT_REGS.ip;
/** IRET_FRAME_SIZE: ip, cs, flags, sp, ss. */
export const IRET_FRAME_SIZE = PT_REGS_SIZE - IRET_FRAME_OFFSET;

/** user_mode(regs): the saved CS has RPL 3. */
export function userMode(cs: bigint): boolean {
  return (cs & 3n) !== 0n;
}
