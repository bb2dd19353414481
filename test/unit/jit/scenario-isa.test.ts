// Scenario files carry raw [code, dst, src, off, imm] tuples: the 7.2 instructions, ld_imm64's
// code-0 second half included, fit harness/scenario.ts's schema as it is, and come back as the
// same program; a refused encoding is reported at its JSON path.
import { describe, expect, test } from "vitest";
import { alu32, alu64, atomic, bswap, end, exit, gotol, jmp, jmp32, label, ld_imm64, ldxsx, may_goto, st, type Item } from "../../../jit/bpf/insn.ts";
import { interpEnv, runProgram } from "../../../jit/bpf/interp.ts";
import { BPF_DW, BPF_H, BPF_W, R0, R1, R2, R6, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { parseScenario, ScenarioError } from "../../../harness/scenario.ts";

const body: Item[] = [
  ...ld_imm64(R1, -0x1234_5678_9abcn), alu64.sdiv.imm(R1, -7), alu32.smod.imm(R1, 5), alu64.movsx(R2, R1, 16), end.toBe(R2, 32), bswap(R2, 64),
  st(BPF_DW, R10, -8, 9), atomic.fetchAdd(BPF_DW, R10, R2, -8), alu64.mov.imm(R0, 0), atomic.cmpxchg(BPF_W, R10, R1, -8),
  ldxsx(BPF_H, R6, R10, -8), alu64.mov.imm(R0, 0), label("l"), alu64.add.reg(R0, R6), may_goto("out"), jmp32.jslt.imm(R0, 1000, "l"),
  label("out"), jmp.jset.imm(R0, 1, "odd"), gotol("odd"), label("odd"), exit(),
];

describe("scenario files and the 7.2 instructions", () => {
  test("every family round-trips through the schema and runs the same", () => {
    const p = program({ name: "isa", type: "raw_tp", funcs: [{ name: "main", stackDepth: 8, body }] });
    const tuples = p.insns.map((x) => [x.code, x.dst, x.src, x.off, x.imm]);
    expect(tuples.filter(([code]) => code === 0)).toEqual([[0, 0, 0, 0, -0x1235]]); // ld_imm64's second half: 0xffffedcb
    const sc = parseScenario({ version: 1, programs: [{ name: "isa", type: "raw_tp", funcs: [{ name: "main", stackDepth: 8, insns: tuples }] }], task: "isa" });
    expect(sc.programs[0]!.insns).toEqual(p.insns);
    expect(runProgram(interpEnv(sc.programs, [], 1), 0)).toBe(runProgram(interpEnv([p], [], 1), 0));
  });

  test("an encoding the project does not model is reported at its path", () => {
    try {
      parseScenario({ version: 1, programs: [{ name: "p", type: "kprobe", funcs: [{ name: "main", stackDepth: 0, insns: [[0xb7, 0, 0, 0, 0], [0x0d, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]] }] }], task: "p" }, "s.json");
      throw new Error("expected a ScenarioError");
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      expect((e as ScenarioError).issues).toEqual([{
        code: "verifier:unsupported", path: "programs[0].funcs[0].insns[1]",
        message: "p/main: unsupported opcode 0x0d (BPF_JMP|BPF_JA|BPF_X) at insn 1: gotox jumps through a BPF_MAP_TYPE_INSN_ARRAY; the synthetic kernel has no maps",
      }]);
    }
  });
});
