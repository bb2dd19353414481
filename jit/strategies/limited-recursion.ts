// limited-recursion — design (g) (kernel-model.md §8, "Known hazards (g)"): a split stack whose
// entry picks a per-level slot from prog->active instead of refusing recursion: the runner
// allows up to 4 activations per CPU (recursionLimit), and the main prologue computes
// rsp = slot base + active * RECURSION_SLOT (`movabs r11; add r11,gs:[this_cpu_off];
// movabs r10,<&active>; add r10,gs:[..]; mov r10,[r10]; shl r10,14; add r11,r10; mov rsp,r11`).
// The slot is read back from prog->active in the prologue rather than passed from the value
// __bpf_prog_enter_limited_recur() returned; the two agree while nesting on a CPU is LIFO, and
// differ exactly in the preemption case kernel-model (g) warns about.
import { standardPrologue } from "../prologue.ts";
import type { Strategy } from "../strategy.ts";
import { emitThisCpuPtr, PRIV_STACK_GUARD_SZ } from "../percpu.ts";
import { RECURSION_LEVELS, RECURSION_SLOT, splitStackRequest, subprogDefault } from "./split-common.ts";
import { splitStack } from "./split-stack.ts";

/**
 * (g) Limited recursion: the trampoline allows up to 4 activations per CPU
 * (__bpf_prog_enter_limited_recur); the entry picks the slot of its level from prog->active:
 * rsp = slot base + active * RECURSION_SLOT, i.e. the top of slot active-1. Otherwise (c).
 */
export const limitedRecursion: Strategy = {
  name: "limited-recursion",
  summary: "(g) split stack whose entry picks a per-level slot from prog->active, up to 4 levels (kernel-model hazards (g))",
  // One stack per level: slot k is [guard + k * RECURSION_SLOT, guard + (k + 1) * RECURSION_SLOT).
  privateMemory: () => [{
    ...splitStackRequest([], RECURSION_LEVELS),
    stacks: Array.from({ length: RECURSION_LEVELS }, (_, k) => ({ begin: PRIV_STACK_GUARD_SZ + k * RECURSION_SLOT, end: PRIV_STACK_GUARD_SZ + (k + 1) * RECURSION_SLOT })),
  }],
  ...subprogDefault,
  prologue: (e, f) => {
    standardPrologue(e, f, f.stackDepth);
    if (!f.isMain) return;
    emitThisCpuPtr(e, f, "r11", f.priv!.percpuPtr + BigInt(PRIV_STACK_GUARD_SZ)); // slot 0's bottom
    emitThisCpuPtr(e, f, "r10", f.activePtr);
    e.ldx(8, "r10", "r10", 0);            // r10 = prog->active (1 for the outermost activation)
    e.shiftRI("shl", true, "r10", Math.log2(RECURSION_SLOT));
    e.aluRR("add", true, "r11", "r10");   // the top of slot active-1
    e.movRR("rsp", "r11");
  },
  epilogue: splitStack.epilogue, // (c)'s
  recursionLimit: RECURSION_LEVELS,
};
