// Which recursion counter a struct_ops program's trampoline takes in 7.2: prog->active only when
// its JIT uses a private stack (bpf_prog_check_recur(), include/linux/bpf_verifier.h: `return
// prog->aux->jits_use_priv_stack;`), which the verifier grants only to a stack of at least
// BPF_PRIV_STACK_MIN_SIZE (64) bytes even when check_member() asked for one (sched_ext's dispatch).
import { describe, expect, test } from "vitest";
import { loadScenario } from "../../../harness/scenario.ts";
import { runScenario } from "../../../harness/run.ts";
import { firstFailure } from "../../../harness/property.ts";
import { buildImage } from "../../../jit/image.ts";
import { counterOf } from "../../../jit/bpf/program.ts";
import { strategy } from "../../helpers/strategies.ts";
import { interpEnv, MAX_NESTED_RUNS, runProgram, REFUSED } from "../../../jit/bpf/interp.ts";

const scenario = (f: string) => loadScenario(new URL(`../../scenarios/${f}`, import.meta.url).pathname);

describe("struct_ops: prog->active only with a private stack", () => {
  test("the rule: kprobe paths take bpf_prog_active, uprobes nothing, trampolines prog->active except struct_ops without a private stack", () => {
    expect(counterOf({ type: "kprobe" }, false)).toBe("global");
    expect(counterOf({ type: "kprobe", attach: "uprobe" }, true)).toBe("none");
    expect(counterOf({ type: "tracing" }, false)).toBe("prog");
    expect(counterOf({ type: "raw_tp" }, false)).toBe("prog");
    expect(counterOf({ type: "struct_ops" }, true)).toBe("prog");
    expect(counterOf({ type: "struct_ops" }, false)).toBe("none");
  });

  test("64 bytes of stack: a private stack, prog->active, and the run of itself is refused (a miss); with no private stacks at all (the baseline, as before 6.13) no counter", () => {
    const sc = scenario("struct-ops-self-nest-private-stack.json");
    for (const s of ["r9-private", "split-stack"]) {
      const img = buildImage(sc.spec, strategy(s));
      expect(img.programs[0]!.validated.privStack).toEqual([true]);
      expect(img.programs[0]!.counter).toBe("prog");
      const o = runScenario(sc, strategy(s), { unwinder: "frame", policy: "strict", injections: [] });
      expect(firstFailure(o), s).toBeUndefined();
      expect(o.checks.invocations).toBe(2);
      expect(o.result).toMatchObject({ kind: "completed", rax: BigInt.asUintN(64, REFUSED + 1n) });
    }
    expect(buildImage(sc.spec, strategy("baseline")).programs[0]!.counter).toBe("none");
    expect(runScenario(sc, strategy("baseline"), { unwinder: "frame", policy: "strict", injections: [] }).result).toMatchObject({ kind: "fault", region: "task stack guard (low)" });
  });

  test("8 bytes of stack: no private stack, no counter: nothing refuses its runs of itself (the machine overflows the kernel stack, the reference interpreter stops at its nesting limit); a design with private stacks for all takes the counter", () => {
    const sc = scenario("struct-ops-self-nest-small-stack.json");
    const img = buildImage(sc.spec, strategy("r9-private"));
    expect(img.programs[0]!.validated.privStack).toEqual([false]);
    expect(img.programs[0]!.counter).toBe("none");
    const o = runScenario(sc, strategy("r9-private"), { unwinder: "frame", policy: "strict", injections: [] });
    expect(o.result).toMatchObject({ kind: "fault", region: "task stack guard (low)" });
    expect(o.checks.invocations).toBeGreaterThan(100);
    // a design that gives every program a private stack takes the counter, as a kernel built
    // with it would (jits_use_priv_stack): split-stack refuses the second run
    const split = runScenario(sc, strategy("split-stack"), { unwinder: "frame", policy: "strict", injections: [] });
    expect(buildImage(sc.spec, strategy("split-stack")).programs[0]!.counter).toBe("prog");
    expect(split.result).toMatchObject({ kind: "completed", rax: BigInt.asUintN(64, REFUSED + 1n) });
    expect(firstFailure(split)).toBeUndefined();
    const env = interpEnv(sc.spec.programs, [0], 1);
    expect(() => runProgram(env, 0)).toThrow(`dispatch: more than ${MAX_NESTED_RUNS} nested runs (no recursion counter stops them)`);
    expect(env.misses[0]).toBe(0);
  });
});
