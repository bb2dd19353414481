// The contract of generators/programs.ts's isaProgramArb: every program it makes is
// valid and runs to the end in the reference interpreter, the same seed gives the same program,
// and over a sample every family of the 7.2 instruction set shows up.
import { fc, test as fcTest } from "@fast-check/vitest";
import { describe, expect, test } from "vitest";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import { BPF_ATOMIC, BPF_CLASS, BPF_END, BPF_JMP32, BPF_LDX, BPF_MEMSX, BPF_MODE, BPF_MOV, BPF_OP, BPF_STX } from "../../../jit/bpf/opcodes.ts";
import { validate } from "../../../jit/bpf/validate.ts";
import { isaProgramArb } from "../../../generators/programs.ts";

describe("isaProgramArb", () => {
  fcTest.prop([isaProgramArb], { numRuns: 60 })("every program validates and runs", (p) => {
    validate(p);
    expect(typeof runProgram(interpEnv([p], [], 1), 0)).toBe("bigint");
  });

  test("the same seed, the same program", () => {
    expect(fc.sample(isaProgramArb, { numRuns: 3, seed: 42 })).toEqual(fc.sample(isaProgramArb, { numRuns: 3, seed: 42 }));
  });

  test("a sample covers every family: div/mod (signed too), movsx, end/bswap, ld_imm64, memsx, atomics, gotol, may_goto, loops", () => {
    const insns = fc.sample(isaProgramArb, { numRuns: 80, seed: 7 }).flatMap((p) => p.insns);
    const has = (f: (x: (typeof insns)[number]) => boolean) => insns.some(f);
    expect({
      sdiv: has((x) => (x.code & 0xf0) === 0x30 && x.off === 1), smod: has((x) => (x.code & 0xf0) === 0x90 && x.off === 1),
      movsx: has((x) => BPF_OP(x.code) === BPF_MOV && x.off !== 0), end: has((x) => BPF_OP(x.code) === BPF_END && BPF_CLASS(x.code) !== 7), bswap: has((x) => x.code === 0xd7),
      ldImm64: has((x) => x.code === 0x18), memsx: has((x) => BPF_CLASS(x.code) === BPF_LDX && BPF_MODE(x.code) === BPF_MEMSX),
      cmpxchg: has((x) => BPF_CLASS(x.code) === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC && x.imm === 0xf1),
      loadAcquire: has((x) => BPF_MODE(x.code) === BPF_ATOMIC && x.imm === 0x100), gotol: has((x) => x.code === (BPF_JMP32 | 0)),
      mayGoto: has((x) => x.code === 0xe5), loop: has((x) => (BPF_CLASS(x.code) === 5 || BPF_CLASS(x.code) === 6) && BPF_OP(x.code) !== 0x80 && x.off < 0),
    }).toEqual({ sdiv: true, smod: true, movsx: true, end: true, bswap: true, ldImm64: true, memsx: true, cmpxchg: true, loadAcquire: true, gotol: true, mayGoto: true, loop: true });
  });
});
