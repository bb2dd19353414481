// split-double-frame — design (f) (kernel-model.md "Known hazards (f)"): the upstream prologue
// on the task stack, the switch to the private stack, then a second `push rbp; mov rbp,rsp;
// sub rsp,depth` and the pushes there. The epilogue unwinds both frames: pops; leave; leave; ret.
import { pushCalleeRegs, round8, standardEpilogue, standardPrologue } from "../prologue.ts";
import { jitStackDepths, type Strategy } from "../strategy.ts";
import { splitStackRequest, subprogDefault, switchToPrivate } from "./split-common.ts";

/**
 * (f) A second frame after the switch: the standard prologue on the task stack, rsp = the
 * private stack, then push rbp; mov rbp,rsp; sub rsp,depth and the pushes there. The epilogue
 * unwinds both frames: pops; leave; leave; ret.
 */
export const splitDoubleFrame: Strategy = {
  name: "split-double-frame",
  summary: "(f) after moving rsp, a second push rbp; mov rbp,rsp; sub rsp on the private stack (kernel-model hazards (f))",
  privateMemory: (_p, v) => [splitStackRequest(jitStackDepths(v))],
  ...subprogDefault,
  prologue: (e, f) => {
    if (!f.isMain) return standardPrologue(e, f, f.stackDepth);
    standardPrologue(e, { ...f, calleeSaved: [] }, 0);
    switchToPrivate(e, f);
    e.push("rbp");
    e.movRR("rbp", "rsp");
    if (f.stackDepth > 0) e.subRspImm32(round8(f.stackDepth));
    pushCalleeRegs(e, f.calleeSaved);
  },
  epilogue: (e, f) => {
    if (!f.isMain) return standardEpilogue(e, f);
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.leave();
    e.leave();
    e.frameGone();
    e.ret();
    if (f.opts.sls) e.int3();
  },
  recursionLimit: 1,
};
