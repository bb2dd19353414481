// The assembler facade: exact forms, label and symbol resolution, address recovery, the errors
// iced would not give, WASM hygiene; and the disassembler's syntaxes and annotations.
import { describe, expect, test } from "vitest";
import * as iced from "iced-x86";
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "iced-x86";
import { Assembler, AsmError } from "../../../jit/asm.ts";
import { disassemble, formatListing } from "../../../jit/disasm.ts";
import { SymbolTable } from "../../../harness/machine/index.ts";

const BASE = 0xffffffffa0000000n;
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** The upstream x86-64 BPF prologue bytes (kernel-model.md §1.2) for a 16-byte stack. */
function prologue(a: Assembler): Assembler {
  return a
    .emit(() => I.create(Code.Endbr64), "endbr64")
    // the 5-byte form needs an explicit disp8 of 0: createBaseIndex alone gives 0f 1f 04 00
    .emit(() => I.createMem(Code.Nop_rm32, M.createBaseIndexScaleDisplSize(R.RAX, R.RAX, 1, 0n, 1)), "nop5")
    .emit(() => I.createMem(Code.Nop_rm32, M.createBase(R.RAX)), "nop3")
    .emit(() => I.createReg(Code.Push_r64, R.RBP), "push rbp")
    .emit(() => I.createRegReg(Code.Mov_rm64_r64, R.RBP, R.RSP), "mov rbp,rsp")
    .emit(() => I.create(Code.Endbr64), "endbr64")
    .emit(() => I.createRegI32(Code.Sub_rm64_imm32, R.RSP, 16), "sub rsp,16");
}

describe("assembling", () => {
  test("the upstream prologue encodes to its exact bytes", () => {
    const out = prologue(new Assembler("prog")).assemble(BASE);
    // endbr64 | nop5 (0f 1f 44 00 00) | nop3 | push rbp | mov rbp,rsp (48 89 e5) | endbr64 | sub rsp,imm32
    expect(hex(out.bytes)).toBe("f3 0f 1e fa 0f 1f 44 00 00 0f 1f 00 55 48 89 e5 f3 0f 1e fa 48 81 ec 10 00 00 00");
    expect(out.insns.map((i) => Number(i.address - BASE))).toEqual([0, 4, 9, 12, 13, 16, 20]);
    expect(out.insns.map((i) => i.note)).toEqual(["endbr64", "nop5", "nop3", "push rbp", "mov rbp,rsp", "endbr64", "sub rsp,16"]);
    expect(out.end).toBe(BASE + 27n);
  });

  test("branches keep their rel32 forms and land on their labels, forward and backward", () => {
    const a = new Assembler("loop")
      .label("top")
      .emit(() => I.createRegI32(Code.Sub_rm64_imm8, R.RDI, 1))
      .branch(Code.Jne_rel32_64, { label: "top" })
      .jmp({ label: "out" })
      .emit(() => I.create(Code.Int3))
      .label("out")
      .label("alias")
      .emit(() => I.create(Code.Retnq));
    const out = a.assemble(BASE);
    expect(hex(out.bytes)).toBe("48 83 ef 01 0f 85 f6 ff ff ff e9 01 00 00 00 cc c3");
    expect(out.labels.get("top")).toBe(BASE);
    expect(out.labels.get("out")).toBe(BASE + 16n);
    expect(out.labels.get("alias")).toBe(BASE + 16n);
  });

  test("calls to symbols and absolute addresses are rel32 from the block's base", () => {
    const syms = new Map([["helper", 0xffffffff81000100n]]);
    const out = new Assembler("caller").call({ symbol: "helper" }).call({ address: BASE + 0x100n }).assemble(BASE, { symbols: (n) => syms.get(n) });
    const lines = disassemble(out.bytes, BASE);
    expect(lines.map((l) => l.text)).toEqual(["call 0xffffffff81000100", "call 0xffffffffa0000100"]);
  });

  test("a label may mark the end of the block; its address is the end", () => {
    const out = new Assembler("b").emit(() => I.create(Code.Retnq)).label("end").assemble(BASE);
    expect(out.labels.get("end")).toBe(BASE + 1n);
  });

  test("the same block assembles at a user-space base too", () => {
    const out = prologue(new Assembler("low")).call({ label: "f" }).label("f").emit(() => I.create(Code.Retnq)).assemble(0x400000n);
    expect(out.insns[0]!.address).toBe(0x400000n);
    expect(disassemble(out.bytes, 0x400000n)[7]!.text).toBe("call 0x400020");
  });
});

describe("assembly errors name the block, the instruction and the label", () => {
  const code = (e: unknown) => (e instanceof AsmError ? e.code : String(e));
  test("a branch to an unknown label (iced would encode it as an absolute address)", () => {
    const a = new Assembler("prog_a").emit(() => I.create(Code.Nopd)).call({ label: "nowhere" });
    expect(() => a.assemble(BASE)).toThrow("prog_a: instruction 1 branches to unknown label 'nowhere'");
    try { a.assemble(BASE); } catch (e) { expect(code(e)).toBe("unknown-label"); }
  });
  test("a label defined twice", () => {
    expect(() => new Assembler("b").label("x").label("x")).toThrow("b: label 'x' defined twice");
  });
  test("an unknown symbol", () => {
    expect(() => new Assembler("b").call({ symbol: "bpf_nope" }).assemble(BASE, { symbols: () => undefined })).toThrow("b: instruction 0 branches to unknown symbol 'bpf_nope'");
  });
  test("a branch to the end of the block", () => {
    expect(() => new Assembler("b").jmp({ label: "end" }).label("end").assemble(BASE)).toThrow("marks the end of the block");
  });
  test("an absolute target below 64 KiB would collide with label ids", () => {
    expect(() => new Assembler("b").call({ address: 0x63n }).assemble(BASE)).toThrow("below 64 KiB");
  });
  test("an out-of-range rel8 branch", () => {
    const a = new Assembler("far").branch(Code.Je_rel8_64, { label: "x" });
    for (let i = 0; i < 200; i++) a.emit(() => I.create(Code.Nopd));
    a.label("x").emit(() => I.create(Code.Retnq));
    expect(() => a.assemble(BASE)).toThrow(/far: encoding at ffffffffa0000000 failed/);
  });
  test("an immediate out of range names the instruction", () => {
    const a = new Assembler("imm").emit(() => I.createRegI32(Code.Sub_rm64_imm8, R.RSP, 0x200), "sub rsp,0x200");
    expect(() => a.assemble(BASE)).toThrow("imm: instruction 0 (sub rsp,0x200)");
  });
});

describe("WASM hygiene", () => {
  test("assembling and disassembling many blocks does not grow WASM memory", () => {
    const run = () => {
      const out = prologue(new Assembler("p")).call({ label: "f" }).label("f").emit(() => I.create(Code.Retnq)).assemble(BASE);
      disassemble(out.bytes, BASE);
    };
    for (let i = 0; i < 200; i++) run(); // warm up: let the allocator reach its steady state
    // iced's JS glue exports its WASM instance as `__wasm` (not in its type declarations).
    const wasmBytes = () => (iced as unknown as { __wasm: { memory: { buffer: ArrayBuffer } } }).__wasm.memory.buffer.byteLength;
    const before = wasmBytes();
    for (let i = 0; i < 3000; i++) run();
    expect(wasmBytes()).toBe(before);
  });
});

describe("disassembly", () => {
  const syms = new SymbolTable([
    { name: "bpf_prog_main", start: BASE, end: BASE + 0x40n, kind: "bpf" },
    { name: "bpf_helper_mix", start: 0xffffffff81000100n, end: 0xffffffff81000180n, kind: "kernel" },
    { name: "this_cpu_off", start: 0x2010n + 0x10000n, end: 0x2018n + 0x10000n, kind: "data" },
  ]);
  const code = new Uint8Array([
    0x49, 0xb9, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // movabs r9,0x100000001
    0x65, 0x4c, 0x03, 0x0c, 0x25, 0x10, 0x20, 0x01, 0x00,       // add r9,gs:[0x12010]
    0x4c, 0x89, 0x79, 0xf0,                                     // mov [rcx-0x10],r15
    0xe8, 0xe8, 0x00, 0x00, 0xe1,                               // call bpf_helper_mix+0x4
  ]);
  const symbolize = (a: bigint) => syms.symbolize(a);

  test("GAS syntax, as objdump and the selftests' __jited() print it", () => {
    expect(disassemble(code, BASE).map((l) => l.text)).toEqual([
      "movabs $0x100000001,%r9", "add %gs:0x12010,%r9", "mov %r15,-0x10(%rcx)", "call 0xffffffff81000104",
    ]);
  });

  test("Intel syntax", () => {
    expect(disassemble(code, BASE, { syntax: "intel" }).map((l) => l.text)).toEqual([
      "mov r9,0x100000001", "add r9,gs:[0x12010]", "mov [rcx-0x10],r15", "call 0xffffffff81000104",
    ]);
  });

  test("imm64 values with small low halves print in full (iced's small-hex bug is off)", () => {
    const l = disassemble(new Uint8Array([0x48, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0x80]), BASE)[0]!;
    expect(l.text).toBe("movabs $0x8000000000000001,%rax");
  });

  test("addresses and branch targets are annotated with symbol+offset, and a marker points at one line", () => {
    const text = formatListing(disassemble(code, BASE, { symbolize }), BASE + 0x17n);
    expect(text).toContain("   ffffffffa0000000 <bpf_prog_main>  49 b9 01 00 00 00 01 00 00 00");
    expect(text).toContain("<this_cpu_off>");
    expect(text).toContain("=> ffffffffa0000017 <bpf_prog_main+0x17>  e8 e8 00 00 e1");
    expect(text).toContain("call 0xffffffff81000104  <bpf_helper_mix+0x4>");
  });
});
