// The emitters a strategy calls refuse an operand they cannot encode as asked (EmitterError,
// naming the method, the operand and what it must be) before writing anything, instead of
// encoding something else: `sub rsp,0` for subRsp(2 ** 40) or NaN, `sub rsp,1` for 1.5,
// `push rax` for push("xyz"), `mov rax,rax` for movRR("rax", undefined), a raw RangeError for
// lea(..., NaN). What fits is still encoded, at the edges of each field too.
import { describe, expect, test } from "vitest";
import { Emitter, EmitterError } from "../../../jit/x86/emit.ts";

const emitter = () => new Emitter("t", { base: 0xffffffffa0000000n, symbols: () => undefined });
type Call = (e: Emitter) => unknown;
// (the calls a strategy written in JavaScript can make: no types to stop them)
const any = (e: Emitter) => e as unknown as Record<string, (...a: unknown[]) => unknown>;

describe("an operand an emitter cannot encode", () => {
  test.each<[string, Call, RegExp]>([
    ["subRsp(2 ** 40)", (e) => e.subRsp(2 ** 40), /^e\.subRsp\(\): operand 'v' is 1099511627776 \(0x10000000000\); it must be an integer in -0x80000000\.\.0x7fffffff \(the imm32 is sign-extended to 64 bits\)$/],
    ["subRsp(NaN)", (e) => e.subRsp(NaN), /^e\.subRsp\(\): operand 'v' is NaN; it must be an integer/],
    ["subRsp(1.5)", (e) => e.subRsp(1.5), /^e\.subRsp\(\): operand 'v' is 1\.5; /],
    ["subRsp(2 ** 31)", (e) => e.subRsp(2 ** 31), /^e\.subRsp\(\): operand 'v' is 2147483648 \(0x80000000\); it must be an integer in -0x80000000\.\.0x7fffffff/],
    ["addRsp(0xffffffff)", (e) => e.addRsp(0xffffffff), /^e\.addRsp\(\): operand 'v' is 4294967295/],
    ["subRspImm32(Infinity)", (e) => e.subRspImm32(Infinity), /^e\.subRspImm32\(\): operand 'v' is Infinity/],
    ["push(\"xyz\")", (e) => any(e).push!("xyz"), /^e\.push\(\): operand 'r' is "xyz"; it must be a register name: rax, rcx, .*, r15$/],
    ["push(\"constructor\")", (e) => any(e).push!("constructor"), /^e\.push\(\): operand 'r' is "constructor"; it must be a register name/],
    ["pop(0)", (e) => any(e).pop!(0), /^e\.pop\(\): operand 'r' is 0; /],
    ["movRR(\"rax\", undefined)", (e) => any(e).movRR!("rax", undefined), /^e\.movRR\(\): operand 'src' is undefined; it must be a register name/],
    ["lea(\"rax\", \"rbp\", NaN)", (e) => e.lea("rax", "rbp", NaN), /^e\.lea\(\): operand 'off' is NaN; it must be an integer in -0x80000000\.\.0x7fffffff \(a disp32\)$/],
    ["ldx(8, \"rax\", \"rbp\", 2 ** 32)", (e) => e.ldx(8, "rax", "rbp", 2 ** 32), /^e\.ldx\(\): operand 'off' is 4294967296 /],
    ["ldx(3, ...)", (e) => any(e).ldx!(3, "rax", "rbp", 0), /^e\.ldx\(\): operand 'size' is 3; it must be 1, 2, 4 or 8/],
    ["stx(8, \"rbp\", -8, \"rbpx\")", (e) => any(e).stx!(8, "rbp", -8, "rbpx"), /^e\.stx\(\): operand 'src' is "rbpx"/],
    ["st(8, ..., 0x80000000)", (e) => e.st(8, "rbp", -8, 0x80000000), /^e\.st\(\): operand 'imm' is 2147483648 \(0x80000000\); it must be an integer in -0x80000000\.\.0x7fffffff \(the imm32 is sign-extended/],
    ["aluRI(\"add\", true, \"rax\", 2 ** 40)", (e) => e.aluRI("add", true, "rax", 2 ** 40), /^e\.aluRI\(\): operand 'imm' is 1099511627776 /],
    ["aluRI(\"add\", true, \"rax\", 0xffffffff)", (e) => e.aluRI("add", true, "rax", 0xffffffff), /^e\.aluRI\(\): operand 'imm' is 4294967295 .*sign-extended/],
    ["aluRI(\"add\", false, \"rax\", 2 ** 32)", (e) => e.aluRI("add", false, "rax", 2 ** 32), /^e\.aluRI\(\): operand 'imm' is 4294967296 .*-0x80000000\.\.0xffffffff \(an imm32\)$/],
    ["aluRI(\"mul\", ...)", (e) => any(e).aluRI!("mul", true, "rax", 1), /^e\.aluRI\(\): operand 'op' is "mul"; it must be one of add, sub, and, or, xor$/],
    ["aluRI(..., 5n)", (e) => any(e).aluRI!("add", true, "rax", 5n), /^e\.aluRI\(\): operand 'imm' is 5n; /],
    ["aluRR(\"add\", \"yes\", ...)", (e) => any(e).aluRR!("add", "yes", "rax", "rcx"), /^e\.aluRR\(\): operand 'is64' is "yes"; it must be true or false$/],
    ["shiftRI(\"shl\", true, \"rax\", -1)", (e) => e.shiftRI("shl", true, "rax", -1), /^e\.shiftRI\(\): operand 'n' is -1; it must be an integer in 0\.\.255/],
    ["movImm64(\"rax\", 5)", (e) => any(e).movImm64!("rax", 5), /^e\.movImm64\(\): operand 'v' is 5; it must be a bigint/],
    ["movImm64(\"rax\", 2n ** 64n)", (e) => e.movImm64("rax", 2n ** 64n), /^e\.movImm64\(\): operand 'v' is 18446744073709551616n; /],
    ["movImm32(false, \"rax\", 2 ** 32)", (e) => e.movImm32(false, "rax", 2 ** 32), /^e\.movImm32\(\): operand 'imm' is 4294967296 /],
    ["addFromGs(\"r9\", 0x80000000)", (e) => e.addFromGs("r9", 0x80000000), /^e\.addFromGs\(\): operand 'addr' is 2147483648 /],
    ["jcc(\"ne\", true, 200)", (e) => e.jcc("ne", true, 200), /^e\.jcc\(\): operand 'rel' is 200; it must be an integer in -128\.\.127 \(a rel8\)$/],
    ["jcc(\"nz\", ...)", (e) => any(e).jcc!("nz", false, 0), /^e\.jcc\(\): operand 'cond' is "nz"; /],
    ["jmp(false, 2 ** 31)", (e) => e.jmp(false, 2 ** 31), /^e\.jmp\(\): operand 'rel' is 2147483648 .*\(a rel32\)$/],
    ["atomicRmw(\"sub\", ...)", (e) => any(e).atomicRmw!("sub", 8, "rbp", -8, "rax"), /^e\.atomicRmw\(\): operand 'op' is "sub"; /],
    ["movsxReg(64, ...)", (e) => any(e).movsxReg!(64, true, "rax", "rcx"), /^e\.movsxReg\(\): operand 'bits' is 64; it must be 8, 16 or 32$/],
    ["nops(1.5)", (e) => e.nops(1.5), /^e\.nops\(\): operand 'n' is 1\.5; it must be an integer in 0\.\.1048576/],
    ["nops(-1)", (e) => e.nops(-1), /^e\.nops\(\): operand 'n' is -1; /],
    ["nops(1e7)", (e) => e.nops(1e7), /^e\.nops\(\): operand 'n' is 10000000 /],
    ["label(undefined)", (e) => any(e).label!(undefined), /^e\.label\(\): operand 'name' is undefined; it must be a non-empty string$/],
    ["callSymbol(42)", (e) => any(e).callSymbol!(42), /^e\.callSymbol\(\): operand 'symbol' is 42; /],
    ["cmpRI(true, \"rax\", 0x80000000)", (e) => e.cmpRI(true, "rax", 0x80000000), /^e\.cmpRI\(\): operand 'imm' is 2147483648 .*sign-extended/],
    ["testRI(false, \"rax\", 1.5)", (e) => e.testRI(false, "rax", 1.5), /^e\.testRI\(\): operand 'imm' is 1\.5; /],
    ["imulRI(true, \"rax\", -0x80000001)", (e) => e.imulRI(true, "rax", -0x80000001), /^e\.imulRI\(\): operand 'imm' is -2147483649 /],
    ["movR11Imm32(2 ** 31)", (e) => e.movR11Imm32(2 ** 31), /^e\.movR11Imm32\(\): operand 'imm' is 2147483648 /],
    ["ldsx(8, ...)", (e) => any(e).ldsx!(8, "rax", "rbp", -8), /^e\.ldsx\(\): operand 'size' is 8; /],
    ["ldsx(4, \"rax\", \"rbp\", 2 ** 31)", (e) => e.ldsx(4, "rax", "rbp", 2 ** 31), /^e\.ldsx\(\): operand 'off' is 2147483648 /],
    ["stx(8, \"rbp\", 0.5, \"rax\")", (e) => e.stx(8, "rbp", 0.5, "rax"), /^e\.stx\(\): operand 'off' is 0\.5; /],
    ["stx(16, ...)", (e) => any(e).stx!(16, "rbp", -8, "rax"), /^e\.stx\(\): operand 'size' is 16; /],
    ["st(4, \"rbp\", NaN, 1)", (e) => e.st(4, "rbp", NaN, 1), /^e\.st\(\): operand 'off' is NaN; /],
    ["atomicRmw(\"add\", 2, ...)", (e) => any(e).atomicRmw!("add", 2, "rbp", -8, "rax"), /^e\.atomicRmw\(\): operand 'size' is 2; /],
    ["atomicRmw(\"add\", 8, \"rbp\", 2 ** 40, \"rax\")", (e) => e.atomicRmw("add", 8, "rbp", 2 ** 40, "rax"), /^e\.atomicRmw\(\): operand 'off' is 1099511627776 /],
    ["shiftx(\"rol\", ...)", (e) => any(e).shiftx!("rol", true, "rax", "rcx"), /^e\.shiftx\(\): operand 'op' is "rol"; /],
    ["div(true, true, \"xmm0\")", (e) => any(e).div!(true, true, "xmm0"), /^e\.div\(\): operand 'src' is "xmm0"; /],
    ["bswap(1, \"rax\")", (e) => any(e).bswap!(1, "rax"), /^e\.bswap\(\): operand 'is64' is 1; /],
  ])("%s is refused, naming the method and the operand, and nothing is written", (_name, call, message) => {
    const e = emitter();
    e.push("rbp");
    let thrown: unknown;
    try {
      call(e);
    } catch (x) {
      thrown = x;
    }
    expect(thrown).toBeInstanceOf(EmitterError);
    expect((thrown as Error).message).toMatch(message);
    expect(e.offset).toBe(1); // push rbp only
  });

  test("a u32 immediate of a 32-bit form is taken as its s32, as upstream takes it: the same bytes as the negative", () => {
    const bytesOf = (f: (e: Emitter) => Emitter) => [...f(emitter()).finish().bytes];
    for (const [u, s] of [
      [(e: Emitter) => e.movImm32(true, "rax", 0xffffffff), (e: Emitter) => e.movImm32(true, "rax", -1)], // mov rax,-1 (sign-propagated)
      [(e: Emitter) => e.aluRI("add", false, "rax", 0xffffffff), (e: Emitter) => e.aluRI("add", false, "rax", -1)], // the imm8 form
      [(e: Emitter) => e.cmpRI(false, "rcx", 0xfffffff0), (e: Emitter) => e.cmpRI(false, "rcx", -16)],
      [(e: Emitter) => e.imulRI(false, "rdx", 0xfffffffe), (e: Emitter) => e.imulRI(false, "rdx", -2)],
      [(e: Emitter) => e.st(4, "rbp", -8, 0x80000000), (e: Emitter) => e.st(4, "rbp", -8, -0x80000000)],
      [(e: Emitter) => e.testRI(false, "rax", 0xffffffff), (e: Emitter) => e.testRI(false, "rax", -1)],
    ] as const) expect(bytesOf(u)).toEqual(bytesOf(s));
    expect(bytesOf((e) => e.movImm32(true, "rax", 0xffffffff))).toEqual([0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff]);
  });

  test("what fits is still encoded, at the edges of each field too", () => {
    const e = emitter()
      .subRsp(-8).subRsp(0x7fffffff).subRsp(-0x80000000).addRsp(127).subRspImm32(0)
      .lea("rax", "rsp", -0x80000000).ldx(8, "r12", "r12", 0x7fffffff).st(1, "rbp", -8, 0xff).st(4, "rbp", -8, 0xffffffff)
      .aluRI("and", false, "rax", 0xffffffff).aluRI("and", true, "rax", -1).movImm32(false, "rcx", 0xffffffff)
      .movImm64("rdx", -(2n ** 63n)).movImm64("rdx", 2n ** 64n - 1n).shiftRI("shl", true, "rax", 255)
      .jcc("ne", true, -128).jmp(true, 127).jmp(false, -0x80000000).nops(0).nops(12).movRR("r15", "rsp");
    const bytes = e.finish().bytes;
    expect(bytes.slice(0, 4)).toEqual(Uint8Array.of(0x48, 0x83, 0xec, 0xf8)); // sub rsp,-8
    expect(bytes.slice(4, 11)).toEqual(Uint8Array.of(0x48, 0x81, 0xec, 0xff, 0xff, 0xff, 0x7f)); // sub rsp,0x7fffffff
    expect(bytes.slice(11, 18)).toEqual(Uint8Array.of(0x48, 0x81, 0xec, 0x00, 0x00, 0x00, 0x80)); // sub rsp,-0x80000000
  });
});
