// Classing one stack walk against the truth (design.md §6):
//   EXACT     same chain, reached the task's last frame, no error;
//   WINDOW    only the immediate caller is missing, because the interrupt hit before
//             `mov rbp,rsp` completed or after `leave` in the interrupted function (objtool's
//             stated frame-pointer limit; the baseline has it too);
//   FLAGGED   the unwinder set its error flag; everything before that was right;
//   TRUNCATED it stopped early with no error flag;
//   WRONG     a frame that is not in the truth, or out of order.
// Verdicts come from the truth and the walk only; the window from the interrupted code itself.
import type { TruthEntry } from "../machine/index.ts";
import type { Walk } from "../../unwinder/index.ts";

export type StackClass = "EXACT" | "WINDOW" | "FLAGGED" | "TRUNCATED" | "WRONG";
export type Policy = "strict" | "reliable";

/** Which classes fail under a policy (design.md §6). */
export function fails(c: StackClass, policy: Policy): boolean {
  return policy === "strict" ? c !== "EXACT" && c !== "WINDOW" : c === "TRUNCATED" || c === "WRONG";
}

/**
 * The return addresses a correct walk reports, innermost first. From an interrupt's regs
 * (`from` = the index of its marker in the truth): the interrupted ip, then every return
 * address below it. From a frame (`from` = the index of the sampling frame): its return
 * address and every one below.
 */
export function expectedChain(truth: readonly TruthEntry[], from: number): bigint[] {
  const out: bigint[] = [];
  for (let i = from; i < truth.length; i++) {
    const e = truth[i]!;
    if (i === from && e.kind === "interrupt") out.push(e.ip);
    else if (e.kind === "frame") out.push(e.returnAddress!);
  }
  return out;
}

/**
 * Positions in expectedChain(truth, from) that a correct frame-pointer walk may miss: at every
 * interrupt boundary whose interrupted rip is in its function's frame window (before
 * `mov rbp,rsp` completed, or after `leave`), that function's caller is skipped.
 */
export function windowGaps(truth: readonly TruthEntry[], from: number, inWindow: (ip: bigint) => boolean): number[] {
  const gaps: number[] = [];
  let at = 0;
  for (let i = from; i < truth.length; i++) {
    const e = truth[i]!;
    if (i === from && e.kind === "interrupt") {
      if (inWindow(e.ip)) gaps.push(at + 1);
      at++;
    } else if (e.kind === "frame") {
      // the frame an interrupt entered returns to the interrupted rip: its caller's return address follows
      if (e.entered === "interrupt" && e.returnAddress !== undefined && inWindow(e.returnAddress)) gaps.push(at + 1);
      at++;
    }
  }
  return gaps;
}

/**
 * Kernel code where the frame-pointer unwinder cannot start from an NMI's regs, whatever the
 * BPF side does (the same in every design; the interrupted rip is in non-BPF kernel text):
 *   - entry code (arch/x86/entry/entry_64.S): before ENCODE_FRAME_POINTER and after POP_REGS,
 *     rbp is the interrupted code's, as in a prologue window; between them, and in the C
 *     handler's prologue and epilogue, rbp encodes the pt_regs, and __unwind_start()'s skip loop
 *     (unwind_frame.c: a regs frame has state->bp == NULL, which is below first_frame = regs->sp)
 *     steps over that pt_regs, so the rip the IRQ interrupted is missing as well;
 *   - call_on_irqstack() (arch/x86/include/asm/irq_stack.h) between `mov rsp, tos` and the
 *     callee's frame, and back to `pop rsp`: regs->sp is on the IRQ stack, regs->bp on the task
 *     stack, so first_frame is never on bp's stack and the skip loop runs the unwind to its end
 *     (kernel-model.md §3.2 [derived]): perf gets regs->ip only.
 * `drop`: the walk may skip expected positions 1..drop (up to the rip the IRQ below
 * interrupted, and that rip's caller when it was in its own window); `mayEnd`: it may end after
 * position 0.
 */
export interface BlindSpot {
  readonly drop: number;
  readonly mayEnd: boolean;
}

/**
 * The blind spot of an NMI sample (truth[from] is the NMI's boundary), from where it hit:
 * `where` the kind of its symbol, whether regs->bp encodes a pt_regs (bit 0, ENCODE_FRAME_POINTER),
 * and whether regs->sp and regs->bp are on different stacks.
 */
export function blindSpot(truth: readonly TruthEntry[], from: number, where: { kernelText: boolean; entryCode: boolean; encodedBp: boolean; splitStacks: boolean }): BlindSpot | undefined {
  if (!where.kernelText || !(where.entryCode || where.encodedBp || where.splitStacks)) return undefined;
  // The position of the rip the next interrupt below interrupted (1 with none), and its caller.
  let at = 0, drop = 1;
  for (let i = from + 1; i < truth.length; i++) {
    const e = truth[i]!;
    if (e.kind !== "frame") continue;
    at++;
    if (e.entered === "interrupt") { drop = at + 1; break; }
  }
  return { drop, mayEnd: where.splitStacks };
}

export interface Classified {
  readonly class: StackClass;
  /** Index of the first element that differs (or the length of the shorter chain). */
  readonly at: number;
}

/** Class a walk; `gaps`: positions windowGaps() allows to be missing. */
export function classify(expected: readonly bigint[], walk: Walk, gaps: readonly number[] = [], blind?: BlindSpot): Classified {
  const got = walk.ips;
  let at = 0;
  while (at < got.length && at < expected.length && got[at] === expected[at]) at++;
  if (at === expected.length && got.length === expected.length) {
    if (walk.error) return { class: "FLAGGED", at };
    return { class: walk.reachedEnd ? "EXACT" : "TRUNCATED", at };
  }
  // WINDOW: exactly the window frames are missing (interrupted at the entry of the outermost
  // function, there is nothing above to reach). When the unwinder flagged it (ORC's frame-pointer
  // guess in a BPF prologue), it is FLAGGED, unless the unwinder itself calls the loss expected
  // (unwind_frame.c bad_address: no warning for an interrupt in entry code or before the C
  // handler's first frame pointer, e.g. an NMI on do_syscall_64's first instruction).
  const windowClass = walk.error && !walk.expectedLoss ? "FLAGGED" : "WINDOW";
  if (gaps.length > 0) {
    const without = expected.filter((_, i) => !gaps.includes(i));
    if (got.length === without.length && got.every((v, i) => v === without[i])) return { class: windowClass, at };
  }
  // A kernel blind spot: position 0, then the expected chain from some j ≤ drop + 1 on (or nothing).
  if (blind && got.length > 0 && got[0] === expected[0]) {
    const tail = got.length - 1;
    const fits = (j: number) => expected.length - j === tail && got.every((v, i) => i === 0 || v === expected[j + i - 1]);
    if ((tail === 0 && blind.mayEnd) || Array.from({ length: blind.drop }, (_, k) => k + 2).some(fits)) return { class: windowClass, at };
  }
  if (at < got.length) return { class: "WRONG", at }; // a frame that is not the true one at its place
  return { class: walk.error ? "FLAGGED" : "TRUNCATED", at };
}
