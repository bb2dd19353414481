// Backward jumps: the loops the validator can bound (loops.ts: counted loops and may_goto loops)
// are accepted and run as the interpreter says; anything else backward is refused with a message
// that says what is accepted.
import { describe, expect, test } from "vitest";
import { alu32, alu64, call, exit, gotol, jmp, jmp32, label, ldx, may_goto, st, type Item } from "../../../jit/bpf/insn.ts";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import { ACCEPTED_LOOPS } from "../../../jit/bpf/loops.ts";
import { BPF_DW, BPF_MAX_TIMED_LOOPS, R0, R1, R2, R6, R7, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { validate, ValidationError } from "../../../jit/bpf/validate.ts";

const prog = (body: Item[]) => program({ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 8, body }] });
const run = (body: Item[], mayGotoRefreshes?: number) => {
  const p = prog(body);
  validate(p);
  return runProgram({ ...interpEnv([p], [], 1), ...(mayGotoRefreshes === undefined ? {} : { mayGotoRefreshes }) }, 0);
};
function refuses(body: Item[], message: string) {
  try {
    validate(prog(body));
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    expect((e as ValidationError).issue.rule).toBe("backward-jump");
    expect((e as ValidationError).issue.message).toBe(message);
    return;
  }
  throw new Error("expected a 'backward-jump' rejection");
}
const why = (from: number, to: number, reason: string) => `back-edge from insn ${from} to ${to}: ${reason}; ${ACCEPTED_LOOPS}`;

describe("accepted loops run as the interpreter says", () => {
  test("counting up: r0 = 1 + 2 + … + 10", () => {
    expect(run([alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 0), label("l"), alu64.add.imm(R6, 1), alu64.add.reg(R0, R6), jmp.jlt.imm(R6, 10, "l"), exit()])).toBe(55n);
  });
  test("counting down to 0 with jne, the step after the work", () => {
    expect(run([alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 5), label("l"), alu64.add.imm(R0, 3), alu64.sub.imm(R6, 1), jmp.jne.imm(R6, 0, "l"), exit()])).toBe(15n);
  });
  test("a 32-bit counter compared in JMP32, from a negative start with a signed compare", () => {
    expect(run([alu64.mov.imm(R0, 0), alu32.mov.imm(R6, -3), label("l"), alu64.add.imm(R0, 1), alu32.add.imm(R6, 1), jmp32.jslt.imm(R6, 2, "l"), exit()])).toBe(5n);
  });
  test("a forward jump may leave the loop early, and one may skip work that is not the step", () => {
    expect(run([
      alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 0), label("l"), alu64.add.imm(R6, 1), jmp.jeq.imm(R6, 2, "skip"), alu64.add.imm(R0, 10),
      label("skip"), jmp.jeq.imm(R6, 7, "out"), jmp.jle.imm(R6, 100, "l"), label("out"), exit(),
    ])).toBe(60n); // 10 for each of r6 = 1, 3, 4, 5, 6, 7
  });
  test("nested counted loops: the inner counter is set again on every outer iteration", () => {
    expect(run([
      alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 0), label("outer"), alu64.mov.imm(R7, 0), label("inner"), alu64.add.imm(R0, 1),
      alu64.add.imm(R7, 1), jmp.jlt.imm(R7, 4, "inner"), alu64.add.imm(R6, 1), jmp.jlt.imm(R6, 3, "outer"), exit(),
    ])).toBe(12n);
  });
  test("a loop with a call in it (the counter in a callee-saved register) and gotol forward", () => {
    expect(run([alu64.mov.imm(R6, 0), label("l"), call.helper(3), alu64.add.imm(R6, 2), jmp.jlt.imm(R6, 8, "l"), alu64.mov.reg(R0, R6), gotol("x"), label("x"), exit()])).toBe(8n);
  });
  test("a loop only may_goto bounds: 2 × BPF_MAX_TIMED_LOOPS iterations, or one more refill each time bpf_check_timed_may_goto() finds time left", () => {
    const body = [alu64.mov.imm(R0, 0), label("l"), may_goto("out"), alu64.add.imm(R0, 1), jmp.ja("l"), label("out"), exit()];
    expect(run(body)).toBe(BigInt(2 * BPF_MAX_TIMED_LOOPS));
    expect(run(body, 1)).toBe(BigInt(3 * BPF_MAX_TIMED_LOOPS));
  });
  test("may_goto also bounds a loop whose counter would not be accepted", () => {
    const v = validate(prog([
      call.helper(3), alu64.mov.reg(R6, R0), label("l"), alu64.mul.imm(R6, 3), may_goto("out"), jmp.jne.imm(R6, 1, "l"), label("out"), alu64.mov.imm(R0, 0), exit(),
    ]));
    expect(v.stackExtra).toEqual([16]);
  });
  test("stricter than 7.2, which walks each iteration: the loop head meets the entry and the back edge, so stack only the first iteration initialises is not initialised", () => {
    expect(() => validate(prog([
      alu64.mov.imm(R6, 0), label("l"), jmp.jne.imm(R6, 0, "skip"), st(BPF_DW, R10, -8, 1), label("skip"), ldx(BPF_DW, R0, R10, -8),
      alu64.add.imm(R6, 1), jmp.jlt.imm(R6, 3, "l"), exit(),
    ]))).toThrow("program p, function main, insn 3: invalid read from stack R10 off -8 size 8: byte -8 is not initialised [uninit-stack]");
  });
});

describe("refused backward jumps say what is accepted", () => {
  test("an unconditional jump back with no may_goto", () => refuses([
    alu64.mov.imm(R0, 0), label("l"), alu64.add.imm(R0, 1), jmp.jeq.imm(R0, 5, "out"), jmp.ja("l"), label("out"), exit(),
  ], why(3, 1, "the backward jump does not compare a counter with a constant, and no may_goto leaves the loop")));
  test("a compare with a register", () => refuses([alu64.mov.imm(R0, 0), alu64.mov.imm(R2, 9), label("l"), alu64.add.imm(R0, 1), jmp.jlt.reg(R0, R2, "l"), exit()],
    why(3, 2, "the backward jump does not compare a counter with a constant, and no may_goto leaves the loop")));
  test("a self-loop: the counter does not change", () => refuses([alu64.mov.imm(R0, 0), label("l"), jmp.jlt.imm(R0, 9, "l"), exit()],
    why(1, 1, "the counter r0 does not change in the loop")));
  test("the counter written twice", () => refuses([alu64.mov.imm(R0, 0), label("l"), alu64.add.imm(R0, 1), alu64.add.imm(R0, 1), jmp.jlt.imm(R0, 9, "l"), exit()],
    why(3, 1, "the counter r0 is written by insns 1, 2, not by one step")));
  test("a call clobbers a counter in R1-R5", () => refuses([alu64.mov.imm(R1, 0), label("l"), alu64.add.imm(R1, 1), call.helper(3), jmp.jlt.imm(R1, 9, "l"), ...[alu64.mov.imm(R0, 0), exit()]],
    why(3, 1, "the counter r1 is written by insns 1, 2, not by one step")));
  test("a step that is not + or - a constant", () => refuses([alu64.mov.imm(R0, 1), label("l"), alu64.mul.imm(R0, 2), jmp.jlt.imm(R0, 90, "l"), exit()],
    why(2, 1, "insn 1 changes the counter r0 other than by adding or subtracting a constant")));
  test("a step that does not run on every iteration", () => refuses([
    alu64.mov.imm(R0, 0), alu64.mov.imm(R2, 0), label("l"), jmp.jeq.imm(R2, 0, "no"), alu64.add.imm(R0, 1), label("no"), jmp.jlt.imm(R0, 9, "l"), exit(),
  ], why(4, 2, "the step of r0 at insn 3 does not run on every path through the loop")));
  test("a step inside an inner loop", () => refuses([
    alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 0), label("o"), alu64.mov.imm(R7, 0), label("i"), alu64.add.imm(R0, 1), alu64.add.imm(R7, 1),
    jmp.jlt.imm(R7, 2, "i"), jmp.jlt.imm(R0, 9, "o"), exit(),
  ], why(6, 2, "the step of r0 at insn 3 is inside the inner loop from insn 3 to 5")));
  test("a counter that is no known constant on entry", () => refuses([
    call.helper(3), alu64.mov.reg(R6, R0), label("l"), alu64.add.imm(R6, 1), jmp.jlt.imm(R6, 9, "l"), alu64.mov.imm(R0, 0), exit(),
  ], `back-edge from insn 3 to 2: the counter r6 is not a known constant on every way into the loop; ${ACCEPTED_LOOPS}`));
  test("a counter constant on one way in only", () => refuses([
    call.helper(3), alu64.mov.imm(R6, 0), jmp.jeq.imm(R0, 0, "l"), alu64.mov.imm(R6, 4), label("l"), alu64.add.imm(R6, 1), jmp.jlt.imm(R6, 9, "l"), ...[alu64.mov.imm(R0, 0), exit()],
  ], `back-edge from insn 5 to 4: the counter r6 is not a known constant on every way into the loop; ${ACCEPTED_LOOPS}`));
  test("a loop that never ends", () => refuses([alu64.mov.imm(R6, 0), label("l"), alu64.add.imm(R6, 2), jmp.jne.imm(R6, 7, "l"), alu64.mov.imm(R0, 0), exit()],
    "back-edge from insn 2 to 1: starting at 0, r6 does not end the loop within 1000000 iterations (BPF program is too large)"));
  test("a loop too long for the verifier's budget", () => refuses([
    alu64.mov.imm(R6, 0), alu64.mov.imm(R0, 0), label("l"), alu64.add.imm(R0, 1), alu64.add.imm(R0, 1), alu64.add.imm(R6, 1), jmp.jlt.imm(R6, 300_000, "l"), exit(),
  ], "back-edge from insn 5 to 2: the verifier would process about 1200000 insns in this loop (300000 iterations of 4), more than 1000000 (BPF program is too large)"));
  test("nested loops too long together", () => refuses([
    alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 0), label("o"), alu64.mov.imm(R7, 0), label("i"), alu64.add.imm(R7, 1), jmp.jlt.imm(R7, 1000, "i"),
    alu64.add.imm(R6, 1), jmp.jlt.imm(R6, 1000, "o"), exit(),
  ], "back-edge from insn 6 to 2: the verifier would process about 2003000 insns in this loop (1000 iterations of 2003), more than 1000000 (BPF program is too large)"));
  test("loops that overlap without nesting", () => refuses([
    alu64.mov.imm(R0, 0), alu64.mov.imm(R6, 0), label("a"), alu64.add.imm(R0, 1), label("b"), alu64.add.imm(R6, 1), jmp.jlt.imm(R0, 5, "a"),
    jmp.jlt.imm(R6, 5, "b"), exit(),
  ], why(5, 3, "it overlaps the loop from insn 2 to 4 without nesting in it")));
  test("a jump into the middle of a loop", () => refuses([
    alu64.mov.imm(R0, 0), jmp.ja("mid"), label("l"), alu64.add.imm(R0, 1), label("mid"), jmp.jlt.imm(R0, 5, "l"), exit(),
  ], why(3, 2, "insn 1 jumps into the loop at insn 3, past its first instruction 2")));
  test("a may_goto that jumps backward", () => refuses([alu64.mov.imm(R0, 0), label("l"), alu64.add.imm(R0, 1), may_goto("l"), exit()],
    why(2, 1, "a may_goto that jumps backward bounds nothing")));
  test("a may_goto that some iterations skip", () => refuses([
    alu64.mov.imm(R0, 0), label("l"), jmp.jeq.imm(R0, 0, "no"), may_goto("out"), label("no"), alu64.add.imm(R0, 1), jmp.ja("l"), label("out"), exit(),
  ], why(4, 1, "the backward jump does not compare a counter with a constant, and no may_goto leaves the loop")));
  test("a may_goto that stays in the loop", () => refuses([
    alu64.mov.imm(R0, 0), label("l"), may_goto("in"), label("in"), alu64.add.imm(R0, 1), jmp.jeq.imm(R0, 5, "out"), jmp.ja("l"), label("out"), exit(),
  ], why(4, 1, "the backward jump does not compare a counter with a constant, and no may_goto leaves the loop")));
  test("the error names the function-relative insn in a subprog", () => {
    expect(() => validate(program({ name: "p", type: "kprobe", funcs: [
      { name: "main", stackDepth: 0, body: [call.subprog("s"), exit()] },
      { name: "s", stackDepth: 0, body: [alu64.mov.imm(R0, 0), label("l"), jmp.jeq.imm(R0, 1, "out"), jmp.ja("l"), label("out"), exit()] },
    ] }))).toThrow(`program p, function s, insn 2: ${why(2, 1, "the backward jump does not compare a counter with a constant, and no may_goto leaves the loop")} [backward-jump]`);
  });
});
