// Shared pieces of the generator suites: run counts that scale with FC_NUM_RUNS, reading a
// lowered scenario's structure back from its raw instructions, and running a scenario's schedule
// on the machine while noting where each interrupt lands.
import type { ScenarioFile } from "../../../harness/scenario.ts";
import type { Scenario } from "../../../harness/scenario.ts";
import { scheduleOf } from "../../../harness/run.ts";
import { buildImage, type Image } from "../../../jit/image.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import type { Machine } from "../../../harness/machine/index.ts";
import { loadImage, startTask } from "../../../harness/load.ts";

/** `n` runs by default; FC_NUM_RUNS=k scales every count by k/100 (fast-check's default is 100). */
export function scaled(n: number): number {
  const k = Number(process.env.FC_NUM_RUNS ?? "");
  return Number.isFinite(k) && k > 0 ? Math.max(1, Math.round((n * k) / 100)) : n;
}

type Insn = readonly [number, number, number, number, number];
const isCall = (x: Insn) => x[0] === 0x85;
/** `call scx_sc_run_nested` (BPF_PSEUDO_KFUNC_CALL, BTF id 1000). */
const isKfuncRun = (x: Insn) => isCall(x) && x[2] === 2 && x[4] === 1000;

/** Program i → the programs its kfunc calls run (the `r1 = k` before each call; self-runs included). */
export function nestedEdges(f: ScenarioFile): Set<number>[] {
  return f.programs.map((p) => {
    const out = new Set<number>();
    for (const fn of p.funcs) {
      fn.insns.forEach((x, i) => {
        const prev = fn.insns[i - 1];
        if (isKfuncRun(x) && prev && prev[0] === 0xb7 && prev[1] === 1 && prev[4] < f.programs.length) out.add(prev[4]);
      });
    }
    return out;
  });
}

/** The longest chain of kfunc-nested runs from program `i` (self-runs are refused, so not counted). */
export function nestingHeight(edges: readonly Set<number>[], i: number): number {
  let h = 0;
  for (const j of edges[i]!) if (j > i) h = Math.max(h, 1 + nestingHeight(edges, j));
  return h;
}

/** Programs the task's run can reach: program 0 and what it runs through the kfunc, transitively. */
export function reachedByTask(edges: readonly Set<number>[]): Set<number> {
  const seen = new Set<number>([0]);
  const todo = [0];
  while (todo.length) for (const j of edges[todo.pop()!]!) if (!seen.has(j)) { seen.add(j); todo.push(j); }
  return seen;
}

export const funcsOf = (f: ScenarioFile) => f.programs.flatMap((p) => p.funcs);
/** A function whose first instruction is a call (right after the prologue). */
export const startsWithCall = (fn: { insns: readonly Insn[] }) => isCall(fn.insns[0]!);
/** A function whose last instruction before `exit` is a call (right before the epilogue). */
export const endsWithCall = (fn: { insns: readonly Insn[] }) => fn.insns.length >= 2 && isCall(fn.insns[fn.insns.length - 2]!);

/** Where an interrupt was raised: its kind, and the symbol and situation of the instruction it interrupted. */
export interface Landing {
  readonly kind: "irq" | "nmi" | "tick";
  readonly raised: boolean;
  /** The interrupted symbol without its offset ("" when not raised). */
  readonly symbol: string;
  /** Inside a BPF function: before fp_start (prologue), at or after fp_end (epilogue), or between. */
  readonly bpf: "prologue" | "body" | "epilogue" | undefined;
  /** Already inside an interrupt handler. */
  readonly nested: boolean;
}

/**
 * Run the scenario's own schedule as runScenario() does (runUntil each step, then raise), noting
 * where each interrupt lands; `onMachine` may add hooks first. Returns the landings and the result.
 */
export function landings(sc: Scenario, strategy: Strategy, onMachine?: (m: Machine, img: Image) => void): { landings: Landing[]; completed: boolean } {
  const img = buildImage(sc.spec, strategy);
  const m = loadImage(img);
  onMachine?.(m, img);
  startTask(img, m);
  const out: Landing[] = [];
  let running = true;
  for (const x of [...scheduleOf(sc)].sort((a, b) => a.atStep - b.atStep)) {
    if (running && m.runUntil(x.atStep, { maxSteps: 1_000_000 }).kind !== "paused") running = false;
    if (!running) { out.push({ kind: x.kind, raised: false, symbol: "", bpf: undefined, nested: false }); continue; }
    const rip = m.rip;
    const w = img.programs.flatMap((p) => p.jit.funcs).find((f) => rip >= f.image.base && rip < f.image.end);
    out.push({
      kind: x.kind, raised: true, symbol: m.symbols.lookup(rip)?.name ?? m.symbols.describe(rip),
      bpf: w === undefined ? undefined : rip < w.frame.ready ? "prologue" : rip >= w.frame.gone ? "epilogue" : "body",
      nested: m.truth().some((t) => t.kind === "interrupt"),
    });
    m.raise(x.kind === "nmi" ? 2 : x.vector);
  }
  const r = m.run({ maxSteps: 1_000_000 });
  m.dispose();
  return { landings: out, completed: r.kind === "completed" };
}
