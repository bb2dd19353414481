// An independent reference for ALU semantics, written from the SDM definitions with plain BigInt
// arithmetic (no code shared with the machine). Used by property tests. Which flags are defined
// comes from the SDM rules in sdm-flags.ts.
import { AF, CF, OF, PF, SF, ZF } from "../../harness/machine/index.ts";
import { ARITH_FLAGS, flagEffect } from "./sdm-flags.ts";

export type AluOp = "add" | "sub" | "and" | "or" | "xor" | "cmp" | "test" | "neg" | "not" | "inc" | "dec" | "shl" | "shr" | "sar" | "imul";

export interface RefResult {
  /** The destination value after the operation, masked to the operand size (undefined: not written). */
  readonly res: bigint | undefined;
  readonly flags: number;
  /** The arithmetic flags the SDM defines for this case. */
  readonly defined: number;
}

/**
 * The flags the reference computes that the SDM defines: none if the instruction changes no flag
 * (not, a shift by a masked count of 0), else every flag it does not leave undefined (inc and dec
 * keep CF, which the reference carries over from the input).
 */
function definedBy(op: AluOp, bits: number, count?: number): number {
  const e = flagEffect(op, bits, { count });
  return e.defines === 0 ? 0 : ARITH_FLAGS & ~e.undefines;
}

function szp(res: bigint, bits: number): number {
  let f = 0;
  if (res === 0n) f |= ZF;
  if ((res >> BigInt(bits - 1)) & 1n) f |= SF;
  let ones = 0;
  for (let i = 0n; i < 8n; i++) ones += Number((res >> i) & 1n);
  if (ones % 2 === 0) f |= PF;
  return f;
}

/** `a`, `b` unsigned and masked to `bits`; `cf` the carry before (inc/dec keep it). */
export function reference(op: AluOp, bits: number, a: bigint, b: bigint, cf: boolean): RefResult {
  const mask = (1n << BigInt(bits)) - 1n;
  const signed = (x: bigint) => BigInt.asIntN(bits, x);
  switch (op) {
    case "add": case "sub": case "cmp": case "neg": case "inc": case "dec": {
      const [x, y, plus] = op === "add" ? [a, b, true] : op === "inc" ? [a, 1n, true] : op === "neg" ? [0n, a, false] : op === "dec" ? [a, 1n, false] : [a, b, false];
      const exact = plus ? x + y : x - y;
      const res = exact & mask;
      const sexact = plus ? signed(x) + signed(y) : signed(x) - signed(y);
      let f = szp(res, bits);
      if (sexact !== signed(res)) f |= OF;
      if (((x ^ y ^ res) & 0x10n) !== 0n) f |= AF;
      const carry = plus ? exact > mask : exact < 0n;
      if (op === "inc" || op === "dec") { if (cf) f |= CF; } else if (carry) f |= CF;
      return { res: op === "cmp" ? undefined : res, flags: f, defined: definedBy(op, bits) };
    }
    case "and": case "or": case "xor": case "test": {
      const res = op === "or" ? a | b : op === "xor" ? a ^ b : a & b;
      return { res: op === "test" ? undefined : res, flags: szp(res, bits), defined: definedBy(op, bits) };
    }
    case "not":
      return { res: ~a & mask, flags: 0, defined: definedBy(op, bits) };
    case "shl": case "shr": case "sar": {
      const n = Number(b) & (bits === 64 ? 63 : 31);
      if (n === 0) return { res: a, flags: 0, defined: definedBy(op, bits, n) };
      let res: bigint, c: bigint;
      if (op === "shl") { res = (a << BigInt(n)) & mask; c = n <= bits ? (a >> BigInt(bits - n)) & 1n : 0n; }
      else if (op === "shr") { res = a >> BigInt(n); c = (a >> BigInt(n - 1)) & 1n; }
      else { res = BigInt.asUintN(bits, signed(a) >> BigInt(n)); c = (signed(a) >> BigInt(n - 1)) & 1n; }
      let f = szp(res, bits);
      if (c) f |= CF;
      const msb = (x: bigint) => (x >> BigInt(bits - 1)) & 1n;
      if (n === 1 && (op === "shl" ? (msb(res) ^ c) : op === "shr" ? msb(a) : 0n)) f |= OF;
      return { res, flags: f, defined: definedBy(op, bits, n) };
    }
    case "imul": {
      const full = signed(a) * signed(b);
      const res = BigInt.asUintN(bits, full);
      return { res, flags: signed(res) !== full ? CF | OF : 0, defined: definedBy(op, bits) };
    }
  }
}
