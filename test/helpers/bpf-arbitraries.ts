// Random BPF programs for the JIT properties (test/unit/jit/reference.test.ts against the
// reference interpreter, test/e2e/jit-native.test.ts against the real CPU): straight-line
// blocks of ALU64/ALU32 ops, shifts, stack stores and loads of every size and helper calls,
// with forward jumps between blocks (programArb), or a main program calling a subprog with a
// pointer into its stack and running a nested program through the kfunc (richArb).
import { fc } from "@fast-check/vitest";
import { alu32, alu64, call, exit, jmp, jmp32, label, ldx, st, stx, type Item } from "../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R6, R10, type Reg } from "../../jit/bpf/opcodes.ts";
import { program } from "../../jit/bpf/program.ts";

const ALU = ["mov", "add", "sub", "and", "or", "xor"] as const;
const SHIFT = ["lsh", "rsh", "arsh"] as const;
const JUMPS = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset"] as const;
const SIZES = [BPF_B, BPF_H, BPF_W, BPF_DW] as const;
const SIZE_BYTES = { [BPF_B]: 1, [BPF_H]: 2, [BPF_W]: 4, [BPF_DW]: 8 } as const;

const reg = fc.integer({ min: 0, max: 9 }) as fc.Arbitrary<Reg>;
const s32 = fc.oneof(fc.integer({ min: -0x80000000, max: 0x7fffffff }), fc.constantFrom(0, 1, -1, 0x7fffffff, -0x80000000, 255, 1000));

/** One block: instructions that are always executed together (jumps skip whole blocks). */
const block: fc.Arbitrary<Item[]> = fc.oneof(
  fc.tuple(fc.constantFrom(...ALU), fc.boolean(), reg, reg, s32, fc.boolean()).map(([op, is64, d, s, imm, useReg]) => {
    const fam = (is64 ? alu64 : alu32)[op];
    return [useReg ? fam.reg(d, s) : fam.imm(d, imm)];
  }),
  fc.tuple(fc.constantFrom(...SHIFT), fc.boolean(), reg, reg, fc.nat(63), fc.boolean()).map(([op, is64, d, s, n, useReg]) => {
    const fam = (is64 ? alu64 : alu32)[op];
    return [useReg ? fam.reg(d, s) : fam.imm(d, is64 ? n : n & 31)];
  }),
  fc.tuple(fc.boolean(), reg).map(([is64, d]) => [(is64 ? alu64 : alu32).neg(d)]),
  fc.tuple(fc.constantFrom(...SIZES), fc.nat(7), reg).map(([size, slot, s]) => {
    const off = -8 * (slot + 1) + (size === BPF_DW ? 0 : SIZE_BYTES[size] * (slot % (8 / SIZE_BYTES[size])));
    return [stx(size, R10, s, off)];
  }),
  fc.tuple(fc.constantFrom(...SIZES), fc.nat(7), reg, s32).map(([size, slot, d, imm]) => [ldx(size, d, R10, -8 * (slot + 1)), st(size, R10, -8 * (slot + 1), imm)]),
  fc.tuple(fc.constantFrom(1, 2, 3), fc.array(s32, { minLength: 5, maxLength: 5 })).map(([helper, args]) => {
    const setup: Item[] = helper === 2 ? [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, args[1]!)] : [];
    const reinit = args.map((v, i) => alu64.mov.imm((i + 1) as Reg, v));
    return [...setup, call.helper(helper), alu64.xor.reg(R6, R0), ...reinit];
  }),
);
const jump = fc.tuple(fc.constantFrom(...JUMPS), fc.boolean(), reg, reg, s32, fc.boolean(), fc.integer({ min: 1, max: 3 }));

export const programArb = fc.tuple(
  fc.array(s32, { minLength: 10, maxLength: 10 }),
  fc.array(fc.tuple(block, fc.option(jump, { freq: 4 })), { minLength: 1, maxLength: 24 }),
).map(([init, body]) => {
  const items: Item[] = init.map((v, i) => alu64.mov.imm(i as Reg, v));
  for (let s = 0; s < 8; s++) items.push(st(BPF_DW, R10, -8 * (s + 1), init[s]!));
  body.forEach(([b, j], k) => {
    items.push(label(`b${k}`));
    if (j !== null) {
      const [op, is64, d, s, imm, useReg, skip] = j;
      const fam = (is64 ? jmp : jmp32)[op];
      const to = `b${Math.min(k + skip, body.length)}`;
      items.push(useReg ? fam.reg(d, s, to) : fam.imm(d, imm, to));
    }
    items.push(...b);
  });
  items.push(label(`b${body.length}`));
  for (let r = 1; r <= 9; r++) items.push(alu64.xor.reg(R0, r as Reg));
  for (let s = 0; s < 8; s++) items.push(ldx(BPF_DW, R1, R10, -8 * (s + 1)), alu64.add.reg(R0, R1));
  items.push(exit());
  return program({ name: "random", type: "kprobe", funcs: [{ name: "main", stackDepth: 64, body: items }] });
});

/**
 * A richer program: main (stack 64, 160 or 320 bytes: disp8 and disp32 forms) calls a subprog
 * with a pointer into its stack (the subprog reads and writes through it, then computes on its
 * own stack) and runs a nested program through the kfunc; every result is folded into r0.
 */
const DEPTHS = [64, 160, 320] as const;
export const richArb = fc.tuple(
  fc.constantFrom(...DEPTHS), fc.array(s32, { minLength: 10, maxLength: 10 }),
  fc.array(fc.tuple(block, fc.boolean(), fc.boolean()), { minLength: 1, maxLength: 12 }),
  fc.array(block, { minLength: 1, maxLength: 8 }), fc.array(block, { minLength: 1, maxLength: 6 }), s32,
).map(([depth, init, mainBlocks, subBlocks, nestedBlocks, x]) => {
  const prelude = (d: number): Item[] => [
    ...init.map((v, i) => alu64.mov.imm(i as Reg, v)),
    ...Array.from({ length: d / 8 }, (_, s) => st(BPF_DW, R10, -8 * (s + 1), init[s % 10]!)),
  ];
  const fold = (d: number): Item[] => [
    ...Array.from({ length: 9 }, (_, r) => alu64.xor.reg(R0, (r + 1) as Reg)),
    ...[8, d].map((o) => [ldx(BPF_DW, R1, R10, -o), alu64.add.reg(R0, R1)]).flat(), exit(),
  ];
  const reinit = init.slice(1, 6).map((v, i) => alu64.mov.imm((i + 1) as Reg, v));
  const main: Item[] = [...prelude(depth)];
  mainBlocks.forEach(([b, callSub, runNested]) => {
    main.push(...b);
    if (callSub) main.push(alu64.mov.reg(R1, R10), alu64.add.imm(R1, -depth + 8), call.subprog("sub"), alu64.xor.reg(R6, R0), ...reinit);
    if (runNested) main.push(alu64.mov.imm(R1, 0), call.kfunc(1000), alu64.add.reg(R6, R0), ...reinit);
  });
  // The subprog is always called at least once (an uncalled subprog is unreachable code).
  main.push(alu64.mov.reg(R1, R10), alu64.add.imm(R1, -depth + 8), call.subprog("sub"), alu64.xor.reg(R6, R0), ...reinit);
  main.push(...fold(depth));
  const sub: Item[] = [
    ldx(BPF_DW, R0, R1, 0), alu64.add.imm(R0, x), stx(BPF_DW, R1, R0, 0), // through the caller's stack
    alu64.mov.imm(R1, x), ...init.slice(2).map((v, i) => alu64.mov.imm((i + 2) as Reg, v)),
    ...Array.from({ length: 2 }, (_, s) => st(BPF_DW, R10, -8 * (s + 1), x)),
    ...subBlocks.flat().filter((it) => !(it.kind === "insn" && it.insn.off < -16)), ...fold(16),
  ];
  const nested = [...prelude(64), ...nestedBlocks.flat(), ...fold(64)];
  return [
    program({ name: "rich", type: "raw_tp", funcs: [{ name: "main", stackDepth: depth, body: main }, { name: "sub", stackDepth: 16, body: sub }] }),
    program({ name: "nested", type: "tracing", funcs: [{ name: "main", stackDepth: 64, body: nested }] }),
  ] as const;
});
