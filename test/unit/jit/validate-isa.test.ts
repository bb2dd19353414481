// The validator on the 7.2 instruction families: the verifier's field checks and messages
// (check_and_resolve_insns, check_insn_fields), the data-flow rules of check_alu_op,
// check_load_mem/check_store_reg and check_atomic, the project's `unsupported opcode` refusals,
// and the stack depth 7.2 computes (grow_stack_state()).
import { describe, expect, test } from "vitest";
import {
  alu32, alu64, atomic, bswap, call, end, exit, insn, jmp, jmp32, ld_imm64, ldx, ldxsx, may_goto, label, st, stx, type Item,
} from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R3, R6, R10 } from "../../../jit/bpf/opcodes.ts";
import { program, type FuncSource, type ProgType } from "../../../jit/bpf/program.ts";
import { validate, ValidationError, type Rule } from "../../../jit/bpf/validate.ts";

const fn = (name: string, stackDepth: number, body: Item[]): FuncSource => ({ name, stackDepth, body });
const prog = (funcs: FuncSource[], type: ProgType = "kprobe") => program({ name: "p", type, funcs });
const ret0 = [alu64.mov.imm(R0, 0), exit()];
const raw = (code: number, dst: number, src: number, off: number, imm: number): Item => ({ kind: "insn", insn: insn(code, dst, src, off, imm) });

function rejects(body: Item[], rule: Rule, message: string, depth = 16) {
  try {
    validate(prog([fn("main", depth, body)]));
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect([(e as ValidationError).issue.rule, (e as ValidationError).message]).toEqual([rule, message]);
    return;
  }
  throw new Error(`expected a '${rule}' rejection`);
}
const at = (i: number, msg: string, rule: Rule) => `program p, function main, insn ${i}: ${msg} [${rule}]`;

describe("accepted: every family, and the depth 7.2 computes", () => {
  test("mul/div/mod/sdiv/smod (register divisors may be 0), movsx, end, bswap, memsx loads, atomics, ld_imm64, gotol", () => {
    const v = validate(prog([fn("main", 32, [
      ...ld_imm64(R1, -5n), alu64.mov.imm(R2, 0),
      alu64.mul.reg(R1, R1), alu64.div.reg(R1, R2), alu64.mod.reg(R1, R2), alu64.sdiv.imm(R1, -1), alu64.smod.imm(R1, 3),
      alu32.mul.imm(R1, 7), alu32.div.imm(R1, 3), alu32.mod.reg(R1, R2), alu32.sdiv.reg(R1, R2), alu32.smod.imm(R1, -1),
      alu64.movsx(R2, R1, 8), alu64.movsx(R2, R1, 32), alu32.movsx(R2, R1, 16), end.toBe(R2, 16), end.toLe(R2, 64), bswap(R2, 32),
      stx(BPF_DW, R10, R2, -8), ldxsx(BPF_B, R3, R10, -8), ldxsx(BPF_H, R3, R10, -6), ldxsx(BPF_W, R3, R10, -4),
      atomic.add(BPF_DW, R10, R3, -8), atomic.fetchXor(BPF_W, R10, R3, -4), atomic.xchg(BPF_DW, R10, R3, -8),
      alu64.mov.imm(R0, 1), atomic.cmpxchg(BPF_W, R10, R3, -8),
      atomic.storeRelease(BPF_B, R10, R3, -17), atomic.loadAcquire(BPF_B, R6, R10, -17),
      jmp32.jset.imm(R6, 1, "l"), jmp32.jsle.reg(R6, R3, "l"), label("l"), exit(),
    ])]));
    expect(v.stackDepth).toEqual([24]); // round_up(17, 8)
    expect(v.stackExtra).toEqual([0]);
  });

  test("the depth is the verifier's high-water mark, however much is declared; a callee's accesses through a pointer count for the caller", () => {
    const v = validate(prog([
      fn("main", 128, [st(BPF_W, R10, -20, 1), st(BPF_W, R10, -40, 0), st(BPF_W, R10, -36, 0), alu64.mov.reg(R1, R10), alu64.add.imm(R1, -40), alu64.mov.imm(R2, 1), call.helper(2), call.subprog("sub"), exit()]),
      fn("sub", 64, [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), st(BPF_DW, R1, 0, 3), alu64.mov.reg(R0, R1), alu64.mov.imm(R0, 0), exit()]),
    ]));
    expect(v.stackDepth).toEqual([40, 8]);
    expect(v.verifierDepth).toEqual([48, 16]); // the stack limits and private stacks go by the computed depth, rounded to 16
    const w = validate(prog([
      fn("main", 64, [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -16), call.subprog("sub"), exit()]),
      fn("sub", 0, [st(BPF_B, R1, -33, 7), ...ret0]),
    ]));
    expect(w.stackDepth).toEqual([56, 0]); // -49 in main's frame → round_up(49, 8)
  });

  test("may_goto adds 16 bytes below the function's stack (x86-64's timed may_goto)", () => {
    const v = validate(prog([
      fn("main", 8, [st(BPF_DW, R10, -8, 0), may_goto("out"), call.subprog("sub"), label("out"), ...ret0]),
      fn("sub", 0, [...ret0]),
    ]));
    expect([v.stackDepth, v.stackExtra]).toEqual([[8, 0], [16, 0]]);
  });

  test("what 7.2 allows and the old subset refused: an exit's off, a helper's pointer that is not 8-byte aligned, pointer + known register", () => {
    expect(() => validate(prog([fn("main", 0, [alu64.mov.imm(R0, 0), raw(0x95, 0, 0, 5, 0)])]))).not.toThrow();
    expect(() => validate(prog([fn("main", 16, [
      st(BPF_W, R10, -12, 1), st(BPF_W, R10, -8, 2), alu64.mov.reg(R1, R10), alu64.add.imm(R1, -12), alu64.mov.imm(R2, 1), call.helper(2), exit(),
    ])]))).not.toThrow();
    expect(() => validate(prog([fn("main", 16, [
      alu64.mov.reg(R1, R10), alu64.mov.imm(R2, -8), alu64.add.reg(R1, R2), alu64.mov.imm(R2, 4), alu64.sub.reg(R1, R2), st(BPF_W, R1, 0, 1), ...ret0,
    ])]))).not.toThrow();
  });
});

describe("unknown opcodes: bpf_opcode_in_insntable() (verifier.c:18460 \"unknown opcode %02x\")", () => {
  test.each([
    ["ALU|NEG|X", 0x8c], ["ALU64|END|TO_BE (bswap has only TO_LE)", 0xdf], ["LDX|MEMSX|DW", 0x99], ["JMP32|JCOND", 0xe6],
    ["JMP32|CALL", 0x86], ["JMP32|EXIT", 0x96], ["JMP32|JA|X", 0x0e], ["STX|MEMSX", 0x9b], ["ALU op 0xe0", 0xe7], ["LD|IMM|W", 0x00],
  ])("%s", (_, code) => rejects([raw(code, 0, 0, 0, 0), ...ret0], "opcode", at(0, `unknown opcode ${code.toString(16).padStart(2, "0")}`, "opcode")));
});

describe("encodings 7.2 accepts that this project does not model: 'unsupported opcode 0x.. (BPF_…) at insn N'", () => {
  test("BPF_LD_ABS: the verifier refuses it for these program types too", () => rejects([alu64.mov.imm(R0, 0), raw(0x20, 0, 0, 0, 4), exit()], "unsupported",
    at(1, "unsupported opcode 0x20 (BPF_LD|BPF_ABS|BPF_W) at insn 1: BPF_LD_[ABS|IND] instructions not allowed for this program type", "unsupported")));
  test("BPF_LD_IND", () => rejects([raw(0x48, 0, 2, 0, 4), ...ret0], "unsupported",
    at(0, "unsupported opcode 0x48 (BPF_LD|BPF_IND|BPF_H) at insn 0: BPF_LD_[ABS|IND] instructions not allowed for this program type", "unsupported")));
  test("gotox", () => rejects([alu64.mov.imm(R1, 0), raw(0x0d, 1, 0, 0, 0), ...ret0], "unsupported",
    at(1, "unsupported opcode 0x0d (BPF_JMP|BPF_JA|BPF_X) at insn 1: gotox jumps through a BPF_MAP_TYPE_INSN_ARRAY; the synthetic kernel has no maps", "unsupported")));
  test("addr_space_cast", () => rejects([alu64.mov.imm(R2, 0), raw(0xbf, 1, 2, 1, 1), ...ret0], "unsupported",
    at(1, "unsupported opcode 0xbf (BPF_ALU64|BPF_MOV|BPF_X, off 1: addr_space_cast) at insn 1: addr_space_cast insn can only be used in a program that has an associated arena", "unsupported")));
  test("ld_imm64 of a map fd", () => rejects([raw(0x18, 1, 1, 0, 3), raw(0, 0, 0, 0, 0), ...ret0], "unsupported",
    at(0, "unsupported opcode 0x18 (BPF_LD|BPF_IMM|BPF_DW, src_reg BPF_PSEUDO_MAP_FD) at insn 0: the synthetic kernel has no maps", "unsupported")));
  test("ld_imm64 of a callback (BPF_PSEUDO_FUNC)", () => rejects([raw(0x18, 1, 4, 0, 3), raw(0, 0, 0, 0, 0), ...ret0], "unsupported",
    at(0, "unsupported opcode 0x18 (BPF_LD|BPF_IMM|BPF_DW, src_reg BPF_PSEUDO_FUNC) at insn 0: no helper or kfunc of the synthetic kernel takes a callback", "unsupported")));
  test("a kfunc from module BTF", () => rejects([raw(0x85, 0, 2, 1, 1000), ...ret0], "unsupported",
    at(0, "unsupported opcode 0x85 (BPF_JMP|BPF_CALL, BPF_PSEUDO_KFUNC_CALL) at insn 0: a kfunc from module BTF (off 1); the synthetic kernel's kfuncs are in vmlinux BTF (off 0)", "unsupported")));
});

describe("reserved fields: check_insn_fields() (verifier.c:18268)", () => {
  const cases: [string, Item, string][] = [
    ["off 1 on an op other than div/mod", raw(0x0f, 1, 2, 1, 0), "BPF_ALU uses reserved fields"],
    ["off 2 on div", raw(0x3f, 1, 2, 2, 0), "BPF_ALU uses reserved fields"],
    ["a register ALU op with imm", raw(0x2f, 1, 2, 0, 1), "BPF_ALU uses reserved fields"],
    ["an immediate ALU op with src_reg", raw(0x27, 1, 2, 0, 1), "BPF_ALU uses reserved fields"],
    ["END of 8 bits", raw(0xdc, 1, 0, 0, 8), "BPF_END uses reserved fields"],
    ["END with off", raw(0xd7, 1, 0, 1, 16), "BPF_END uses reserved fields"],
    ["NEG with imm", raw(0x87, 1, 0, 0, 1), "BPF_NEG uses reserved fields"],
    ["movsx32 from 32 bits", raw(0xbc, 1, 2, 32, 0), "BPF_MOV uses reserved fields"],
    ["movsx with imm", raw(0xbf, 1, 2, 8, 1), "BPF_MOV uses reserved fields"],
    ["mov imm with off", raw(0xb7, 1, 0, 8, 1), "BPF_MOV uses reserved fields"],
    ["addr_space_cast between 2 and 0", raw(0xbf, 1, 2, 1, 2), "addr_space_cast insn can only convert between address space 1 and 0"],
    ["LDX with imm", raw(0x91, 1, 10, -8, 1), "BPF_LDX uses reserved fields"],
    ["ST with src_reg", raw(0x7a, 10, 1, -8, 1), "BPF_ST uses reserved fields"],
    ["JA with imm", raw(0x05, 0, 0, 0, 1), "BPF_JA uses reserved fields"],
    ["gotol with off", raw(0x06, 0, 0, 1, 0), "BPF_JA uses reserved fields"],
    ["gotox with off", raw(0x0d, 1, 0, 1, 0), "BPF_JA|BPF_X uses reserved fields"],
    ["may_goto with imm", raw(0xe5, 0, 0, 0, 5), "invalid may_goto imm 5"],
    ["may_goto with dst_reg", raw(0xe5, 1, 0, 0, 0), "invalid may_goto imm 0"],
    ["a JCOND that is not may_goto", raw(0xe5, 0, 1, 0, 0), "invalid may_goto imm 0"],
    ["a conditional jump on imm with src_reg", raw(0x15, 1, 2, 0, 0), "BPF_JMP/JMP32 uses reserved fields"],
    ["a JMP32 conditional jump on a register with imm", raw(0x1e, 1, 2, 0, 3), "BPF_JMP/JMP32 uses reserved fields"],
    ["a call with dst_reg", raw(0x85, 1, 0, 0, 1), "BPF_CALL uses reserved fields"],
    ["a call with an unknown src_reg", raw(0x85, 0, 3, 0, 1), "BPF_CALL uses reserved fields"],
    ["BPF_LD_ABS with src_reg", raw(0x20, 0, 1, 0, 1), "BPF_LD_[ABS|IND] uses reserved fields"],
  ];
  test.each(cases)("%s", (_, it, msg) => rejects([alu64.mov.imm(R1, 1), alu64.mov.imm(R2, 2), it, ...ret0], "reserved-fields", at(2, msg, "reserved-fields")));
  test("an ld_imm64 with off", () => rejects([raw(0x18, 1, 0, 1, 0), raw(0, 0, 0, 0, 0), ...ret0], "reserved-fields", at(0, "BPF_LD_IMM64 uses reserved fields", "reserved-fields")));
});

describe("ld_imm64 (check_and_resolve_insns(), cfg.c)", () => {
  test("a second half with fields", () => rejects([raw(0x18, 1, 0, 0, 0), raw(0, 1, 0, 0, 0), ...ret0], "ld-imm64", at(0, "invalid bpf_ld_imm64 insn", "ld-imm64")));
  test("a second half that is an instruction", () => rejects([raw(0x18, 1, 0, 0, 0), alu64.mov.imm(R0, 0), exit()], "ld-imm64", at(0, "invalid bpf_ld_imm64 insn", "ld-imm64")));
  test("an unknown src_reg", () => rejects([raw(0x18, 1, 9, 0, 0), raw(0, 0, 0, 0, 0), ...ret0], "ld-imm64", at(0, "unrecognized bpf_ld_imm64 insn", "ld-imm64")));
  test("a map fd with a second imm", () => rejects([raw(0x18, 1, 1, 0, 3), raw(0, 0, 0, 0, 1), ...ret0], "ld-imm64", at(0, "unrecognized bpf_ld_imm64 insn", "ld-imm64")));
  test("a jump into the middle", () => rejects([alu64.mov.imm(R1, 0), raw(0x15, 1, 0, 1, 0), ...ld_imm64(R1, 5n), ...ret0], "ld-imm64", at(1, "jump into the middle of ldimm64 insn 2", "ld-imm64")));
  test("the last instruction of a function: check_subprogs() sees a code 0 last", () => rejects([alu64.mov.imm(R0, 0), ...ld_imm64(R1, 5n)], "fall-through", at(2, "last insn is not an exit or jmp", "fall-through")));
  test("into R10", () => rejects([...ld_imm64(R10, 5n), ...ret0], "fp-read-only", at(0, "frame pointer is read only", "fp-read-only")));
});

describe("ALU rules (check_alu_op(), verifier.c:15097; adjust_ptr_min_max_vals(), :13866)", () => {
  test.each([
    ["div", alu64.div.imm(R1, 0)], ["mod", alu64.mod.imm(R1, 0)], ["sdiv", alu64.sdiv.imm(R1, 0)], ["smod", alu64.smod.imm(R1, 0)],
    ["w div", alu32.div.imm(R1, 0)], ["w smod", alu32.smod.imm(R1, 0)],
  ])("%s by an immediate 0: \"div by zero\"", (_, it) => rejects([alu64.mov.imm(R1, 5), it, ...ret0], "div-by-zero", at(1, "div by zero", "div-by-zero")));
  test("div by zero is checked before the destination: r10 /= 0", () => rejects([alu64.div.imm(R10, 0), ...ret0], "div-by-zero", at(0, "div by zero", "div-by-zero")));
  test("a 64-bit shift by 64", () => rejects([alu64.mov.imm(R1, 5), alu64.lsh.imm(R1, 64), ...ret0], "shift-range", at(1, "invalid shift 64", "shift-range")));
  test("an uninitialised divisor", () => rejects([alu64.mov.imm(R1, 5), alu64.div.reg(R1, R3), ...ret0], "uninit-reg", at(1, "R3 !read_ok", "uninit-reg")));
  test("movsx into R10", () => rejects([alu64.mov.imm(R1, 5), alu64.movsx(R10, R1, 8), ...ret0], "fp-read-only", at(1, "frame pointer is read only", "fp-read-only")));
  test("bswap of R10: a pointer first", () => rejects([bswap(R10, 64), ...ret0], "pointer-arithmetic", at(0, "R10 pointer arithmetic prohibited", "pointer-arithmetic")));
  test("end of a pointer", () => rejects([alu64.mov.reg(R1, R10), end.toBe(R1, 32), ...ret0], "pointer-arithmetic", at(1, "R1 pointer arithmetic prohibited", "pointer-arithmetic")));
  test("movsx of a pointer", () => rejects([alu64.movsx(R1, R10, 32), ...ret0], "pointer-arithmetic", at(0, "R10 sign-extension part of pointer", "pointer-arithmetic")));
  test("a 32-bit movsx of a pointer is a partial copy first", () => rejects([alu32.movsx(R1, R10, 8), ...ret0], "pointer-arithmetic", at(0, "R10 partial copy of pointer", "pointer-arithmetic")));
  test("a 32-bit mov of a pointer", () => rejects([alu32.mov.reg(R1, R10), ...ret0], "pointer-arithmetic", at(0, "R10 partial copy of pointer", "pointer-arithmetic")));
  test("mul of a pointer", () => rejects([alu64.mov.reg(R1, R10), alu64.mul.imm(R1, 2), ...ret0], "pointer-arithmetic", at(1, "R1 pointer arithmetic with *= operator prohibited", "pointer-arithmetic")));
  test("sdiv of a pointer", () => rejects([alu64.mov.reg(R1, R10), alu64.sdiv.imm(R1, 2), ...ret0], "pointer-arithmetic", at(1, "R1 pointer arithmetic with /= operator prohibited", "pointer-arithmetic")));
  test("and of a pointer", () => rejects([alu64.mov.reg(R1, R10), alu64.and.imm(R1, -8), ...ret0], "pointer-arithmetic", at(1, "R1 bitwise operator &= on pointer prohibited", "pointer-arithmetic")));
  test("pointer + pointer", () => rejects([alu64.mov.reg(R1, R10), alu64.add.reg(R1, R10), ...ret0], "pointer-arithmetic", at(1, "R1 pointer += pointer prohibited", "pointer-arithmetic")));
  test("scalar - pointer", () => rejects([alu64.mov.imm(R1, 0), alu64.sub.reg(R1, R10), ...ret0], "pointer-arithmetic", at(1, "R1 tried to subtract pointer from scalar", "pointer-arithmetic")));
  test("pointer + an unknown number", () => rejects([call.helper(3), alu64.mov.reg(R1, R10), alu64.add.reg(R1, R0), ...ret0], "pointer-arithmetic",
    at(2, "R1 variable stack offset is not modelled (add or subtract a known constant)", "pointer-arithmetic")));
  test("ctx + 8", () => rejects([alu64.add.imm(R1, 8), ...ret0], "pointer-arithmetic", at(0, "R1 pointer arithmetic on ctx is not modelled (only stack pointers move)", "pointer-arithmetic")));
  test("comparing a pointer in JMP32", () => rejects([alu64.mov.imm(R2, 0), jmp32.jeq.reg(R2, R10, "x"), label("x"), ...ret0], "pointer-arithmetic", at(1, "R10 pointer comparison prohibited", "pointer-arithmetic")));
});

describe("loads and stores", () => {
  test("a sign-extending load into R10", () => rejects([st(BPF_DW, R10, -8, 1), ldxsx(BPF_W, R10, R10, -8), ...ret0], "fp-read-only", at(1, "frame pointer is read only", "fp-read-only")));
  test("a sign-extending load of uninitialised stack", () => rejects([ldxsx(BPF_H, R1, R10, -2), ...ret0], "uninit-stack",
    at(0, "invalid read from stack R10 off -2 size 2: byte -2 is not initialised", "uninit-stack")));
  test("alignment is checked before bounds (check_ptr_alignment() first)", () => rejects([st(BPF_DW, R10, -12, 1), ...ret0], "stack-alignment",
    at(0, "misaligned stack access off -12 size 8", "stack-alignment"), 8));
  test("a read beyond the declared depth", () => rejects([ldx(BPF_DW, R0, R10, -24), exit()], "stack-bounds", at(0, "invalid read from stack R10 off=-24 size=8 (stack depth 16)", "stack-bounds")));
});

describe("atomics (check_atomic(), verifier.c:6618): on the stack only, through R10-derived pointers", () => {
  const init8 = st(BPF_DW, R10, -8, 1);
  test("a byte-sized read-modify-write", () => rejects([init8, alu64.mov.imm(R1, 1), raw(0xd3, 10, 1, -8, 0x00), ...ret0], "atomic", at(2, "invalid atomic operand size", "atomic")));
  test("a half-word cmpxchg", () => rejects([init8, alu64.mov.imm(R1, 1), raw(0xcb, 10, 1, -8, 0xf1), ...ret0], "atomic", at(2, "invalid atomic operand size", "atomic")));
  test("an unknown operation", () => rejects([init8, alu64.mov.imm(R1, 1), raw(0xdb, 10, 1, -8, 0x02), ...ret0], "atomic", at(2, "BPF_ATOMIC uses invalid atomic opcode 02", "atomic")));
  test("fetch without BPF_FETCH's friends: and|fetch|0x100", () => rejects([init8, alu64.mov.imm(R1, 1), raw(0xdb, 10, 1, -8, 0x151), ...ret0], "atomic", at(2, "BPF_ATOMIC uses invalid atomic opcode 151", "atomic")));
  test("cmpxchg needs R0", () => rejects([init8, alu64.mov.imm(R1, 1), atomic.cmpxchg(BPF_DW, R10, R1, -8), exit()], "uninit-reg", at(2, "R0 !read_ok", "uninit-reg")));
  test("cmpxchg with a pointer in R0", () => rejects([init8, alu64.mov.imm(R1, 1), alu64.mov.reg(R0, R10), atomic.cmpxchg(BPF_DW, R10, R1, -8), ...ret0], "pointer-leak",
    at(3, "R0 leaks addr into mem", "pointer-leak")));
  test("a pointer as the operand", () => rejects([init8, alu64.mov.reg(R1, R10), atomic.add(BPF_DW, R10, R1, -8), ...ret0], "pointer-leak", at(2, "R1 leaks addr into mem", "pointer-leak")));
  test("into ctx", () => rejects([alu64.mov.imm(R2, 1), atomic.add(BPF_DW, R1, R2, 0), ...ret0], "atomic", at(1, "BPF_ATOMIC stores into R1 ctx is not allowed", "atomic")));
  test("load-acquire from ctx", () => rejects([atomic.loadAcquire(BPF_W, R2, R1, 0), ...ret0], "atomic", at(0, "BPF_ATOMIC loads from R1 ctx is not allowed", "atomic")));
  test("through a number", () => rejects([alu64.mov.imm(R2, 1), atomic.fetchOr(BPF_W, R2, R2, 0), ...ret0], "invalid-mem-access", at(1, "R2 invalid mem access 'scalar'", "invalid-mem-access")));
  test("of uninitialised stack: the old value is read", () => rejects([alu64.mov.imm(R1, 1), atomic.xchg(BPF_W, R10, R1, -4), ...ret0], "uninit-stack",
    at(1, "invalid read from stack R10 off -4 size 4: byte -4 is not initialised", "uninit-stack")));
  test("misaligned (atomics are always strict)", () => rejects([init8, st(BPF_DW, R10, -16, 1), alu64.mov.imm(R1, 1), atomic.add(BPF_DW, R10, R1, -12), ...ret0], "stack-alignment",
    at(3, "misaligned stack access off -12 size 8", "stack-alignment")));
  test("fetch into R10 is refused as a pointer operand first", () => rejects([init8, atomic.fetchAdd(BPF_DW, R10, R10, -8), ...ret0], "pointer-leak", at(1, "R10 leaks addr into mem", "pointer-leak")));
  test("load-acquire into R10", () => rejects([init8, atomic.loadAcquire(BPF_DW, R10, R10, -8), ...ret0], "fp-read-only", at(1, "frame pointer is read only", "fp-read-only")));
  test("store-release of an uninitialised register", () => rejects([atomic.storeRelease(BPF_H, R10, R3, -2), ...ret0], "uninit-reg", at(0, "R3 !read_ok", "uninit-reg")));
  test("the fetched value is a number after the instruction, whatever it was", () => {
    expect(() => validate(prog([fn("main", 8, [init8, alu64.mov.reg(R1, R10), alu64.mov.imm(R1, 2), atomic.fetchAdd(BPF_DW, R10, R1, -8), alu64.mov.reg(R0, R1), exit()])]))).not.toThrow();
  });
  test("cmpxchg leaves R0 a number, so it may be returned", () => {
    expect(() => validate(prog([fn("main", 8, [init8, alu64.mov.imm(R1, 2), alu64.mov.imm(R0, 1), atomic.cmpxchg(BPF_DW, R10, R1, -8), exit()])]))).not.toThrow();
  });
});

describe("jumps", () => {
  test("gotol out of the function", () => rejects([raw(0x06, 0, 0, 0, 5), ...ret0], "jump-range", at(0, "jump out of range from insn 0 to 6", "jump-range")));
  test("may_goto out of the function", () => rejects([raw(0xe5, 0, 0, -2, 0), ...ret0], "jump-range", at(0, "jump out of range from insn 0 to -1", "jump-range")));
  test("jumps reach through gotol and may_goto: what they skip is unreachable", () => rejects([
    jmp.ja("a"), label("a"), raw(0x06, 0, 0, 0, 1), alu64.mov.imm(R0, 1), ...ret0,
  ], "unreachable", at(2, "unreachable insn 2", "unreachable")));
  test("a may_goto joins both ways: an initialisation on one of them does not count", () => rejects([
    may_goto("skip"), st(BPF_DW, R10, -8, 1), label("skip"), ldx(BPF_DW, R0, R10, -8), exit(),
  ], "uninit-stack", at(2, "invalid read from stack R10 off -8 size 8: byte -8 is not initialised", "uninit-stack")));
  test("a sixteen-bit BPF_H size in a JMP32 imm compare is just a number", () => {
    expect(() => validate(prog([fn("main", 0, [alu32.mov.imm(R1, BPF_H), jmp32.jsgt.imm(R1, -1, "o"), label("o"), ...ret0])]))).not.toThrow();
  });
});

describe("reading the context (R1) as the program type allows (7.2's is_valid_access())", () => {
  const reads = (type: ProgType, off: number, size: typeof BPF_B | typeof BPF_H | typeof BPF_W | typeof BPF_DW) => () =>
    validate(prog([fn("main", 0, [ldx(size, R0, R1, off), exit()])], type));
  test("kprobe: pt_regs, any width, aligned, within its 168 bytes", () => {
    expect(reads("kprobe", 0, BPF_DW)).not.toThrow();
    expect(reads("kprobe", 160, BPF_DW)).not.toThrow();
    expect(reads("kprobe", 167, BPF_B)).not.toThrow();
    expect(reads("kprobe", 168, BPF_B)).toThrow("invalid bpf_context access off=168 size=1 [ctx-access]");
    expect(reads("kprobe", 4, BPF_DW)).toThrow("invalid bpf_context access off=4 size=8");
  });
  test("tracepoint: the record past its first 8 bytes; raw_tp: the 12 u64 arguments", () => {
    expect(reads("tracepoint", 8, BPF_DW)).not.toThrow();
    expect(reads("tracepoint", 0, BPF_DW)).toThrow("invalid bpf_context access off=0 size=8");
    expect(reads("raw_tp", 88, BPF_DW)).not.toThrow();
    expect(reads("raw_tp", 95, BPF_B)).not.toThrow();
    expect(reads("raw_tp", 96, BPF_DW)).toThrow("invalid bpf_context access off=96 size=8");
  });
  test("perf_event, tracing and struct_ops contexts, and any write, are refused as not modelled, saying why", () => {
    expect(reads("perf_event", 0, BPF_DW)).toThrow("reading a perf_event program's context is not modelled (pe_prog_convert_ctx_access() rewrites it)");
    expect(reads("tracing", 0, BPF_DW)).toThrow("reading a tracing program's context is not modelled (BTF types it)");
    expect(() => validate(prog([fn("main", 0, [st(BPF_DW, R1, 0, 1), ...ret0])]))).toThrow("writes to the context (R1) are not modelled");
  });
});
