// jit-diff's machinery without a kernel tree: the instruction shrinker renumbers jumps and calls,
// and against a planted "kernel" (the TypeScript JIT with one bookkeeping change or one byte more)
// jit-diff counts the differing functions, shrinks the first to its minimal program and prints
// both listings with the differing lines marked. The tree itself: test/tree/jit-diff.test.ts.
import { describe, expect, test } from "vitest";
import { alu64, call, exit, jmp, label, stx } from "../../../jit/bpf/insn.ts";
import { R0, R1, R6, R10, BPF_DW } from "../../../jit/bpf/opcodes.ts";
import { program, type Program } from "../../../jit/bpf/program.ts";
import { TS_JIT, type JitBackend } from "../../../jit/backend.ts";
import { diffProgram, formatDiff, runJitDiff } from "../../../harness/jit-diff.ts";
import { shrinkProgram, withoutInsns } from "../../../harness/shrink-program.ts";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import { JitError } from "../../../jit/lower.ts";
import { strategy } from "../../helpers/strategies.ts";

const interpret = (p: Program) => runProgram(interpEnv([p], [], 1), 0);

const baseline = strategy("baseline");

/** The TypeScript JIT, changed after the fact: a stand-in kernel whose JIT differs in one way. */
function planted(change: (p: ReturnType<JitBackend["jitProgram"]>, prog: Program) => ReturnType<JitBackend["jitProgram"]>): JitBackend {
  return { ...TS_JIT, name: "kernel", describe: "a planted JIT", jitProgram: (p, v, s, l, o) => change(TS_JIT.jitProgram(p, v, s, l, o), p) };
}

describe("withoutInsns: one instruction out, every relative target renumbered", () => {
  const p = program({
    name: "p", type: "raw_tp", funcs: [
      { name: "main", stackDepth: 0, body: [alu64.mov.imm(R6, 1), jmp.jeq.imm(R6, 0, "out"), alu64.add.imm(R6, 2), alu64.add.imm(R6, 3), label("out"), call.subprog("sub"), alu64.mov.reg(R0, R6), exit()] },
      { name: "sub", stackDepth: 0, body: [alu64.mov.imm(R0, 7), exit()] },
    ],
  });

  test("a removal between a jump and its target shortens the jump; a later call's offset is unchanged relative to its callee", () => {
    const q = withoutInsns(p, 2)!;
    expect(q.insns).toHaveLength(p.insns.length - 1);
    expect(q.insns[1]!.off).toBe(p.insns[1]!.off - 1);
    // the call (now at 3) still reaches sub (now at 5)
    expect(3 + 1 + q.insns[3]!.imm).toBe(q.funcs[1]!.start);
    expect(q.funcs.map((f) => [f.start, f.end])).toEqual([[0, 6], [6, 8]]);
    expect(interpret(q)).toBe(interpret(p) - 2n);
  });

  test("a removed jump target makes the jump reach the instruction after it", () => {
    const q = withoutInsns(p, 4)!; // the call at the label: the jump now reaches `r0 = r6`
    expect(1 + 1 + q.insns[1]!.off).toBe(4);
    expect(q.insns[4]).toEqual(p.insns[5]);
  });

  test("emptying a function is not a candidate", () => {
    expect(withoutInsns(p, 7, 2)).toBeUndefined();
  });

  test("shrinkProgram keeps only what the failure needs, and keeps the program valid", () => {
    const q = shrinkProgram(p, (x) => x.insns.some((i) => i.code === p.insns[3]!.code && i.imm === 3));
    // the add of 3 stays; what it needs stays too (r6 set before it is read, an exit per function)
    expect(q.program.insns.length).toBeLessThan(p.insns.length);
    expect(q.program.insns.some((i) => i.imm === 3)).toBe(true);
    expect(q.steps).toBe(p.insns.length - q.program.insns.length);
  });
});

describe("jit-diff against a planted kernel JIT", () => {
  test("the same JIT on both sides: no differences, every function counted under each strategy", () => {
    const r = runJitDiff({ kernel: planted((j) => j), strategies: [baseline, strategy("r9-private")], runs: 30, seed: 5 });
    expect(r.differences).toBe(0);
    expect(r.first).toBeUndefined();
    expect(r.runs).toBe(30);
    expect(r.functions).toBeGreaterThan(60);
    expect(r.functions).toBe(Object.values(r.bySource).reduce((a, b) => a + b, 0));
  });

  test("a sleepable program's call of the sleeping helper resolves: compared, not refused by both JITs", () => {
    // (the helper is in the kernel with its scheduler; jit-diff's symbols are that kernel's)
    const sleeps: Program = { ...program({ name: "s", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, body: [call.helper(4), alu64.mov.imm(R0, 0), exit()] }] }), attach: "uprobe", sleepable: true };
    const r = diffProgram(sleeps, baseline, planted((j) => j), { ibt: true, sls: false });
    expect(r.bothRefused).toBeUndefined();
    expect(r.diffs).toEqual([]);
    expect(r.functions).toBe(1);
  });

  test("fp_end one too far on every single-function program: every one counted, the first shrunk to `r0 = 0; exit` or less", () => {
    const kernel = planted((j, p) => (p.funcs.length > 1 ? j : { ...j, funcs: j.funcs.map((f) => ({ ...f, ksym: { ...f.ksym, fpEnd: f.ksym.fpEnd + 1 } })) }));
    const r = runJitDiff({ kernel, strategies: [baseline], runs: 40, seed: 9 });
    expect(r.differences).toBeGreaterThan(0);
    expect(r.byField).toEqual({ "fp_start/fp_end": r.differences });
    const d = r.first!.diff;
    expect(d.fields).toEqual(["fp_start/fp_end"]);
    expect(d.program.funcs).toHaveLength(1);
    expect(d.program.insns.length).toBeLessThanOrEqual(2);
    const text = formatDiff(d);
    expect(text).toMatch(/ts: {5}fp_start 0x14 fp_end 0x1,/);
    expect(text).toMatch(/kernel: fp_start 0x14 fp_end 0x2,/);
    expect(text).not.toContain("≠"); // the bytes agree
  });

  test("a byte more before the epilogue of functions with a helper call: marked lines, shrunk to the call and its exit", () => {
    const kernel = planted((j, p) => ({
      ...j, funcs: j.funcs.map((f) => {
        const calls = p.insns.slice(p.funcs[f.fi]!.start, p.funcs[f.fi]!.end).some((x) => x.code === 0x85 && x.src === 0);
        if (!calls) return f;
        const at = f.addrs.at(-2)!; // the last instruction (an exit) starts here
        const bytes = new Uint8Array([...f.image.bytes.subarray(0, at), 0x90, ...f.image.bytes.subarray(at)]);
        return { ...f, image: { ...f.image, bytes, end: f.image.end + 1n }, addrs: [...f.addrs.slice(0, -1), f.addrs.at(-1)! + 1] };
      }),
    }));
    const r = runJitDiff({ kernel, strategies: [baseline], runs: 60, seed: 2 });
    const d = r.first!.diff;
    expect(d.fields).toEqual(expect.arrayContaining(["bytes", "addrs[]"]));
    // the smallest program with a helper call: the call (with what its arguments need) and an exit
    expect(d.program.insns.length).toBeLessThanOrEqual(6);
    expect(d.program.insns.some((x) => x.code === 0x85)).toBe(true);
    const marked = formatDiff(d).split("\n").filter((l) => l.startsWith("≠"));
    expect(marked).toHaveLength(1);
    expect(marked[0]).toMatch(/\| +[0-9a-f]+: 90 {2}nop$/);
  });

  test("a JIT that refuses what the other JITs is a difference of the whole program; any other error is a bug, not a difference", () => {
    const p = program({ name: "p", type: "raw_tp", funcs: [{ name: "main", stackDepth: 8, body: [stx(BPF_DW, R10, R1, -8), alu64.mov.imm(R0, 0), exit()] }] });
    const refuses: JitBackend = { ...TS_JIT, name: "kernel", describe: "refuses", jitProgram: () => { throw new JitError("p/main: insn 0: bpf_jit: unknown opcode 7b"); } };
    const r = diffProgram(p, baseline, refuses, { ibt: true, sls: false });
    expect(r.functions).toBe(1);
    expect(r.diffs.map((d) => [d.fi, d.fields])).toEqual([[-1, ["refused"]]]);
    expect(formatDiff(r.diffs[0]!)).toContain("kernel: refused: p/main: insn 0: bpf_jit: unknown opcode 7b");
    const broken: JitBackend = { ...refuses, jitProgram: () => { throw new TypeError("oops"); } };
    expect(() => diffProgram(p, baseline, broken, { ibt: true, sls: false })).toThrow("oops");
  });
});
