// The verifier's rewrites the JIT sees (jit/bpf/fixups.ts, bpf_do_misc_fixups() in
// kernel/bpf/fixups.c, 7.2): the exact instructions of each patch, branches renumbered across
// patches as bpf_adj_branches() does, function starts moved, and each may_goto function's
// count and timestamp stored first. That the rewritten program computes what the written one
// does is the reference property (reference.test.ts: machine against interpreter).
import { describe, expect, test } from "vitest";
import { alu32, alu64, atomic, call, exit, jmp, jmp32, label, ldx, may_goto, st, stx } from "../../../jit/bpf/insn.ts";
import { BPF_B, BPF_DW, BPF_W, R0, R1, R2, R3, R6, R7, R8, R9, R10 } from "../../../jit/bpf/opcodes.ts";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { strategy } from "../../helpers/strategies.ts";
import { program, type Program } from "../../../jit/bpf/program.ts";
import { printProgram } from "../../../jit/bpf/print.ts";
import { validate } from "../../../jit/bpf/validate.ts";
import { BPF_REG_AX, miscFixups } from "../../../jit/bpf/fixups.ts";
import { CALL_NAMES, TIMED_MAY_GOTO_CALL } from "../../../jit/bpf/abi.ts";

const fixed = (p: Program) => miscFixups(p, validate(p));
const lines = (p: Program) => printProgram(p, CALL_NAMES).split("\n").map((l) => l.trim());

describe("bpf_do_misc_fixups() as the JIT receives it", () => {
  test("a program without div/mod by a register, sdiv/smod by -1 or may_goto is passed through as it is", () => {
    const p = program({ name: "p", type: "raw_tp", funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 1), alu64.div.imm(R0, 3), exit()] }] });
    expect(fixed(p)).toBe(p);
  });

  test("div by a register: `if src != 0 goto +2; w dst ^= w dst; goto +1; div`, and a jump over it lands after the patch", () => {
    const p = program({
      name: "p", type: "raw_tp", funcs: [{
        name: "main", stackDepth: 0,
        body: [alu64.mov.imm(R0, 7), alu64.mov.imm(R1, 2), jmp.jeq.imm(R1, 5, "out"), alu64.div.reg(R0, R1), label("out"), exit()],
      }],
    });
    const q = fixed(p);
    expect(lines(q)).toEqual([
      "main: ; stack 0", "0: r0 = 7", "1: r1 = 2", "2: if r1 == 0x5 goto pc+4", "3: if r1 != 0x0 goto pc+2", "4: w0 ^= w0", "5: goto pc+1", "6: r0 /= r1", "7: exit",
    ]);
  });

  test("32-bit mod by a register keeps the dividend zero-extended when the divisor is 0", () => {
    const p = program({ name: "p", type: "raw_tp", funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, -1), alu64.mov.imm(R1, 0), alu32.mod.reg(R0, R1), exit()] }] });
    expect(lines(fixed(p)).slice(3)).toEqual(["2: if w1 == 0x0 goto pc+2", "3: w0 %= w1", "4: goto pc+1", "5: w0 = w0", "6: exit"]);
  });

  test("sdiv by the immediate -1 becomes neg, smod by -1 becomes w = 0", () => {
    const p = program({ name: "p", type: "raw_tp", funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 9), alu64.sdiv.imm(R0, -1), alu64.mov.imm(R1, 9), alu64.smod.imm(R1, -1), exit()] }] });
    const q = fixed(p);
    expect(q.insns).toHaveLength(p.insns.length);
    expect(lines(q).slice(2, 5)).toEqual(["1: r0 = -r0", "2: r1 = 9", "3: w1 = 0"]);
  });

  test("may_goto: x86-64's timed form in BPF_REG_AX with the call to arch_bpf_timed_may_goto, the count and timestamp stored first, a backward jump to it reaching the patch's start", () => {
    const p = program({
      name: "p", type: "raw_tp", funcs: [{
        name: "main", stackDepth: 16,
        body: [st(BPF_DW, R10, -16, 0), alu64.mov.imm(R6, 0), label("loop"), may_goto("out"), alu64.add.imm(R6, 1), jmp.ja("loop"), label("out"), alu64.mov.reg(R0, R6), exit()],
      }],
    });
    const v = validate(p);
    expect(v.stackDepth[0]).toBe(16);
    expect(v.stackExtra[0]).toBe(16);
    const q = miscFixups(p, v);
    expect(lines(q)).toEqual([
      "main: ; stack 16",
      "0: *(u64 *)(r10 -32) = 65535", // count at -(depth + 16), BPF_MAX_TIMED_LOOPS
      "1: *(u64 *)(r10 -24) = 0", //     timestamp at -(depth + 8)
      "2: *(u64 *)(r10 -16) = 0",
      "3: r6 = 0",
      "4: r12 = *(u64 *)(r10 -32)", // the may_goto, at the loop's head
      "5: if r12 == 0x0 goto pc+7", // off + 5: past the rest of the patch to the target
      "6: r12 -= 1",
      "7: if r12 != 0x0 goto pc+2",
      "8: r12 = -32",
      `9: call ${TIMED_MAY_GOTO_CALL.name}#${TIMED_MAY_GOTO_CALL.id}`,
      "10: *(u64 *)(r10 -32) = r12",
      "11: r6 += 1",
      "12: goto pc-9", // back to 4, the start of the patch
      "13: r0 = r6",
      "14: exit",
    ]);
    expect(q.insns[4]!.dst).toBe(BPF_REG_AX);
  });

  test("a subprog after a patched function starts later; the call to it follows; its own may_goto stores come first in it", () => {
    const p = program({
      name: "p", type: "raw_tp", funcs: [
        { name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 8), alu64.mov.imm(R2, 0), alu64.div.reg(R0, R2), call.subprog("sub"), exit()] },
        { name: "sub", stackDepth: 0, body: [alu64.mov.imm(R0, 3), label("l"), may_goto("o"), jmp.ja("l"), label("o"), exit()] },
      ],
    });
    const q = fixed(p);
    expect(q.funcs.map((f) => [f.name, f.start, f.end])).toEqual([["main", 0, 8], ["sub", 8, 20]]);
    const callAt = q.insns.findIndex((x) => x.code === 0x85 && x.src === 1);
    expect(callAt + 1 + q.insns[callAt]!.imm).toBe(8);
    expect(lines(q)[lines(q).indexOf("sub: ; stack 0") + 1]).toBe("8: *(u64 *)(r10 -16) = 65535");
  });
});

// bpf_opt_subreg_zext_lo32_rnd_hi32() (kernel/bpf/fixups.c, 7.2): x86's 32-bit cmpxchg writes eax
// only when the comparison fails, so on success rax keeps its upper half; BPF's always loads R0,
// zero-extended. The verifier puts `w0 = w0` after each 32-bit cmpxchg whose R0 some path reads
// as 64 bits (mark_insn_zext() from __check_reg_arg()). The reference property found the missing
// patch: r0 = -1 compared equal with the -1 in memory came back as 0xffffffffffffffff.
describe("the zero-extension after a 32-bit cmpxchg", () => {
  const stored = [alu64.mov.imm(R0, -1), st(BPF_DW, R10, -8, -1), alu64.mov.imm(R1, 5)];
  const one = (body: Parameters<typeof program>[0]["funcs"][number]["body"], more: Parameters<typeof program>[0]["funcs"] = [], stackDepth = 8) =>
    program({ name: "p", type: "raw_tp", funcs: [{ name: "main", stackDepth, body }, ...more] });
  const zexts = (p: Program) => lines(fixed(p)).filter((l) => / w0 = w0$/.test(l));

  test("R0 read as 64 bits after it (the main program's exit): `w0 = w0` follows the cmpxchg, and the machine returns the interpreter's zero-extended value", () => {
    const p = one([...stored, atomic.cmpxchg(BPF_W, R10, R1, -8), exit()]);
    const expected = runProgram({ programs: [p], nested: [], recursionLimit: 1, active: [0], misses: [0] }, 0);
    expect(expected).toBe(0xffffffffn);
    for (const strategy of BUILTIN_STRATEGIES.filter((x) => x.name === "baseline" || x.name === "r9-private")) {
      const img = buildImage({ programs: [p], task: 0 }, strategy);
      const m = loadImage(img);
      startTask(img, m);
      const r = m.run({ maxSteps: 100_000 });
      expect(r.kind === "completed" ? r.rax : r, strategy.name).toBe(expected);
    }
    expect(validate(p).zextCmpxchg).toEqual([3]);
    expect(lines(fixed(p)).slice(4, 7)).toEqual(["3: r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r1)", "4: w0 = w0", "5: exit"]);
  });

  test("no patch where no path reads R0 as 64 bits before writing it (a 32-bit compare, a byte store, a new value), nor after a 64-bit cmpxchg", () => {
    expect(zexts(one([...stored, atomic.cmpxchg(BPF_W, R10, R1, -8), jmp32.jeq.imm(R0, 1, "x"), label("x"), stx(BPF_B, R10, R0, -8), alu64.mov.imm(R0, 0), exit()]))).toEqual([]);
    expect(zexts(one([...stored, atomic.cmpxchg(BPF_DW, R10, R1, -8), exit()]))).toEqual([]);
  });

  // README finding 9: the program of test/native/cmpxchg-zext-prune.c
  const joined = one([ldx(BPF_DW, R6, R1, 0), ...stored, jmp.jne.imm(R6, 0, "b"), atomic.cmpxchg(BPF_W, R10, R1, -8), jmp.ja("j"), label("b"), atomic.cmpxchg(BPF_W, R10, R1, -8), label("j"), alu64.rsh.imm(R0, 32), exit()]);

  test("two 32-bit cmpxchgs on paths that join before the read: 7.2 marks the one its walk reaches the read from; the other path is pruned at the join, unmarked (6.12 to 6.18 marked both)", () => {
    const v = validate(joined);
    expect(v.zextCmpxchgAllPaths).toEqual([5, 7]);
    expect(v.zextCmpxchg).toEqual([5]); // the fall-through, walked first
    expect(zexts(joined)).toHaveLength(1);
  });

  test("finding 9 on the machine: the pruned path's cmpxchg keeps rax's upper half, so R0 >> 32 is 0xffffffff where BPF and the verifier have 0", () => {
    const expected = runProgram(interpEnv([joined], [], 1), 0);
    expect(expected).toBe(0n);
    const img = buildImage({ programs: [joined], task: 0 }, strategy("baseline"));
    const m = loadImage(img);
    startTask(img, m);
    const r = m.run({ maxSteps: 100_000 });
    // the runner's context: the first argument (R6) is not 0, so the run takes path B
    expect(r.kind === "completed" ? r.rax : r).toBe(0xffffffffn);
  });

  test("the walk prunes only at states it kept: with fewer than 2 jumps and 8 instructions since the last kept, a join keeps nothing and both paths are walked", () => {
    // the same shape one instruction shorter before the branch (R0 stored by itself): path A
    // reaches the join as the 7th instruction the walk processes, so no state is kept there
    // and B walks on to the read
    const short = one([ldx(BPF_DW, R6, R1, 0), alu64.mov.imm(R0, -1), st(BPF_DW, R10, -8, -1), jmp.jne.imm(R6, 0, "b"), atomic.cmpxchg(BPF_W, R10, R0, -8), jmp.ja("j"), label("b"), atomic.cmpxchg(BPF_W, R10, R0, -8), label("j"), alu64.rsh.imm(R0, 32), exit()]);
    expect(validate(short).zextCmpxchgAllPaths).toEqual([4, 6]);
    expect(validate(short).zextCmpxchg).toEqual([4, 6]);
  });

  // where the verifier's states differ in what a data flow would not see, it walks path B and
  // marks it; the walk must not prune there (a zero-extension left out that 7.2 puts in)
  test.each([
    ["a constant kept on the stack that a later branch decides (precise for the verifier)", one([
      ldx(BPF_DW, R6, R1, 0), ...stored, jmp.jne.imm(R6, 0, "b"), st(BPF_DW, R10, -16, 0), atomic.cmpxchg(BPF_W, R10, R1, -8), jmp.ja("j"),
      label("b"), st(BPF_DW, R10, -16, 1), atomic.cmpxchg(BPF_W, R10, R1, -8),
      label("j"), ldx(BPF_DW, R2, R10, -16), jmp.jeq.imm(R2, 0, "c"), alu64.mov.imm(R2, 0), label("c"), alu64.rsh.imm(R0, 32), exit(),
    ], [], 16)],
    ["a may_goto loop (its checkpoints compare ranges)", one([
      ldx(BPF_DW, R6, R1, 0), alu64.and.imm(R6, 1), ...stored, atomic.cmpxchg(BPF_W, R10, R1, -8),
      label("l"), may_goto("o"), alu64.add.imm(R6, 1), atomic.cmpxchg(BPF_W, R10, R1, -8), jmp.ja("l"), label("o"), alu64.rsh.imm(R0, 32), exit(),
    ])],
    ["a branch on the value the first branch narrowed (known 0 on A, not on B)", one([
      ldx(BPF_DW, R6, R1, 0), ...stored, jmp.jne.imm(R6, 0, "b"), atomic.cmpxchg(BPF_W, R10, R1, -8), jmp.ja("j"),
      label("b"), atomic.cmpxchg(BPF_W, R10, R1, -8), label("j"), jmp.jeq.imm(R6, 0, "k"), label("k"), alu64.rsh.imm(R0, 32), exit(),
    ])],
    ["a BPF call on the first path (the verifier walks the callee, counting and keeping states there)", program({ name: "p", type: "raw_tp", funcs: [
      { name: "main", stackDepth: 8, body: [
        ldx(BPF_DW, R6, R1, 0), st(BPF_DW, R10, -8, -1), alu64.mov.imm(R0, -1), jmp.jne.imm(R6, 0, "b"),
        call.subprog("sub"), alu64.mov.imm(R1, 5), atomic.cmpxchg(BPF_W, R10, R1, -8), jmp.ja("j"),
        label("b"), alu64.mov.imm(R1, 5), atomic.cmpxchg(BPF_W, R10, R1, -8), label("j"), alu64.rsh.imm(R0, 32), exit(),
      ] },
      { name: "sub", stackDepth: 0, body: [alu64.mov.imm(R0, 0), alu64.mov.imm(R0, 0), jmp.jeq.imm(R0, 0, "x"), label("x"), exit()] },
    ] })],
    ["STACK_ZERO against STACK_MISC in the half of a slot that a later write leaves alone", one([
      ldx(BPF_DW, R0, R1, 0), st(BPF_DW, R10, -8, -1), jmp.jne.imm(R0, 0, "b"), st(BPF_W, R10, -12, 0), atomic.cmpxchg(BPF_W, R10, R0, -8), jmp.ja("j"),
      label("b"), st(BPF_W, R10, -12, 1), atomic.cmpxchg(BPF_W, R10, R0, -8),
      label("j"), st(BPF_W, R10, -16, 7), jmp.ja("p"), label("p"), ldx(BPF_W, R7, R10, -12), alu64.rsh.imm(R0, 32), exit(),
    ], [], 16)],
    ["one instruction after the join making different values from different inputs (0 * 3, 5 * 3)", one([
      ldx(BPF_DW, R0, R1, 0), st(BPF_DW, R10, -8, -1), jmp.jne.imm(R0, 0, "b"), alu64.mov.imm(R3, 0), atomic.cmpxchg(BPF_W, R10, R0, -8), jmp.ja("j"),
      label("b"), alu64.mov.imm(R3, 5), atomic.cmpxchg(BPF_W, R10, R0, -8),
      label("j"), alu64.mul.imm(R3, 3), jmp.ja("p"), label("p"), stx(BPF_W, R10, R3, -12), alu64.rsh.imm(R0, 32), exit(),
    ], [], 16)],
    ["two loads of one context field (the verifier does not link them: a JEQ on one says nothing of the other)", one([
      ldx(BPF_DW, R6, R1, 0), ldx(BPF_DW, R7, R1, 0), ...stored, jmp.jne.imm(R6, 5, "out"), jmp.jne.imm(R7, 5, "b"), exit(),
      label("b"), atomic.cmpxchg(BPF_W, R10, R1, -8), alu64.rsh.imm(R0, 32), label("out"), exit(),
    ])],
    ["two 4-byte fills of one spilled value (a narrow fill has no id)", one([
      ldx(BPF_DW, R6, R1, 0), stx(BPF_DW, R10, R6, -16), ldx(BPF_W, R6, R10, -16), ldx(BPF_W, R7, R10, -16), ...stored,
      jmp.jne.imm(R6, 5, "out"), jmp.jne.imm(R7, 5, "b"), exit(), label("b"), atomic.cmpxchg(BPF_W, R10, R1, -8), alu64.rsh.imm(R0, 32), label("out"), exit(),
    ], [], 16)],
    ["a shift by a register holding 64 (the verifier does not compute it)", one([
      ...stored, alu64.mov.imm(R6, 1), alu64.mov.imm(R7, 64), alu64.lsh.reg(R6, R7), jmp.jne.imm(R6, 1, "b"), exit(),
      label("b"), atomic.cmpxchg(BPF_W, R10, R1, -8), alu64.rsh.imm(R0, 32), exit(),
    ])],
    ["a 32-bit shift by a register whose 64-bit value is past 32", one([
      ...stored, alu64.mov.imm(R6, 1), alu64.mov.imm(R7, 1), alu64.lsh.imm(R7, 32), alu64.add.imm(R7, 1), alu32.lsh.reg(R6, R7), jmp.jne.imm(R6, 2, "b"), exit(),
      label("b"), atomic.cmpxchg(BPF_W, R10, R1, -8), alu64.rsh.imm(R0, 32), exit(),
    ])],
    ["a copy on one path, two loads on the other (linked registers: check_scalar_ids())", one([
      ldx(BPF_DW, R8, R1, 0), alu64.mov.imm(R0, -1), st(BPF_DW, R10, -8, -1), alu64.mov.imm(R2, 5), jmp.jne.imm(R8, 0, "b"),
      ldx(BPF_DW, R6, R1, 0), alu64.mov.reg(R7, R6), atomic.cmpxchg(BPF_W, R10, R2, -8), jmp.ja("j"),
      label("b"), ldx(BPF_DW, R6, R1, 0), ldx(BPF_DW, R7, R1, 0), atomic.cmpxchg(BPF_W, R10, R2, -8),
      label("j"), jmp.jne.imm(R6, 5, "out"), jmp.jeq.imm(R6, 5, "m"), label("m"), alu64.mov.reg(R1, R7), alu64.rsh.imm(R0, 32), label("out"), exit(),
    ])],
    ["an AND of a constant on a value in [-1, 0] (maybe_fork_scalars() pushes a state)", one([
      ldx(BPF_DW, R7, R1, 24), ldx(BPF_DW, R6, R1, 8), alu64.arsh.imm(R6, 63), alu64.mov.imm(R0, -1), st(BPF_DW, R10, -8, -1), alu64.mov.imm(R2, 5),
      jmp.jne.imm(R7, 0, "c"), atomic.cmpxchg(BPF_W, R10, R2, -8), st(BPF_DW, R10, -8, 0), jmp.ja("k"),
      label("k"), ldx(BPF_DW, R8, R1, 0), jmp.jne.imm(R8, 0, "e"), alu64.and.imm(R6, 1), ldx(BPF_DW, R9, R1, 16), jmp.jeq.imm(R9, 7, "p"), label("p"), alu64.mov.imm(R3, 0), exit(),
      label("c"), atomic.cmpxchg(BPF_W, R10, R2, -8), st(BPF_DW, R10, -8, 0), jmp.ja("e"), label("e"), alu64.rsh.imm(R0, 32), exit(),
    ])],
    ["a constant a branch narrowed a linked pair to, against the same constant moved in (the ids differ)", one([
      ldx(BPF_DW, R8, R1, 8), alu64.mov.imm(R0, -1), st(BPF_DW, R10, -8, -1), alu64.mov.imm(R2, 5), jmp.jne.imm(R8, 0, "b"),
      ldx(BPF_DW, R6, R1, 0), alu64.mov.reg(R7, R6), jmp.jne.imm(R6, 5, "out"), atomic.cmpxchg(BPF_W, R10, R2, -8), jmp.ja("j"),
      label("b"), alu64.mov.imm(R6, 5), alu64.mov.imm(R7, 5), atomic.cmpxchg(BPF_W, R10, R2, -8), jmp.ja("j"),
      label("j"), jmp.jeq.imm(R6, 5, "k"), label("k"), jmp.jeq.imm(R7, 5, "m"), label("m"), alu64.rsh.imm(R0, 32), exit(),
      label("out"), alu64.mov.imm(R0, 0), exit(),
    ])],
  ])("no prune where the verifier walks on: %s", (_what, p) => {
    const v = validate(p);
    expect(v.zextCmpxchgAllPaths.length).toBeGreaterThan(0);
    expect(v.zextCmpxchg).toEqual(v.zextCmpxchgAllPaths);
  });

  test("a read on one path of two marks it; R0 returned by a subprog carries the mark to its caller's read", () => {
    // on a value the verifier does not know (the context's first argument): it walks both ways
    const branchy = one([ldx(BPF_DW, R6, R1, 0), ...stored, atomic.cmpxchg(BPF_W, R10, R1, -8), jmp.jeq.imm(R6, 5, "w"), alu64.add.imm(R0, 1), label("w"), alu32.mov.imm(R0, 0), exit()]);
    expect(zexts(branchy)).toHaveLength(1);
    const viaSub = program({
      name: "p", type: "raw_tp", funcs: [
        { name: "main", stackDepth: 0, body: [call.subprog("sub"), alu64.add.imm(R0, 1), exit()] },
        { name: "sub", stackDepth: 8, body: [...stored, atomic.cmpxchg(BPF_W, R10, R1, -8), exit()] },
      ],
    });
    expect(validate(viaSub).zextCmpxchg).toEqual([6]);
    const q = fixed(viaSub);
    expect(q.funcs.map((f) => [f.name, f.start, f.end])).toEqual([["main", 0, 3], ["sub", 3, 9]]);
    expect(lines(q).slice(-2)).toEqual(["7: w0 = w0", "8: exit"]);
  });
});
