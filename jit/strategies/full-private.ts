// full-private — design (d), the earlier approach (kernel-model.md "Known hazards (d)"): rsp is
// moved first (`mov r10,rsp; movabs r11,<top>; add r11,gs:[this_cpu_off]; mov rsp,r11;
// push r10` — the old rsp as a back-link), then all three prologue instructions on the private
// stack. The epilogue ends `leave; pop rsp; ret`. The back-link is our addition (design (d) does
// not say how rsp gets back); it is stored only after rsp has moved.
import { pushCalleeRegs, round8, standardEpilogue, standardPrologue } from "../prologue.ts";
import { jitStackDepths, type Strategy } from "../strategy.ts";
import { splitStackRequest, subprogDefault, switchToPrivate } from "./split-common.ts";

/**
 * (d) All three prologue instructions on the private stack: save rsp in r10, switch, push the
 * old rsp (a back-link, like the IRQ stack's top word), then push rbp; mov rbp,rsp; sub rsp on
 * the private stack. The epilogue ends with `leave; pop rsp; ret`.
 */
export const fullPrivate: Strategy = {
  name: "full-private",
  summary: "(d) rsp moved first; push rbp; mov rbp,rsp; sub rsp all on the private stack (kernel-model hazards (d))",
  privateMemory: (_p, v) => {
    const r = splitStackRequest(jitStackDepths(v));
    return [{ ...r, backLink: r.framePtrOffset - 8 }]; // `push r10`: the old rsp, the first word below the top
  },
  ...subprogDefault,
  prologue: (e, f) => {
    if (!f.isMain) return standardPrologue(e, f, f.stackDepth);
    if (f.opts.ibt) e.endbr64();
    e.nop5();
    e.nop3();
    e.movRR("r10", "rsp");
    switchToPrivate(e, f);
    e.push("r10");
    e.push("rbp");
    e.movRR("rbp", "rsp");
    e.label("tail_call_offset");
    if (f.opts.ibt) e.endbr64();
    if (f.stackDepth > 0) e.subRspImm32(round8(f.stackDepth));
    e.frameReady();
    pushCalleeRegs(e, f.calleeSaved);
  },
  epilogue: (e, f) => {
    if (!f.isMain) return standardEpilogue(e, f);
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.leave();
    e.frameGone();
    e.pop("rsp");
    e.ret();
    if (f.opts.sls) e.int3();
  },
  recursionLimit: 1,
};
