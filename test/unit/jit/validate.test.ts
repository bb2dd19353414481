// The validator: each verifier rule rejects with the function, instruction and rule named; the
// private-stack decisions follow the selftests of kernel-model.md §7.
import { describe, expect, test } from "vitest";
import { alu32, alu64, call, exit, jmp, label, ldx, st, stx, type Item } from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_W, R0, R1, R2, R6, R10 } from "../../../jit/bpf/opcodes.ts";
import { program, type FuncSource, type ProgType } from "../../../jit/bpf/program.ts";
import { validate, ValidationError, type Rule } from "../../../jit/bpf/validate.ts";

const fn = (name: string, stackDepth: number, body: Item[]): FuncSource => ({ name, stackDepth, body });
const prog = (funcs: FuncSource[], type: ProgType = "kprobe", privStackRequested = false) => program({ name: "p", type, privStackRequested, funcs });
const ret0 = [alu64.mov.imm(R0, 0), exit()];

function rejects(funcs: FuncSource[], rule: Rule, message: string, type: ProgType = "kprobe") {
  try {
    validate(prog(funcs, type));
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).issue.rule).toBe(rule);
    expect((e as ValidationError).message).toBe(message);
    return;
  }
  throw new Error(`expected a '${rule}' rejection`);
}

describe("accepted programs", () => {
  test("stores, loads, a stack pointer passed to a helper and a subprog, folded into r0", () => {
    const v = validate(prog([
      fn("main", 64, [
        alu64.mov.imm(R1, 7), stx(BPF_DW, R10, R1, -8), st(BPF_W, R10, -16, 3), st(BPF_W, R10, -12, 4),
        alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 5), call.helper(2),
        alu64.mov.reg(R6, R0),
        alu64.mov.reg(R1, R10), alu64.add.imm(R1, -16), call.subprog("sub"),
        ldx(BPF_DW, R0, R10, -8), alu64.add.reg(R0, R6), exit(),
      ]),
      fn("sub", 0, [ldx(BPF_W, R0, R1, 4), exit()]),
    ]));
    // 7.2's own depth is what the accesses reach: main's -16 (its own stores and the subprog's read through r1);
    // 16 bytes is under the private-stack threshold, and the combined sum is 16
    expect(v).toEqual({ privStack: [false, false], verifierDepth: [16, 0], stackDepth: [16, 0], stackExtra: [0, 0], callDepth: 2, combinedDepth: 16, zextCmpxchg: [], zextCmpxchgAllPaths: [] });
  });

  test("a subprog initialises its caller's stack through a pointer argument", () => {
    expect(() => validate(prog([
      fn("main", 8, [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("init"), ldx(BPF_DW, R0, R10, -8), exit()]),
      fn("init", 0, [st(BPF_DW, R1, 0, 1), ...ret0]),
    ]))).not.toThrow();
  });

  test("forward branches join; an initialisation on both paths counts", () => {
    expect(() => validate(prog([fn("main", 8, [
      jmp.jeq.imm(R1 as 1, 0, "else"), st(BPF_DW, R10, -8, 1), jmp.ja("join"),
      label("else"), st(BPF_DW, R10, -8, 2),
      label("join"), ldx(BPF_DW, R0, R10, -8), exit(),
    ])]))).toThrow("pointer comparison prohibited"); // r1 is ctx: comparing a pointer is refused
    expect(() => validate(prog([fn("main", 8, [
      alu64.mov.imm(R2, 0), jmp.jeq.imm(R2, 0, "else"), st(BPF_DW, R10, -8, 1), jmp.ja("join"),
      label("else"), st(BPF_DW, R10, -8, 2),
      label("join"), ldx(BPF_DW, R0, R10, -8), exit(),
    ])]))).not.toThrow();
  });
});

describe("rejections name the function, the instruction and the rule", () => {
  test("stack bounds", () => rejects([fn("main", 8, [st(BPF_DW, R10, -16, 1), ...ret0])], "stack-bounds",
    "program p, function main, insn 0: invalid write to stack R10 off=-16 size=8 (stack depth 8) [stack-bounds]"));
  test("stack above the frame", () => rejects([fn("main", 8, [st(BPF_B, R10, 0, 1), ...ret0])], "stack-bounds",
    "program p, function main, insn 0: invalid write to stack R10 off=0 size=1 (stack depth 8) [stack-bounds]"));
  test("alignment", () => rejects([fn("main", 16, [st(BPF_DW, R10, -12, 1), ...ret0])], "stack-alignment",
    "program p, function main, insn 0: misaligned stack access off -12 size 8 [stack-alignment]"));
  test("read of uninitialised stack", () => rejects([fn("main", 16, [st(BPF_W, R10, -8, 1), ldx(BPF_DW, R0, R10, -8), exit()])], "uninit-stack",
    "program p, function main, insn 1: invalid read from stack R10 off -8 size 8: byte -4 is not initialised [uninit-stack]"));
  test("an initialisation on one path only", () => rejects([fn("main", 8, [
    alu64.mov.imm(R2, 0), jmp.jeq.imm(R2, 0, "skip"), st(BPF_DW, R10, -8, 1), label("skip"), ldx(BPF_DW, R0, R10, -8), exit(),
  ])], "uninit-stack", "program p, function main, insn 3: invalid read from stack R10 off -8 size 8: byte -8 is not initialised [uninit-stack]"));
  test("R10 is read-only", () => rejects([fn("main", 0, [alu64.add.imm(R10, -8), ...ret0])], "fp-read-only",
    "program p, function main, insn 0: frame pointer is read only [fp-read-only]"));
  test("an uninitialised register", () => rejects([fn("main", 0, [alu64.mov.reg(R0, R2), exit()])], "uninit-reg",
    "program p, function main, insn 0: R2 !read_ok [uninit-reg]"));
  test("r0 must be set at exit", () => rejects([fn("main", 0, [exit()])], "uninit-reg", "program p, function main, insn 0: R0 !read_ok [uninit-reg]"));
  test("caller-saved registers are gone after a call", () => rejects([fn("main", 0, [
    alu64.mov.imm(R1, 1), call.helper(3), alu64.mov.reg(R0, R1), exit(),
  ])], "uninit-reg", "program p, function main, insn 2: R1 !read_ok [uninit-reg]"));
  test("32-bit pointer arithmetic", () => rejects([fn("main", 8, [alu64.mov.reg(R1, R10), alu32.add.imm(R1, -8), ...ret0])], "pointer-arithmetic",
    "program p, function main, insn 1: R1 32-bit pointer arithmetic prohibited [pointer-arithmetic]"));
  test("a scalar is not a pointer", () => rejects([fn("main", 0, [alu64.mov.imm(R1, 8), ldx(BPF_DW, R0, R1, 0), exit()])], "invalid-mem-access",
    "program p, function main, insn 1: R1 invalid mem access 'scalar' [invalid-mem-access]"));
  test("a helper's pointer argument must be in bounds and initialised", () => rejects([fn("main", 8, [
    alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 1), call.helper(2), exit(),
  ])], "uninit-stack", "program p, function main, insn 3: invalid read from stack R1 off -8 size 8: byte -8 is not initialised [uninit-stack]"));
  test("a subprog's access through a pointer argument is checked in the caller's frame", () => rejects([
    fn("main", 8, [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("sub"), exit()]),
    fn("sub", 0, [st(BPF_DW, R1, 8, 0), ...ret0]),
  ], "stack-bounds", "program p, function sub, insn 0: invalid write to stack R1 off=0 size=8 (stack depth 8) [stack-bounds]"));
  test("returning a pointer to the callee's own stack", () => rejects([
    fn("main", 0, [call.subprog("sub"), exit()]),
    fn("sub", 8, [alu64.mov.reg(R0, R10), exit()]),
  ], "return-value", "program p, function sub, insn 1: cannot return stack pointer to the caller [return-value]"));
  test("an unknown helper", () => rejects([fn("main", 0, [call.helper(99), ...ret0])], "unknown-helper",
    "program p, function main, insn 0: invalid func unknown#99 [unknown-helper]"));
  test("falling off the end", () => rejects([fn("main", 0, [alu64.mov.imm(R0, 0)])], "fall-through",
    "program p, function main, insn 0: last insn is not an exit or jmp [fall-through]"));
  test("unreachable code", () => rejects([fn("main", 0, [jmp.ja("end"), alu64.mov.imm(R0, 1), label("end"), ...ret0])], "unreachable",
    "program p, function main, insn 1: unreachable insn 1 [unreachable]"));
  test("recursion", () => rejects([
    fn("main", 0, [call.subprog("a"), exit()]), fn("a", 0, [call.subprog("b"), exit()]), fn("b", 0, [call.subprog("a"), exit()]),
  ], "recursion", "program p, function b: recursive call from b() to a() [recursion]"));
  test("more than MAX_CALL_FRAMES (16) frames: setup_func_entry()'s message", () => rejects(
    Array.from({ length: 17 }, (_, k) => fn(`f${k}`, 0, k < 16 ? [call.subprog(`f${k + 1}`), exit()] : ret0)),
    "call-depth", "program p, function f16: the call stack of 17 frames is too deep [call-depth]"));
  test("sixteen frames are fine in 7.2", () => {
    expect(validate(prog(Array.from({ length: 16 }, (_, k) => fn(`f${k}`, 0, k < 15 ? [call.subprog(`f${k + 1}`), exit()] : ret0)))).callDepth).toBe(16);
  });
  test("shift counts", () => rejects([fn("main", 0, [alu64.mov.imm(R0, 1), alu32.lsh.imm(R0, 32), exit()])], "shift-range",
    "program p, function main, insn 1: invalid shift 32 [shift-range]"));
});

describe("private stacks and stack limits (kernel-model.md §2.2, §7)", () => {
  const store256 = [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -256), ...ret0];
  /** A store at the bottom of a frame: the verifier's depth is what the program touches (grow_stack_state()). */
  const touch = (depth: number) => st(BPF_DW, R10, -depth, 0);
  test("'Private stack, single prog': a kprobe with 256 bytes runs on a private stack", () => {
    expect(validate(prog([fn("main", 256, store256)])).privStack).toEqual([true]);
  });
  test("'No private stack': 8 bytes is under the 64-byte threshold", () => {
    expect(validate(prog([fn("main", 8, [st(BPF_DW, R10, -8, 0), ...ret0])], "raw_tp")).privStack).toEqual([false]);
  });
  test("the threshold applies after rounding to 16: 49 bytes round to 64", () => {
    expect(validate(prog([fn("main", 49, [st(BPF_B, R10, -49, 0), ...ret0])])).privStack).toEqual([true]);
    expect(validate(prog([fn("main", 48, [st(BPF_B, R10, -48, 0), ...ret0])])).privStack).toEqual([false]);
  });
  test("'Private stack, subtree > MAX_BPF_STACK': 512 private + 32 is accepted", () => {
    const v = validate(prog([
      fn("main", 512, [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -512), call.subprog("sub"), ...ret0]),
      fn("sub", 32, [touch(32), call.helper(3), exit()]),
    ]));
    expect(v.privStack).toEqual([true, false]);
    expect(v.combinedDepth).toBe(32);
  });
  test("without private stacks the same chain is too large", () => rejects([
    fn("main", 400, [touch(400), call.subprog("sub"), exit()]), fn("sub", 208, [touch(208), call.helper(3), exit()]),
  ], "combined-stack-size", "program p, function sub: combined stack size of 2 calls is 608. Too large [combined-stack-size]", "struct_ops"));
  test("struct_ops gets private stacks only when check_member() requested them", () => {
    const funcs = [fn("main", 400, [touch(400), call.subprog("sub"), exit()]), fn("sub", 208, [touch(208), call.helper(3), exit()])];
    expect(validate(prog(funcs, "struct_ops", true)).privStack).toEqual([true, true]);
  });
  test("declared but untouched stack is not the verifier's: no private stack, and the limits see only what is used", () => {
    const v = validate(prog([fn("main", 256, [st(BPF_DW, R10, -8, 0), ...ret0])]));
    expect(v.stackDepth).toEqual([8]);
    expect(v.privStack).toEqual([false]);
  });
  test("a private subprog is checked alone against 512", () => rejects([fn("main", 520, [touch(520), ...ret0])], "stack-size",
    "program p, function main: stack size of subprog 0 is 528. Too large [stack-size]"));
});

describe("review regressions: what upstream rejects", () => {
  test("a subprog no call reaches is unreachable code", () => rejects([
    fn("main", 0, ret0), fn("dead", 8, [ldx(BPF_DW, R0, R10, -8), exit()]),
  ], "unreachable", "program p, function dead, insn 0: unreachable insn 2: no call reaches function dead [unreachable]"));
  test("reserved fields: a MOV|X with an offset that is no BPF_MOVSX width", () => {
    const movsx = { kind: "insn" as const, insn: { code: 0xbf, dst: 0, src: 1, off: 4, imm: 0 } };
    rejects([fn("main", 0, [alu64.mov.imm(R1, 0xff), movsx, exit()])], "reserved-fields", "program p, function main, insn 1: BPF_MOV uses reserved fields [reserved-fields]");
  });
  test("reserved fields: an exit with operands", () => {
    const badExit = { kind: "insn" as const, insn: { code: 0x95, dst: 0, src: 0, off: 0, imm: 7 } };
    rejects([fn("main", 0, [alu64.mov.imm(R0, 0), badExit])], "reserved-fields", "program p, function main, insn 1: BPF_EXIT uses reserved fields [reserved-fields]");
  });
  test("returning a pointer into the caller's frame", () => rejects([
    fn("main", 8, [alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("sub"), ...ret0]),
    fn("sub", 0, [alu64.mov.reg(R0, R1), exit()]),
  ], "return-value", "program p, function sub, insn 1: cannot return stack pointer to the caller [return-value]"));
});
