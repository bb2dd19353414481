// The eBPF instruction model and its DSL, one module to import: plain frozen values shaped like
// `struct bpf_insn` (instruction.ts) and one file of constructors per family, after cilium/ebpf's
// asm package: alu.ts (`alu64.add.imm(R1, 22)`, `alu32.sdiv.reg`, `alu64.movsx`, `end`, `bswap`),
// jump.ts (`jmp.jgt.imm(R1, 3, "out")`, `jmp32`, `gotol`, `may_goto`, `call`, `exit`),
// load-store.ts (`ldx`, `ldxsx`, `stx`, `st`, `ld_imm64`) and atomic.ts (`atomic.fetchAdd`, …).
// Jump targets are labels and subprog calls name the function; both are resolved in one pass
// when the program is put together (program.ts).
export { insn, InsnError, label } from "./instruction.ts";
export type { BpfInsn, Item, Size } from "./instruction.ts";
export { alu32, alu64, bswap, end } from "./alu.ts";
export type { AluFamily, SwapWidth } from "./alu.ts";
export { call, exit, gotol, jmp, jmp32, may_goto } from "./jump.ts";
export type { JumpFamily } from "./jump.ts";
export { ld_imm64, ldx, ldxsx, st, stx } from "./load-store.ts";
export { atomic } from "./atomic.ts";
export type { RmwSize } from "./atomic.ts";
