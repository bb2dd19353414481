// The contract of a run-level check (design.md §6): a small object with its own state that
// watches one run through the machine's events (calls, returns, interrupts, irets, memory
// writes and reads in ranges it names, address hooks it sets), can keep and restore its state
// (exhaustive mode's forks), and reports its failures and figures at the end. run.ts composes
// them as a list.
import type { Activation, Machine } from "../machine/index.ts";
import type { Image } from "../../jit/image.ts";
import type { UnwindEnv } from "../../unwinder/index.ts";

export interface RunFailure {
  readonly check: "semantics" | "misses" | "abi-return" | "abi-iret" | "unknown-stack" | "guard" | "high-water" | "memory" | "atomic-sleep" | "dead-stack";
  readonly message: string;
  /** The code it names (the function that did it), for a report's disassembly. */
  readonly at?: bigint;
}

export interface HighWater { readonly stack: string; readonly bytes: number }

export interface RunReport {
  readonly failures: readonly RunFailure[];
  readonly invocations: number;
  readonly highWater: readonly HighWater[];
}

/** A budget per stack, in bytes: "task", "irq", "nmi", or "private" (every private stack). */
export type StackBudgets = Readonly<Partial<Record<"task" | "irq" | "nmi" | "private", number>>>;

/** What every check of one run sees. */
export interface OracleContext {
  readonly img: Image;
  readonly m: Machine;
  /** The unwinders' view (get_stack_info() with the private stacks they are told about). */
  readonly env: UnwindEnv;
  /** Record a failure as it happens. */
  readonly fail: (f: RunFailure) => void;
  /** `symbol+0xoff`, or the address. */
  readonly sym: (a: bigint) => string;
  /** Stack budgets to hold the high-water marks to (--stack-budget). */
  readonly budgets: StackBudgets;
}

/** A [begin, end) address range. */
export interface Range { readonly begin: bigint; readonly end: bigint }

export interface RunOracle {
  onCall?(a: Activation): void;
  onReturn?(a: Activation): void;
  onInterrupt?(a: Activation): void;
  onIret?(a: Activation): void;
  /** The machine switched tasks (several tasks on the CPU: Machine.switchTask()). */
  onSwitch?(prev: number, next: number): void;
  /**
   * Writes in these ranges (rounded out to pages) reach onWrite, with the address written and
   * the instruction that wrote in the machine's internal form (addr.ts: a canonical address as a
   * signed number, kernel addresses negative): every stack write comes here, and makes no bigint.
   */
  readonly writes?: readonly Range[];
  onWrite?(addr: number, size: number, ip: number): void;
  /** Reads in these ranges reach onRead (internal addresses too). */
  readonly reads?: readonly Range[];
  onRead?(addr: number, size: number, ip: number): void;
  /** Keep the state now; the function returned puts it back (any number of times). */
  save(): () => void;
  /** Whether report() would give failures now, when that is cheaper to tell than the report (exhaustive mode asks at every fork). */
  failing?(): boolean;
  /** End-of-run failures and figures (called any number of times; it does not change the state). */
  report(): { readonly failures?: readonly RunFailure[]; readonly invocations?: number; readonly highWater?: readonly HighWater[] };
}

/** A check: given one run's context, the object that watches it. */
export type Oracle = (ctx: OracleContext) => RunOracle;

/**
 * A check's state that belongs to one task (what it pushed at calls and interrupts of that
 * task's run): the running task's in `cur`, the others put aside while they are switched out
 * (RunOracle.onSwitch) and brought back when they run again.
 */
export class PerTask<T> {
  cur: T;
  private readonly parked = new Map<number, T>();
  constructor(private readonly fresh: () => T, private readonly copy: (t: T) => T) {
    this.cur = fresh();
  }

  private list: [number, T][] = [];

  switch(prev: number, next: number): void {
    this.parked.set(prev, this.cur);
    this.cur = this.parked.get(next) ?? this.fresh();
    this.parked.delete(next);
    this.list = [...this.parked];
  }

  /** The switched-out tasks' states (the same array until the next switch: do not change it). */
  others(): readonly [number, T][] {
    return this.list;
  }

  /** Keep every task's state now; the function returned puts it back (any number of times). */
  save(): () => void {
    const cur = this.copy(this.cur), parked = [...this.parked].map(([k, v]) => [k, this.copy(v)] as const);
    return () => {
      this.cur = this.copy(cur);
      this.parked.clear();
      for (const [k, v] of parked) this.parked.set(k, this.copy(v));
      this.list = [...this.parked];
    };
  }
}
