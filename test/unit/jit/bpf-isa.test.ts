// The 7.2 instruction families beyond the original subset: each constructor pinned to the raw
// struct bpf_insn the kernel's macro (include/linux/filter.h) produces, and each printed line to
// kernel/bpf/disasm.c print_bpf_insn()'s format (without its "(%02x) " column).
import { describe, expect, test } from "vitest";
import {
  alu32, alu64, atomic, bswap, end, exit, gotol, insn, jmp, jmp32, label, ld_imm64, ldxsx, may_goto, type BpfInsn, type Item,
} from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R3, R10, type Reg } from "../../../jit/bpf/opcodes.ts";
import { isLdImm64SecondHalf, printInsn, printInsnAt, printProgram } from "../../../jit/bpf/print.ts";
import { program } from "../../../jit/bpf/program.ts";

const raw = (it: Item) => (it.kind === "insn" ? [it.insn.code, it.insn.dst, it.insn.src, it.insn.off, it.insn.imm] : []);
const text = (it: Item) => (it.kind === "insn" ? printInsn(it.insn) : "");

describe("ALU: mul, div, mod, signed div/mod (off 1), movsx, endianness and byte swaps", () => {
  const rows: [string, Item, number[], string][] = [
    ["BPF_ALU64_IMM(BPF_MUL, R1, 3)", alu64.mul.imm(R1, 3), [0x27, 1, 0, 0, 3], "r1 *= 3"],
    ["BPF_ALU64_REG(BPF_MUL, R1, R2)", alu64.mul.reg(R1, R2), [0x2f, 1, 2, 0, 0], "r1 *= r2"],
    ["BPF_ALU64_IMM(BPF_DIV, R1, 10)", alu64.div.imm(R1, 10), [0x37, 1, 0, 0, 10], "r1 /= 10"],
    ["BPF_ALU64_REG(BPF_DIV, R1, R2)", alu64.div.reg(R1, R2), [0x3f, 1, 2, 0, 0], "r1 /= r2"],
    ["BPF_ALU64_IMM(BPF_MOD, R1, 10)", alu64.mod.imm(R1, 10), [0x97, 1, 0, 0, 10], "r1 %= 10"],
    ["BPF_ALU64_REG(BPF_MOD, R1, R2)", alu64.mod.reg(R1, R2), [0x9f, 1, 2, 0, 0], "r1 %= r2"],
    ["BPF_ALU64_REG_OFF(BPF_DIV, R1, R2, 1)", alu64.sdiv.reg(R1, R2), [0x3f, 1, 2, 1, 0], "r1 s/= r2"],
    ["BPF_ALU64_IMM_OFF(BPF_DIV, R1, -3, 1)", alu64.sdiv.imm(R1, -3), [0x37, 1, 0, 1, -3], "r1 s/= -3"],
    ["BPF_ALU64_REG_OFF(BPF_MOD, R1, R2, 1)", alu64.smod.reg(R1, R2), [0x9f, 1, 2, 1, 0], "r1 s%= r2"],
    ["BPF_ALU64_IMM_OFF(BPF_MOD, R1, -7, 1)", alu64.smod.imm(R1, -7), [0x97, 1, 0, 1, -7], "r1 s%= -7"],
    ["BPF_ALU32_IMM(BPF_MUL, R3, -1)", alu32.mul.imm(R3, -1), [0x24, 3, 0, 0, -1], "w3 *= -1"],
    ["BPF_ALU32_REG(BPF_MUL, R1, R2)", alu32.mul.reg(R1, R2), [0x2c, 1, 2, 0, 0], "w1 *= w2"],
    ["BPF_ALU32_IMM(BPF_DIV, R3, 10)", alu32.div.imm(R3, 10), [0x34, 3, 0, 0, 10], "w3 /= 10"],
    ["BPF_ALU32_REG(BPF_DIV, R1, R2)", alu32.div.reg(R1, R2), [0x3c, 1, 2, 0, 0], "w1 /= w2"],
    ["BPF_ALU32_IMM(BPF_MOD, R3, 10)", alu32.mod.imm(R3, 10), [0x94, 3, 0, 0, 10], "w3 %= 10"],
    ["BPF_ALU32_REG(BPF_MOD, R1, R2)", alu32.mod.reg(R1, R2), [0x9c, 1, 2, 0, 0], "w1 %= w2"],
    ["BPF_ALU32_REG_OFF(BPF_DIV, R1, R2, 1)", alu32.sdiv.reg(R1, R2), [0x3c, 1, 2, 1, 0], "w1 s/= w2"],
    ["BPF_ALU32_IMM_OFF(BPF_DIV, R1, 7, 1)", alu32.sdiv.imm(R1, 7), [0x34, 1, 0, 1, 7], "w1 s/= 7"],
    ["BPF_ALU32_REG_OFF(BPF_MOD, R1, R2, 1)", alu32.smod.reg(R1, R2), [0x9c, 1, 2, 1, 0], "w1 s%= w2"],
    ["BPF_ALU32_IMM_OFF(BPF_MOD, R1, 7, 1)", alu32.smod.imm(R1, 7), [0x94, 1, 0, 1, 7], "w1 s%= 7"],
    ["BPF_MOVSX64_REG(R1, R2, 8)", alu64.movsx(R1, R2, 8), [0xbf, 1, 2, 8, 0], "r1 = (s8)r2"],
    ["BPF_MOVSX64_REG(R1, R2, 16)", alu64.movsx(R1, R2, 16), [0xbf, 1, 2, 16, 0], "r1 = (s16)r2"],
    ["BPF_MOVSX64_REG(R1, R2, 32)", alu64.movsx(R1, R2, 32), [0xbf, 1, 2, 32, 0], "r1 = (s32)r2"],
    ["BPF_MOVSX32_REG(R1, R2, 8)", alu32.movsx(R1, R2, 8), [0xbc, 1, 2, 8, 0], "w1 = (s8)w2"],
    ["BPF_MOVSX32_REG(R1, R2, 16)", alu32.movsx(R1, R2, 16), [0xbc, 1, 2, 16, 0], "w1 = (s16)w2"],
    ["BPF_ENDIAN(BPF_TO_BE, R1, 16)", end.toBe(R1, 16), [0xdc, 1, 0, 0, 16], "r1 = be16 r1"],
    ["BPF_ENDIAN(BPF_TO_BE, R1, 32)", end.toBe(R1, 32), [0xdc, 1, 0, 0, 32], "r1 = be32 r1"],
    ["BPF_ENDIAN(BPF_TO_BE, R1, 64)", end.toBe(R1, 64), [0xdc, 1, 0, 0, 64], "r1 = be64 r1"],
    ["BPF_ENDIAN(BPF_TO_LE, R2, 16)", end.toLe(R2, 16), [0xd4, 2, 0, 0, 16], "r2 = le16 r2"],
    ["BPF_ENDIAN(BPF_TO_LE, R2, 32)", end.toLe(R2, 32), [0xd4, 2, 0, 0, 32], "r2 = le32 r2"],
    ["BPF_ENDIAN(BPF_TO_LE, R2, 64)", end.toLe(R2, 64), [0xd4, 2, 0, 0, 64], "r2 = le64 r2"],
    ["BPF_BSWAP(R3, 16)", bswap(R3, 16), [0xd7, 3, 0, 0, 16], "r3 = bswap16 r3"],
    ["BPF_BSWAP(R3, 32)", bswap(R3, 32), [0xd7, 3, 0, 0, 32], "r3 = bswap32 r3"],
    ["BPF_BSWAP(R3, 64)", bswap(R3, 64), [0xd7, 3, 0, 0, 64], "r3 = bswap64 r3"],
  ];
  test.each(rows)("%s", (_, it, bytes, printed) => {
    expect(raw(it)).toEqual(bytes);
    expect(text(it)).toBe(printed);
  });

  test("a movsx width the class does not have, or a swap width that is not 16/32/64, is refused when built", () => {
    expect(() => alu32.movsx(R1, R2, 32 as 8)).toThrow("alu32.movsx: 32 is not a width of this class (8, 16)");
    expect(() => alu64.movsx(R1, R2, 4 as 8)).toThrow("alu64.movsx: 4 is not a width of this class (8, 16, 32)");
    expect(() => bswap(R1, 8 as 16)).toThrow("bswap: width 8 is not 16, 32 or 64");
    expect(() => end.toBe(R1, 24 as 16)).toThrow("end.toBe: width 24 is not 16, 32 or 64");
  });
});

describe("loads: sign-extending loads and ld_imm64", () => {
  const rows: [string, Item, number[], string][] = [
    ["BPF_LDX_MEMSX(BPF_B, R0, R10, -1)", ldxsx(BPF_B, R0, R10, -1), [0x91, 0, 10, -1, 0], "r0 = *(s8 *)(r10 -1)"],
    ["BPF_LDX_MEMSX(BPF_H, R0, R10, -8)", ldxsx(BPF_H, R0, R10, -8), [0x89, 0, 10, -8, 0], "r0 = *(s16 *)(r10 -8)"],
    ["BPF_LDX_MEMSX(BPF_W, R2, R1, 4)", ldxsx(BPF_W, R2, R1, 4), [0x81, 2, 1, 4, 0], "r2 = *(s32 *)(r1 +4)"],
  ];
  test.each(rows)("%s", (_, it, bytes, printed) => {
    expect(raw(it)).toEqual(bytes);
    expect(text(it)).toBe(printed);
  });
  test("ldxsx has no 8-byte form", () => {
    expect(() => ldxsx(BPF_DW as typeof BPF_W, R0, R10, -8)).toThrow("BPF_MEMSX has no BPF_DW form");
  });

  test("BPF_LD_IMM64: two instructions, the second with code 0 and the high half in imm; printed as one line, 0x%llx", () => {
    const cases: [bigint, number[][], string][] = [
      [0x123456789abcdef0n, [[0x18, 1, 0, 0, 0x9abcdef0 | 0], [0, 0, 0, 0, 0x12345678]], "r1 = 0x123456789abcdef0"],
      [-1n, [[0x18, 1, 0, 0, -1], [0, 0, 0, 0, -1]], "r1 = 0xffffffffffffffff"],
      [0n, [[0x18, 1, 0, 0, 0], [0, 0, 0, 0, 0]], "r1 = 0x0"],
      [0x80000000n, [[0x18, 1, 0, 0, -0x80000000], [0, 0, 0, 0, 0]], "r1 = 0x80000000"],
      [1n << 63n, [[0x18, 1, 0, 0, 0], [0, 0, 0, 0, -0x80000000]], "r1 = 0x8000000000000000"],
    ];
    for (const [v, bytes, printed] of cases) {
      const [a, b] = ld_imm64(R1, v);
      expect([raw(a), raw(b)]).toEqual(bytes);
      const x = (a as { insn: BpfInsn }).insn, y = (b as { insn: BpfInsn }).insn;
      expect(printInsn(x, {}, y)).toBe(printed);
      expect(printInsnAt([x, y], 0)).toBe(printed);
      expect(printInsnAt([x, y], 1)).toBeUndefined();
    }
    expect(() => ld_imm64(R1, 1n << 64n)).toThrow("does not fit in 64 bits");
    expect(printInsn((ld_imm64(R1, 1n)[0] as { insn: BpfInsn }).insn)).toBe("BUG_ld_18_without_second_half");
  });

  test("the loader's pseudo values print as 0 (disasm.c hides them without allow_ptr_leaks); cb_imm names them", () => {
    const mapFd = insn(0x18, 1, 1, 0, 7), hi = insn(0, 0, 0, 0, 0);
    expect(printInsn(mapFd, {}, hi)).toBe("r1 = 0x0");
    expect(printInsn(insn(0x18, 1, 4, 0, 7), {}, hi)).toBe("r1 = 0x7"); // BPF_PSEUDO_FUNC is not a pointer to hide
    expect(printInsn(mapFd, { immName: (x) => `map[id:${x.imm}]` }, hi)).toBe("r1 = map[id:7]");
  });

  test("second halves pair from the first ld_imm64 of a run, even when a second half has code 0x18", () => {
    const ins = [insn(0x18, 1, 0, 0, 1), insn(0x18, 0, 0, 0, 0), insn(0x18, 2, 0, 0, 2), insn(0, 0, 0, 0, 0)];
    expect(ins.map((_, i) => isLdImm64SecondHalf(ins, i))).toEqual([false, true, false, true]);
  });
});

describe("atomics: BPF_STX|BPF_ATOMIC, the operation in imm", () => {
  const rows: [string, Item, number[], string][] = [
    ["BPF_ATOMIC_OP(BPF_DW, BPF_ADD, R10, R1, -8)", atomic.add(BPF_DW, R10, R1, -8), [0xdb, 10, 1, -8, 0x00], "lock *(u64 *)(r10 -8) += r1"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_AND, R10, R1, -4)", atomic.and(BPF_W, R10, R1, -4), [0xc3, 10, 1, -4, 0x50], "lock *(u32 *)(r10 -4) &= r1"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_OR, R10, R2, -16)", atomic.or(BPF_DW, R10, R2, -16), [0xdb, 10, 2, -16, 0x40], "lock *(u64 *)(r10 -16) |= r2"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_XOR, R1, R2, 8)", atomic.xor(BPF_W, R1, R2, 8), [0xc3, 1, 2, 8, 0xa0], "lock *(u32 *)(r1 +8) ^= r2"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_ADD | BPF_FETCH, R10, R1, -8)", atomic.fetchAdd(BPF_DW, R10, R1, -8), [0xdb, 10, 1, -8, 0x01], "r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_AND | BPF_FETCH, R10, R1, -4)", atomic.fetchAnd(BPF_W, R10, R1, -4), [0xc3, 10, 1, -4, 0x51], "r1 = atomic_fetch_and((u32 *)(r10 -4), r1)"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_OR | BPF_FETCH, R10, R3, -8)", atomic.fetchOr(BPF_DW, R10, R3, -8), [0xdb, 10, 3, -8, 0x41], "r3 = atomic64_fetch_or((u64 *)(r10 -8), r3)"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_XOR | BPF_FETCH, R10, R3, -8)", atomic.fetchXor(BPF_W, R10, R3, -8), [0xc3, 10, 3, -8, 0xa1], "r3 = atomic_fetch_xor((u32 *)(r10 -8), r3)"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_XCHG, R10, R1, -8)", atomic.xchg(BPF_DW, R10, R1, -8), [0xdb, 10, 1, -8, 0xe1], "r1 = atomic64_xchg((u64 *)(r10 -8), r1)"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_XCHG, R10, R1, -4)", atomic.xchg(BPF_W, R10, R1, -4), [0xc3, 10, 1, -4, 0xe1], "r1 = atomic_xchg((u32 *)(r10 -4), r1)"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_CMPXCHG, R10, R1, -8)", atomic.cmpxchg(BPF_DW, R10, R1, -8), [0xdb, 10, 1, -8, 0xf1], "r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_CMPXCHG, R10, R2, -4)", atomic.cmpxchg(BPF_W, R10, R2, -4), [0xc3, 10, 2, -4, 0xf1], "r0 = atomic_cmpxchg((u32 *)(r10 -4), r0, r2)"],
    ["BPF_ATOMIC_OP(BPF_B, BPF_LOAD_ACQ, R1, R10, -1)", atomic.loadAcquire(BPF_B, R1, R10, -1), [0xd3, 1, 10, -1, 0x100], "r1 = load_acquire((u8 *)(r10 -1))"],
    ["BPF_ATOMIC_OP(BPF_H, BPF_LOAD_ACQ, R1, R10, -2)", atomic.loadAcquire(BPF_H, R1, R10, -2), [0xcb, 1, 10, -2, 0x100], "r1 = load_acquire((u16 *)(r10 -2))"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_LOAD_ACQ, R1, R10, -4)", atomic.loadAcquire(BPF_W, R1, R10, -4), [0xc3, 1, 10, -4, 0x100], "r1 = load_acquire((u32 *)(r10 -4))"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_LOAD_ACQ, R1, R10, -8)", atomic.loadAcquire(BPF_DW, R1, R10, -8), [0xdb, 1, 10, -8, 0x100], "r1 = load_acquire((u64 *)(r10 -8))"],
    ["BPF_ATOMIC_OP(BPF_B, BPF_STORE_REL, R10, R1, -1)", atomic.storeRelease(BPF_B, R10, R1, -1), [0xd3, 10, 1, -1, 0x110], "store_release((u8 *)(r10 -1), r1)"],
    ["BPF_ATOMIC_OP(BPF_H, BPF_STORE_REL, R10, R1, -2)", atomic.storeRelease(BPF_H, R10, R1, -2), [0xcb, 10, 1, -2, 0x110], "store_release((u16 *)(r10 -2), r1)"],
    ["BPF_ATOMIC_OP(BPF_W, BPF_STORE_REL, R10, R1, -4)", atomic.storeRelease(BPF_W, R10, R1, -4), [0xc3, 10, 1, -4, 0x110], "store_release((u32 *)(r10 -4), r1)"],
    ["BPF_ATOMIC_OP(BPF_DW, BPF_STORE_REL, R10, R1, -8)", atomic.storeRelease(BPF_DW, R10, R1, -8), [0xdb, 10, 1, -8, 0x110], "store_release((u64 *)(r10 -8), r1)"],
  ];
  test.each(rows)("%s", (_, it, bytes, printed) => {
    expect(raw(it)).toEqual(bytes);
    expect(text(it)).toBe(printed);
  });
  test("read-modify-write atomics take W or DW only", () => {
    expect(() => atomic.fetchAdd(BPF_B as typeof BPF_W, R10, R1, -1)).toThrow("atomic.fetchAdd: read-modify-write atomics take BPF_W or BPF_DW");
    expect(() => atomic.cmpxchg(BPF_H as typeof BPF_W, R10, R1, -2)).toThrow("atomic.cmpxchg: read-modify-write atomics take BPF_W or BPF_DW");
  });
});

describe("jumps: every JMP32 condition, JSET, gotol, may_goto, backward labels", () => {
  const ops = [
    ["jeq", 0x10, "=="], ["jne", 0x50, "!="], ["jgt", 0x20, ">"], ["jge", 0x30, ">="], ["jlt", 0xa0, "<"], ["jle", 0xb0, "<="],
    ["jsgt", 0x60, "s>"], ["jsge", 0x70, "s>="], ["jslt", 0xc0, "s<"], ["jsle", 0xd0, "s<="], ["jset", 0x40, "&"],
  ] as const;
  test.each(ops)("%s in both classes, register and immediate", (name, op, s) => {
    const p = program({ name: "j", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [
      jmp32[name].reg(R1, R2, "out"), jmp32[name].imm(R1, -2, "out"), jmp[name].reg(R3, R1, "out"), jmp[name].imm(R3, 8, "out"),
      label("out"), exit(),
    ] }] });
    expect(p.insns.slice(0, 4).map((x) => [x.code, x.dst, x.src, x.off, x.imm])).toEqual([
      [0x06 | op | 0x08, 1, 2, 3, 0], [0x06 | op, 1, 0, 2, -2], [0x05 | op | 0x08, 3, 1, 1, 0], [0x05 | op, 3, 0, 0, 8],
    ]);
    expect(p.insns.slice(0, 4).map((x) => printInsn(x))).toEqual([
      `if w1 ${s} w2 goto pc+3`, `if w1 ${s} 0xfffffffe goto pc+2`, `if r3 ${s} r1 goto pc+1`, `if r3 ${s} 0x8 goto pc+0`,
    ]);
  });

  test("gotol holds its offset in imm (BPF_JMP32_A), may_goto in off; labels before the jump give negative offsets", () => {
    const p = program({ name: "j", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [
      alu64.mov.imm(R0, 0), label("top"), alu64.add.imm(R0, 1), may_goto("out"), jmp.jlt.imm(R0, 4, "top"), gotol("out"), jmp.ja("top"),
      label("out"), exit(),
    ] }] });
    expect(p.insns.slice(2, 6).map((x) => [x.code, x.dst, x.src, x.off, x.imm])).toEqual([
      [0xe5, 0, 0, 3, 0], [0xa5, 0, 0, -3, 4], [0x06, 0, 0, 0, 1], [0x05, 0, 0, -5, 0],
    ]);
    expect(p.insns.slice(2, 6).map((x) => printInsn(x))).toEqual(["may_goto pc+3", "if r0 < 0x4 goto pc-3", "gotol pc+1", "goto pc-5"]);
  });
});

describe("disasm.c's lines for encodings outside the DSL", () => {
  const rows: [string, number[], string][] = [
    ["gotox (BPF_JMP|BPF_JA|BPF_X)", [0x0d, 3, 0, 0, 0], "gotox r3"],
    ["BPF_LD_ABS(BPF_W, 12)", [0x20, 0, 0, 0, 12], "r0 = *(u32 *)skb[12]"],
    ["BPF_LD_IND(BPF_H, R2, 4)", [0x48, 0, 2, 0, 4], "r0 = *(u16 *)skb[r2 + 4]"],
    ["addr_space_cast", [0xbf, 1, 2, 1, 0x10000], "r1 = addr_space_cast(r2, 1, 0)"],
    ["BPF_MOV64_PERCPU_REG", [0xbf, 1, 2, -1, 0], "r1 = &(void __percpu *)(r2)"],
    ["BPF_ST_NOSPEC()", [0xc2, 0, 0, 0, 0], "nospec"],
    ["an atomic with an unknown operation", [0xdb, 10, 1, -8, 0x02], "BUG_db"],
    ["a BPF_ST with another mode", [0xa2, 10, 0, -8, 0], "BUG_st_a2"],
    ["a BPF_LDX with another mode", [0x39, 0, 10, -8, 0], "BUG_ldx_39"],
    ["a BPF_LD with another mode", [0x78, 0, 0, 0, 0], "BUG_ld_78"],
    ["the ALU op 0xe0 (no string: \"(null)\")", [0xe7, 1, 0, 0, 3], "r1 (null) 3"],
    ["a JCOND that is not may_goto", [0xe5, 0, 1, 2, 0], "if r0 (null) 0x0 goto pc+2"],
    ["ALU32 neg", [0x84, 1, 0, 0, 0], "w1 = -w1"],
    ["le16 in ALU32, bswap in ALU64: the endian lines say r in both", [0xd4, 1, 0, 0, 16], "r1 = le16 r1"],
  ];
  test.each(rows)("%s", (_, [code, dst, src, off, imm], printed) => {
    expect(printInsn(insn(code!, dst!, src!, off!, imm!))).toBe(printed);
  });

  test("printProgram leaves out ld_imm64's second half and keeps the indices", () => {
    const p = program({ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [...ld_imm64(R0 as Reg, 0xabcn), exit()] }] });
    expect(printProgram(p)).toBe(["main: ; stack 0", "   0: r0 = 0xabc", "   2: exit"].join("\n"));
  });
});
