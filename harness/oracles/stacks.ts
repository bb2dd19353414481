// The kernel stacks: interrupts taken while rsp is on a stack get_stack_info() does not know
// (the hardware frame and pt_regs land there: kernel-model "Known hazards" S), and the
// high-water mark of every stack (task, IRQ, NMI, each private stack), from rsp at every call
// and interrupt and, on private stacks (where r9-style designs never put rsp), from the lowest
// byte written; held to the --stack-budget budgets at the end.
import { hex64 as hex, toCanonical, toInternal } from "../machine/index.ts";
import { privateStacks } from "../../jit/private-stacks.ts";
import { getStackInfo, stackTypeName, Warnings, type StackInfo } from "../../unwinder/index.ts";
import type { VisitMask } from "../../unwinder/stack.ts";
import type { HighWater, Oracle, RunFailure, StackBudgets } from "./types.ts";
import { currentTask } from "../load.ts";

/** Internal addresses are canonical in [-2^47, 2^47) (addr.ts). */
const TWO_47 = 2 ** 47;

const budgetKey = (stack: string): keyof StackBudgets | undefined =>
  stack === "TASK" || stack.startsWith("TASK ") ? "task" : stack === "IRQ" ? "irq" : stack === "NMI" ? "nmi" : stack.startsWith("private ") ? "private" : undefined;

/** Every stack whose high-water mark exceeds its budget (design §6: "checked against a budget"). */
export function overBudget(highWater: readonly HighWater[], budgets: StackBudgets): RunFailure[] {
  return highWater.flatMap(({ stack, bytes }) => {
    const key = budgetKey(stack);
    const limit = key === undefined ? undefined : budgets[key];
    return limit !== undefined && bytes > limit ? [{ check: "high-water" as const, message: `${stack} stack used ${bytes} bytes, over its budget of ${limit} (--stack-budget ${key}=${limit})` }] : [];
  });
}

type Marks = Map<string, { end: bigint; low: bigint; /** low, as an internal address */ lowAt: number }>;

export const stacks: Oracle = ({ img, m, env, fail, sym, budgets }) => {
  /** rsp's lowest on each stack; and the lowest byte written on each private stack. */
  const lowest: Marks = new Map(), written: Marks = new Map();
  // (one of each for every get_stack_info() asked here: none of them outlives the call)
  const info: StackInfo = { type: 0, begin: 0n, end: 0n, nextSp: 0n }, mask: VisitMask = { mask: 0n }, warnings = new Warnings();
  const stackOf = (sp: bigint): StackInfo | undefined => {
    mask.mask = 0n;
    delete mask.miss;
    return getStackInfo(env, sp, info, mask, warnings) ? info : undefined;
  };
  const privates = privateStacks(img);
  const taskStacks = img.tasks.map((t) => t.stack);
  // (the same, as internal addresses: rsp at every call, and every write, come as numbers)
  const privatesAt = privates.map((x) => ({ name: x.name, top: x.top, begin: toInternal(x.begin)!, end: toInternal(x.end)! }));
  const tasksAt = img.tasks.map((t, k) => ({ name: k === 0 ? "TASK" : `TASK ${k}`, end: t.stack.end, begin: toInternal(t.stack.begin)!, endAt: toInternal(t.stack.end)! }));
  const guardsAt = img.guards.map((g) => toInternal(g.addr)!);
  // The last stack get_stack_info() found for note(), as internal addresses: it answers the same
  // stack for every address in it while current is the same task (current's task stack is the
  // one it knows), so the next rsp on it needs no new lookup (rsp at every call comes here).
  let last: { begin: number; endAt: number; name: string; end: bigint; task: number } | undefined;
  /** Lower a mark to `lowAt` (an internal address). */
  const lower = (marks: Marks, key: string, end: bigint, lowAt: number) => {
    const cur = marks.get(key);
    if (!cur || lowAt < cur.lowAt) marks.set(key, { end, low: toCanonical(lowAt), lowAt });
  };
  /**
   * Record rsp on the stack it is on: the stack holding the last byte pushed (sp - 1; sp may be
   * an empty stack's top, which is the next slot's bottom), else the one holding sp (a full
   * stack). Private stacks go by their own names whatever the unwinder knows of them.
   * `sp` in the internal form; a non-canonical rsp is on no stack.
   */
  const note = (sp: number) => {
    for (let at = sp - 1; at <= sp; at++) {
      for (const p of privatesAt) if (at >= p.begin && at < p.end) return lower(lowest, p.name, p.top, sp);
      for (let t = 1; t < tasksAt.length; t++) if (at >= tasksAt[t]!.begin && at < tasksAt[t]!.endAt) return lower(lowest, tasksAt[t]!.name, tasksAt[t]!.end, sp); // task 0's is TASK, as with one task
      if (at >= -TWO_47 && at < TWO_47) {
        const task = img.multitask ? currentTask(img, m) : 0;
        if (last !== undefined && at >= last.begin && at < last.endAt && last.task === task) return lower(lowest, last.name, last.end, sp);
        const s = stackOf(toCanonical(at));
        if (s) {
          last = { begin: toInternal(s.begin)!, endAt: toInternal(s.end)!, name: stackTypeName(s.type), end: s.end, task };
          return lower(lowest, last.name, s.end, sp);
        }
      }
    }
  };
  return {
    onCall: () => note(m.rspAt),
    onInterrupt: (a) => {
      note(a.rsp);
      note(m.rspAt);
      // (a task's stack is a kernel stack even while current is another task: the switch window)
      if (!stackOf(a.rspRaw) && !taskStacks.some((t) => a.rspRaw > t.begin && a.rspRaw <= t.end)) {
        fail({ check: "unknown-stack", message: `vector ${a.vector} taken at ${sym(toCanonical(a.ret))} while rsp ${hex(a.rspRaw)} was on a stack get_stack_info() does not know${privates.some((p) => a.rspRaw >= p.begin && a.rspRaw < p.end) ? " (a private BPF stack)" : ""}` });
      }
    },
    writes: privates,
    // the lowest byte written on each private stack; not the guard words (the guard check's)
    onWrite: (addr, size) => {
      // (loops, not find() with a closure: this runs at every private-stack write)
      const end = addr + size;
      let p: (typeof privatesAt)[number] | undefined;
      for (const x of privatesAt) if (addr >= x.begin && addr < x.end) { p = x; break; }
      if (p === undefined) return;
      for (const g of guardsAt) if (addr < g + 8 && end > g) return;
      lower(written, p.name, p.top, addr);
    },
    save() {
      // entries are replaced, never changed: copies of the maps keep them
      const kept = [new Map(lowest), new Map(written)] as const;
      return () => {
        for (const [to, from] of [[lowest, kept[0]], [written, kept[1]]] as const) {
          to.clear();
          for (const [k, v] of from) to.set(k, v);
        }
      };
    },
    // (the marks fail only against budgets)
    failing() { return Object.keys(budgets).length > 0 && (this.report().failures?.length ?? 0) > 0; },
    report() {
      // a private stack's mark: the lower of rsp's and of the lowest byte written
      const marks: Marks = new Map(lowest);
      for (const [k, v] of written) lower(marks, k, v.end, v.lowAt);
      const highWater = [...marks].map(([stack, x]) => ({ stack, bytes: Number(x.end - x.low) }));
      return { highWater, failures: overBudget(highWater, budgets) };
    },
  };
};
