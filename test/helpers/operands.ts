// Operands for driving the JIT's emitters (jit/x86/emit.ts) in property tests: registers,
// immediates and displacements spread over every encoding boundary (imm8/imm32, disp8/disp32).
import { fc } from "@fast-check/vitest";
import type { AluOp, ShiftOp, Width } from "../../jit/x86/emit.ts";
import { REG_NAMES } from "../../jit/x86/encode.ts";

export const reg = fc.constantFrom(...REG_NAMES);
/** BPF-usable destinations and sources (never rsp, which BPF registers never map to). */
export const gpr = fc.constantFrom(...REG_NAMES.filter((r) => r !== "rsp"));
export const imm32 = fc.oneof(fc.integer({ min: -130, max: 130 }), fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0, -1, 127, 128, -128, -129, 0x7fffffff, -0x80000000));
export const disp = fc.oneof(fc.integer({ min: -300, max: 300 }), fc.integer({ min: -0x80000000, max: 0x7fffffff }));
export const width = fc.constantFrom<Width>(1, 2, 4, 8);
export const alu = fc.constantFrom<AluOp>("add", "sub", "and", "or", "xor");
export const shift = fc.constantFrom<ShiftOp>("shl", "shr", "sar");
