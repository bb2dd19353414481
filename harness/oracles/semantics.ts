// Semantics: every runner invocation (bpf_sc_run) returns what the reference interpreter
// computes for that program, with the recursion counters as the machine has them then; every
// run the runner refused (__bpf_prog_enter_recur(): the counter above the limit) is counted in
// the program's misses (bpf_prog_inc_misses_counter()).
import { hex64 as hex } from "../machine/index.ts";
import { interpEnv, REFUSED, runProgram } from "../../jit/bpf/interp.ts";
import { KD } from "../../jit/kernel/layout.ts";
import type { Oracle, RunFailure } from "./types.ts";

export const semantics: Oracle = ({ img, m, fail }) => {
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
    const e = interpEnv(programs, nested, img.strategy.recursionLimit, kdata);
    // the machine's counters now: the global bpf_prog_active is the last one
    img.programs.forEach((p, i) => { if (p.active !== img.bpfProgActive) e.active[i] = counterValue(p.active); });
    e.active[programs.length] = counterValue(img.bpfProgActive);
    const refused = e.active[e.counterOf![prog]!]! + 1 > img.strategy.recursionLimit;
    let expected: bigint;
    try {
      expected = runProgram(e, prog);
    } catch (err) {
      fail({ check: "semantics", message: `the reference interpreter could not run ${programs[prog]?.name}: ${(err as Error).message}` });
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
    if (got !== inv.expected) fail({ check: "semantics", message: `${name} returned ${hex(got)}; the reference interpreter gives ${hex(inv.expected)}${inv.expected === REFUSED ? " (a refused run)" : ""}` });
    if (inv.refused) misses.get(inv.prog)!.refused++;
  });
  return {
    save() {
      // pending entries are never changed once added; a misses entry counts up, so it is copied
      const kept = { pending: pending.slice(), misses: [...misses].map(([k, v]) => [k, { ...v }] as const), invocations };
      return () => {
        pending.splice(0, pending.length, ...kept.pending);
        misses.clear();
        for (const [k, v] of kept.misses) misses.set(k, { ...v });
        invocations = kept.invocations;
      };
    },
    report() {
      // Refused runs, as the interpreter judged them, all counted in misses. A run that ended
      // early (a fault) may leave refusals in flight, counted or not yet.
      const failures: RunFailure[] = [];
      for (const [prog, x] of misses) {
        const have = (m.peek64(img.thisCpu(img.programs[prog]!.misses)) ?? 0n) - x.initial;
        const inFlight = BigInt(pending.filter((p) => p.prog === prog && p.refused).length);
        if (have < x.refused || have > x.refused + inFlight) failures.push({ check: "misses", message: `${programs[prog]!.name}: ${x.refused} refused run(s), misses counted ${have}` });
      }
      return { failures, invocations };
    },
  };
};
