// The split-stack family (kernel-model.md §8 and "Known hazards" (c), (d), (f), (g)): the main
// program moves rsp onto one per-CPU private stack for the whole call tree, sized for every
// function's frame plus 8 KiB for helpers and kfuncs, with a guard word at both ends. R10 stays
// rbp; subprogs keep the standard prologue (their frames simply land on the private stack).
// None of these designs register the private stack with get_stack_info(): that is what the
// harness evaluates.
import { round8, standardEpilogue, standardPrologue, pushCalleeRegs } from "../prologue.ts";
import type { FuncJit, PrivateRequest, Strategy } from "../strategy.ts";
import type { Emitter } from "../x86/emit.ts";
import { emitThisCpuPtr, PRIV_STACK_GUARD_SZ } from "./r9-private.ts";

/** Headroom for helpers, kfuncs and interrupt frames on the private stack ("+ 8 KiB"). */
export const SPLIT_HEADROOM = 8192;
/** Size of one per-level slot of design (g). */
export const RECURSION_SLOT = 0x4000;
export const RECURSION_LEVELS = 4;

/** One stack for the whole call tree: every frame (depth, return address, rbp, four saved registers) + headroom. */
export function splitStackRequest(depths: readonly number[], levels = 1): PrivateRequest {
  const perLevel = levels === 1
    ? Math.ceil((depths.reduce((s, d) => s + round8(d) + 48, 0) + SPLIT_HEADROOM) / 16) * 16
    : RECURSION_SLOT;
  const size = perLevel * levels + 2 * PRIV_STACK_GUARD_SZ;
  // The frame pointer offset is the top guard: the first push lands just below it.
  return { fi: 0, size, framePtrOffset: size - PRIV_STACK_GUARD_SZ, guards: [0, size - PRIV_STACK_GUARD_SZ] };
}

/** r11 = this CPU's private stack top; rsp = r11. */
function switchToPrivate(e: Emitter, f: FuncJit): void {
  emitThisCpuPtr(e, f, "r11", f.priv!.framePtr);
  e.movRR("rsp", "r11");
}

const subprogDefault = {
  frameRegister: () => "rbp" as const,
  call: (_e: Emitter, _f: FuncJit, emitCall: () => void) => emitCall(),
};

/**
 * (c) Alexei's split stack: push rbp; mov rbp,rsp; [sub rsp,depth and the callee-saved pushes on
 * the task stack]; then rsp = the private stack. The epilogue returns rsp to the task stack
 * with `lea rsp,[rbp - depth - saved]` before the pops and `leave; ret`.
 */
export const splitStack: Strategy = {
  name: "split-stack",
  summary: "(c) main keeps push rbp; mov rbp,rsp, then moves rsp to a per-CPU stack for the call tree (kernel-model §8)",
  privateMemory: (p) => [splitStackRequest(p.funcs.map((f) => f.stackDepth))],
  ...subprogDefault,
  prologue: (e, f) => {
    standardPrologue(e, f, f.func.stackDepth);
    if (f.isMain) switchToPrivate(e, f);
  },
  epilogue: (e, f) => {
    if (f.isMain) e.lea("rsp", "rbp", -(round8(f.func.stackDepth) + 8 * f.calleeSaved.length));
    standardEpilogue(e, f);
  },
  recursionLimit: 1,
};

/**
 * (d) All three prologue instructions on the private stack: save rsp in r10, switch, push the
 * old rsp (a back-link, like the IRQ stack's top word), then push rbp; mov rbp,rsp; sub rsp on
 * the private stack. The epilogue ends with `leave; pop rsp; ret`.
 */
export const fullPrivate: Strategy = {
  name: "full-private",
  summary: "(d) rsp moved first; push rbp; mov rbp,rsp; sub rsp all on the private stack (kernel-model hazards (d))",
  privateMemory: (p) => [splitStackRequest(p.funcs.map((f) => f.stackDepth))],
  ...subprogDefault,
  prologue: (e, f) => {
    if (!f.isMain) return standardPrologue(e, f, f.func.stackDepth);
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
    if (f.func.stackDepth > 0) e.subRspImm32(round8(f.func.stackDepth));
    e.label("fp_start");
    pushCalleeRegs(e, f.calleeSaved);
  },
  epilogue: (e, f) => {
    if (!f.isMain) return standardEpilogue(e, f);
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.leave();
    e.label("fp_end");
    e.pop("rsp");
    e.ret();
    if (f.opts.sls) e.int3();
  },
  recursionLimit: 1,
};

/**
 * (f) A second frame after the switch: the standard prologue on the task stack, rsp = the
 * private stack, then push rbp; mov rbp,rsp; sub rsp,depth and the pushes there. The epilogue
 * unwinds both frames: pops; leave; leave; ret.
 */
export const splitDoubleFrame: Strategy = {
  name: "split-double-frame",
  summary: "(f) after moving rsp, a second push rbp; mov rbp,rsp; sub rsp on the private stack (kernel-model hazards (f))",
  privateMemory: (p) => [splitStackRequest(p.funcs.map((f) => f.stackDepth))],
  ...subprogDefault,
  prologue: (e, f) => {
    if (!f.isMain) return standardPrologue(e, f, f.func.stackDepth);
    standardPrologue(e, { ...f, calleeSaved: [] }, 0);
    switchToPrivate(e, f);
    e.push("rbp");
    e.movRR("rbp", "rsp");
    if (f.func.stackDepth > 0) e.subRspImm32(round8(f.func.stackDepth));
    pushCalleeRegs(e, f.calleeSaved);
  },
  epilogue: (e, f) => {
    if (!f.isMain) return standardEpilogue(e, f);
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.leave();
    e.leave();
    e.label("fp_end");
    e.ret();
    if (f.opts.sls) e.int3();
  },
  recursionLimit: 1,
};

/**
 * (g) Limited recursion: the trampoline allows up to 4 activations per CPU
 * (__bpf_prog_enter_limited_recur); the entry picks the slot of its level from prog->active:
 * rsp = slot base + active * RECURSION_SLOT, i.e. the top of slot active-1. Otherwise (c).
 */
export const limitedRecursion: Strategy = {
  name: "limited-recursion",
  summary: "(g) split stack whose entry picks a per-level slot from prog->active, up to 4 levels (kernel-model hazards (g))",
  privateMemory: () => [splitStackRequest([], RECURSION_LEVELS)],
  ...subprogDefault,
  prologue: (e, f) => {
    standardPrologue(e, f, f.func.stackDepth);
    if (!f.isMain) return;
    emitThisCpuPtr(e, f, "r11", f.priv!.percpuPtr + BigInt(PRIV_STACK_GUARD_SZ)); // slot 0's bottom
    emitThisCpuPtr(e, f, "r10", f.activePtr);
    e.ldx(8, "r10", "r10", 0);            // r10 = prog->active (1 for the outermost activation)
    e.shiftRI("shl", true, "r10", Math.log2(RECURSION_SLOT));
    e.aluRR("add", true, "r11", "r10");   // the top of slot active-1
    e.movRR("rsp", "r11");
  },
  epilogue: splitStack.epilogue,
  recursionLimit: RECURSION_LEVELS,
};

/**
 * (e) rbp pointed at the private stack in the main program, rsp left on the kernel stack:
 * after the pushes, rbp = this CPU's private frame; R10 is rbp. `leave` would move rsp to the
 * private stack, so the epilogue pops, then `pop rbp; ret` (no sub rsp: the saved rbp is right
 * above the pushes).
 */
export const rbpPrivate: Strategy = {
  name: "rbp-private",
  summary: "(e) rbp pointed at the private stack in the main prog, rsp on the kernel stack (kernel-model hazards (e))",
  privateMemory: (p) => [{ ...splitStackRequest([p.funcs[0]!.stackDepth]), framePtrOffset: PRIV_STACK_GUARD_SZ + round8(p.funcs[0]!.stackDepth) }],
  ...subprogDefault,
  prologue: (e, f) => {
    if (!f.isMain) return standardPrologue(e, f, f.func.stackDepth);
    standardPrologue(e, f, 0);
    emitThisCpuPtr(e, f, "rbp", f.priv!.framePtr);
  },
  epilogue: (e, f) => {
    if (!f.isMain) return standardEpilogue(e, f);
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.pop("rbp");
    e.label("fp_end");
    e.ret();
    if (f.opts.sls) e.int3();
  },
  recursionLimit: 1,
};
