// Property: Cpu.test(cond), which answers the common conditions after a sub/cmp or a logic op from
// the lazy flag record itself, equals condition(cond, rflags()) (the SDM's conditions over the
// materialised flags) for every condition, operand size and operand pair.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { Cpu } from "../../../harness/machine/cpu.ts";
import { condition, F_LOGIC, F_SUB } from "../../../harness/machine/flags.ts";
import { Memory } from "../../../harness/machine/memory.ts";
import { runs } from "../../helpers/runs.ts";

const edges = [0n, 1n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn];
const operand = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(...edges));
const halves = (v: bigint): [number, number] => [Number(v & 0xffffffffn), Number(v >> 32n)];

describe("Cpu.test() and the materialised flags agree", () => {
  test.prop([fc.constantFrom("sub", "and", "or", "xor"), fc.constantFrom(1, 2, 4, 8), operand, operand], runs(600))(
    "every condition after sub/cmp, and, or, xor at every size",
    (op, size, a0, b0) => {
      const bits = BigInt(size * 8);
      const a = BigInt.asUintN(Number(bits), a0), b = BigInt.asUintN(Number(bits), b0);
      const r = BigInt.asUintN(Number(bits), op === "sub" ? a - b : op === "and" ? a & b : op === "or" ? a | b : a ^ b);
      for (let cond = 0; cond < 16; cond++) {
        const c = new Cpu(new Memory(), () => "");
        c.setLazy(op === "sub" ? F_SUB : F_LOGIC, size, ...halves(a), ...halves(b), ...halves(r));
        const fast = c.test(cond);
        expect(fast, `cond ${cond}, ${op} size ${size}: ${a.toString(16)}, ${b.toString(16)}`).toBe(condition(cond, c.rflags()));
      }
    },
  );
});
