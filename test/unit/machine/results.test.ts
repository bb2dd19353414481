// Every way a run can end is a typed result naming the address, the region and the RIP with its
// symbol; nothing escapes as an exception.
import { Decoder, DecoderOptions, Instruction } from "iced-x86";
import { describe, expect, test } from "vitest";
import { convert, unsupportedWhy } from "../../../harness/machine/decode.ts";
import { CF, FIXED, X86_TRAP_DE, ZF } from "../../../harness/machine/index.ts";
import { bytes, DATA, HANDLER, newMachine, runSnippet, STACK_LOW, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";

describe("memory faults", () => {
  test("a read of unmapped memory names the address, 'unmapped' and the instruction", () => {
    const { result: r } = runSnippet("90 48 8b 07", { rdi: 0xffff888000100000n });
    expect(r).toMatchObject({ kind: "fault", reason: "unmapped", access: "read", address: 0xffff888000100000n, region: undefined, rip: TEXT + 1n, symbol: "test_code+0x1" });
    if (r.kind === "fault") expect(r.message).toBe("read of unmapped address ffff888000100000 at rip ffffffff81000001 <test_code+0x1> (mov rax,[rdi])");
  });

  test("a push into the guard page below the stack names the guard region", () => {
    const { result: r } = runSnippet("6a 01 6a 02", { rsp: STACK_LOW + 16n });
    // call pushed the return address at STACK_LOW+8, the first push lands at STACK_LOW, the second faults
    expect(r).toMatchObject({ kind: "fault", reason: "guard-page", access: "write", address: STACK_LOW - 8n, region: "task stack guard low", regionKind: "guard", rip: TEXT + 2n });
    if (r.kind === "fault") expect(r.message).toContain("guard page at ffffc90000003ff8 in region 'task stack guard low' (guard)");
  });

  test("a read above the stack top hits the upper guard page", () => {
    const { result: r } = runSnippet("48 8b 44 24 08"); // mov rax,[rsp+8]: rsp = STACK_TOP-8
    expect(r).toMatchObject({ kind: "fault", reason: "guard-page", access: "read", address: STACK_TOP, region: "task stack guard high" });
  });

  test("a write to kernel text is a fault", () => {
    const { result: r } = runSnippet("48 89 07", { rdi: TEXT + 0x10n });
    expect(r).toMatchObject({ kind: "fault", reason: "write-to-text", access: "write", address: TEXT + 0x10n, region: "kernel text", regionKind: "text", rip: TEXT });
  });

  test("a write that straddles into an unmapped page writes nothing", () => {
    const { m, result: r } = runSnippet("48 89 07", { rdi: DATA + 0x2000n - 4n, rax: 0x1122334455667788n });
    expect(r).toMatchObject({ kind: "fault", reason: "unmapped", address: DATA + 0x2000n });
    expect(m.peek64(DATA + 0x2000n - 8n)).toBe(0n);
  });

  test("jumping into data is an instruction-fetch fault", () => {
    const { result: r } = runSnippet("ff e7", { rdi: DATA });
    expect(r).toMatchObject({ kind: "fault", reason: "no-execute", access: "execute", address: DATA, region: "data", rip: DATA });
  });

  test("a non-canonical address is a fault carrying the raw value", () => {
    const { result: r } = runSnippet("48 8b 07", { rdi: 0x0000800000000000n });
    expect(r).toMatchObject({ kind: "fault", reason: "non-canonical", address: 0x0000800000000000n, rip: TEXT });
  });

  test("a ret after the return address was popped reads the guard page above the stack", () => {
    const { result: r } = runSnippet("5b"); // pop rbx takes the return address; ret reads [STACK_TOP]
    expect(r).toMatchObject({ kind: "fault", reason: "guard-page", access: "read", address: STACK_TOP, rip: TEXT + 1n });
  });

  test("a faulting instruction leaves rip and registers as they were", () => {
    const f = runSnippet("48 8b 47 f8", { rdi: DATA, rax: 5n }); // mov rax,[rdi-8] → unmapped below DATA
    expect(f.result.kind).toBe("fault");
    expect(f.m.reg("rax")).toBe(5n);
    expect(f.m.rip).toBe(TEXT);
  });
});

// #DE is a fault (SDM Vol. 3A §6.15, interrupt 0): the divide completes nothing, and with no IDT
// gate the run ends with an `exception` result at the divide, naming it, its address and symbol,
// and why. The registers and flags stay as they were.
describe("divide errors", () => {
  test.each([
    // [code, what the message says after the instruction, input registers]
    ["48 f7 f3", "'div rbx' at ffffffff81000000 <test_code> raised #DE (divide by zero) and no IDT gate handles it", { rax: 100n, rdx: 0n, rbx: 0n }],
    ["f6 f3", "'div bl' at ffffffff81000000 <test_code> raised #DE (divide by zero) and no IDT gate handles it", { rax: 5n, rbx: 0x100n }],
    ["48 f7 f3", "'div rbx' at ffffffff81000000 <test_code> raised #DE (0x10000000000000000 / 0x1: the quotient 0x10000000000000000 does not fit in 64 bits) and no IDT gate handles it", { rax: 0n, rdx: 1n, rbx: 1n }],
    ["f7 f3", "'div ebx' at ffffffff81000000 <test_code> raised #DE (0x500000000 / 0x5: the quotient 0x100000000 does not fit in 32 bits) and no IDT gate handles it", { rax: 0n, rdx: 5n, rbx: 5n }],
    ["f6 f3", "'div bl' at ffffffff81000000 <test_code> raised #DE (0x200 / 0x2: the quotient 0x100 does not fit in 8 bits) and no IDT gate handles it", { rax: 0x200n, rbx: 2n }],
    ["48 f7 fb", "'idiv rbx' at ffffffff81000000 <test_code> raised #DE (-0x8000000000000000 / -0x1: the quotient 0x8000000000000000 does not fit in 64 bits) and no IDT gate handles it",
      { rax: 0x8000000000000000n, rdx: 0xffffffffffffffffn, rbx: 0xffffffffffffffffn }],
    ["f7 fb", "'idiv ebx' at ffffffff81000000 <test_code> raised #DE (-0x80000000 / -0x1: the quotient 0x80000000 does not fit in 32 bits) and no IDT gate handles it",
      { rax: 0x80000000n, rdx: 0xffffffffn, rbx: 0xffffffffn }],
    ["66 f7 fb", "'idiv bx' at ffffffff81000000 <test_code> raised #DE (-0x8000 / -0x1: the quotient 0x8000 does not fit in 16 bits) and no IDT gate handles it",
      { rax: 0x8000n, rdx: 0xffffn, rbx: 0xffffn }],
    ["f6 fb", "'idiv bl' at ffffffff81000000 <test_code> raised #DE (-0x80 / -0x1: the quotient 0x80 does not fit in 8 bits) and no IDT gate handles it", { rax: 0xff80n, rbx: 0xffn }],
  ] as const)("%s raises #DE: %s", (code, message, regs) => {
    const { m, result: r } = runSnippet(code, regs, (mm) => { mm.rflags = CF | ZF | FIXED; });
    expect(r).toMatchObject({ kind: "exception", vector: X86_TRAP_DE, rip: TEXT, symbol: "test_code" });
    if (r.kind === "exception") expect(r.message).toBe(message);
    for (const [k, v] of Object.entries(regs)) expect(m.reg(k as "rax"), k).toBe(v);
    expect(m.rip).toBe(TEXT);
    expect(m.rflags).toBe(CF | ZF | FIXED);
  });

  test("with an IDT gate, #DE is delivered as a fault: the saved RIP is the divide itself", () => {
    const m = newMachine();
    m.load(TEXT, bytes("90 48 f7 f3 c3")); // nop; div rbx; ret
    m.setGate(X86_TRAP_DE, HANDLER);
    m.setReg("rbx", 0n);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.runUntil(2)).toMatchObject({ kind: "paused", rip: HANDLER });
    const t = m.truth();
    expect(t[1]).toMatchObject({ kind: "interrupt", vector: 0, name: "#DE", ip: TEXT + 1n });
    expect(m.peek64(t[1]!.kind === "interrupt" ? t[1]!.frame : 0n)).toBe(TEXT + 1n);
  });
});

describe("cmpxchg writes its memory destination back when the comparison fails", () => {
  test("so a read-only destination faults on failure too, with rax unchanged", () => {
    // lock cmpxchg [rdi],rbx with rax (1) unequal to the text bytes at rdi (0)
    const { m, result: r } = runSnippet("f0 48 0f b1 1f", { rdi: TEXT + 0x100n, rax: 1n, rbx: 2n });
    expect(r).toMatchObject({ kind: "fault", reason: "write-to-text", access: "write", address: TEXT + 0x100n, rip: TEXT });
    expect(m.reg("rax")).toBe(1n);
  });

  test("and a watcher sees the write-back, of the value the destination held", () => {
    const m = newMachine();
    m.load(TEXT, bytes("f0 48 0f b1 1f c3"));
    m.load(DATA, bytes("07 00 00 00 00 00 00 00"));
    const writes: [bigint, number][] = [];
    m.watchWrites(DATA, DATA + 8n, (a, size) => writes.push([a, size]));
    m.setReg("rdi", DATA);
    m.setReg("rax", 1n);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run().kind).toBe("completed");
    expect(writes).toEqual([[DATA, 8]]);
    expect(m.peek64(DATA)).toBe(7n);
    expect(m.reg("rax")).toBe(7n);
  });
});

describe("unsupported instructions", () => {
  test("an instruction outside the table stops with its text, bytes, address and symbol", () => {
    const { result: r } = runSnippet("90 0f a2"); // nop; cpuid
    expect(r).toMatchObject({ kind: "unsupported", rip: TEXT + 1n, symbol: "test_code+0x1", text: "cpuid", bytes: "0f a2" });
    if (r.kind === "unsupported") expect(r.message).toBe("unsupported instruction 'cpuid' (0f a2) at ffffffff81000001 <test_code+0x1>");
  });

  test("bswap of a 16-bit register, undefined in the SDM, is refused with the reason", () => {
    const { result: r } = runSnippet("66 0f c8");
    expect(r).toMatchObject({ kind: "unsupported", rip: TEXT, text: "bswap ax", bytes: "66 0f c8" });
    if (r.kind === "unsupported") expect(r.message).toBe("unsupported instruction 'bswap ax' (66 0f c8) at ffffffff81000000 <test_code>: bswap of a 16-bit register (its result is undefined: SDM Vol. 2A, BSWAP; the JIT uses `ror r16, 8`) not modelled");
  });

  test.each([
    ["f0 48 01 d8", "lock add with a register destination"], ["f0 48 0f b1 d8", "lock cmpxchg with a register destination"],
    ["f0 48 39 18", "lock cmp"], ["f0 48 8b 00", "lock mov"], ["f0 0f c8", "lock bswap"],
  ])("a lock prefix where the CPU raises #UD is refused (%s: %s), even decoded without iced's own check", (hex) => {
    // iced rejects these itself (runSnippet gives "(bad)"); the table says the same when iced
    // is told not to check (DecoderOptions.NoInvalidCheck).
    expect(runSnippet(hex).result).toMatchObject({ kind: "unsupported", text: "(bad)" });
    const code = bytes(hex);
    const dec = new Decoder(64, code, DecoderOptions.NoInvalidCheck);
    const ins = new Instruction();
    try {
      dec.decodeOut(ins);
      expect(ins.isInvalid).toBe(false);
      const d = convert(ins, 0, code);
      expect(d.op).toBe(0);
      expect(unsupportedWhy.get(d)).toMatch(/^a lock prefix where the CPU raises #UD/);
    } finally {
      ins.free();
      dec.free();
    }
  });

  test("a lock prefix on a memory destination is accepted where the SDM allows it", () => {
    const { m, result: r } = runSnippet("f0 48 83 44 24 f8 05 f0 48 f7 5c 24 f8 48 8b 44 24 f8", {}, (mm) => mm.load(STACK_TOP - 16n, bytes("01 00 00 00 00 00 00 00")));
    expect(r.kind).toBe("completed"); // lock add qword ptr [rsp-8],5; lock neg qword ptr [rsp-8]; mov rax,[rsp-8]
    expect(m.reg("rax")).toBe(0xfffffffffffffffan);
  });

  test("undecodable bytes are reported as (bad)", () => {
    const { result: r } = runSnippet("06"); // push es: invalid in 64-bit mode
    expect(r).toMatchObject({ kind: "unsupported", text: "(bad)", rip: TEXT });
  });

  test("a supported mnemonic with an unmodelled form says what is not modelled", () => {
    const { result: r } = runSnippet("67 8b 07"); // mov eax,[edi]: 32-bit address size
    expect(r.kind).toBe("unsupported");
    if (r.kind === "unsupported") expect(r.message).toContain("32-bit address size not modelled");
  });

  // Found by the differential tests (test/unit/machine/differential.test.ts): on AMD a 66h prefix
  // gives a near branch a 16-bit operand size (the CPU under test jumped to rip & 0xffff and
  // `66 c3` popped 2 bytes); Intel ignores it, and so did the machine.
  test.each([
    ["66 eb 00", "jmp short"], ["66 e9 00 00 00 00", "jmp near"], ["66 74 00", "je short"], ["66 0f 84 00 00 00 00", "je near"],
    ["66 e8 00 00 00 00", "call"], ["66 c3", "ret"], ["66 c2 08 00", "ret 8"], ["66 ff e0", "jmp rax"], ["66 ff d0", "call rax"],
  ])("a near branch with an operand-size prefix (%s, %s) is refused: its meaning depends on the vendor", (code) => {
    const { result: r } = runSnippet(code);
    expect(r).toMatchObject({ kind: "unsupported", rip: TEXT });
    if (r.kind === "unsupported") expect(r.message).toContain("an operand-size prefix on a near branch (16-bit operand size on AMD, ignored on Intel) not modelled");
  });

  test("REX.W overrides a 66h prefix, so such a branch is an ordinary 64-bit one", () => {
    const { result: r } = runSnippet("66 48 e9 00 00 00 00 90"); // jmp to the next instruction (nop), then ret
    expect(r.kind).toBe("completed");
  });
});

describe("control flow and budgets", () => {
  test("a ret to an address other than the one its call pushed names both", () => {
    // call +0 (to the next instruction); pop rax (drops the return address); push 0x1234 is not
    // text, so return through a bogus word instead: push rbx; ret
    const { result: r } = runSnippet("53", { rbx: 0xffffffff81000abcn });
    expect(r).toMatchObject({ kind: "control-flow", reason: "ret-mismatch", expected: STOP, actual: 0xffffffff81000abcn, rip: TEXT + 1n });
    if (r.kind === "control-flow") {
      expect(r.message).toBe("ret at ffffffff81000001 <test_code+0x1> returned to ffffffff81000abc <test_code+0xabc> (read from ffffc90000007ff0); expected fffffffffffff000, pushed by the call at entry");
    }
  });

  test("a loop that never ends is a hang at the step budget, not an exception", () => {
    const m = newMachine();
    m.load(TEXT, bytes("eb fe")); // jmp $
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    const r = m.run({ maxSteps: 1000 });
    expect(r).toMatchObject({ kind: "hang", steps: 1000, rip: TEXT, symbol: "test_code" });
  });

  test("a recursion that never runs off its stack is a hang at 4,096 live activations, naming it", () => {
    const m = newMachine();
    m.load(TEXT, bytes("48 83 c4 08 e8 f7 ff ff ff")); // add rsp,8; call TEXT: rsp never moves, every call is one more activation
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    const r = m.run({ maxSteps: 1_000_000 });
    expect(r).toMatchObject({ kind: "hang", steps: 2 * 4096, rip: TEXT + 4n, message: expect.stringMatching(/^runaway nesting: more than 4096 activations live at once .* after 8192 steps; at ffffffff81000004 <test_code\+0x4>/) });
    expect(m.depth).toBe(4096);
  });

  test("a run resumes after a hang with a larger budget", () => {
    const m = newMachine();
    m.load(TEXT, bytes("48 ff c8 75 fb c3")); // dec rax; jnz -5; ret
    m.setReg("rax", 100n);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run({ maxSteps: 50 }).kind).toBe("hang");
    expect(m.run({ maxSteps: 1000 })).toMatchObject({ kind: "completed", rax: 0n, steps: 201 });
  });
});
