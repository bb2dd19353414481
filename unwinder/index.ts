// The unwinders' public surface: the kernel's unwinder models behind one interface (unwind.ts),
// chosen by name, and the walks callers make. Pure functions over a memory view and a stack
// layout (stack.ts); the harness builds those from an image and a machine (harness/unwind-env.ts).
import { frameUnwinder } from "./frame.ts";
import { orcUnwinder, type OrcData, type OrcTable, type BpfKsym } from "./orc.ts";
import type { UnwindEnv } from "./stack.ts";
import type { Unwinder } from "./unwind.ts";

export {
  archStackWalk, archStackWalkReliable, KLP_MAX_STACK_ENTRIES, perfCallchainKernel, unwindDone, unwindError, unwindGetEntryRegs, unwindGetReturnAddress,
} from "./unwind.ts";
export type { ReliableWalk, StartFrom, UnwindState, Unwinder, Walk } from "./unwind.ts";
export { frameUnwinder, unwindStart as frameUnwindStart, unwindNextFrame as frameUnwindNextFrame } from "./frame.ts";
export type { FrameUnwindState } from "./frame.ts";
export { bpfHasFramePointer, NULL_ORC_ENTRY, ORC_FP_ENTRY, OrcTable, orcUnwinder } from "./orc.ts";
export type { BpfKsym, OrcData, OrcEntry, OrcReg, OrcType, OrcUnwindState, OrcVersion } from "./orc.ts";
export {
  getStackInfo, onStack, STACK_TYPE_ENTRY, STACK_TYPE_EXCEPTION, STACK_TYPE_IRQ, STACK_TYPE_NAMES, STACK_TYPE_NMI, STACK_TYPE_PRIVATE,
  STACK_TYPE_SOFTIRQ, STACK_TYPE_TASK, STACK_TYPE_UNKNOWN, stackTypeName, Warnings,
} from "./stack.ts";
export type { MemoryView, PrivateStackDef, StackInfo, StackLayout, TaskView, UnwindEnv } from "./stack.ts";

/** The unwinder models, by the names the CLI and scenario files use. */
export const UNWINDERS = ["frame", "orc-6.13", "orc-6.19"] as const;
export type UnwinderName = (typeof UNWINDERS)[number];

/** How the unwinder knows private stacks: not at all (the kernel today), one type for all, or a type each. */
export const PRIVATE_STACK_KNOWLEDGE = ["none", "per-type", "per-instance"] as const;
export type PrivateStackKnowledge = (typeof PRIVATE_STACK_KNOWLEDGE)[number];

/** The unwinder called `name`; the ORC ones read vmlinux's ORC table and the BPF ksyms. */
export function makeUnwinder(name: UnwinderName, env: UnwindEnv, orc: { readonly kernel: OrcTable; readonly bpfKsyms: readonly BpfKsym[]; readonly retFromFork?: bigint }): Unwinder {
  if (name === "frame") return frameUnwinder(env);
  if (name === "orc-6.13" || name === "orc-6.19") return orcUnwinder(env, { version: name, ...orc } satisfies OrcData);
  throw new RangeError(`unknown unwinder '${String(name)}' (one of ${UNWINDERS.join(", ")})`);
}
