// The synthetic kernel with JITed programs: the task's last frame, nested runs through the
// kfunc, recursion refusal and misses, the IRQ stack switch with its back-link, NMIs on their
// IST stack, and private-stack guard words.
import { describe, expect, test } from "vitest";
import type { Machine } from "../../harness/machine/index.ts";
import { alu64, call, exit, ldx, stx, st } from "../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R2, R6, R7, R10 } from "../../jit/bpf/opcodes.ts";
import { program, type FuncSource, type ProgType } from "../../jit/bpf/program.ts";
import { buildImage, type ImageSpec } from "../../jit/image.ts";
import { IRQ_STACK, IRQ_STACK_SIZE, NMI_STACK, PERCPU, PCPU_HARDIRQ_STACK_INUSE, RUN_REFUSED, TASK_PT_REGS } from "../../jit/kernel/layout.ts";
import { BUILTIN_STRATEGIES } from "../../jit/strategies/index.ts";
import { PRIV_STACK_GUARD_VAL } from "../../jit/percpu.ts";
import type { Strategy } from "../../jit/strategy.ts";
import { loadImage, startTask } from "../../harness/load.ts";

const strategy = (name: string): Strategy => BUILTIN_STRATEGIES.find((s) => s.name === name)!;
const fn = (name: string, stackDepth: number, body: FuncSource["body"]): FuncSource => ({ name, stackDepth, body });
const prog = (name: string, funcs: FuncSource[], type: ProgType = "kprobe") => program({ name, type, funcs });

/** main: 7 on the stack, bpf_sc_rw(&slot, 5) → 7 and slot = 26, bpf_sc_get_stack(), then read back: 7 + 26 = 33. */
const sampler = prog("sampler", [fn("main", 64, [
  st(BPF_DW, R10, -64, 0), alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8),
  alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 5), call.helper(2),
  alu64.mov.reg(R7, R0), call.helper(3),
  ldx(BPF_DW, R0, R10, -8), alu64.add.reg(R0, R7), exit(),
])]);
/** outer: r0 = nested run 0 + 100. */
const outer = (nested = 0) => prog("outer", [fn("main", 16, [alu64.mov.imm(R1, nested), call.kfunc(1000), alu64.add.imm(R0, 100), exit()])]);
/** raw_tp: its own prog->active (kprobe programs share trace_call_bpf()'s bpf_prog_active and would be refused). */
const leaf42 = prog("leaf42", [fn("main", 0, [alu64.mov.imm(R0, 42), exit()])], "raw_tp");

function run(spec: ImageSpec, s: Strategy, setup?: (m: Machine, img: ReturnType<typeof buildImage>) => void) {
  const img = buildImage(spec, s);
  const m = loadImage(img);
  setup?.(m, img);
  startTask(img, m);
  return { r: m.run({ maxSteps: 100_000 }), m, img };
}

describe("the task", () => {
  test.each(["baseline", "r9-private"])("under %s the task's program runs, and the FP chain from the sample point ends at task_pt_regs - 16", (name) => {
    let chain: bigint[] = [];
    let truth: string[] = [];
    const { r } = run({ programs: [sampler], task: 0 }, strategy(name), (m, img) => {
      m.addHook(img.kernel.addr("bpf_sc_get_stack_sample"), (mm) => {
        truth = mm.truth().map((t) => (t.kind === "frame" ? t.function : t.name));
        for (let bp = mm.reg("rbp"); bp !== 0n && chain.length < 10; bp = mm.peek64(bp)!) chain.push(bp);
      });
    });
    expect(r).toMatchObject({ kind: "completed", rax: 33n });
    expect(truth).toEqual(["bpf_sc_get_stack", expect.stringMatching(/^bpf_prog_[0-9a-f]{16}_main$/), "bpf_sc_run", "do_syscall_64"]);
    expect(chain.at(-1), "the last frame").toBe(TASK_PT_REGS - 16n);
  });
});

describe("nested runs through the kfunc", () => {
  test("another program runs nested and its result comes back", () => {
    const { r } = run({ programs: [outer(0), leaf42], task: 0, nested: [1] }, strategy("baseline"));
    expect(r).toMatchObject({ kind: "completed", rax: 142n });
  });

  test("a bad nested-run index is -EINVAL", () => {
    const { r } = run({ programs: [outer(5), leaf42], task: 0, nested: [1] }, strategy("baseline"));
    expect(r).toMatchObject({ kind: "completed", rax: BigInt.asUintN(64, -22n + 100n) });
  });

  test("re-entering an active program is refused, counted in misses, and active returns to 0", () => {
    const { r, m, img } = run({ programs: [outer(0)], task: 0, nested: [0] }, strategy("r9-private"));
    expect(r).toMatchObject({ kind: "completed", rax: BigInt.asUintN(64, RUN_REFUSED + 100n) });
    expect(m.peek64(img.thisCpu(img.programs[0]!.misses))).toBe(1n);
    expect(m.peek64(img.thisCpu(img.programs[0]!.active))).toBe(0n);
  });

  test("limited recursion allows up to four levels, each on its own slot", () => {
    // the program re-enters itself through the kfunc until the fifth level is refused: a tracing
    // program, whose path counts on prog->active (the design's limit; bpf_prog_active's is 1)
    const self = prog("self", [fn("main", 16, [alu64.mov.imm(R1, 0), call.kfunc(1000), alu64.add.imm(R0, 1), exit()])], "tracing");
    const rsps: bigint[] = [];
    const { r, m, img } = run({ programs: [self], task: 0, nested: [0] }, strategy("limited-recursion"), (mm, im) => {
      mm.addHook(im.kernel.addr("scx_sc_run_nested"), (x) => { rsps.push(x.reg("rsp")); });
    });
    expect(r).toMatchObject({ kind: "completed", rax: BigInt.asUintN(64, RUN_REFUSED + 4n) });
    expect(m.peek64(img.thisCpu(img.programs[0]!.misses))).toBe(1n);
    expect(new Set(rsps.map((x) => x >> 14n)).size, "four different 16 KiB slots").toBe(4);
  });
});

describe("recursion counters by program type (kernel-model.md §2.3)", () => {
  test("a kprobe program on an IRQ is refused while a kprobe program runs on the task: bpf_prog_active is global", () => {
    const kleaf = prog("kleaf", [fn("main", 0, [alu64.mov.imm(R0, 1), exit()])], "kprobe");
    const { r, m, img } = run({ programs: [sampler, kleaf], task: 0, irq: [{ vector: 0xec, program: 1 }] }, strategy("baseline"), (mm, im) => {
      let raised = false;
      mm.addHook(im.programs[0]!.jit.funcs[0]!.insnAddrs[3]!, (x) => { if (!raised) { raised = true; x.raise(0xec); } });
    });
    expect(r).toMatchObject({ kind: "completed", rax: 33n });
    expect(img.programs[1]!.active).toBe(img.bpfProgActive);
    expect(m.peek64(img.thisCpu(img.programs[1]!.misses))).toBe(1n);
    expect(m.peek64(img.thisCpu(img.bpfProgActive))).toBe(0n);
  });
});

describe("interrupts", () => {
  const spec: ImageSpec = { programs: [sampler, leaf42], task: 0, irq: [{ vector: 0xec, program: 1 }], nmi: 1 };

  test("an IRQ in a BPF program switches to the IRQ stack after storing the back-link, and runs its program", () => {
    let inHandler: { rsp: bigint; backLink: bigint; interruptedRsp: bigint } | undefined;
    let irqProgRan = 0;
    const { r, m } = run(spec, strategy("baseline"), (mm, img) => {
      const main = img.programs[0]!.jit.funcs[0]!;
      let raised = false;
      mm.addHook(main.insnAddrs[5]!, (x) => { if (!raised) { raised = true; x.raise(0xec); } });
      mm.addHook(img.kernel.addr("irq_sample"), (x) => {
        const marker = x.truth().find((t) => t.kind === "interrupt");
        inHandler = { rsp: x.reg("rsp"), backLink: x.peek64(IRQ_STACK + BigInt(IRQ_STACK_SIZE) - 8n)!, interruptedRsp: marker?.kind === "interrupt" ? marker.rsp : 0n };
      });
      mm.addHook(img.programs[1]!.jit.funcs[0]!.image.base, () => { irqProgRan++; });
    });
    expect(r).toMatchObject({ kind: "completed", rax: 33n });
    expect(inHandler!.rsp >= IRQ_STACK && inHandler!.rsp < IRQ_STACK + BigInt(IRQ_STACK_SIZE)).toBe(true);
    // the back-link is the rsp of common_interrupt's frame on the task stack, below the interrupted rsp
    expect(inHandler!.backLink < inHandler!.interruptedRsp).toBe(true);
    expect(inHandler!.backLink > inHandler!.interruptedRsp - 0x200n).toBe(true);
    expect(irqProgRan).toBe(1);
    expect(m.peek64(PERCPU + BigInt(PCPU_HARDIRQ_STACK_INUSE))! & 0xffn).toBe(0n);
  });

  test("an NMI inside the IRQ handler runs on the NMI stack with its own pt_regs", () => {
    let nmiRsp = 0n;
    let names: string[] = [];
    const { r } = run(spec, strategy("baseline"), (mm, img) => {
      let raised = false;
      mm.addHook(img.programs[0]!.jit.funcs[0]!.insnAddrs[3]!, (x) => { if (!raised) { raised = true; x.raise(0xec); } });
      mm.addHook(img.kernel.addr("irq_sample"), (x) => x.raise(2));
      mm.addHook(img.kernel.addr("nmi_sample"), (x) => {
        nmiRsp = x.reg("rsp");
        names = x.truth().map((t) => (t.kind === "frame" ? t.function : t.name));
      });
    });
    expect(r).toMatchObject({ kind: "completed", rax: 33n });
    expect(nmiRsp >= NMI_STACK && nmiRsp < NMI_STACK + 0x1000n).toBe(true);
    expect(names.slice(0, 5)).toEqual(["exc_nmi", "asm_exc_nmi", "NMI", "handle_irq", "common_interrupt"]);
  });
});

describe("private stacks", () => {
  test("r9-private: the guard words are written at load and intact after a run", () => {
    const { r, m, img } = run({ programs: [sampler], task: 0 }, strategy("r9-private"));
    expect(r.kind).toBe("completed");
    expect(img.guards).toHaveLength(2);
    for (const g of img.guards) expect(m.peek64(g.addr)).toBe(PRIV_STACK_GUARD_VAL);
  });

  test("the image records each BPF function's frame window between its prologue and its leave", () => {
    const img = buildImage({ programs: [sampler], task: 0 }, strategy("baseline"));
    const f = img.programs[0]!.jit.funcs[0]!;
    expect(f.frame.ready - f.image.base).toBe(27n); // endbr, nop5, nop3, push, mov, endbr, sub rsp: 4+5+3+1+3+4+7
    expect(f.frame.gone < f.image.end && f.frame.ready < f.frame.gone).toBe(true);
    expect(f.ksym.fpStart).toBe(27);
  });
});
