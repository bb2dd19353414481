// Reports for a mailing list (--format email): lines cut to 80 columns without losing a word, a
// replay command cut so that it still pastes, and each walk saying why it stopped, in the
// unwinder's own terms (unwinder/unwind.ts Stop), naming the stack the address it could not
// follow is on.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { wrapCommand, wrapLine } from "../../../harness/report.ts";
import { runScenario, type UnwinderName } from "../../../harness/run.ts";
import { parseScenario } from "../../../harness/scenario.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";

const words = fc.array(fc.stringMatching(/^[!-~]{1,30}$/), { minLength: 1, maxLength: 40 });

describe("80 columns", () => {
  test("wrapLine: no line over 80 columns, every word kept in order", () => {
    fc.assert(fc.property(words, fc.nat(12), (ws, indent) => {
      const line = `${" ".repeat(indent)}${ws.join(" ")}`;
      const out = wrapLine(line);
      for (const l of out) expect(l.length).toBeLessThanOrEqual(80);
      expect(out.join(" ").split(/\s+/).filter(Boolean)).toEqual(ws);
    }));
  });

  test("wrapLine: a word longer than a line is cut, not lost", () => {
    const long = "x".repeat(200);
    const out = wrapLine(`  ${long}`);
    for (const l of out) expect(l.length).toBeLessThanOrEqual(80);
    expect(out.map((l) => l.trim()).join("")).toBe(long);
  });

  test("wrapCommand: a word longer than a line stays whole, on a line of its own, and the command still pastes", () => {
    const path = `/home/someone/projects/${"a-long-directory-name/".repeat(4)}my-private-stack-design.ts`;
    const cmd = `npx stackcheck replay --strategy ${path} --unwinder frame --seed 7 --path 0`;
    const out = wrapCommand(cmd);
    expect(out.some((l) => l.includes(`--strategy ${path}`))).toBe(true);
    expect(out.join("\n").replace(/ \\\n {4}/g, " ")).toBe(cmd);
  });

  test("wrapCommand: lines end in ` \\`, and undoing the continuations gives the command back", () => {
    fc.assert(fc.property(fc.array(fc.stringMatching(/^--?[a-z][a-z-]{0,12}$|^[a-z0-9/.:]{1,20}$/), { minLength: 1, maxLength: 30 }), (ws) => {
      const cmd = ["npx", "stackcheck", ...ws].join(" ");
      const out = wrapCommand(cmd);
      out.slice(0, -1).forEach((l) => expect(l.endsWith(" \\")).toBe(true));
      for (const l of out) expect(l.length).toBeLessThanOrEqual(80);
      expect(out.join("\n").replace(/ \\\n {4}/g, " ")).toBe(cmd);
    }));
  });
});

/** The quick start's counterexample: a program whose helper walks the stack (bpf_get_stack). */
const GET_STACK = parseScenario({
  version: 1, name: "bpf_get_stack from main",
  programs: [{ name: "p0", type: "tracing", funcs: [{ name: "main", stackDepth: 0, insns: [[0x85, 0, 0, 0, 3], [0xb7, 0, 0, 0, 0], [0x95, 0, 0, 0, 0]] }] }],
  task: "p0",
}, "get-stack.json");

const stopped = (strategy: string, unwinder: UnwinderName) => {
  const o = runScenario(GET_STACK, BUILTIN_STRATEGIES.find((s) => s.name === strategy)!, { unwinder, policy: "strict" });
  expect(o.samples.length).toBe(1);
  return o.samples[0]!;
};

describe("why a walk stopped", () => {
  test("a complete walk: it reached the task's user-mode pt_regs", () => {
    const s = stopped("baseline", "frame");
    expect(s.class).toBe("EXACT");
    expect(s.stopped).toBe("it reached the task's user-mode pt_regs (complete)");
  });

  test("frame: rbp on a private stack is on no stack get_stack_info() knows, and the report says which stack it is", () => {
    const s = stopped("split-stack", "frame");
    expect(s.class).toBe("TRUNCATED");
    expect(s.stopped).toMatch(/^the first frame pointer \([0-9a-f]{16}\) is on no stack get_stack_info\(\) knows \(it is in the private p0\/main stack\)$/);
  });

  // v6.13: no ORC data for BPF code at all; v6.19: none either, as README finding 1 shows (with
  // IBT, ksym.fp_end lies before fp_start, so the frame window bpf_has_frame_pointer() checks is empty)
  test.each(["orc-6.13", "orc-6.19"] as const)("%s: no ORC data for BPF code, a frame-pointer guess, said on the way", (unwinder) => {
    expect(stopped("baseline", unwinder).stopped).toMatch(/^it reached the task's user-mode pt_regs \(complete\); on the way, ORC had no data for bpf_prog_[0-9a-f]{16}_main\+0x19 and guessed a frame-pointer frame \(unreliable\)$/);
  });

  test("ORC: an rsp on a private stack", () => {
    expect(stopped("split-stack", "orc-6.13").stopped).toMatch(/^the stack pointer \([0-9a-f]{16}\) is on no stack get_stack_info\(\) knows \(it is in the private p0\/main stack\)$/);
  });
});
