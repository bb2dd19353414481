// split-stack — design (c), Alexei's split stack (kernel-model.md §8, "Known hazards (c)"):
// the main program keeps the upstream prologue on the task stack (push rbp; mov rbp,rsp; sub rsp;
// callee-saved pushes), then `movabs r11,<stack top>; add r11,gs:[this_cpu_off]; mov rsp,r11`;
// its callees' frames, helpers and interrupts land on the private stack. The epilogue is
// `lea rsp,[rbp-depth-saved]`, the pops, `leave; ret`.
import { round8, standardEpilogue, standardPrologue } from "../prologue.ts";
import { jitStackDepths, type Strategy } from "../strategy.ts";
import { splitStackRequest, subprogDefault, switchToPrivate } from "./split-common.ts";

/**
 * (c) Alexei's split stack: push rbp; mov rbp,rsp; [sub rsp,depth and the callee-saved pushes on
 * the task stack]; then rsp = the private stack. The epilogue returns rsp to the task stack
 * with `lea rsp,[rbp - depth - saved]` before the pops and `leave; ret`.
 */
export const splitStack: Strategy = {
  name: "split-stack",
  summary: "(c) main keeps push rbp; mov rbp,rsp, then moves rsp to a per-CPU stack for the call tree (kernel-model §8)",
  privateMemory: (_p, v) => [splitStackRequest(jitStackDepths(v))],
  ...subprogDefault,
  prologue: (e, f) => {
    standardPrologue(e, f, f.stackDepth);
    if (f.isMain) switchToPrivate(e, f);
  },
  epilogue: (e, f) => {
    if (f.isMain) e.lea("rsp", "rbp", -(round8(f.stackDepth) + 8 * f.calleeSaved.length));
    standardEpilogue(e, f);
  },
  recursionLimit: 1,
};
