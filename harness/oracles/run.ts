// The run-level oracles (design.md §6), composed: every check is an object of its own
// (types.ts RunOracle) that watches the run through the machine's events; this list is all
// there is to adding one. From machine state only:
//   - semantics.ts: every runner invocation returns the reference interpreter's result; refused
//     runs are counted in misses;
//   - abi.ts: callee-saved registers and rsp restored at every return, the interrupted context
//     restored exactly at iretq;
//   - guards.ts: private-stack guard words intact at teardown;
//   - stacks.ts: interrupts taken on a stack the kernel does not know; high-water marks per
//     stack against their budgets;
//   - memory.ts: no write into another context's (or another task's) live frames, per-CPU accesses in bounds;
//   - sleep.ts: no sleeping in atomic context (several tasks);
//   - dead-stack.ts: no read below rsp (the kernel has no red zone), nor of an IRQ or NMI stack
//     no context is on.
import type { Machine, Observer } from "../machine/index.ts";
import type { Image } from "../../jit/image.ts";
import type { PrivateStackKnowledge } from "../../unwinder/index.ts";
import { envFromImage } from "../unwind-env.ts";
import { toInternal } from "../machine/index.ts";
import { abi } from "./abi.ts";
import { guards } from "./guards.ts";
import { memory } from "./memory.ts";
import { semantics } from "./semantics.ts";
import { stacks } from "./stacks.ts";
import { sleep } from "./sleep.ts";
import { deadStack } from "./dead-stack.ts";
import type { HighWater, Oracle, OracleContext, RunFailure, RunReport, StackBudgets } from "./types.ts";

export type { HighWater, RunFailure, RunReport, StackBudgets } from "./types.ts";
export { overBudget } from "./stacks.ts";

/** Every run-level check, in the order their end-of-run failures are reported. */
export const RUN_ORACLES: readonly Oracle[] = [semantics, abi, guards, stacks, memory, sleep, deadStack];

export interface RunWatch {
  /** The run's checks so far, with the end-of-run ones (misses, guards, high-water). */
  report(): RunReport;
  /** Keep every check's state now; the function returned puts it back (exhaustive mode's forks). */
  save(): () => void;
  /** Has a check failed so far, the end-of-run ones as they stand now included? (report() has them; this builds no report.) */
  failing(): boolean;
}

/** Attach the run oracles to a machine built from `img`; call report() after the run. */
export function watchRun(img: Image, m: Machine, knowledge: PrivateStackKnowledge = "none", budgets: StackBudgets = {}, oracles: readonly Oracle[] = RUN_ORACLES): RunWatch {
  const failures: RunFailure[] = [];
  const ctx: OracleContext = {
    img, m, budgets,
    // the same get_stack_info() the unwinders use: with --private-stacks it knows them too
    env: envFromImage(img, m, knowledge),
    fail: (f) => { failures.push(f); },
    sym: (a) => m.symbols.describe(a),
  };
  const checks = oracles.map((o) => o(ctx));
  const each = <K extends "onCall" | "onReturn" | "onInterrupt" | "onIret">(k: K) => {
    const fns = checks.flatMap((c) => (c[k] ? [c[k]!.bind(c)] : []));
    return (a: Parameters<NonNullable<Observer[K]>>[0]) => { for (const f of fns) f(a); };
  };
  const switches = checks.flatMap((c) => (c.onSwitch ? [c.onSwitch.bind(c)] : []));
  m.observer = {
    onCall: each("onCall"), onReturn: each("onReturn"), onInterrupt: each("onInterrupt"), onIret: each("onIret"),
    onSwitch: (prev, next) => { for (const f of switches) f(prev, next); },
  };
  // The machine has one write watcher and one read watcher: each gets every check's ranges.
  const writers = checks.filter((c) => c.onWrite), readers = checks.filter((c) => c.onRead);
  if (writers.length) {
    const onWrite = (addr: number, size: number, ip: number) => { for (const c of writers) c.onWrite!(addr, size, ip); };
    for (const c of writers) for (const r of c.writes ?? []) m.watchWritesInternal(r.begin, r.end, onWrite);
  }
  if (readers.length) {
    // Each check gets the reads of its own ranges only (RunOracle.reads): the watcher sees whole
    // pages, and every stack read (dead-stack) is not the memory oracle's business, nor a per-CPU
    // one the dead-stack check's unless it is a private stack's. [begin, end) pairs, internal addresses.
    const spans = readers.map((c) => (c.reads ?? []).flatMap((r) => [toInternal(r.begin)!, toInternal(r.end - 1n)! + 1]));
    const onRead = (addr: number, size: number, ip: number) => {
      const end = addr + size;
      for (let k = 0; k < readers.length; k++) {
        const sp = spans[k]!;
        for (let i = 0; i < sp.length; i += 2) if (addr < sp[i + 1]! && end > sp[i]!) { readers[k]!.onRead!(addr, size, ip); break; }
      }
    };
    for (const c of readers) for (const r of c.reads ?? []) m.watchReadsInternal(r.begin, r.end, onRead);
  }
  return {
    save() {
      const n = failures.length;
      const back = checks.map((c) => c.save());
      return () => {
        failures.length = n;
        for (const b of back) b();
      };
    },
    failing: () => failures.length > 0 || checks.some((c) => (c.failing ? c.failing() : (c.report().failures?.length ?? 0) > 0)),
    report() {
      const all: RunFailure[] = [...failures];
      const highWater: HighWater[] = [];
      let invocations = 0;
      for (const c of checks) {
        const r = c.report();
        all.push(...(r.failures ?? []));
        highWater.push(...(r.highWater ?? []));
        invocations += r.invocations ?? 0;
      }
      return { failures: all, invocations, highWater };
    },
  };
}
