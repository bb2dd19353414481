// The unwinders' public surface: an environment from an image and a machine, and the walks
// callers make: arch_stack_walk()-style (stack_trace_save, dump_stack, bpf_get_stack) and
// perf_callchain_kernel() (kernel-model.md §6.4).
import type { Machine } from "../harness/machine/index.ts";
import type { Image } from "../jit/image.ts";
import { privateStacks as imagePrivateStacks } from "../jit/private-stacks.ts";
import { EXCEPTION_STKSZ, IRQ_STACK_SIZE, THREAD_SIZE } from "../jit/kernel/layout.ts";
import { unwindDone, unwindError, unwindGetReturnAddress, unwindNextFrame, unwindStart, type StartFrom } from "./frame.ts";
import { STACK_TYPE_NMI, STACK_TYPE_PRIVATE, type PrivateStackDef, type UnwindEnv } from "./stack.ts";

export { unwindStart, unwindNextFrame, unwindDone, unwindError, unwindGetReturnAddress } from "./frame.ts";
export type { FrameUnwindState, StartFrom } from "./frame.ts";
export * from "./stack.ts";

/** How the unwinder knows private stacks: not at all (the kernel today), one type for all, or a type each. */
export const PRIVATE_STACK_KNOWLEDGE = ["none", "per-type", "per-instance"] as const;
export type PrivateStackKnowledge = (typeof PRIVATE_STACK_KNOWLEDGE)[number];

export function envFromImage(img: Image, m: Machine, knowledge: PrivateStackKnowledge = "none"): UnwindEnv {
  const textKinds = new Set(["kernel", "entry", "bpf", "trampoline"]);
  // Each private stack as an extra known stack type (one for all, or one per stack: a per-level
  // slot is a stack of its own). The back-link rule is in_irq_stack()'s: next_sp is read from
  // the word where the design keeps the previous rsp (full-private's `push r10`); a design that
  // keeps none gets next_sp = 0, so a walk cannot leave its stack, as on any stack whose way
  // back is unknown.
  const privateStacks: PrivateStackDef[] = knowledge === "none" ? [] : imagePrivateStacks(img).map((x, i) => ({
    begin: x.begin, end: x.end, type: knowledge === "per-type" ? STACK_TYPE_PRIVATE : STACK_TYPE_PRIVATE + i,
    ...(x.backLink === undefined ? {} : { backLink: x.backLink }),
  }));
  const { taskStack, irqStack, nmiStack } = img.layout;
  return {
    mem: { read64: (a) => m.peek64(a) },
    stacks: {
      task: { begin: taskStack, end: taskStack + BigInt(THREAD_SIZE) },
      hardirqStackPtr: irqStack + BigInt(IRQ_STACK_SIZE) - 8n,
      irqStackSize: IRQ_STACK_SIZE,
      exception: [{ type: STACK_TYPE_NMI, begin: nmiStack, end: nmiStack + BigInt(EXCEPTION_STKSZ) }],
      privateStacks,
    },
    taskPtRegs: img.taskPtRegs,
    isKernelText: (a) => textKinds.has(m.symbols.lookup(a)?.kind ?? ""),
    inEntryCode: (a) => m.symbols.lookup(a)?.kind === "entry",
    symbolize: (a) => m.symbols.symbolize(a) ?? a.toString(16),
  };
}

export interface Walk {
  /** Return addresses, innermost first (for perf: regs->ip first). */
  readonly ips: readonly bigint[];
  /** The unwinder's error flag at the end. */
  readonly error: boolean;
  /** It ended at the task's user-mode pt_regs (the last frame) rather than somewhere else. */
  readonly reachedEnd: boolean;
  readonly warnings: readonly string[];
  /** The error is one the unwinder itself expects and does not warn about (frame: bad_address's quiet cases). */
  readonly expectedLoss?: boolean;
}

/** arch_stack_walk(): [regs->ip if regs,] then return addresses while not done and not in error. */
export function stackWalk(env: UnwindEnv, from: StartFrom): Walk {
  const ips: bigint[] = [];
  if (from.regs) ips.push(env.mem.read64(from.regs + 128n) ?? 0n);
  const s = unwindStart(env, from);
  let reachedEnd = false;
  for (; !unwindDone(s) && !unwindError(s); unwindNextFrame(env, s)) {
    if (s.regs === env.taskPtRegs) { reachedEnd = true; break; }
    const addr = unwindGetReturnAddress(env, s);
    if (addr === 0n) break;
    ips.push(addr);
  }
  return { ips, error: s.error, reachedEnd, warnings: s.warnings.lines, ...(s.expectedLoss ? { expectedLoss: true } : {}) };
}

/**
 * perf_callchain_kernel(): with hardware regs, regs->ip then the unwinder's return addresses
 * until the first 0 (the error flag does not stop it).
 */
export function perfCallchain(env: UnwindEnv, regs: bigint): Walk {
  const ips: bigint[] = [env.mem.read64(regs + 128n) ?? 0n];
  const s = unwindStart(env, { regs });
  let reachedEnd = false;
  for (; !unwindDone(s); unwindNextFrame(env, s)) {
    if (s.regs === env.taskPtRegs) { reachedEnd = true; break; }
    const addr = unwindGetReturnAddress(env, s);
    if (addr === 0n) break;
    ips.push(addr);
  }
  return { ips, error: s.error, reachedEnd, warnings: s.warnings.lines, ...(s.expectedLoss ? { expectedLoss: true } : {}) };
}
