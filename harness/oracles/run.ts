// Run-level oracles (design.md §6), from machine state only:
//   - semantics: every runner invocation (bpf_sc_run) returns what the reference interpreter
//     computes for that program, with the recursion counters as the machine has them then;
//     a refused run must be counted in misses;
//   - ABI: callee-saved registers (rbx, rbp, r12-r15) and rsp are restored at every return; the
//     interrupted context (all registers and rflags) is restored exactly at iretq;
//   - interrupts taken while rsp is on a stack the kernel does not know;
//   - kernel stack high-water marks per stack, seen at every call and interrupt;
//   - private-stack guard words intact at teardown;
//   - memory: no write into another context's live frames, no write into a guard (memory.ts).
import { hex64 as hex, toCanonical, type Activation, type Machine, type Observer, type RegName } from "../machine/index.ts";
import type { Image } from "../../jit/image.ts";
import { interpEnv, REFUSED, runProgram } from "../../jit/bpf/interp.ts";
import { KD } from "../../jit/kernel/layout.ts";
import { privateStackAreas, watchMemory } from "./memory.ts";
import { PRIV_STACK_GUARD_VAL } from "../../jit/strategies/r9-private.ts";
import { envFromImage, getStackInfo, stackTypeName, Warnings, type PrivateStackKnowledge, type StackInfo } from "../../unwinder/index.ts";

export interface RunFailure {
  readonly check: "semantics" | "misses" | "abi-return" | "abi-iret" | "unknown-stack" | "guard" | "high-water" | "memory";
  readonly message: string;
}

export interface HighWater { readonly stack: string; readonly bytes: number }

export interface RunReport {
  readonly failures: readonly RunFailure[];
  readonly invocations: number;
  readonly highWater: readonly HighWater[];
}

const CALLEE_SAVED: readonly RegName[] = ["rbx", "rbp", "r12", "r13", "r14", "r15"];
const ALL: readonly RegName[] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/** Attach the run oracles to a machine built from `img`; call report() after the run. */
/** A budget per stack, in bytes: "task", "irq", "nmi", or "private" (every private stack). */
export type StackBudgets = Readonly<Partial<Record<"task" | "irq" | "nmi" | "private", number>>>;

const budgetKey = (stack: string): keyof StackBudgets | undefined =>
  stack === "TASK" ? "task" : stack === "IRQ" ? "irq" : stack === "NMI" ? "nmi" : stack.startsWith("private ") ? "private" : undefined;

/** Every stack whose high-water mark exceeds its budget (design §6: "checked against a budget"). */
export function overBudget(highWater: readonly HighWater[], budgets: StackBudgets): RunFailure[] {
  return highWater.flatMap(({ stack, bytes }) => {
    const key = budgetKey(stack);
    const limit = key === undefined ? undefined : budgets[key];
    return limit !== undefined && bytes > limit ? [{ check: "high-water" as const, message: `${stack} stack used ${bytes} bytes, over its budget of ${limit} (--stack-budget ${key}=${limit})` }] : [];
  });
}

export interface RunWatch {
  /** The run's checks so far, with the end-of-run ones (misses, guards, high-water). */
  report(): RunReport;
  /** Keep every check's state now; the function returned puts it back (exhaustive mode's forks). */
  save(): () => void;
}

export function watchRun(img: Image, m: Machine, knowledge: PrivateStackKnowledge = "none"): RunWatch {
  const failures: RunFailure[] = [];
  // The same get_stack_info() the unwinders use: with --private-stacks it knows them too.
  const env = envFromImage(img, m, knowledge);
  const sym = (a: bigint) => m.symbols.describe(a);
  const regsNow = (names: readonly RegName[]) => names.map((n) => m.reg(n));
  const saved: bigint[][] = [];
  const atInterrupt: { regs: bigint[]; flags: number }[] = [];
  const lowest = new Map<string, { end: bigint; low: bigint }>();
  const stackOf = (sp: bigint): StackInfo | undefined => {
    const info: StackInfo = { type: 0, begin: 0n, end: 0n, nextSp: 0n };
    return getStackInfo(env, sp, info, { mask: 0n }, new Warnings()) ? info : undefined;
  };
  const privates = privateStackAreas(img);
  /**
   * Record rsp on the stack it is on: the stack holding the last byte pushed (sp - 1; sp may be
   * an empty stack's top, which is the next slot's bottom), else the one holding sp (a full
   * stack). Private stacks go by their own names whatever the unwinder knows of them.
   */
  const note = (sp: bigint) => {
    let key: string | undefined, end = 0n;
    for (const at of [sp - 1n, sp]) {
      const p = privates.find((x) => at >= x.begin && at < x.end);
      const s = p ? undefined : stackOf(at);
      if (p) { key = p.name; end = p.top; } else if (s) { key = stackTypeName(s.type); end = s.end; }
      if (key) break;
    }
    if (!key) return;
    const cur = lowest.get(key);
    if (!cur || sp < cur.low) lowest.set(key, { end, low: sp });
  };

  /** One failure per register of `names` whose value now differs from `before`. */
  const unrestored = (check: RunFailure["check"], names: readonly RegName[], before: readonly bigint[], say: (r: RegName, was: bigint, now: bigint) => string) => {
    const after = regsNow(names);
    names.forEach((r, i) => { if (before[i] !== after[i]) failures.push({ check, message: say(r, before[i]!, after[i]!) }); });
  };
  const memory = watchMemory(img, m, failures);
  const observer: Observer = {
    onCall: (a: Activation) => { saved.push(regsNow(CALLEE_SAVED)); note(m.reg("rsp")); memory.onCall(a); },
    onReturn: (a: Activation) => {
      memory.onReturn(a);
      const before = saved.pop();
      if (!before) return;
      unrestored("abi-return", CALLEE_SAVED, before, (r, was, now) => `${r} not restored by ${sym(toCanonical(a.entry))}: ${hex(was)} before the call, ${hex(now)} after it returned to ${sym(toCanonical(a.ret))}`);
      if (m.reg("rsp") !== a.rspRaw) failures.push({ check: "abi-return", message: `rsp ${hex(m.reg("rsp"))} after returning to ${sym(toCanonical(a.ret))}; the call left it at ${hex(a.rspRaw)}` });
    },
    onInterrupt: (a: Activation) => {
      memory.onInterrupt(a);
      // The registers of the interrupted context (rsp: the interrupted one) and its rflags (in the frame).
      const regs = regsNow(ALL);
      regs[4] = a.rspRaw;
      atInterrupt.push({ regs, flags: Number(m.peek64(m.reg("rsp") + 16n)!) });
      note(a.rspRaw);
      note(m.reg("rsp"));
      if (!stackOf(a.rspRaw)) {
        failures.push({ check: "unknown-stack", message: `vector ${a.vector} taken at ${sym(toCanonical(a.ret))} while rsp ${hex(a.rspRaw)} was on a stack get_stack_info() does not know${privates.some((p) => a.rspRaw >= p.begin && a.rspRaw < p.end) ? " (a private BPF stack)" : ""}` });
      }
    },
    onIret: (a: Activation) => {
      memory.onIret(a);
      const before = atInterrupt.pop();
      if (!before) return;
      unrestored("abi-iret", ALL, before.regs, (r, was, now) => `${r} not restored at iretq from vector ${a.vector}: ${hex(was)} when interrupted, ${hex(now)} after`);
      if ((m.rflags & 0xcd5) !== (before.flags & 0xcd5)) failures.push({ check: "abi-iret", message: `rflags ${m.rflags.toString(16)} after iretq from vector ${a.vector}, ${before.flags.toString(16)} when interrupted` });
    },
  };
  m.observer = observer;

  // Semantics: each runner invocation against the interpreter, counters read from the machine.
  const programs = img.programs.map((p) => p.program);
  const nested: number[] = [];
  const kdata = img.layout.kdata;
  const count = Number(m.peek64(kdata + BigInt(KD.nestedCount)) ?? 0n);
  for (let i = 0; i < count; i++) nested.push(Number(m.peek64(kdata + BigInt(KD.nested + 8 * i))!));
  const pending: { prog: number; expected: bigint; refused: boolean }[] = [];
  // Per program: its misses when first run, and the refused runs since. Checked once the run is
  // over, not per run: an interrupt between a refusal's misses++ and its run_exit may be refused
  // too, and count first.
  const misses = new Map<number, { initial: bigint; refused: bigint }>();
  let invocations = 0;
  const counterValue = (ptr: bigint) => Number(m.peek64(img.thisCpu(ptr)) ?? 0n);
  m.addHook(img.kernel.addr("bpf_sc_run"), (mm) => {
    const prog = Number(mm.reg("rdi"));
    const e = interpEnv(programs, nested, img.strategy.recursionLimit);
    // the machine's counters now: the global bpf_prog_active is the last one
    img.programs.forEach((p, i) => { if (p.active !== img.bpfProgActive) e.active[i] = counterValue(p.active); });
    e.active[programs.length] = counterValue(img.bpfProgActive);
    const refused = e.active[e.counterOf![prog]!]! + 1 > img.strategy.recursionLimit;
    let expected: bigint;
    try {
      expected = runProgram(e, prog);
    } catch (err) {
      failures.push({ check: "semantics", message: `the reference interpreter could not run ${programs[prog]?.name}: ${(err as Error).message}` });
      expected = -1n;
    }
    if (!misses.has(prog)) misses.set(prog, { initial: m.peek64(img.thisCpu(img.programs[prog]!.misses)) ?? 0n, refused: 0n });
    pending.push({ prog, expected, refused });
    invocations++;
  });
  m.addHook(img.kernel.addr("run_exit"), (mm) => {
    const inv = pending.pop();
    if (!inv) return;
    const got = mm.reg("r13");
    const name = programs[inv.prog]!.name;
    if (got !== inv.expected) failures.push({ check: "semantics", message: `${name} returned ${hex(got)}; the reference interpreter gives ${hex(inv.expected)}${inv.expected === REFUSED ? " (a refused run)" : ""}` });
    if (inv.refused) misses.get(inv.prog)!.refused++;
  });

  return {
    save() {
      // Entries of saved, atInterrupt, lowest and pending are never changed once added (copies of
      // the containers do); a misses entry counts up, so it is copied.
      const kept = {
        failures: failures.length, saved: saved.slice(), atInterrupt: atInterrupt.slice(), lowest: new Map(lowest), pending: pending.slice(),
        misses: [...misses].map(([k, v]) => [k, { ...v }] as const), invocations, memory: memory.save(),
      };
      return () => {
        failures.length = kept.failures;
        saved.splice(0, saved.length, ...kept.saved);
        atInterrupt.splice(0, atInterrupt.length, ...kept.atInterrupt);
        lowest.clear();
        for (const [k, v] of kept.lowest) lowest.set(k, v);
        pending.splice(0, pending.length, ...kept.pending);
        misses.clear();
        for (const [k, v] of kept.misses) misses.set(k, { ...v });
        invocations = kept.invocations;
        kept.memory();
      };
    },
    report() {
      // Refused runs, as the interpreter judged them, all counted in misses (bpf_prog_inc_misses_counter()).
      // A run that ended early (a fault) may leave refusals in flight, counted or not yet.
      for (const [prog, x] of misses) {
        const have = (m.peek64(img.thisCpu(img.programs[prog]!.misses)) ?? 0n) - x.initial;
        const inFlight = BigInt(pending.filter((p) => p.prog === prog && p.refused).length);
        if (have < x.refused || have > x.refused + inFlight) failures.push({ check: "misses", message: `${programs[prog]!.name}: ${x.refused} refused run(s), misses counted ${have}` });
      }
      for (const g of img.guards) {
        const v = m.peek64(g.addr);
        if (v !== PRIV_STACK_GUARD_VAL) failures.push({ check: "guard", message: `BPF private stack overflow/underflow detected for prog ${g.func}: guard at ${hex(g.addr)} is ${hex(v ?? 0n)}` });
      }
      // Private stacks are also measured by the lowest byte written: r9-style designs never put rsp there.
      for (const [name, x] of memory.privateLow) {
        const cur = lowest.get(name);
        if (!cur || x.low < cur.low) lowest.set(name, { end: x.end, low: x.low });
      }
      const highWater = [...lowest.entries()].map(([stack, x]) => ({ stack, bytes: Number(x.end - x.low) }));
      return { failures, invocations, highWater };
    },
  };
}
