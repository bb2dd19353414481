// What jit-diff draws its cases from and what it compares, by the names the CLI and reports use
// (apart from harness/jit-diff.ts, so the command's options are defined without loading it).

/**
 * Cases: a third the campaign generator's plans (call graphs, program types, depths, private
 * stacks), a third programs over the whole instruction set (ld_imm64, mul/div/mod signed and
 * not, movsx, sign-extending loads, byte swaps, atomics, jmp32, gotol, loops and may_goto), a
 * third straight-line and subprog programs.
 */
export const DIFF_SOURCES = ["plan", "straight-line", "subprog", "isa"] as const;

/** What jit-diff compares, by the names reports use; `ignore` leaves some out (a version known to differ there). */
export const DIFF_FIELDS = ["image address", "bytes", "addrs[]", "fp_start/fp_end", "frame window", "private stacks", "refused"] as const;
export type DiffField = (typeof DIFF_FIELDS)[number];
