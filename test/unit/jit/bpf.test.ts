// The eBPF instruction model: each builder pinned to the raw struct bpf_insn the kernel's
// macros (include/linux/filter.h) produce, the printer to kernel/bpf/disasm.c's output, and the
// program layout (labels, subprog calls) to the kernel's flat representation.
import { describe, expect, test } from "vitest";
import { alu32, alu64, call, exit, insn, jmp, jmp32, label, ldx, st, stx, type Item } from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R6, R10 } from "../../../jit/bpf/opcodes.ts";
import { printInsn, printProgram } from "../../../jit/bpf/print.ts";
import { program, ProgramError } from "../../../jit/bpf/program.ts";

const raw = (it: Item) => (it.kind === "insn" ? [it.insn.code, it.insn.dst, it.insn.src, it.insn.off, it.insn.imm] : []);
const text = (it: Item) => (it.kind === "insn" ? printInsn(it.insn, { helperName: (id) => (id === 8 ? "bpf_get_smp_processor_id" : undefined) }) : "");

describe("instructions encode as the kernel's macros and print as disasm.c", () => {
  const rows: [string, Item, number[], string][] = [
    ["BPF_MOV64_IMM(R1, 42)", alu64.mov.imm(R1, 42), [0xb7, 1, 0, 0, 42], "r1 = 42"],
    ["BPF_MOV64_REG(R1, R10)", alu64.mov.reg(R1, R10), [0xbf, 1, 10, 0, 0], "r1 = r10"],
    ["BPF_ALU64_IMM(BPF_ADD, R1, -8)", alu64.add.imm(R1, -8), [0x07, 1, 0, 0, -8], "r1 += -8"],
    ["BPF_ALU64_REG(BPF_SUB, R0, R2)", alu64.sub.reg(R0, R2), [0x1f, 0, 2, 0, 0], "r0 -= r2"],
    ["BPF_ALU64_REG(BPF_XOR, R0, R6)", alu64.xor.reg(R0, R6), [0xaf, 0, 6, 0, 0], "r0 ^= r6"],
    ["BPF_ALU64_IMM(BPF_AND, R0, 255)", alu64.and.imm(R0, 255), [0x57, 0, 0, 0, 255], "r0 &= 255"],
    ["BPF_ALU64_IMM(BPF_OR, R0, 1)", alu64.or.imm(R0, 1), [0x47, 0, 0, 0, 1], "r0 |= 1"],
    ["BPF_ALU64_IMM(BPF_LSH, R0, 3)", alu64.lsh.imm(R0, 3), [0x67, 0, 0, 0, 3], "r0 <<= 3"],
    ["BPF_ALU64_IMM(BPF_RSH, R0, 3)", alu64.rsh.imm(R0, 3), [0x77, 0, 0, 0, 3], "r0 >>= 3"],
    ["BPF_ALU64_IMM(BPF_ARSH, R0, 3)", alu64.arsh.imm(R0, 3), [0xc7, 0, 0, 0, 3], "r0 s>>= 3"],
    ["BPF_ALU64_IMM(BPF_NEG, R0, 0)", alu64.neg(R0), [0x87, 0, 0, 0, 0], "r0 = -r0"],
    ["BPF_MOV32_IMM(R0, -1)", alu32.mov.imm(R0, -1), [0xb4, 0, 0, 0, -1], "w0 = -1"],
    ["BPF_ALU32_REG(BPF_ADD, R0, R1)", alu32.add.reg(R0, R1), [0x0c, 0, 1, 0, 0], "w0 += w1"],
    ["BPF_ALU32_IMM(BPF_NEG, R2, 0)", alu32.neg(R2), [0x84, 2, 0, 0, 0], "w2 = -w2"],
    ["BPF_STX_MEM(BPF_DW, R10, R1, -256)", stx(BPF_DW, R10, R1, -256), [0x7b, 10, 1, -256, 0], "*(u64 *)(r10 -256) = r1"],
    ["BPF_STX_MEM(BPF_W, R10, R1, -4)", stx(BPF_W, R10, R1, -4), [0x63, 10, 1, -4, 0], "*(u32 *)(r10 -4) = r1"],
    ["BPF_STX_MEM(BPF_H, R1, R2, 6)", stx(BPF_H, R1, R2, 6), [0x6b, 1, 2, 6, 0], "*(u16 *)(r1 +6) = r2"],
    ["BPF_STX_MEM(BPF_B, R10, R2, -1)", stx(BPF_B, R10, R2, -1), [0x73, 10, 2, -1, 0], "*(u8 *)(r10 -1) = r2"],
    ["BPF_ST_MEM(BPF_DW, R10, -8, 42)", st(BPF_DW, R10, -8, 42), [0x7a, 10, 0, -8, 42], "*(u64 *)(r10 -8) = 42"],
    ["BPF_LDX_MEM(BPF_DW, R0, R10, -8)", ldx(BPF_DW, R0, R10, -8), [0x79, 0, 10, -8, 0], "r0 = *(u64 *)(r10 -8)"],
    ["BPF_LDX_MEM(BPF_W, R0, R1, 0)", ldx(BPF_W, R0, R1, 0), [0x61, 0, 1, 0, 0], "r0 = *(u32 *)(r1 +0)"],
    ["BPF_LDX_MEM(BPF_H, R0, R1, 2)", ldx(BPF_H, R0, R1, 2), [0x69, 0, 1, 2, 0], "r0 = *(u16 *)(r1 +2)"],
    ["BPF_LDX_MEM(BPF_B, R0, R1, 1)", ldx(BPF_B, R0, R1, 1), [0x71, 0, 1, 1, 0], "r0 = *(u8 *)(r1 +1)"],
    ["BPF_EMIT_CALL(BPF_FUNC_get_smp_processor_id)", call.helper(8), [0x85, 0, 0, 0, 8], "call bpf_get_smp_processor_id#8"],
    ["kfunc call", call.kfunc(12345), [0x85, 0, 2, 0, 12345], "call kernel-function#12345"],
    ["BPF_EXIT_INSN()", exit(), [0x95, 0, 0, 0, 0], "exit"],
  ];
  test.each(rows)("%s", (_, it, bytes, printed) => {
    expect(raw(it)).toEqual(bytes);
    expect(text(it)).toBe(printed);
  });

  test("jump immediates print as 0x%x of the s32, offsets as %+d", () => {
    const p = program({ name: "j", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [
      jmp.jgt.imm(R1, 3, "out"), jmp32.jeq.imm(R1, -1, "out"), jmp.jne.reg(R1, R2, "out"), jmp.ja("out"),
      label("out"), alu64.mov.imm(R0, 0), exit(),
    ] }] });
    expect(p.insns.map((x) => printInsn(x))).toEqual([
      "if r1 > 0x3 goto pc+3", "if w1 == 0xffffffff goto pc+2", "if r1 != r2 goto pc+1", "goto pc+0", "r0 = 0", "exit",
    ]);
    expect(p.insns.slice(0, 4).map((x) => x.code)).toEqual([0x25, 0x16, 0x5d, 0x05]);
  });

  test("a bad register, offset or immediate is refused when built", () => {
    expect(() => insn(0xb7, 11, 0, 0, 0)).toThrow("insn code 0xb7: register r11 does not exist (r0..r10)");
    expect(() => stx(BPF_DW, R10, R1, -40000)).toThrow("insn code 0x7b: offset -40000 does not fit in s16");
    expect(() => alu64.mov.imm(R1, 2 ** 31)).toThrow("insn code 0xb7: immediate 2147483648 does not fit in s32");
  });
});

describe("programs", () => {
  const src = {
    name: "prog", type: "kprobe" as const, funcs: [
      { name: "main", stackDepth: 256, body: [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -256), call.subprog("sub"), alu64.mov.imm(R0, 0), exit()] },
      { name: "sub", stackDepth: 32, body: [call.helper(8), exit()] },
    ],
  };

  test("functions are laid out flat; a subprog call's imm is relative to the next instruction", () => {
    const p = program(src);
    expect(p.funcs).toEqual([{ name: "main", start: 0, end: 5, stackDepth: 256 }, { name: "sub", start: 5, end: 7, stackDepth: 32 }]);
    expect(p.insns[2]).toEqual({ code: 0x85, dst: 0, src: 1, off: 0, imm: 2 });
    expect(printProgram(p)).toBe([
      "main: ; stack 256", "   0: r1 = 42", "   1: *(u64 *)(r10 -256) = r1", "   2: call pc+2", "   3: r0 = 0", "   4: exit",
      "sub: ; stack 32", "   5: call unknown#8", "   6: exit",
    ].join("\n"));
  });

  test("errors name the program, the function, the instruction and the label or callee", () => {
    const bad = (body: Item[]) => () => program({ name: "p", type: "kprobe", funcs: [{ name: "f", stackDepth: 0, body }] });
    expect(bad([jmp.ja("nowhere"), exit()])).toThrow(new ProgramError("program p, function f, insn 0: jump to unknown label 'nowhere'"));
    expect(bad([alu64.mov.imm(R0, 0), call.subprog("g"), exit()])).toThrow("program p, function f, insn 1: call of unknown function 'g'");
    expect(bad([label("a"), label("a"), exit()])).toThrow("label 'a' defined twice");
    expect(bad([label("a")])).toThrow("function f: no instructions");
    expect(() => program({ name: "p", type: "kprobe", funcs: [] })).toThrow("no functions");
  });
});
