// The JIT and the machine against the reference interpreter: random programs (ALU64 and ALU32
// ops, shifts, stack stores and loads of every size, helper calls, forward jumps) return the
// interpreter's result under every strategy that claims to be sound. A lowering bug in any
// instruction choice shows up here as a shrunk program.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { alu32, alu64, call, exit, jmp, jmp32, label, ldx, st, stx, type Item } from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R6, R10, type Reg } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";

const SOUND = BUILTIN_STRATEGIES.filter((s) => s.name !== "r9-no-save");
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
    const setup: Item[] = helper === 2 ? [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, args[1]!)] : helper === 1 ? [] : [];
    const reinit = args.map((v, i) => alu64.mov.imm((i + 1) as Reg, v));
    return [...setup, call.helper(helper), alu64.xor.reg(R6, R0), ...reinit];
  }),
);
const jump = fc.tuple(fc.constantFrom(...JUMPS), fc.boolean(), reg, reg, s32, fc.boolean(), fc.integer({ min: 1, max: 3 }));

const programArb = fc.tuple(
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

describe("JIT + machine against the reference interpreter", () => {
  test.prop([programArb], { numRuns: 40 })("every sound strategy returns the interpreter's result", (p) => {
    const expected = runProgram({ programs: [p], nested: [], recursionLimit: 1, active: [0], misses: [0] }, 0);
    for (const s of SOUND) {
      const img = buildImage({ programs: [p], task: 0 }, s);
      const m = img.machine();
      img.startTask(m);
      const r = m.run({ maxSteps: 100_000 });
      expect(r.kind === "completed" ? r.rax : r, s.name).toBe(expected);
    }
  }, 60_000);

  test("the shipped example's result comes from the interpreter too", async () => {
    const { loadScenario } = await import("../../../harness/scenario.ts");
    const sc = loadScenario(new URL("../../scenarios/nested.json", import.meta.url).pathname);
    expect(runProgram(interpEnv(sc.programs, [1], 1), 0)).toBe(1078n);
  });
});
