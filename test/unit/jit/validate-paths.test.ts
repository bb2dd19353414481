// What the verifier never walks (a branch is_branch_taken() decides, 7.2's verifier.c) neither
// grows a function's stack depth nor is checked; a decision the verifier would not make itself (a
// value it does not compute exactly) walks both ways, as before.
import { describe, expect, test } from "vitest";
import { alu64, call, exit, jmp, label, ldx, st, type Item } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R6, R7, R8, R10 } from "../../../jit/bpf/opcodes.ts";
import { program, type FuncSource } from "../../../jit/bpf/program.ts";
import { validate } from "../../../jit/bpf/validate.ts";
import { buildImage } from "../../../jit/image.ts";
import { runScenario } from "../../../harness/run.ts";
import { parseScenario } from "../../../harness/scenario.ts";
import { strategy } from "../../helpers/strategies.ts";

/** A raw_tp main whose 128-byte store sits behind `if r6 == 0 goto out`, r6 made by `setR6`. */
const behind = (setR6: Item[], dead: Item[] = [st(BPF_DW, R10, -128, 1)], more: FuncSource[] = []) => program({ name: "p", type: "raw_tp", funcs: [
  { name: "main", stackDepth: 128, body: [...setR6, jmp.jeq.imm(R6, 0, "out"), ...dead, label("out"), st(BPF_DW, R10, -48, 2), alu64.mov.imm(R0, 0), exit()] },
  ...more,
] });

describe("the stack depth grows on the walked instructions only", () => {
  test("a store on a branch the constant in r6 decides away: 48 bytes, no private stack (7.2: the store is never walked)", () => {
    const v = validate(behind([alu64.mov.imm(R6, 0)]));
    expect(v.verifierDepth).toEqual([48]);
    expect(v.privStack).toEqual([false]);
  });

  test("the same store reached (r6 = 1, or r6 from the context): 128 bytes and a private stack", () => {
    for (const set of [[alu64.mov.imm(R6, 1)], [ldx(BPF_DW, R6, R1, 0)]]) {
      const v = validate(behind(set));
      expect(v.verifierDepth).toEqual([128]);
      expect(v.privStack).toEqual([true]);
    }
  });

  test("a value the verifier does not compute (a shift by a register holding 64), as is, copied or added to: both ways walked, as the verifier walks them", () => {
    // the walk's own value of `0 << 64` is 0, which would decide the jump away from the store
    const unknownZero = [alu64.mov.imm(R6, 0), alu64.mov.imm(R7, 64), alu64.lsh.reg(R6, R7)];
    for (const set of [unknownZero, [...unknownZero, alu64.mov.reg(R8, R6), alu64.mov.reg(R6, R8)], [...unknownZero, alu64.add.imm(R6, 0)]]) {
      expect(validate(behind(set)).verifierDepth).toEqual([128]);
    }
    // the same zero made by an op the verifier computes: decided
    expect(validate(behind([alu64.mov.imm(R6, 5), alu64.sub.imm(R6, 5)])).verifierDepth).toEqual([48]);
  });

  test("the same value known exactly on one way in and not on the other: both ways walked", () => {
    const set = [ldx(BPF_DW, R7, R1, 0), alu64.mov.imm(R6, 0), jmp.jeq.imm(R7, 0, "same"), alu64.mov.imm(R7, 64), alu64.lsh.reg(R6, R7), label("same")];
    expect(validate(behind(set)).verifierDepth).toEqual([128]);
  });

  test("code never walked is not checked (7.2 removes it before the JIT: bpf_opt_remove_dead_code()); the model keeps it, never run", () => {
    const withF = behind([alu64.mov.imm(R6, 0)], [alu64.add.reg(R0, R7), st(BPF_DW, R10, -128, 1), call.subprog("f")], [
      { name: "f", stackDepth: 256, body: [st(BPF_DW, R10, -256, 1), alu64.mov.imm(R0, 0), exit()] },
    ]);
    const v = validate(withF);
    expect(v.verifierDepth).toEqual([48, 0]); // f is reached only from the dead code: never walked
    const sc = parseScenario({ version: 1, name: "dead", programs: [{ name: "p", type: "raw_tp", funcs: withF.funcs.map((f) => ({ name: f.name, stackDepth: f.stackDepth, insns: withF.insns.slice(f.start, f.end).map((x) => [x.code, x.dst, x.src, x.off, x.imm]) })) }], task: "p" } as never, "dead");
    for (const s of ["baseline", "r9-private"]) {
      const o = runScenario(sc, strategy(s), { unwinder: "frame", policy: "strict", injections: [], image: buildImage(sc.spec, strategy(s)) });
      expect(o.result, s).toMatchObject({ kind: "completed", rax: 0n });
      expect(o.checks.failures, s).toEqual([]);
    }
  });
});
