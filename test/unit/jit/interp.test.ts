// The reference interpreter against an independent reference written here from the ISA's
// definitions (RFC 9669 and kernel/bpf/core.c's comments) with plain BigInt arithmetic: mul, div,
// mod, sdiv, smod, movsx, end and bswap at 32 and 64 bits, sign-extending loads, atomics, JMP32
// compares and ld_imm64, at edge values (0, 1, -1, INT_MIN, INT_MAX, 2^32-1, …) and random ones.
// Each case is a small program, validated, then run.
import { fc, test as fcTest } from "@fast-check/vitest";
import { describe, expect, test } from "vitest";
import { alu32, alu64, atomic, bswap, end, exit, jmp, jmp32, label, ld_imm64, ldx, ldxsx, stx, type AluFamily, type Item } from "../../../jit/bpf/insn.ts";
import { interpEnv, REFUSED, runProgram } from "../../../jit/bpf/interp.ts";
import { call } from "../../../jit/bpf/jump.ts";
import { buildImage } from "../../../jit/image.ts";
import { KD } from "../../../jit/kernel/layout.ts";
import { strategy } from "../../helpers/strategies.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { validate } from "../../../jit/bpf/validate.ts";

// ---- the independent reference ----
const pow2 = (n: number) => 2n ** BigInt(n);
/** v modulo 2^bits, in [0, 2^bits). */
const toU = (v: bigint, bits: number) => ((v % pow2(bits)) + pow2(bits)) % pow2(bits);
/** The two's complement reading of the low `bits`. */
const toS = (v: bigint, bits: number) => { const u = toU(v, bits); return u >= pow2(bits - 1) ? u - pow2(bits) : u; };
const abs = (v: bigint) => (v < 0n ? -v : v);
/** Division truncated toward zero, from the quotient of the magnitudes. */
const tdiv = (a: bigint, b: bigint) => { const q = abs(a) / abs(b); return (a < 0n) !== (b < 0n) ? -q : q; };
/** The low n bits' bytes in reverse order, through a hex string. */
const swapBytes = (v: bigint, n: number) => {
  const hex = toU(v, n).toString(16).padStart(n / 4, "0");
  return BigInt(`0x${hex.match(/../g)!.reverse().join("")}`);
};

type Op = "mul" | "div" | "mod" | "sdiv" | "smod";
/** dst OP src in `bits`, zero-extended to 64: x/0 = 0, x%0 = x, signed forms truncate, INT_MIN/-1 wraps, x s% -1 = 0. */
function refAlu(op: Op, bits: number, dst: bigint, src: bigint): bigint {
  const a = toU(dst, bits), b = toU(src, bits), sa = toS(dst, bits), sb = toS(src, bits);
  switch (op) {
    case "mul": return toU(a * b, bits);
    case "div": return b === 0n ? 0n : toU(a / b, bits);
    case "mod": return b === 0n ? a : toU(a - b * (a / b), bits);
    case "sdiv": return sb === 0n ? 0n : toU(tdiv(sa, sb), bits);
    case "smod": return sb === 0n ? a : toU(sa - sb * tdiv(sa, sb), bits);
  }
}

// ---- running one operation ----
const env = (p: ReturnType<typeof program>) => interpEnv([p], [], 1);
function runBody(body: Item[], depth = 16): bigint {
  const p = program({ name: "t", type: "kprobe", funcs: [{ name: "main", stackDepth: depth, body }] });
  validate(p);
  return runProgram(env(p), 0);
}
/** r1 = dst; r2 = src; <op>; return r1. */
const runOp = (dst: bigint, src: bigint, op: Item) => runBody([...ld_imm64(R1, dst), ...ld_imm64(R2, src), op, alu64.mov.reg(R0, R1), exit()]);

const U64_EDGES = [0n, 1n, 2n, 3n, 7n, pow2(64) - 1n, pow2(64) - 2n, pow2(63), pow2(63) - 1n, pow2(32) - 1n, pow2(32), pow2(31), pow2(31) - 1n,
  pow2(64) - pow2(31), 0x80n, 0xffn, 0x8000n, 0xffffn, 0x1234_5678_9abc_def0n, 0xffff_ffff_8000_0000n, 0x0000_0001_ffff_ffffn];
const u64 = fc.oneof(fc.constantFrom(...U64_EDGES), fc.bigInt({ min: 0n, max: pow2(64) - 1n }), fc.bigInt({ min: 0n, max: 300n }).map((v) => toU(-v, 64)));
const S32_EDGES = [0, 1, -1, 2, -2, 3, 7, -7, 0x7fffffff, -0x80000000, 0xffff, -0x8000, 255, -128];
const s32 = fc.oneof(fc.constantFrom(...S32_EDGES), fc.integer({ min: -0x80000000, max: 0x7fffffff }));

const OPS: readonly Op[] = ["mul", "div", "mod", "sdiv", "smod"];

describe("ALU: mul, div, mod, sdiv, smod against the reference", () => {
  fcTest.prop([fc.constantFrom(...OPS), fc.constantFrom(32, 64), u64, u64], { numRuns: 400 })("register operand", (op, bits, a, b) => {
    const fam: AluFamily = (bits === 64 ? alu64 : alu32)[op];
    expect(runOp(a, b, fam.reg(R1, R2))).toBe(refAlu(op, bits, a, b));
  });
  fcTest.prop([fc.constantFrom(...OPS), fc.constantFrom(32, 64), u64, s32], { numRuns: 400 })("immediate operand (sign-extended), 0 refused as the verifier does", (op, bits, a, imm) => {
    const fam: AluFamily = (bits === 64 ? alu64 : alu32)[op];
    if (imm === 0 && op !== "mul") {
      expect(() => runOp(a, 0n, fam.imm(R1, 0))).toThrow("div by zero");
      return;
    }
    expect(runOp(a, 0n, fam.imm(R1, imm))).toBe(refAlu(op, bits, a, BigInt(imm)));
  });

  // Named after what they compute, as lib/test_bpf.c names its cases.
  const M = pow2(64) - 1n;
  const cases: [string, Item, bigint, bigint, bigint][] = [
    ["ALU64_DIV_X: 5 / 0 = 0", alu64.div.reg(R1, R2), 5n, 0n, 0n],
    ["ALU64_MOD_X: 5 % 0 = 5", alu64.mod.reg(R1, R2), 5n, 0n, 5n],
    ["ALU_DIV_X: the upper half of the divisor does not count: 6 / 0x1_00000000 = 0", alu32.div.reg(R1, R2), 6n, pow2(32), 0n],
    ["ALU_MOD_X: 0xffffffff_00000007 % 0 = 7, zero-extended", alu32.mod.reg(R1, R2), 0xffff_ffff_0000_0007n, 0n, 7n],
    ["ALU64_SDIV_X: INT64_MIN / -1 = INT64_MIN", alu64.sdiv.reg(R1, R2), pow2(63), M, pow2(63)],
    ["ALU64_SDIV_K: INT64_MIN / -1 = INT64_MIN", alu64.sdiv.imm(R1, -1), pow2(63), 0n, pow2(63)],
    ["ALU_SDIV_X: INT_MIN / -1 = INT_MIN, zero-extended", alu32.sdiv.reg(R1, R2), pow2(31), M, pow2(31)],
    ["ALU64_SMOD_X: INT64_MIN % -1 = 0", alu64.smod.reg(R1, R2), pow2(63), M, 0n],
    ["ALU_SMOD_K: INT_MIN % -1 = 0", alu32.smod.imm(R1, -1), pow2(31), 0n, 0n],
    ["ALU64_SDIV_X: -7 / 2 = -3 (toward zero)", alu64.sdiv.reg(R1, R2), M - 6n, 2n, M - 2n],
    ["ALU64_SMOD_X: -7 % 2 = -1 (the dividend's sign)", alu64.smod.reg(R1, R2), M - 6n, 2n, M],
    ["ALU_SMOD_X: -7 % -2 = -1, zero-extended", alu32.smod.reg(R1, R2), M - 6n, M - 1n, 0xffff_ffffn],
    ["ALU64_SMOD_X: 7 % 0 = 7", alu64.smod.reg(R1, R2), 7n, 0n, 7n],
    ["ALU_SMOD_X: 0x1_fffffff9 s% 0 = 0xfffffff9, zero-extended", alu32.smod.reg(R1, R2), 0x1_ffff_fff9n, 0n, 0xffff_fff9n],
    ["ALU64_SDIV_X: 7 / 0 = 0", alu64.sdiv.reg(R1, R2), 7n, 0n, 0n],
    ["ALU64_DIV_K: 2^64-1 / -1 is unsigned: 1", alu64.div.imm(R1, -1), M, 0n, 1n],
    ["ALU_DIV_K: 0xffffffff / -1 (0xffffffff) = 1", alu32.div.imm(R1, -1), 0xffff_ffffn, 0n, 1n],
    ["ALU64_MUL_X: (2^32+3) * (2^32+5) wraps", alu64.mul.reg(R1, R2), pow2(32) + 3n, pow2(32) + 5n, toU((pow2(32) + 3n) * (pow2(32) + 5n), 64)],
    ["ALU_MUL_K: 0x10000 * 0x10000 = 0 in 32 bits", alu32.mul.imm(R1, 0x10000), 0x10000n, 0n, 0n],
  ];
  test.each(cases)("%s", (_, op, a, b, want) => expect(runOp(a, b, op)).toBe(want));
});

describe("movsx, end, bswap against the reference", () => {
  fcTest.prop([fc.constantFrom(8, 16, 32), u64, u64], { numRuns: 200 })("ALU64 movsx: the low n bits of src, sign-extended", (n, a, b) => {
    expect(runOp(a, b, alu64.movsx(R1, R2, n as 8 | 16 | 32))).toBe(toU(toS(b, n), 64));
  });
  fcTest.prop([fc.constantFrom(8, 16), u64, u64], { numRuns: 200 })("ALU32 movsx: sign-extended to 32 bits, then zero-extended", (n, a, b) => {
    expect(runOp(a, b, alu32.movsx(R1, R2, n as 8 | 16))).toBe(toU(toS(b, n), 32));
  });
  fcTest.prop([fc.constantFrom(16, 32, 64), u64], { numRuns: 200 })("end.toLe on x86 (little-endian): the low n bits, zero-extended", (n, a) => {
    expect(runOp(a, 0n, end.toLe(R1, n as 16 | 32 | 64))).toBe(toU(a, n));
  });
  fcTest.prop([fc.constantFrom(16, 32, 64), u64], { numRuns: 200 })("end.toBe and bswap: the low n bits' bytes reversed, zero-extended", (n, a) => {
    expect(runOp(a, 0n, end.toBe(R1, n as 16 | 32 | 64))).toBe(swapBytes(a, n));
    expect(runOp(a, 0n, bswap(R1, n as 16 | 32 | 64))).toBe(swapBytes(a, n));
  });
  test.each([
    ["MOVSX64 (s8) 0x80 = -128", alu64.movsx(R2, R2, 8), 0x180n, 0xffff_ffff_ffff_ff80n],
    ["MOVSX64 (s32) 0x7fffffff stays positive", alu64.movsx(R2, R2, 32), 0xffff_ffff_7fff_ffffn, 0x7fff_ffffn],
    ["MOVSX32 (s16) 0x8000 = 0xffff8000, upper half zero", alu32.movsx(R2, R2, 16), 0x8000n, 0xffff_8000n],
    ["BE16 0x1122334455667788 = 0x8877", end.toBe(R2, 16), 0x1122_3344_5566_7788n, 0x8877n],
    ["LE32 0x1122334455667788 = 0x55667788", end.toLe(R2, 32), 0x1122_3344_5566_7788n, 0x5566_7788n],
    ["BSWAP64 0x1122334455667788 = 0x8877665544332211", bswap(R2, 64), 0x1122_3344_5566_7788n, 0x8877_6655_4433_2211n],
  ])("%s", (_, op, v, want) => {
    expect(runBody([...ld_imm64(R2, v), op, alu64.mov.reg(R0, R2), exit()])).toBe(want);
  });
});

describe("loads, atomics, JMP32 and ld_imm64 against the reference", () => {
  fcTest.prop([u64])("ld_imm64 loads all 64 bits", (v) => {
    expect(runBody([...ld_imm64(R0, v), exit()])).toBe(v);
  });
  fcTest.prop([fc.constantFrom(BPF_B, BPF_H, BPF_W), u64])("memsx loads sign-extend the bytes at the address; plain loads zero-extend them", (size, v) => {
    const n = size === BPF_B ? 8 : size === BPF_H ? 16 : 32;
    const body = (load: Item) => [...ld_imm64(R1, v), stx(BPF_DW, R10, R1, -8), load, exit()];
    expect(runBody(body(ldxsx(size, R0, R10, -8)))).toBe(toU(toS(v, n), 64));
    expect(runBody(body(ldx(size, R0, R10, -8)))).toBe(toU(v, n));
  });

  type Rmw = "add" | "and" | "or" | "xor";
  const apply = (op: Rmw, m: bigint, v: bigint, bits: number) =>
    toU(op === "add" ? m + v : op === "and" ? m & v : op === "or" ? m | v : m ^ v, bits);
  /** memory = m (8 bytes at r10-8), r1 = v, r0 = r0v; the atomic; returns [r0, r1, memory]. */
  const runAtomic = (m: bigint, v: bigint, r0v: bigint, op: Item) => {
    const pre = [...ld_imm64(R2, m), stx(BPF_DW, R10, R2, -8), ...ld_imm64(R1, v), ...ld_imm64(R0, r0v), op];
    return [
      runBody([...pre, exit()]),
      runBody([...pre, alu64.mov.reg(R0, R1), exit()]),
      runBody([...pre, ldx(BPF_DW, R0, R10, -8), exit()]),
    ];
  };
  fcTest.prop([fc.constantFrom<Rmw>("add", "and", "or", "xor"), fc.constantFrom(32, 64), fc.boolean(), u64, u64], { numRuns: 150 })(
    "add/and/or/xor, with BPF_FETCH the old value (zero-extended) in src; W touches the low 4 bytes only",
    (op, bits, fetch, m, v) => {
      const size = bits === 64 ? BPF_DW : BPF_W;
      const build = fetch ? { add: atomic.fetchAdd, and: atomic.fetchAnd, or: atomic.fetchOr, xor: atomic.fetchXor }[op] : atomic[op];
      const [, r1, mem] = runAtomic(m, v, 0n, build(size, R10, R1, -8));
      expect(mem).toBe(bits === 64 ? apply(op, m, v, 64) : (m >> 32n << 32n) | apply(op, toU(m, 32), v, 32));
      expect(r1).toBe(fetch ? toU(m, bits) : v);
    },
  );
  fcTest.prop([fc.constantFrom(32, 64), u64, u64], { numRuns: 100 })("xchg: memory gets src, src the old value", (bits, m, v) => {
    const [, r1, mem] = runAtomic(m, v, 0n, atomic.xchg(bits === 64 ? BPF_DW : BPF_W, R10, R1, -8));
    expect([r1, mem]).toEqual([toU(m, bits), bits === 64 ? v : (m >> 32n << 32n) | toU(v, 32)]);
  });
  fcTest.prop([fc.constantFrom(32, 64), u64, u64, fc.boolean(), u64], { numRuns: 150 })(
    "cmpxchg: stores src when the memory equals R0 (in the operand size); R0 gets the old value, zero-extended",
    (bits, m, v, equal, other) => {
      const r0v = equal ? toU(m, bits) | (bits === 32 ? other << 32n : 0n) : other;
      const [r0, , mem] = runAtomic(m, v, toU(r0v, 64), atomic.cmpxchg(bits === 64 ? BPF_DW : BPF_W, R10, R1, -8));
      const hit = toU(r0v, bits) === toU(m, bits);
      expect(r0).toBe(toU(m, bits));
      expect(mem).toBe(!hit ? m : bits === 64 ? v : (m >> 32n << 32n) | toU(v, 32));
    },
  );
  fcTest.prop([fc.constantFrom(BPF_B, BPF_H, BPF_W, BPF_DW), u64, u64], { numRuns: 100 })("load-acquire zero-extends; store-release writes the low bytes", (size, m, v) => {
    const n = { [BPF_B]: 8, [BPF_H]: 16, [BPF_W]: 32, [BPF_DW]: 64 }[size];
    const [, , mem] = runAtomic(m, v, 0n, atomic.storeRelease(size, R10, R1, -8));
    expect(mem).toBe(n === 64 ? v : (m >> BigInt(n) << BigInt(n)) | toU(v, n));
    const [r0] = runAtomic(m, v, 0n, atomic.loadAcquire(size, R0, R10, -8));
    expect(r0).toBe(toU(m, n));
  });

  const CONDS = { jeq: (a: bigint, b: bigint) => a === b, jne: (a: bigint, b: bigint) => a !== b, jgt: (a: bigint, b: bigint) => a > b,
    jge: (a: bigint, b: bigint) => a >= b, jlt: (a: bigint, b: bigint) => a < b, jle: (a: bigint, b: bigint) => a <= b,
    jsgt: (a: bigint, b: bigint) => a > b, jsge: (a: bigint, b: bigint) => a >= b, jslt: (a: bigint, b: bigint) => a < b,
    jsle: (a: bigint, b: bigint) => a <= b, jset: (a: bigint, b: bigint) => (a & b) !== 0n } as const;
  type Cond = keyof typeof CONDS;
  fcTest.prop([fc.constantFrom(...(Object.keys(CONDS) as Cond[])), fc.constantFrom(32, 64), u64, u64, s32], { numRuns: 400 })(
    "conditional jumps compare the low 32 bits in JMP32, all 64 in JMP, signed for the s-forms; immediates sign-extended",
    (cond, bits, a, b, imm) => {
      const read = (v: bigint) => (cond.startsWith("js") && cond !== "jset" ? toS(v, bits) : toU(v, bits));
      const cls = bits === 64 ? jmp : jmp32;
      const taken = (j: Item) => runBody([...ld_imm64(R1, a), ...ld_imm64(R2, b), alu64.mov.imm(R0, 1), j, alu64.mov.imm(R0, 0), label("t"), exit()]);
      expect(taken(cls[cond].reg(R1, R2, "t"))).toBe(CONDS[cond](read(a), read(b)) ? 1n : 0n);
      expect(taken(cls[cond].imm(R1, imm, "t"))).toBe(CONDS[cond](read(a), read(BigInt(imm))) ? 1n : 0n);
    },
  );
});

describe("the budget", () => {
  test("a run past its instruction budget stops with an error instead of hanging", () => {
    const p = program({ name: "t", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [
      alu64.mov.imm(R0, 0), label("l"), alu64.add.imm(R0, 1), jmp.jlt.imm(R0, 100_000, "l"), exit(),
    ] }] });
    validate(p);
    expect(() => runProgram({ ...env(p), budget: 1000 }, 0)).toThrow("t: more than 1000 instructions");
    expect(runProgram(env(p), 0)).toBe(100_000n);
  });
});

describe("the runner's recursion counters (kernel-model-7.2.md A.4)", () => {
  // outer runs inner through scx_sc_run_nested(0); inner returns 7, or the runner refuses it (-EBUSY)
  const pair = (type: "kprobe" | "tracing") => [
    program({ name: "outer", type, funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R1, 0), call.kfunc(1000), exit()] }] }),
    program({ name: "inner", type, funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 7), exit()] }] }),
  ];
  test("bpf_prog_active refuses a second run at 1, whatever the design allows on prog->active; prog->active counts per program", () => {
    for (const limit of [1, 4]) {
      // kprobe programs: trace_call_bpf()'s `__this_cpu_inc_return(bpf_prog_active) != 1`, one counter for all
      const k = interpEnv(pair("kprobe"), [1], limit);
      expect(runProgram(k, 0), `limit ${limit}`).toBe(REFUSED);
      expect(k.misses).toEqual([0, 1]);
      // tracing programs: each its own prog->active, so the other program runs
      const t = interpEnv(pair("tracing"), [1], limit);
      expect(runProgram(t, 0), `limit ${limit}`).toBe(7n);
      expect(t.misses).toEqual([0, 0]);
    }
  });
  test("a second attachment (Program.linkOf) shares its program's prog->active and misses", () => {
    // outer runs, through the kfunc, itself attached a second time (the same path: another
    // fentry target): prog->active is the bpf_prog's, so the second run is refused, and the
    // miss is the program's
    const [outer] = pair("tracing");
    const e = interpEnv([outer!, { ...outer!, linkOf: 0 }], [1], 1);
    expect(runProgram(e, 0)).toBe(REFUSED);
    expect(e.misses).toEqual([1, 0]);
  });
  test("the machine's runner takes the same limits from the image: 1 on bpf_prog_active, the design's on prog->active, none without a counter", () => {
    const limits = (type: "kprobe" | "tracing", attach?: "uprobe") => {
      const programs = pair(type).map((p) => (attach ? { ...p, attach } : p));
      const img = buildImage({ programs, task: 0, nested: [1] }, strategy("limited-recursion"));
      const kdata = img.loads.find((l) => l.addr === img.layout.kdata)!.bytes;
      const dv = new DataView(kdata.buffer, kdata.byteOffset);
      return programs.map((_, pi) => dv.getBigUint64(KD.progTable + pi * KD.progEntry + 24, true));
    };
    expect(limits("kprobe")).toEqual([1n, 1n]);
    expect(limits("tracing")).toEqual([4n, 4n]);
    expect(limits("kprobe", "uprobe").every((l) => l > 1n << 32n)).toBe(true);
  });
});
