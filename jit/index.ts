// Public surface of the JIT side (the assembler facade and disassembly for now).
export { Assembler, AsmError } from "./asm.ts";
export type { Assembled, AssembledInsn, AssembleOptions, Target } from "./asm.ts";
export { disassemble, formatLine, formatListing } from "./disasm.ts";
export type { DisasmLine, DisasmOptions, Syntax, Symbolizer } from "./disasm.ts";
