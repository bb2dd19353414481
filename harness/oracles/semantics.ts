// Semantics: every runner invocation (bpf_sc_run) returns what the reference interpreter
// computes for that program (REFUSED where the runner's recursion check refused it: the
// counters are machine state that other tasks change), given the results its own kfunc-nested
// runs returned (each checked as an invocation of its own); every
// run the runner refused (__bpf_prog_enter_recur(): the counter above the limit) is counted in
// the program's misses (bpf_prog_inc_misses_counter()).
import { hex64 as hex } from "../machine/index.ts";
import { InterpError, interpEnv, REFUSED, runProgram } from "../../jit/bpf/interp.ts";
import { KD } from "../../jit/kernel/layout.ts";
import { PerTask, type Oracle, type RunFailure } from "./types.ts";

export const semantics: Oracle = ({ img, m, fail }) => {
  const programs = img.programs.map((p) => p.program);
  const nested: number[] = [];
  const kdata = img.layout.kdata;
  const count = Number(m.peek64(kdata + BigInt(KD.nestedCount)) ?? 0n);
  for (let i = 0; i < count; i++) nested.push(Number(m.peek64(kdata + BigInt(KD.nested + 8 * i))!));
  const kfunc = img.kernel.addr("scx_sc_run_nested"), kfuncEnd = img.kernel.symbols.find((s) => s.name === "scx_sc_run_nested")!.end;
  // Per task, the invocations in flight: refused or not (decided by the counters when it
  // started), and what the nested runs it made through the kfunc returned (each is checked on
  // its own; the outer run is checked with them at its end: with several tasks, what other tasks
  // hold when a nested run starts decides whether it is refused). Entries are replaced, not changed
  // in place, except `nested`, which is copied.
  type Pending = { prog: number; refused: boolean; viaKfunc: boolean; nested: { prog: number; result: bigint }[] };
  const st = new PerTask(() => [] as Pending[], (t) => t.map((p) => ({ ...p, nested: p.nested.slice() })));
  // Per program: its misses when first run, and the refused runs since. Checked once the run is
  // over, not per run: an interrupt between a refusal's misses++ and its run_exit may be refused
  // too, and count first.
  // (keyed by the bpf_prog: a second attachment, Program.linkOf, counts into its program's misses)
  const misses = new Map<number, { initial: bigint; refused: bigint }>();
  const bpfProg = (prog: number) => img.programs[prog]!.linkOf ?? prog;
  // What the reference interpreter gives for a program whose nested runs returned these: a
  // function of the two alone (a fresh environment every time), so kept for the run and its
  // forks (exhaustive mode interprets the same invocation at every boundary otherwise).
  type Reference = { result: bigint; used: number; error?: undefined } | { error: string };
  const references = new Map<string, Reference>();
  const reference = (prog: number, given: readonly { prog: number; result: bigint }[]): Reference => {
    const key = `${prog}${given.map((n) => ` ${n.prog}:${n.result}`).join("")}`;
    let r = references.get(key);
    if (r === undefined) {
      const e = interpEnv(programs, nested, img.strategy.recursionLimit, kdata);
      e.nestedResults = given.slice();
      try {
        const result = runProgram(e, prog);
        r = { result, used: given.length - e.nestedResults.length };
      } catch (err) {
        const name = programs[prog]!.name;
        r = { error: err instanceof InterpError ? `${name}: ${err.message}` : `the reference interpreter could not run ${name}: ${(err as Error).message}` };
      }
      references.set(key, r);
    }
    return r;
  };
  let invocations = 0;
  m.addHook(img.kernel.addr("bpf_sc_run"), (mm) => {
    const prog = Number(mm.reg("rdi"));
    const p = img.programs[prog]!;
    const from = mm.peek64(mm.reg("rsp")) ?? 0n;
    if (!misses.has(bpfProg(prog))) misses.set(bpfProg(prog), { initial: m.peek64(img.thisCpu(p.misses)) ?? 0n, refused: 0n });
    st.cur.push({ prog, refused: false, viaKfunc: from >= kfunc && from < kfuncEnd, nested: [] });
    invocations++;
  });
  // Refused: the runner's own check went to run_refused (the program's counter, program.ts
  // counterOf(): none for uprobes and for struct_ops without a private stack, above the limit). Taken where the check is made, not when the runner is entered: with several
  // tasks, another task may take the counter while this one is preempted in between.
  m.addHook(img.kernel.addr("run_refused"), () => {
    const top = st.cur.at(-1);
    if (top) st.cur[st.cur.length - 1] = { ...top, refused: true };
  });
  m.addHook(img.kernel.addr("run_exit"), (mm) => {
    const inv = st.cur.pop();
    if (!inv) return;
    const got = mm.reg("r13");
    const name = programs[inv.prog]!.name;
    let expected = REFUSED;
    if (!inv.refused) {
      const r = reference(inv.prog, inv.nested);
      if (r.error !== undefined) {
        fail({ check: "semantics", message: r.error });
        expected = got;
      } else {
        expected = r.result;
        // every nested run the machine made must be one the program makes
        if (r.used < inv.nested.length) fail({ check: "semantics", message: `${name} ran ${inv.nested.length} nested program(s) through the kfunc; the reference interpreter makes ${r.used}` });
      }
    }
    if (got !== expected) fail({ check: "semantics", message: `${name} returned ${hex(got)}; the reference interpreter gives ${hex(expected)}${expected === REFUSED ? " (a refused run)" : ""}` });
    if (inv.refused) misses.get(bpfProg(inv.prog))!.refused++;
    if (inv.viaKfunc) st.cur.at(-1)?.nested.push({ prog: inv.prog, result: got });
  });
  return {
    onSwitch: (prev, next) => st.switch(prev, next),
    save() {
      // a misses entry counts up, so it is copied
      const back = st.save();
      const kept = { misses: [...misses].map(([k, v]) => [k, { ...v }] as const), invocations };
      return () => {
        back();
        misses.clear();
        for (const [k, v] of kept.misses) misses.set(k, { ...v });
        invocations = kept.invocations;
      };
    },
    report() {
      // Refused runs, as the runner's counters decided them, all counted in misses. A run that
      // ended early (a fault) may leave refusals in flight, counted or not yet.
      const failures: RunFailure[] = [];
      const inFlight = [st.cur, ...st.others().map(([, t]) => t)].flat();
      for (const [prog, x] of misses) {
        const have = (m.peek64(img.thisCpu(img.programs[prog]!.misses)) ?? 0n) - x.initial;
        const refusing = BigInt(inFlight.filter((p) => bpfProg(p.prog) === prog && p.refused).length);
        if (have < x.refused || have > x.refused + refusing) failures.push({ check: "misses", message: `${programs[prog]!.name}: ${x.refused} refused run(s), misses counted ${have}` });
      }
      return { failures, invocations };
    },
  };
};
