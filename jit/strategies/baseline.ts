// baseline — design (a), today's prologue without a private stack (kernel-model.md §1.2,
// "Known hazards (a)"): endbr64, nop5, nop3, push rbp, mov rbp,rsp, endbr64,
// sub rsp,round8(depth), callee-saved pushes; R10 is rbp; the epilogue pops, `leave`, `ret`.
// Every frame lives on the kernel stack, so nested programs add up there.
import { standardEpilogue, standardPrologue } from "../prologue.ts";
import type { Strategy } from "../strategy.ts";

export const baseline: Strategy = {
  name: "baseline",
  summary: "(a) push rbp; mov rbp,rsp; sub rsp,depth — upstream bytes, no private stack (kernel-model §1.2)",
  privateMemory: () => [],
  frameRegister: () => "rbp",
  prologue: (e, f) => standardPrologue(e, f, f.stackDepth),
  epilogue: (e, f) => standardEpilogue(e, f),
  call: (_e, _f, emitCall) => emitCall(),
  recursionLimit: 1,
};
