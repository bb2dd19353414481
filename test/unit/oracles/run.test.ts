// The run-level oracles: a clean run passes; each planted defect is reported by its check.
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { loadScenario } from "../../../harness/scenario.ts";
import { overBudget, RUN_ORACLES, watchRun } from "../../../harness/oracles/run.ts";
import type { Oracle } from "../../../harness/oracles/types.ts";
import { buildImage } from "../../../jit/image.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { standardPrologue } from "../../../jit/prologue.ts";
import type { Machine } from "../../../harness/machine/index.ts";
import { loadImage, startTask } from "../../../harness/load.ts";
import { KD } from "../../../jit/kernel/layout.ts";
import { strategy } from "../../helpers/strategies.ts";

const scenario = loadScenario(fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url)));

function run(s: Strategy, setup?: (m: Machine, img: ReturnType<typeof buildImage>) => void) {
  const img = buildImage(scenario.spec, s);
  const m = loadImage(img);
  const w = watchRun(img, m);
  setup?.(m, img);
  startTask(img, m);
  // the scenario's schedule: an IRQ and an NMI by instruction count
  let r = m.runUntil(40);
  m.raise(236);
  if (r.kind === "paused") r = m.runUntil(70);
  m.raise(2);
  if (r.kind === "paused") r = m.run();
  return { r, report: w.report(), img };
}

describe("run oracles", () => {
  test("semantics: a kfunc that runs the wrong nested program is caught, though that program's own run is right", () => {
    // planted: the runner's table says nested[0] is outer, while the program (and the interpreter)
    // mean leaf (r9-private: outer's private stack gives it prog->active, so its second run is refused)
    const { report } = run(strategy("r9-private"), (m, img) => {
      m.load(img.layout.kdata + BigInt(KD.nested), new Uint8Array(8)); // nested[0] = program 0 (outer, refused: active)
    });
    expect(report.failures.map((f) => f.message)).toContainEqual(expect.stringMatching(/^outer: .*the kfunc ran outer where nested\[0\] is leaf$/));
  });
  test.each(["baseline", "r9-private"])("%s: the example with its IRQ and NMI passes every check", (name) => {
    const { r, report } = run(strategy(name));
    expect(r).toMatchObject({ kind: "completed", rax: 1078n });
    expect(report.failures).toEqual([]);
    expect(report.invocations).toBeGreaterThanOrEqual(4); // task, nested, IRQ, NMI
    expect(report.highWater.map((h) => h.stack)).toEqual(expect.arrayContaining(["TASK", "IRQ", "NMI"]));
  });

  test("semantics: a corrupted result is reported against the reference interpreter", () => {
    const { report } = run(strategy("baseline"), (m, img) => {
      const leaf = img.programs[1]!.jit.funcs[0]!;
      const ret = leaf.image.end - 1n; // the leaf's ret
      m.addHook(ret, (mm) => { mm.setReg("rax", 123n); });
    });
    expect(report.failures.filter((f) => f.check === "semantics").map((f) => f.message)[0]).toMatch(/^leaf returned 000000000000007b; the reference interpreter gives 000000000000002a$/);
  });

  test("ABI: a strategy whose epilogue forgets the pops leaves rbx and r13 clobbered", () => {
    const noPops: Strategy = { ...strategy("baseline"), name: "no-pops", prologue: (e, f) => standardPrologue(e, f, f.func.stackDepth), epilogue: (e) => { e.leave(); e.frameGone(); e.ret(); } };
    const { report } = run(noPops);
    const abi = report.failures.filter((f) => f.check === "abi-return").map((f) => f.message);
    expect(abi.some((x) => /^rbx not restored by bpf_prog_[0-9a-f]{16}_main/.test(x))).toBe(true);
  });

  test("ABI at a return: a register changed in its high half only, and an rsp a word too high", () => {
    const leaf = (img: ReturnType<typeof buildImage>) => img.programs[1]!.jit.funcs[0]!;
    const high = run(strategy("baseline"), (m, img) => {
      m.addHook(leaf(img).image.end - 1n, (mm) => { mm.setReg("r12", mm.reg("r12") ^ (1n << 40n)); }); // the leaf's ret
    });
    const r12 = high.report.failures.filter((f) => f.check === "abi-return").map((f) => /^r12 not restored by bpf_prog_[0-9a-f]{16}_main: ([0-9a-f]{16}) before the call, ([0-9a-f]{16}) after it returned to /.exec(f.message));
    expect(r12.length).toBeGreaterThan(0); // (leaf runs more than once)
    for (const x of r12) expect(BigInt(`0x${x![1]}`) ^ BigInt(`0x${x![2]}`)).toBe(1n << 40n);
    // the return address moved a word up, so the ret leaves rsp 8 bytes above where the call's return should
    const up = run(strategy("baseline"), (m, img) => {
      m.addHook(leaf(img).image.end - 1n, (mm) => {
        const rsp = mm.reg("rsp");
        mm.load(rsp + 8n, mm.memory.peek(Number(BigInt.asIntN(64, rsp)), 8)!);
        mm.setReg("rsp", rsp + 8n);
      });
    });
    expect(up.report.failures.filter((f) => f.check === "abi-return" && f.message.startsWith("rsp ")).map((f) => f.message)).toEqual([expect.stringMatching(/^rsp ([0-9a-f]{16}) after returning to .*; the call left it at [0-9a-f]{16}$/)]);
  });

  test("an IRQ while rsp is on split-stack's private stack is reported", () => {
    const { report } = run(strategy("split-stack"));
    const unknown = report.failures.filter((f) => f.check === "unknown-stack").map((f) => f.message);
    expect(unknown.length).toBeGreaterThan(0);
    expect(unknown[0]).toMatch(/^vector 236 taken at .* while rsp [0-9a-f]{16} was on a stack get_stack_info\(\) does not know \(a private BPF stack\)$/);
  });

  test("ABI at iretq: a clobbered pt_regs word shows as a register not restored", () => {
    let was: bigint | undefined;
    const { report } = run(strategy("baseline"), (m, img) => {
      m.addHook(img.kernel.addr("irq_sample"), (mm) => {
        const regs = mm.reg("rdi");
        was ??= mm.peek64(regs + 40n);
        mm.load(regs + 40n, Uint8Array.of(0x99, 0, 0, 0, 0, 0, 0, 0)); // pt_regs->bx
      });
    });
    // both values as they were: the interrupted rbx (what the entry code saved) and the one iretq left
    expect(was).not.toBe(0x99n);
    const text = `rbx not restored at iretq from vector 236: ${was!.toString(16).padStart(16, "0")} when interrupted, 0000000000000099 after`;
    expect(report.failures.filter((f) => f.check === "abi-iret").map((f) => f.message)).toContain(text);
  });

  test("a private-stack guard word that was overwritten is reported at teardown", () => {
    const { report } = run(strategy("r9-private"), (m, img) => {
      m.addHook(img.kernel.addr("bpf_sc_get_stack_sample"), (mm) => { mm.load(img.guards[0]!.addr, new Uint8Array(8)); });
    });
    expect(report.failures.map((f) => f.check)).toContain("guard");
    expect(report.failures.find((f) => f.check === "guard")!.message).toMatch(/^BPF private stack overflow\/underflow detected for prog main: guard at [0-9a-f]{16} is 0{16}$/);
  });
});

describe("r9-no-save is caught by the semantics oracle", () => {
  test("after bpf_sc_get_stack() leaves a kernel pointer in r9, the program's stack reads go to kernel data", () => {
    const { r, report } = run(strategy("r9-no-save"));
    expect(r.kind).toBe("completed"); // no fault: the corruption is silent
    const sem = report.failures.filter((f) => f.check === "semantics");
    expect(sem.length).toBeGreaterThan(0);
    expect(sem[0]!.message).toMatch(/^outer returned [0-9a-f]{16}; the reference interpreter gives 0000000000000436$/);
  });
});

describe("high-water marks of private stacks", () => {
  test("limited-recursion: each level's slot is measured from its own top, so a realistic budget holds", () => {
    // outer re-enters itself through the kfunc until the fifth level is refused: level k runs in slot k-1
    const reentrant = loadScenario(fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url)));
    const spec = { ...reentrant.spec, nested: [reentrant.spec.task] };
    const img = buildImage(spec, strategy("limited-recursion"));
    const m = loadImage(img);
    const w = watchRun(img, m);
    startTask(img, m);
    expect(m.run().kind).toBe("completed");
    const report = w.report();
    const slots = report.highWater.filter((h) => h.stack.startsWith("private outer/main"));
    expect(slots.map((h) => h.stack).sort()).toEqual([0, 1, 2, 3].map((k) => `private outer/main slot ${k}`));
    for (const h of slots) expect(h.bytes).toBeGreaterThan(0); // the calls each level makes from its slot
    for (const h of slots) expect(h.bytes).toBeLessThan(1024);
    expect(overBudget(report.highWater, { private: 1024 })).toEqual([]);
  });

  test("rbp-private: measured from the frame pointer, not from the end of the allocation's unused headroom", () => {
    const { report } = run(strategy("rbp-private"));
    const outer = report.highWater.find((h) => h.stack === "private outer/main")!;
    expect(outer.bytes).toBe(128); // exactly the frame: rsp never goes there, the program writes fp-128..fp
  });
});

describe("overBudget", () => {
  const hw = [{ stack: "TASK", bytes: 600 }, { stack: "IRQ", bytes: 80 }, { stack: "private outer/main", bytes: 208 }, { stack: "private outer/main slot 1", bytes: 300 }];
  test("fails exactly the stacks above their budget; 'private' covers every private stack and slot", () => {
    expect(overBudget(hw, { task: 600, irq: 79, private: 250 }).map((f) => f.message)).toEqual([
      "IRQ stack used 80 bytes, over its budget of 79 (--stack-budget irq=79)",
      "private outer/main slot 1 stack used 300 bytes, over its budget of 250 (--stack-budget private=250)",
    ]);
    expect(overBudget(hw, {})).toEqual([]);
  });
});

describe("run oracles are a list of checks", () => {
  test("a check added to the list watches the run, keeps and restores its state, and reports", () => {
    const img = buildImage(scenario.spec, strategy("baseline"));
    const m = loadImage(img);
    // a check of its own: fails at every interrupt, counts the writes it watches on the task stack
    let writes = 0;
    const interrupts: Oracle = ({ fail, img: i }) => ({
      onInterrupt: (a) => fail({ check: "abi-iret", message: `vector ${a.vector}` }),
      writes: [{ begin: i.layout.taskStack, end: i.layout.taskStack + 0x4000n }],
      onWrite: () => { writes++; },
      save: () => { const n = writes; return () => { writes = n; }; },
      report: () => ({ invocations: 100 }),
    });
    const w = watchRun(img, m, "none", {}, [...RUN_ORACLES, interrupts]);
    startTask(img, m);
    m.runUntil(40);
    const back = w.save();
    const seen = writes;
    m.raise(236);
    m.run();
    const after = w.report();
    expect(after.failures.map((f) => f.message)).toContain("vector 236");
    expect(after.invocations).toBeGreaterThan(100); // its figure adds to the semantics check's
    expect(writes).toBeGreaterThan(seen);
    back();
    expect(writes).toBe(seen);
    expect(w.report().failures.map((f) => f.message)).not.toContain("vector 236");
  });
});
