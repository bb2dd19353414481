// Sleeping only where the kernel may: schedule() entered with preemption disabled, in hardirq
// or in NMI context (preempt_count() not 0) is the kernel's "BUG: scheduling while atomic"
// (kernel/sched/core.c __schedule_bug(), from schedule_debug()): a sleepable program run from a
// context that cannot sleep, e.g. through a kfunc from a program on a non-preemptible path.
import { PCPU_PREEMPT_COUNT, HARDIRQ_OFFSET, NMI_OFFSET } from "../../jit/kernel/layout.ts";
import { currentTask } from "../load.ts";
import type { Oracle } from "./types.ts";

export const sleep: Oracle = ({ img, m, fail, sym }) => {
  if (img.multitask) {
    const count = img.layout.percpu + BigInt(PCPU_PREEMPT_COUNT);
    m.addHook(img.kernel.addr("schedule"), (mm) => {
      const pc = Number(mm.peek64(count) ?? 0n);
      if (pc === 0) return;
      const where = pc >= NMI_OFFSET ? "in NMI context" : pc >= HARDIRQ_OFFSET ? "in hardirq context" : `with preemption disabled ${pc} time(s)`;
      const bpf = mm.truth().find((t) => t.kind === "frame" && mm.symbols.kindOf(t.ip) === "bpf");
      fail({ check: "atomic-sleep", ...(bpf ? { at: bpf.ip } : {}), message: `BUG: scheduling while atomic: task ${currentTask(img, mm)} sleeps ${where} (preempt_count 0x${pc.toString(16)})${bpf ? `, called from ${sym(bpf.ip)}` : ""}` });
    });
  }
  return { save: () => () => {}, report: () => ({}) };
};
