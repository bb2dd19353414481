// Property: every ALU form at every operand size agrees with an independent BigInt reference
// (test/helpers/reference.ts) on the result, the untouched upper register bits, and every flag
// the SDM defines, for random operands and random prior flags.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { Code, Instruction, Register } from "iced-x86";
import { Assembler } from "../../../jit/asm.ts";
import { CF, FIXED } from "../../../harness/machine/index.ts";
import { newMachine, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";
import { reference, type AluOp } from "../../helpers/reference.ts";

const SIZES = [8, 16, 32, 64] as const;
type Bits = (typeof SIZES)[number];
const A = { 8: Register.AL, 16: Register.AX, 32: Register.EAX, 64: Register.RAX } as const;
const B = { 8: Register.BL, 16: Register.BX, 32: Register.EBX, 64: Register.RBX } as const;
const C = Code as unknown as Record<string, number>;

function make(op: AluOp, bits: Bits): () => Instruction {
  const s = bits;
  switch (op) {
    case "add": case "sub": case "and": case "or": case "xor": case "cmp": case "test": {
      const name = `${op[0]!.toUpperCase()}${op.slice(1)}_rm${s}_r${s}`;
      return () => Instruction.createRegReg(C[name]!, A[bits], B[bits]);
    }
    case "neg": case "not": case "inc": case "dec":
      return () => Instruction.createReg(C[`${op[0]!.toUpperCase()}${op.slice(1)}_rm${s}`]!, A[bits]);
    case "shl": case "shr": case "sar":
      return () => Instruction.createRegReg(C[`${op[0]!.toUpperCase()}${op.slice(1)}_rm${s}_CL`]!, A[bits], Register.CL);
    case "imul":
      return () => Instruction.createRegReg(C[`Imul_r${s}_rm${s}`]!, A[bits], B[bits]);
  }
}

const OPS: AluOp[] = ["add", "sub", "and", "or", "xor", "cmp", "test", "neg", "not", "inc", "dec", "shl", "shr", "sar", "imul"];
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
// Edge-heavy operands: the values where carries, overflows and sign changes happen.
const operand = fc.oneof(u64, fc.constantFrom(0n, 1n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn));

const M64 = (1n << 64n) - 1n;
/**
 * Operand pairs. The second operand is often derived from the first, so that the boundary cases
 * of a two-half implementation are common: low parts summing to exactly 2^8/2^16/2^32/2^64 (carry
 * out), equal operands (zero difference), negation, complement.
 */
const operands = fc.tuple(operand, fc.oneof(
  operand,
  fc.constantFrom(8n, 16n, 32n, 64n).map((k) => ["carry", k] as const),
  fc.constantFrom(["same"] as const, ["neg"] as const, ["not"] as const, ["plus1"] as const),
)).map(([a, b]) => {
  if (typeof b === "bigint") return [a, b] as const;
  const lowBits = (k: bigint) => (1n << k) - 1n;
  switch (b[0]) {
    case "carry": { const k = b[1]; return [a, (((1n << k) - (a & lowBits(k))) & lowBits(k)) | (a & ~lowBits(k) & M64)] as const; }
    case "same": return [a, a] as const;
    case "neg": return [a, (-a) & M64] as const;
    case "not": return [a, ~a & M64] as const;
    default: return [a, (a + 1n) & M64] as const;
  }
});

describe("ALU semantics against the SDM reference", () => {
  for (const op of OPS) {
    for (const bits of SIZES) {
      if (op === "imul" && bits === 8) continue; // no two-operand imul r8
      const code = (() => {
        const a = new Assembler(`${op}${bits}`).emit(make(op, bits)).emit(() => Instruction.create(Code.Retnq));
        return a.assemble(TEXT).bytes;
      })();
      test.prop([operands, fc.boolean(), fc.integer({ min: 0, max: 255 })], { numRuns: 100 })(`${op} at ${bits} bits`, ([rax, rbx], cf, count) => {
        const m = newMachine();
        m.load(TEXT, code);
        m.setReg("rax", rax);
        m.setReg("rbx", rbx);
        m.setReg("rcx", BigInt(count));
        m.rflags = (cf ? CF : 0) | FIXED;
        m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
        const r = m.run({ maxSteps: 10 });
        expect(r.kind).toBe("completed");
        const mask = (1n << BigInt(bits)) - 1n;
        const isShift = op === "shl" || op === "shr" || op === "sar";
        const ref = reference(op, bits, rax & mask, isShift ? BigInt(count) : rbx & mask, cf);
        const got = m.reg("rax");
        const expected = ref.res === undefined ? rax
          : bits === 64 ? ref.res
          : bits === 32 ? ref.res // 32-bit writes zero the upper half
          : (rax & ~mask) | ref.res; // 8/16-bit writes keep the rest
        // A shift by a masked count of 0 writes nothing, except that a 32-bit destination is still zero-extended.
        const unchanged = isShift && (count & (bits === 64 ? 63 : 31)) === 0;
        expect(got.toString(16)).toBe((unchanged ? (bits === 32 ? rax & mask : rax) : expected).toString(16));
        expect(m.rflags & ref.defined, `flags ${m.rflags.toString(16)}`).toBe(ref.flags & ref.defined);
        if (ref.defined === 0 && (op === "not" || unchanged)) expect(m.rflags).toBe((cf ? CF : 0) | FIXED);
      });
    }
  }
});
