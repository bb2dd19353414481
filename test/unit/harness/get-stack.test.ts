// bpf_get_stack() starts where the program type says (harness/get-stack.ts, kernel/trace/bpf_trace.c
// 7.2): raw_tp from the helper (the program's frames in the walk), tracepoint from the helper but
// reporting only above the tracepoint's frame (the walk must chain through the program's frames),
// kprobe from the probe's regs (the program's frames never in it), perf_event from the perf NMI's
// regs, struct_ops through stack_trace_save() from the helper.
import { describe, expect, test } from "vitest";
import { alu64, call, exit } from "../../../jit/bpf/insn.ts";
import { R0 } from "../../../jit/bpf/opcodes.ts";
import { program, type AttachPath, type ProgType } from "../../../jit/bpf/program.ts";
import { runScenario, type RunOutcome, type UnwinderName } from "../../../harness/run.ts";
import type { Scenario } from "../../../harness/scenario.ts";
import { strategy } from "../../helpers/strategies.ts";

const sampler = (type: ProgType) => program({ name: "p", type, funcs: [{ name: "main", stackDepth: 0, body: [call.helper(3), alu64.mov.imm(R0, 0), exit()] }] });

function sample(type: ProgType, s: string, unwinder: UnwinderName = "frame", fromNmi = false, attach?: AttachPath): RunOutcome["samples"][number] {
  const p = attach === undefined ? sampler(type) : { ...sampler(type), attach };
  const spec = fromNmi
    ? { programs: [program({ name: "t", type: "raw_tp", funcs: [{ name: "main", stackDepth: 0, body: [alu64.mov.imm(R0, 0), exit()] }] }), p], task: 0, nmi: 1 }
    : { programs: [p], task: 0 };
  const sc = { file: { version: 1, programs: [], task: "t" }, programs: spec.programs, spec } as unknown as Scenario;
  const o = runScenario(sc, strategy(s), { unwinder, injections: fromNmi ? [{ kind: "nmi", atStep: 2, vector: 2 }] : [] });
  return o.samples.find((x) => x.kind === "bpf_get_stack (helper)")!;
}
const symbols = (chain: readonly { symbol: string }[]) => chain.map((c) => c.symbol.replace(/\+0x[0-9a-f]+$/, "").replace(/^bpf_prog_[0-9a-f]{16}_/, "bpf:"));

describe("bpf_get_stack() by program type", () => {
  test("raw_tp: from the helper; the program's frame is in the chain", () => {
    const s = sample("raw_tp", "baseline");
    expect(s.where).toContain("from the helper");
    expect(symbols(s.truth)).toEqual(["bpf:main", "bpf_sc_run", "do_syscall_64", "entry_SYSCALL_64"]);
    expect(s.class).toBe("EXACT");
  });

  test("tracepoint: from the tracepoint's frame up; the walk chains through the program's frames to get there", () => {
    const s = sample("tracepoint", "baseline");
    expect(symbols(s.truth)).toEqual(["entry_SYSCALL_64"]); // above do_syscall_64, the tracepoint site
    expect(s.class).toBe("EXACT");
    // split-stack: the program's frames are on the private stack, so the skip never reaches the tracepoint's frame
    expect(sample("tracepoint", "split-stack")).toMatchObject({ class: "TRUNCATED", unwound: [] });
  });

  test.each(["baseline", "split-stack"])("kprobe under %s: from the probe's regs, the probed context only; the design cannot matter", (s) => {
    const fp = sample("kprobe", s), orc = sample("kprobe", s, "orc-6.13");
    expect(symbols(fp.truth)).toEqual(["bpf_sc_run", "do_syscall_64", "entry_SYSCALL_64"]);
    expect(fp.class).toBe("WINDOW"); // regs->ip at the runner's entry: before its `mov rbp,rsp` the frame walk misses its caller
    expect(orc.class).toBe("EXACT");
  });

  test("perf_event run by the perf NMI: from the sampled regs, which are the interrupted code's", () => {
    const s = sample("perf_event", "baseline", "frame", true);
    expect(s.where).toContain("sampled regs");
    expect(symbols(s.truth)[0]).toBe("do_syscall_64"); // the NMI interrupted the task at step 2
    expect(["EXACT", "WINDOW"]).toContain(s.class);
  });

  test("kprobe: from the probe's regs; through a uprobe, the task's user-mode regs, for which get_perf_callchain() walks no kernel stack", () => {
    const k = sample("kprobe", "baseline");
    expect(k.where).toContain("from the kprobe's regs");
    expect(symbols(k.truth)).toEqual(["bpf_sc_run", "do_syscall_64", "entry_SYSCALL_64"]);
    for (const attach of ["uprobe", "uprobe_multi"] as const) {
      for (const s of ["baseline", "split-stack"]) {
        // (it once walked made-up kernel regs at the runner's entry, as for a kprobe: a sample 7.2 never takes)
        expect(sample("kprobe", s, "frame", false, attach), `${attach} ${s}`).toMatchObject({ truth: [], unwound: [], class: "EXACT", failed: false });
      }
    }
    expect(sample("kprobe", "baseline", "frame", false, "uprobe").where).toContain("the uprobe's user-mode regs: no kernel frames (get_perf_callchain())");
  });

  test("struct_ops: stack_trace_save() from the helper", () => {
    const s = sample("struct_ops", "baseline");
    expect(s.where).toContain("stack_trace_save()");
    expect(symbols(s.truth)).toEqual(["bpf:main", "bpf_sc_run", "do_syscall_64", "entry_SYSCALL_64"]);
  });
});
