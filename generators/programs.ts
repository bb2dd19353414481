// Random BPF programs for the JIT properties (test/unit/jit/reference.test.ts against the
// reference interpreter, test/e2e/jit-native.test.ts against the real CPU) and for jit-diff
// (harness/jit-diff.ts, the TypeScript JIT against a tree's): straight-line
// blocks of ALU64/ALU32 ops, shifts, stack stores and loads of every size and helper calls,
// with forward jumps between blocks (programArb), or a main program calling a subprog with a
// pointer into its stack and running a nested program through the kfunc (richArb); and the same
// over the whole 7.2 instruction set, counted loops and may_goto included (isaProgramArb).
import fc from "fast-check";
import {
  alu32, alu64, atomic, bswap, call, end, exit, gotol, jmp, jmp32, label, ld_imm64, ldx, ldxsx, may_goto, st, stx, type Item,
} from "../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R6, R9, R10, type Reg } from "../jit/bpf/opcodes.ts";
import { program } from "../jit/bpf/program.ts";

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

// ---- the whole 7.2 instruction set ----

const DIVS = ["mul", "div", "mod", "sdiv", "smod"] as const;
const RMW = ["add", "and", "or", "xor", "fetchAdd", "fetchAnd", "fetchOr", "fetchXor", "xchg", "cmpxchg"] as const;
const u64 = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, 1n, (1n << 64n) - 1n, 1n << 63n, (1n << 63n) - 1n, 0xffff_ffffn, 1n << 31n));
/** A slot offset of the 8 initialised slots, aligned for `bytes`. */
const slotOff = (slot: number, bytes: number) => -8 * (slot + 1) + bytes * (slot % (8 / bytes));

/** A block of one of the instructions the original subset lacks, on registers `r`. */
const isaBlock = (r: fc.Arbitrary<Reg>): fc.Arbitrary<Item[]> => fc.oneof(
  fc.tuple(fc.constantFrom(...DIVS), fc.boolean(), r, r, s32, fc.boolean()).map(([op, is64, d, src, imm, useReg]) => {
    const fam = (is64 ? alu64 : alu32)[op];
    return [useReg ? fam.reg(d, src) : fam.imm(d, imm === 0 && op !== "mul" ? 7 : imm)];
  }),
  fc.tuple(fc.boolean(), r, r, fc.constantFrom(8, 16, 32)).map(([is64, d, src, bits]) =>
    [is64 ? alu64.movsx(d, src, bits as 8 | 16 | 32) : alu32.movsx(d, src, bits === 32 ? 16 : (bits as 8 | 16))]),
  fc.tuple(fc.constantFrom("le", "be", "bswap"), r, fc.constantFrom(16, 32, 64)).map(([kind, d, bits]) => {
    const b = bits as 16 | 32 | 64;
    return [kind === "bswap" ? bswap(d, b) : kind === "le" ? end.toLe(d, b) : end.toBe(d, b)];
  }),
  fc.tuple(r, u64).map(([d, v]) => [...ld_imm64(d, v)]),
);

/** Blocks that touch memory or use R0 implicitly; never on R9 or R10 as a destination. */
const memBlock: fc.Arbitrary<Item[]> = fc.oneof(
  fc.tuple(fc.constantFrom(BPF_B, BPF_H, BPF_W), fc.nat(7), reg).map(([size, slot, d]) => [ldxsx(size, d, R10, slotOff(slot, SIZE_BYTES[size]))]),
  fc.tuple(fc.constantFrom(...RMW), fc.boolean(), fc.nat(7), reg).map(([op, is64, slot, src]) =>
    [atomic[op](is64 ? BPF_DW : BPF_W, R10, src, slotOff(slot, is64 ? 8 : 4))]),
  fc.tuple(fc.boolean(), fc.constantFrom(...SIZES), fc.nat(7), reg).map(([load, size, slot, rr]) => {
    const off = slotOff(slot, SIZE_BYTES[size]);
    return [load ? atomic.loadAcquire(size, rr, R10, off) : atomic.storeRelease(size, R10, rr, off)];
  }),
);

/** A counted loop on R9 (1 to 8 iterations, up or down, 32- or 64-bit) around ALU work on R0-R8. */
const loopRegs = fc.integer({ min: 0, max: 8 }) as fc.Arbitrary<Reg>;
const loopBlock: fc.Arbitrary<Item[]> = fc.tuple(
  fc.integer({ min: 1, max: 8 }), fc.boolean(), fc.boolean(), fc.array(isaBlock(loopRegs), { minLength: 1, maxLength: 3 }), fc.boolean(), fc.nat(),
).map(([n, up, is64, work, bounded, id]) => {
  const name = `loop${id}`;
  const [alu, j] = is64 ? [alu64, jmp] : [alu32, jmp32];
  return [
    alu.mov.imm(R9, up ? 0 : n), label(name), ...work.flat(), ...(bounded ? [may_goto(`${name}_out`)] : []),
    up ? alu.add.imm(R9, 1) : alu.sub.imm(R9, 1), up ? j.jlt.imm(R9, n, name) : j.jne.imm(R9, 0, name), label(`${name}_out`),
  ];
});

/**
 * Like programArb over the whole 7.2 instruction set: mul/div/mod and their signed forms,
 * movsx, end and bswap, ld_imm64, sign-extending loads, atomics and load-acquire/store-release
 * on the initialised slots, every jump condition in both classes, gotol and may_goto forward,
 * and counted loops. Every program it makes is valid (test/unit/jit/bpf-arbitraries.test.ts).
 */
export const isaProgramArb = fc.tuple(
  fc.array(s32, { minLength: 10, maxLength: 10 }),
  fc.array(fc.tuple(fc.oneof(block, isaBlock(reg), memBlock, loopBlock), fc.option(fc.tuple(jump, fc.constantFrom("cond", "gotol", "may_goto")), { freq: 4 })), { minLength: 1, maxLength: 24 }),
).map(([init, body]) => {
  const items: Item[] = init.map((v, i) => alu64.mov.imm(i as Reg, v));
  for (let s = 0; s < 8; s++) items.push(st(BPF_DW, R10, -8 * (s + 1), init[s]!));
  let loops = 0;
  body.forEach(([b, j], k) => {
    items.push(label(`b${k}`));
    if (j !== null) {
      const [[op, is64, d, s, imm, useReg, skip], kind] = j;
      const to = `b${Math.min(k + skip, body.length)}`;
      const fam = (is64 ? jmp : jmp32)[op];
      // gotol alone would make the block it skips unreachable: a condition chooses between them
      if (kind === "gotol") items.push(useReg ? fam.reg(d, s, `b${k}g`) : fam.imm(d, imm, `b${k}g`), gotol(to), label(`b${k}g`));
      else if (kind === "may_goto") items.push(may_goto(to));
      else items.push(useReg ? fam.reg(d, s, to) : fam.imm(d, imm, to));
    }
    // loop labels must be unique in the function
    items.push(...b.map((it) => (it.kind === "label" && it.name.startsWith("loop") ? label(`${it.name}_${loops}`) : it.kind === "insn" && it.jumpTo?.startsWith("loop") ? { ...it, jumpTo: `${it.jumpTo}_${loops}` } : it)));
    loops++;
  });
  items.push(label(`b${body.length}`));
  for (let r = 1; r <= 9; r++) items.push(alu64.xor.reg(R0, r as Reg));
  for (let s = 0; s < 8; s++) items.push(ldx(BPF_DW, R1, R10, -8 * (s + 1)), alu64.add.reg(R0, R1));
  items.push(exit());
  return program({ name: "isa", type: "kprobe", funcs: [{ name: "main", stackDepth: 64, body: items }] });
});
