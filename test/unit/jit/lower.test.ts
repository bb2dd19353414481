// The JIT: the upstream byte sequences (kernel-model.md §1.2-§1.5), the selftests' __jited()
// expectations (§7), layout by converging passes, and the JITed code running on the machine.
import { describe, expect, test } from "vitest";
import { alu32, alu64, call, exit, jmp, label, ldx, st, stx } from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_H, BPF_W, R0, R1, R2, R4, R6, R7, R10 } from "../../../jit/bpf/opcodes.ts";
import { baseline } from "../../../jit/strategies/baseline.ts";
import { r9NoSave } from "../../../jit/strategies/r9-no-save.ts";
import { r9Private } from "../../../jit/strategies/r9-private.ts";
import { fn, jit, listing, machineFor, plainListing, matchesJited, PERCPU, PERCPU_PTR_BASE, STACK_TOP } from "../../helpers/jit.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
const ret0 = [alu64.mov.imm(R0, 0), exit()];

describe("the selftests' __jited() expectations, verbatim (verifier_private_stack.c, 7.2)", () => {
  test("'Private stack, single prog': r9 set up, the R10 store goes through r9", () => {
    const j = jit([fn("main", 256, [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -256), ...ret0])], r9Private);
    expect(matchesJited(listing(j), ["\tmovabsq\t$0x{{.*}}, %r9", "\taddq\t%gs:{{.*}}, %r9", "\tmovl\t$0x2a, %edi", "\tmovq\t%rdi, -0x100(%r9)"])).toBe(true);
  });

  test("'No private stack': 8 bytes stay on the kernel stack, rounded to 8", () => {
    const j = jit([fn("main", 8, [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -8), ...ret0])], r9Private, "raw_tp");
    expect(matchesJited(listing(j), ["\tsubq\t$0x8, %rsp"])).toBe(true);
    expect(listing(j).some((l) => l.includes("%r9"))).toBe(false);
  });

  test("'Private stack, subtree > MAX_BPF_STACK': r9 saved around the subprog call; r0 = 0 is xorl", () => {
    const j = jit([
      fn("main", 512, [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -512), call.subprog("sub"), ...ret0]),
      fn("sub", 32, [call.helper(3), exit()]),
    ], r9Private);
    expect(matchesJited(listing(j), [
      "\tmovabsq\t$0x{{.*}}, %r9", "\taddq\t%gs:{{.*}}, %r9", "\tmovl\t$0x2a, %edi", "\tmovq\t%rdi, -0x200(%r9)",
      "\tpushq\t%r9", "\tcallq\t0x{{.*}}", "\tpopq\t%r9", "\txorl\t%eax, %eax",
    ])).toBe(true);
  });

  test("the matcher itself: adjacency, '...' and regexes", () => {
    const lines = ["a", "b", "x", "c"];
    expect(matchesJited(lines, ["a", "b"])).toBe(true);
    expect(matchesJited(lines, ["a", "c"])).toBe(false);
    expect(matchesJited(lines, ["a", "...", "c"])).toBe(true);
    expect(matchesJited(lines, ["{{[ab]}}", "{{.*}}", "x"])).toBe(true);
    expect(matchesJited(lines, ["c", "...", "a"])).toBe(false);
  });
});

describe("upstream byte sequences", () => {
  test("the baseline prologue and epilogue, byte for byte", () => {
    const j = jit([fn("main", 20, [st(BPF_W, R10, -20, 1), ...ret0])], baseline);
    // endbr64 | nop5 | nop3 | push rbp | mov rbp,rsp | endbr64 | sub rsp,round8(20)=24 | ... | leave | ret
    // (the depth is the verifier's: the deepest byte touched, rounded to 8)
    expect(hex(j.funcs[0]!.image.bytes)).toBe("f3 0f 1e fa 0f 1f 44 00 00 0f 1f 00 55 48 89 e5 f3 0f 1e fa 48 81 ec 18 00 00 00 c7 45 ec 01 00 00 00 31 c0 c9 c3");
  });

  test("no IBT drops both endbr64; SLS adds int3 after ret; no stack, no sub", () => {
    const j = jit([fn("main", 0, ret0)], baseline, "kprobe", { ibt: false, sls: true });
    expect(hex(j.funcs[0]!.image.bytes)).toBe("0f 1f 44 00 00 0f 1f 00 55 48 89 e5 31 c0 c9 c3 cc");
  });

  test("used callee-saved registers are pushed in order and popped in reverse", () => {
    const j = jit([fn("main", 0, [alu64.mov.imm(R7, 1), alu64.mov.reg(R6, R7), alu64.mov.reg(R0, R6), exit()])], baseline);
    expect(plainListing(j).slice(6)).toEqual([
      "pushq %rbx", "pushq %r13", "movl $0x1, %r13d", "movq %r13, %rbx", "movq %rbx, %rax", "popq %r13", "popq %rbx", "leaveq", "retq",
    ]);
  });

  test("instruction choices: imm moves, ALU forms, loads and stores with disp8/disp32", () => {
    const body = [
      alu64.mov.imm(R2, 3), alu64.mov.imm(R0, 0), alu64.mov.imm(R1, 42), alu64.mov.imm(R1, -1), alu32.mov.imm(R1, -1), alu64.mov.reg(R1, R1),
      alu32.mov.reg(R1, R1), alu64.add.imm(R1, 8), alu64.add.imm(R0, 1000), alu64.add.imm(R2, 1000), alu64.sub.reg(R0, R2),
      alu64.lsh.imm(R0, 1), alu64.arsh.imm(R0, 3), alu64.neg(R0), stx(BPF_DW, R10, R1, -8), stx(BPF_B, R10, R2, -9),
      stx(BPF_H, R10, R1, -300), ldx(BPF_W, R0, R10, -8), ldx(BPF_B, R0, R10, -9), st(BPF_DW, R10, -16, -2), exit(),
    ];
    const j = jit([fn("main", 300, body)], baseline);
    const f = j.funcs[0]!;
    const bytesOf = (k: number) => hex(f.image.bytes.slice(Number(f.insnAddrs[k]! - f.image.base), Number((f.insnAddrs[k + 1] ?? f.image.end) - f.image.base)));
    expect(body.slice(0, -1).map((_, k) => bytesOf(k))).toEqual([
      "be 03 00 00 00",        // r2 = 3         → mov esi,3
      "31 c0",                 // r0 = 0         → xor eax,eax
      "bf 2a 00 00 00",        // r1 = 42        → mov edi,0x2a
      "48 c7 c7 ff ff ff ff",  // r1 = -1        → mov rdi,-1 (sign-extended imm32)
      "bf ff ff ff ff",        // w1 = -1        → mov edi,0xffffffff
      "",                      // r1 = r1        → nothing
      "89 ff",                 // w1 = w1        → mov edi,edi (zero-extends)
      "48 83 c7 08",           // r1 += 8        → add rdi,8 (imm8)
      "48 05 e8 03 00 00",     // r0 += 1000     → add rax,imm32 (short rax form)
      "48 81 c6 e8 03 00 00",  // r2 += 1000     → add rsi,imm32
      "48 29 f0",              // r0 -= r2       → sub rax,rsi
      "48 d1 e0",              // r0 <<= 1       → shl rax,1
      "48 c1 f8 03",           // r0 s>>= 3      → sar rax,3
      "48 f7 d8",              // r0 = -r0       → neg rax
      "48 89 7d f8",           // *(u64 *)(r10 -8) = r1
      "40 88 75 f7",           // *(u8 *)(r10 -9) = r2 (REX for sil)
      "66 89 bd d4 fe ff ff",  // *(u16 *)(r10 -300) = r1 (disp32)
      "8b 45 f8",              // r0 = *(u32 *)(r10 -8)
      "48 0f b6 45 f7",        // r0 = *(u8 *)(r10 -9) → movzx rax,byte
      "48 c7 45 f0 fe ff ff ff", // *(u64 *)(r10 -16) = -2
    ]);
  });

  test("a shift by a register without BMI2 saves rcx around it; with dst = r4 it shifts a copy in r11", () => {
    const j = jit([fn("main", 0, [alu64.mov.imm(R0, 1), alu64.mov.imm(R2, 3), alu64.mov.imm(R4, 2), alu64.lsh.reg(R0, R2), alu64.rsh.reg(R4, R2), alu64.add.reg(R0, R4), exit()])], baseline);
    expect(plainListing(j).slice(9, 19)).toEqual([
      "pushq %rcx", "movq %rsi, %rcx", "shlq %cl, %rax", "popq %rcx",
      "movq %rcx, %r11", "movq %rsi, %rcx", "shrq %cl, %r11", "movq %r11, %rcx",
      "addq %rcx, %rax", "leaveq",
    ]);
  });

  test("r9-no-save is r9-private without push r9/pop r9", () => {
    const funcs = [fn("main", 64, [st(BPF_DW, R10, -64, 0), st(BPF_DW, R10, -8, 1), call.helper(3), ...ret0])];
    const r9Lines = (s: typeof r9Private) => plainListing(jit(funcs, s)).filter((l) => l.includes("%r9"));
    expect(r9Lines(r9Private)).toEqual(["movabsq $0x600000000088, %r9", "addq %gs:0x10, %r9", "movq $0x0, -0x40(%r9)", "movq $0x1, -0x8(%r9)", "pushq %r9", "popq %r9"]);
    expect(r9Lines(r9NoSave)).toEqual(["movabsq $0x600000000088, %r9", "addq %gs:0x10, %r9", "movq $0x0, -0x40(%r9)", "movq $0x1, -0x8(%r9)"]);
  });
});

describe("layout", () => {
  test("jumps take rel8 when they fit and rel32 when not; goto pc+0 is elided; later exits jump to the epilogue", () => {
    const long = Array.from({ length: 40 }, () => alu64.add.imm(R0, 1000)); // 6 bytes each
    const j = jit([fn("main", 0, [
      alu64.mov.imm(R0, 0),                                   // 0
      jmp.jeq.imm(R0, 0, "near"), alu64.mov.imm(R0, 1),       // 1, 2
      label("near"), jmp.jne.imm(R0, 5, "far"), ...long,      // 3, 4..43
      label("far"), jmp.jeq.imm(R0, 9, "second"),             // 44
      jmp.ja("next"), label("next"), exit(),                  // 45 (goto pc+0), 46: the first exit
      label("second"), alu64.mov.imm(R0, 2), exit(),          // 47, 48: jumps back to the epilogue
    ])], baseline);
    const f = j.funcs[0]!;
    const at = (k: number) => Number(f.insnAddrs[k]! - f.image.base);
    const b = f.image.bytes;
    expect(hex(b.slice(at(1), at(2)))).toBe("48 85 c0 74 05");              // test rax,rax; je rel8 over mov eax,1
    expect(hex(b.slice(at(3), at(4)))).toBe("48 83 f8 05 0f 85 f0 00 00 00"); // cmp rax,5; jne rel32 over 240 bytes
    expect(hex(b.slice(at(44), at(45)))).toBe("48 83 f8 09 74 02");           // je rel8 over the epilogue (leave, ret) to insn 47
    expect(at(45)).toBe(at(46));                                              // goto pc+0 emits nothing
    expect(hex(b.slice(at(46), at(47)))).toBe("c9 c3");                       // the first exit is the epilogue
    expect(hex(b.slice(at(48)))).toBe(`eb ${((at(46) - (at(48) + 2)) & 0xff).toString(16)}`); // jmp rel8 back to it
  });

  test.each([[30, "74 78"], [31, "0f 84 7c 00 00 00"]])("a forward rel8 reaches only +123 (is_imm8_jmp_offset): %i four-byte instructions over it give %s", (count, jump) => {
    const body = Array.from({ length: count }, () => alu64.add.imm(R0, 1)); // 48 83 c0 01
    const j = jit([fn("main", 0, [alu64.mov.imm(R0, 0), jmp.jeq.imm(R0, 0, "out"), ...body, label("out"), exit()])], baseline);
    const f = j.funcs[0]!;
    const at = (k: number) => Number(f.insnAddrs[k]! - f.image.base);
    expect(hex(f.image.bytes.slice(at(1), at(2)))).toBe(`48 85 c0 ${jump}`);
  });

  test("the last pass writes each instruction where the one before placed it, and addrs[] is do_jit()'s", () => {
    const j = jit([fn("main", 0, [alu64.mov.imm(R0, 0), jmp.jeq.imm(R0, 0, "out"), alu64.add.imm(R0, 1), label("out"), exit()])], baseline);
    const f = j.funcs[0]!;
    // addrs[0]: the prologue's end; addrs[k + 1]: the end of BPF instruction k
    expect(f.addrs.map((a, k) => (k === 0 ? a : a - f.addrs[k - 1]!))).toEqual([20, 2, 5, 4, 2]); // the prologue (endbr, nop5, nop3, push, mov, endbr); xor eax,eax; test+je; add; leave+ret
    expect(f.insnAddrs.map((a) => Number(a - f.image.base))).toEqual(f.addrs.slice(0, 4));
  });

  test("a later exit far past the epilogue jumps back with rel32, though the first pass's guess picked rel8", () => {
    // Pass 1 places the epilogue (cleanup) at the end, where the last exit's own guessed address
    // is: offset 0, rel8. The real distance is 180 bytes back; do_jit() fixes it on pass 2.
    const far = Array.from({ length: 30 }, () => alu64.add.imm(R0, 0x12345678)); // 6 bytes each
    const j = jit([fn("main", 0, [
      alu64.mov.imm(R0, 3), jmp.jeq.imm(R0, 3, "long"), exit(), // 0, 1, 2: the first exit
      label("long"), ...far, exit(),                           // 3..32, 33: jumps back to insn 2's epilogue
    ])], baseline);
    const f = j.funcs[0]!;
    const at = (k: number) => Number(f.insnAddrs[k]! - f.image.base);
    const b = f.image.bytes;
    const rel = at(2) - (at(33) + 5);
    expect(rel).toBeLessThan(-128);
    expect(hex(b.slice(at(33)))).toBe(hex(Uint8Array.of(0xe9, ...new Uint8Array(Int32Array.of(rel).buffer))));
    const m = machineFor(j);
    m.call(f.image.base, { args: [0n], rsp: STACK_TOP });
    expect(m.run({ maxSteps: 1000 })).toMatchObject({ kind: "completed", rax: 3n + 30n * 0x12345678n });
  });
});

describe("JITed code runs on the machine", () => {
  // r6 = 7; store it; pass &stack to bpf_sc_rw (adds 5 to it, returns the old value); call a
  // subprog that reads the word through its pointer argument; fold everything into r0.
  const funcs = [
    fn("main", 64, [
      st(BPF_DW, R10, -64, 0), alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8), // the whole 64 bytes in use: a private stack under r9-private
      alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 5), call.helper(2), // r0 = 7, slot = 12
      alu64.mov.reg(R7, R0),
      call.helper(3),                                    // clobbers r9 in the stub
      alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("read"), // r0 = 12 * 3
      alu64.add.reg(R0, R7), ldx(BPF_DW, R1, R10, -8), alu64.add.reg(R0, R1), exit(), // 36 + 7 + 12
    ]),
    fn("read", 0, [ldx(BPF_DW, R0, R1, 0), alu64.mov.reg(R2, R0), alu64.add.reg(R0, R2), alu64.add.reg(R0, R2), exit()]),
  ];
  const run = (s: typeof baseline) => {
    const j = jit(funcs, s);
    const m = machineFor(j);
    m.call(j.funcs[0]!.image.base, { args: [0n], rsp: STACK_TOP });
    return { r: m.run({ maxSteps: 10_000 }), m, j };
  };

  test("baseline", () => expect(run(baseline).r).toMatchObject({ kind: "completed", rax: 55n }));

  test("r9-private: the same result, with the stack in the per-CPU allocation between its guards", () => {
    const { r, m, j } = run(r9Private);
    expect(r).toMatchObject({ kind: "completed", rax: 55n });
    const p = j.privates[0]!;
    const base = PERCPU + 0x1000n + (p.percpuPtr - PERCPU_PTR_BASE);
    expect(m.peek64(base + p.framePtr - p.percpuPtr - 8n), "the word at r9-8").toBe(12n);
  });

  test("r9-no-save computes a wrong result: the helper's r9 clobber redirects the stack accesses", () => {
    const { r } = run(r9NoSave);
    expect(r.kind === "completed" ? r.rax : r.kind).not.toBe(55n);
  });
});
