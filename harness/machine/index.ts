// Public surface of the machine.
export { Machine, DEFAULT_STOP_ADDRESS, DEFAULT_MAX_STEPS } from "./machine.ts";
export type { MachineConfig, CallOptions, RunOptions, TruthEntry, MachineSnapshot, InternalWatcher } from "./machine.ts";
export type { RunResult, FinalResult, Completed, Fault, Unsupported, Hang, ControlFlowFailure, UnhandledException, Paused, Stopped } from "./results.ts";
export type { RegionDef, RegionKind, Region, FaultReason, Access } from "./memory.ts";
export { PAGE_SIZE } from "./memory.ts";
export { SymbolTable, symbolTableOf } from "./symbols.ts";
export type { SymbolDef, SymbolEntry, SymbolKind } from "./symbols.ts";
export type { Activation, Observer } from "./cpu.ts";
export { KERNEL_CS, KERNEL_DS, USER_CS, USER_DS, X86_TRAP_DE, X86_TRAP_NMI, X86_TRAP_BP, X86_TRAP_UD, X86_TRAP_DF, interruptName } from "./cpu.ts";
export { REG_NAMES, decodeCode, immediateOf, K_IMM, K_MEM, K_REG, RSP, RBP } from "./decode.ts";
export type { RegName, DInsn } from "./decode.ts";
export { CF, PF, AF, ZF, SF, TF, IF, DF, OF, FIXED } from "./flags.ts";
export { supportedCodes, FAMILIES, GENERIC_OP, Op, OP_NAMES } from "./isa.ts";
export { hex64, pairToAddr, toCanonical, toInternal } from "./addr.ts";
