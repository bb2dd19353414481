// The kernel stacks: interrupts taken while rsp is on a stack get_stack_info() does not know
// (the hardware frame and pt_regs land there: kernel-model "Known hazards" S), and the
// high-water mark of every stack (task, IRQ, NMI, each private stack), from rsp at every call
// and interrupt and, on private stacks (where r9-style designs never put rsp), from the lowest
// byte written; held to the --stack-budget budgets at the end.
import { hex64 as hex, toCanonical, toInternal } from "../machine/index.ts";
import { privateStacks } from "../../jit/private-stacks.ts";
import { getStackInfo, stackTypeName, Warnings, type StackInfo } from "../../unwinder/index.ts";
import type { HighWater, Oracle, RunFailure, StackBudgets } from "./types.ts";

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

type Marks = Map<string, { end: bigint; low: bigint; /** low, as an internal address (written bytes only) */ lowAt?: number }>;

export const stacks: Oracle = ({ img, m, env, fail, sym, budgets }) => {
  /** rsp's lowest on each stack; and the lowest byte written on each private stack. */
  const lowest: Marks = new Map(), written: Marks = new Map();
  const stackOf = (sp: bigint): StackInfo | undefined => {
    const info: StackInfo = { type: 0, begin: 0n, end: 0n, nextSp: 0n };
    return getStackInfo(env, sp, info, { mask: 0n }, new Warnings()) ? info : undefined;
  };
  const privates = privateStacks(img);
  const taskStacks = img.tasks.map((t) => t.stack);
  const lower = (marks: Marks, key: string, end: bigint, low: bigint) => {
    const cur = marks.get(key);
    if (!cur || low < cur.low) marks.set(key, { end, low });
  };
  /**
   * Record rsp on the stack it is on: the stack holding the last byte pushed (sp - 1; sp may be
   * an empty stack's top, which is the next slot's bottom), else the one holding sp (a full
   * stack). Private stacks go by their own names whatever the unwinder knows of them.
   */
  const note = (sp: bigint) => {
    for (const at of [sp - 1n, sp]) {
      const p = privates.find((x) => at >= x.begin && at < x.end);
      if (p) return lower(lowest, p.name, p.top, sp);
      const t = img.tasks.findIndex((x) => at >= x.stack.begin && at < x.stack.end);
      if (t > 0) return lower(lowest, `TASK ${t}`, img.tasks[t]!.stack.end, sp); // task 0's is TASK, as with one task
      const s = stackOf(at);
      if (s) return lower(lowest, stackTypeName(s.type), s.end, sp);
    }
  };
  // (the same, as the internal addresses onWrite is given)
  const privatesAt = privates.map((x) => ({ name: x.name, top: x.top, begin: toInternal(x.begin)!, end: toInternal(x.end)! }));
  const guardsAt = img.guards.map((g) => toInternal(g.addr)!);
  return {
    onCall: () => note(m.reg("rsp")),
    onInterrupt: (a) => {
      note(a.rspRaw);
      note(m.reg("rsp"));
      // (a task's stack is a kernel stack even while current is another task: the switch window)
      if (!stackOf(a.rspRaw) && !taskStacks.some((t) => a.rspRaw > t.begin && a.rspRaw <= t.end)) {
        fail({ check: "unknown-stack", message: `vector ${a.vector} taken at ${sym(toCanonical(a.ret))} while rsp ${hex(a.rspRaw)} was on a stack get_stack_info() does not know${privates.some((p) => a.rspRaw >= p.begin && a.rspRaw < p.end) ? " (a private BPF stack)" : ""}` });
      }
    },
    writes: privates,
    // the lowest byte written on each private stack; not the guard words (the guard check's)
    onWrite: (addr, size) => {
      const end = addr + size;
      const p = privatesAt.find((x) => addr >= x.begin && addr < x.end);
      if (!p || guardsAt.some((g) => addr < g + 8 && end > g)) return;
      const cur = written.get(p.name);
      if (cur === undefined || addr < cur.lowAt!) written.set(p.name, { end: p.top, low: toCanonical(addr), lowAt: addr });
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
      for (const [k, v] of written) lower(marks, k, v.end, v.low);
      const highWater = [...marks].map(([stack, x]) => ({ stack, bytes: Number(x.end - x.low) }));
      return { highWater, failures: overBudget(highWater, budgets) };
    },
  };
};
