// The ORC unwinder, v6.13 and v6.19, on the real image: exact ORC data for the synthetic kernel,
// the frame-pointer fallback for BPF code (error-marking before v6.19; reliable inside
// [fp_start, fp_end) from v6.19).
import { describe, expect, test } from "vitest";
import { alu64, call, exit, ldx, stx } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R2, R6, R7, R10 } from "../../../jit/bpf/opcodes.ts";
import { program } from "../../../jit/bpf/program.ts";
import { buildImage } from "../../../jit/image.ts";
import { archStackWalk, perfCallchainKernel, type OrcVersion } from "../../../unwinder/index.ts";
import { unwinderFor } from "../../../harness/unwind-env.ts";
import { allowances, classify, expectedChain } from "../../../harness/oracles/classify.ts";
import { frameWindows } from "../../../harness/oracles/window.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { strategy } from "../../helpers/strategies.ts";

/** What a walk that reached the task's user-mode pt_regs says about its end (not a kernel field: for reports). */
const COMPLETE = { why: "it reached the task's user-mode pt_regs (complete)" };

const sampler = program({ name: "sampler", type: "kprobe", funcs: [{ name: "main", stackDepth: 64, body: [
  alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8),
  alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 5), call.helper(2),
  alu64.mov.reg(R7, R0), call.helper(3),
  ldx(BPF_DW, R0, R10, -8), alu64.add.reg(R0, R7), exit(),
] }] });
const returnAddresses = (t: ReturnType<import("../../../harness/machine/index.ts").Machine["truth"]>) =>
  t.filter((e) => e.kind === "frame").map((e) => (e.kind === "frame" ? e.returnAddress! : 0n));

describe("ORC from a helper (bpf_get_stack style)", () => {
  // 7.2's ksym.fp_end is an offset inside the exit instruction (do_jit()), below fp_start: no
  // return address is ever inside [fp_start, fp_end), so 6.19 flags BPF frames as 6.13 does.
  test.each([["orc-6.13", true], ["orc-6.19", true]] as const)("%s: the true chain; error flag %s", (version, error) => {
    const img = buildImage({ programs: [sampler], task: 0 }, strategy("baseline"));
    const m = loadImage(img);
    let walk, truth;
    m.addHook(img.kernel.addr("bpf_sc_get_stack_sample"), (mm) => {
      walk = archStackWalk(unwinderFor(version, img, mm), { kind: "current", ip: mm.rip, sp: mm.reg("rsp"), bp: mm.reg("rbp") });
      truth = returnAddresses(mm.truth());
    });
    startTask(img, m);
    expect(m.run().kind).toBe("completed");
    expect(walk).toEqual({ ips: truth, error, reachedEnd: true, warnings: [], stopped: { why: COMPLETE.why, note: expect.stringMatching(/^on the way, ORC had no data for bpf_prog_\w+\+0x[0-9a-f]+ and guessed a frame-pointer frame \(unreliable\)$/) } });
  });
});

describe("ORC from an NMI at every boundary (perf callchain)", () => {
  function sweep(version: OrcVersion) {
    const img = buildImage({ programs: [sampler], task: 0 }, strategy("baseline"));
    const m = loadImage(img);
    const unwinder = unwinderFor(version, img, m);
    const windows = frameWindows(img, m);
    startTask(img, m);
    const base = m.snapshot();
    const straight = m.run();
    const total = straight.kind === "completed" ? straight.steps : 0;
    const f = img.programs[0]!.jit.funcs[0]!;
    const main = { start: f.image.base, end: f.image.end, fpStart: f.image.base + BigInt(f.ksym.fpStart), fpEnd: f.image.base + BigInt(f.ksym.fpEnd) };
    const rows: { cls: string; bpf: "in-window" | "outside" | "no" }[] = [];
    let row: (typeof rows)[number] | undefined;
    m.addHook(img.kernel.addr("nmi_sample"), (mm) => {
      const truth = mm.truth();
      const k = truth.findIndex((t) => t.kind === "interrupt");
      const ip = (truth[k] as { ip: bigint }).ip;
      const walk = perfCallchainKernel(unwinder, mm.reg("rdi"));
      const inBpf = ip >= main.start && ip < main.end;
      row = { cls: classify(expectedChain(truth, k), walk, allowances(truth, k, windows)).class, bpf: inBpf ? (ip >= main.fpStart && ip < main.fpEnd ? "in-window" : "outside") : "no" };
    });
    for (let i = 0; i < total; i++) {
      m.restore(base);
      m.runUntil(i);
      m.raise(2);
      m.run();
      rows.push(row!);
    }
    return rows;
  }

  test("orc-6.19 with 7.2's ksym bookkeeping: fp_end < fp_start, no BPF ip is in the window, every class is 6.13's", () => {
    const f = buildImage({ programs: [sampler], task: 0 }, strategy("baseline")).programs[0]!.jit.funcs[0]!;
    expect(f.ksym).toEqual({ fpStart: 0x1b, fpEnd: 0x4 }); // after emit_prologue(); after pop r13, pop rbx, leave, counted from the exit's own code
    const v19 = sweep("orc-6.19"), v13 = sweep("orc-6.13");
    expect(v19.every((r) => r.bpf !== "in-window")).toBe(true);
    expect(v19.map((r) => r.cls)).toEqual(v13.map((r) => r.cls));
  });

  test("orc-6.13: every sample taken while a BPF frame is on the stack is FLAGGED", () => {
    const rows = sweep("orc-6.13");
    expect(rows.filter((r) => r.bpf !== "no").every((r) => r.cls === "FLAGGED")).toBe(true);
  });
});
