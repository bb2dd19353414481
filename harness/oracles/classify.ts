// Classing one stack walk against the truth (design.md §6):
//   EXACT     same chain, reached the task's last frame, no error;
//   WINDOW    only what a window allows is missing: the immediate caller, because the interrupt
//             hit where the interrupted function's frame is not built or is torn down and rbp
//             is still the one it was entered with (objtool's stated frame-pointer limit; the
//             baseline has it too), or what the kernel's own blind spots in entry code lose
//             (allowances() below);
//   FLAGGED   the unwinder set its error flag; everything before that was right;
//   TRUNCATED it stopped early with no error flag;
//   WRONG     a frame that is not in the truth, or out of order.
// Verdicts come from the truth and the walk only; the window from the interrupted code (where its
// frame is declared built: ksym.fp_start/fp_end's marks) and the machine's rbp.
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
 * Kernel code where the frame-pointer unwinder loses frames whatever the BPF side does (the
 * same in every design; the interrupted rip is in non-BPF kernel text):
 *   - entry code (arch/x86/entry/entry_64.S): before ENCODE_FRAME_POINTER and after POP_REGS,
 *     rbp is the interrupted code's, as in a prologue window; between them, and in the C
 *     handler's prologue and epilogue, rbp encodes the pt_regs, and __unwind_start()'s skip loop
 *     (unwind_frame.c: a regs frame has state->bp == NULL, which is below first_frame = regs->sp)
 *     steps over that pt_regs, so the rip the IRQ interrupted is missing as well;
 *   - call_on_irqstack() (arch/x86/include/asm/irq_stack.h) between `mov rsp, tos` and the
 *     callee's frame, and back to `pop rsp`: regs->sp is on the IRQ stack, regs->bp on the task
 *     stack, so first_frame is never on bp's stack and the skip loop runs the unwind to its end
 *     (kernel-model.md §3.2 [derived]): perf from those regs gets regs->ip only.
 */
export interface WindowOracle {
  /**
   * Is `ip` in its function's frame window: where the function's frame is not built yet or is
   * torn down, and (when `bp` is known) the interrupted rbp is still the one the function was
   * entered with, so a frame-pointer walk from there reads its caller's frame and misses the caller?
   */
  inWindow(ip: bigint, bp?: EntryBp): boolean;
  /**
   * Is an interrupt at `ip`, whose hardware frame's RIP word is at `slot`, in a kernel blind
   * spot? `mayEnd`: the walk may stop there. `regs`: the pt_regs below the frame are complete
   * (always for the sample's own interrupt; a deeper one may have been caught while pushing them).
   */
  blindSpot(ip: bigint, slot: bigint, regs: boolean): { readonly mayEnd: boolean; readonly errorOk?: boolean; readonly anything?: boolean } | undefined;
  /** Has the entry code now at `ip` finished building its pt_regs (past ENCODE_FRAME_POINTER)? */
  regsBuilt(ip: bigint): boolean;
  /**
   * Is `ip` where a task's stack starts (ret_from_fork_asm: UNWIND_HINT_END_OF_STACK, "one
   * cannot unwind further")? A walk may end there, or go on with whatever the unwinder reads past it.
   */
  endsStack?(ip: bigint): boolean;
}

/** The interrupted rbp (`now`) and the rbp its function was entered with (the truth's, at its call). */
export interface EntryBp {
  readonly now: bigint;
  readonly entry: bigint;
}

/** After position `after` of the expected chain, a correct walk may skip up to `skip` positions, or (`mayEnd`) end. */
export interface Allowance {
  readonly after: number;
  readonly skip: number;
  readonly mayEnd: boolean;
  /** The unwinder may flag its walk here (a kernel blind spot it knows it cannot cross), once the walk has got this far. */
  readonly errorOk?: boolean;
  /** After this position anything may follow (the context switch: rsp is next's, current is prev). */
  readonly anything?: boolean;
}

/**
 * What a correct frame-pointer walk may miss of expectedChain(truth, from), at each interrupt
 * boundary (the sample's own, and each frame an interrupt entered):
 *   - interrupted rip in its function's frame window: that function's caller (one position);
 *   - interrupted rip in a kernel blind spot: everything up to the rip the next interrupt below
 *     interrupted, and that rip's caller if that rip was in its own frame window.
 */
export function allowances(truth: readonly TruthEntry[], from: number, w: WindowOracle): Allowance[] {
  // The boundaries: the position of the interrupted rip in the chain, the rip, its frame's slot.
  // `regs`: the pt_regs below the boundary's hardware frame are complete. `bp`: the interrupted
  // rbp, with the rbp the interrupted function was entered with (the next frame's; a root's is unknown)
  const bounds: { at: number; ip: bigint; slot: bigint; regs: boolean; bp: EntryBp | undefined }[] = [];
  const entryBp = (now: bigint | undefined, i: number): EntryBp | undefined => {
    if (now === undefined) return undefined;
    for (let j = i + 1; j < truth.length; j++) {
      const f = truth[j]!;
      if (f.kind === "frame") return f.entryBp === undefined ? undefined : { now, entry: f.entryBp };
    }
    return undefined;
  };
  let at = 0;
  for (let i = from; i < truth.length; i++) {
    const e = truth[i]!;
    if (i === from && e.kind === "interrupt") bounds.push({ at: at++, ip: e.ip, slot: e.frame, regs: true, bp: entryBp(e.bp, i) });
    else if (e.kind === "frame") {
      // (a handler's entry rbp is the rbp it interrupted)
      if (e.entered === "interrupt" && e.returnAddress !== undefined && e.slot !== undefined) bounds.push({ at, ip: e.returnAddress, slot: e.slot, regs: w.regsBuilt(e.ip), bp: entryBp(e.entryBp, i) });
      at++;
    }
  }
  const out: Allowance[] = [];
  // the start of a new task's stack: what the walk does past it is the kernel's own business
  const last = at - 1;
  // (expectedChain(truth, from)[last], found from the end without building the chain)
  let lastIp: bigint | undefined;
  for (let i = truth.length - 1; i >= from; i--) {
    const e = truth[i]!;
    if (e.kind === "frame") { lastIp = e.returnAddress; break; }
    if (i === from) { lastIp = e.ip; break; }
  }
  if (last >= 0 && lastIp !== undefined && w.endsStack?.(lastIp)) out.push({ after: last, skip: 0, mayEnd: true, errorOk: true, anything: true });
  bounds.forEach((b, k) => {
    const blind = w.blindSpot(b.ip, b.slot, b.regs);
    const next = bounds[k + 1];
    if (blind) {
      // up to and including the rip the next interrupt interrupted; its caller too only when
      // that rip was in its own frame window (the walk resumes at regs->bp)
      const skip = next ? next.at - b.at + (w.inWindow(next.ip, next.bp) ? 1 : 0) : 1;
      out.push({ after: b.at, skip, mayEnd: blind.mayEnd, ...(blind.errorOk ? { errorOk: true } : {}), ...(blind.anything ? { anything: true } : {}) });
    } else if (w.inWindow(b.ip, b.bp)) out.push({ after: b.at, skip: 1, mayEnd: false });
  });
  return out;
}

/**
 * Does `got` read as `expected` with, after each allowance's position, up to its skip left out (or
 * the end)? The positions of `expected` the walk reached, in order (the last is where it
 * stopped), or undefined. Allowances at one position
 * (a task's last frame that is also an interrupt boundary) allow what either does.
 */
function matchesWithin(expected: readonly bigint[], got: readonly bigint[], allow: readonly Allowance[]): readonly number[] | undefined {
  const byAt = new Map<number, Allowance>();
  for (const a of allow) {
    const o = byAt.get(a.after);
    byAt.set(a.after, o === undefined ? a : {
      after: a.after, skip: Math.max(a.skip, o.skip), mayEnd: a.mayEnd || o.mayEnd,
      ...(a.errorOk || o.errorOk ? { errorOk: true } : {}), ...(a.anything || o.anything ? { anything: true } : {}),
    });
  }
  const reached: number[] = [];
  const rec = (e: number, g: number): boolean => {
    if (e >= expected.length) return g === got.length; // skipped to the end: the walk must be over too
    if (g >= got.length || got[g] !== expected[e]) return false;
    reached.push(e);
    const a = byAt.get(e);
    if (!a) {
      if (rec(e + 1, g + 1)) return true;
    } else {
      if (a.anything) return true;
      if (a.mayEnd && g + 1 === got.length) return true;
      for (let d = 0; d <= a.skip; d++) if (rec(e + 1 + d, g + 1)) return true;
    }
    reached.pop();
    return false;
  };
  return rec(0, 0) ? reached : undefined;
}

export interface Classified {
  readonly class: StackClass;
  /** Index of the first element that differs (or the length of the shorter chain). */
  readonly at: number;
}

/**
 * Class a walk; `allowed`: what allowances() lets a correct walk miss, or a function that works it
 * out, called only when they matter: not for a walk with every frame that reached its end, nor
 * for one with every frame and its error flag set (exhaustive mode classes a walk at every
 * boundary, and most are EXACT).
 */
export function classify(expected: readonly bigint[], walk: Walk, allowed: readonly Allowance[] | (() => readonly Allowance[]) = []): Classified {
  const got = walk.ips;
  let at = 0;
  while (at < got.length && at < expected.length && got[at] === expected[at]) at++;
  const complete = at === expected.length && got.length === expected.length;
  // (the frame-pointer unwinder's quiet loss in entry code: every frame is there, then bad_address)
  if (complete && walk.error) return { class: walk.expectedLoss ? "WINDOW" : "FLAGGED", at };
  if (complete && walk.reachedEnd) return { class: "EXACT", at };
  const allow = typeof allowed === "function" ? allowed() : allowed;
  // every frame is there, and the walk may end where it did (entry code with no frame below:
  // a task in its syscall's exit path, on its pt_regs)
  if (complete) return { class: allow.some((a) => a.after === expected.length - 1 && a.mayEnd) ? "WINDOW" : "TRUNCATED", at };
  // WINDOW: only what the windows allow is missing (interrupted at the entry of the outermost
  // function, there is nothing above to reach). When the unwinder flagged it (ORC's frame-pointer
  // guess in a BPF prologue), it is FLAGGED, unless the unwinder itself calls the loss expected
  // (unwind_frame.c bad_address: no warning for an interrupt in entry code or before the C
  // handler's first frame pointer, e.g. an NMI on do_syscall_64's first instruction).
  // (an error is the allowance's to excuse only where the walk stopped)
  const reached = allow.length > 0 ? matchesWithin(expected, got, allow) : undefined;
  if (reached) return { class: walk.error && !walk.expectedLoss && !allow.some((a) => a.errorOk && a.after === reached[reached.length - 1]) ? "FLAGGED" : "WINDOW", at };
  if (at < got.length) return { class: "WRONG", at }; // a frame that is not the true one at its place
  return { class: walk.error ? "FLAGGED" : "TRUNCATED", at };
}
