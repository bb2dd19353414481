// Every built-in strategy JITs and runs the same program; what distinguishes them is read from
// machine state (where rsp and rbp are when a helper runs), never from a strategy's name.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { alu64, call, exit, ldx, stx, st } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R2, R6, R7, R10 } from "../../../jit/bpf/opcodes.ts";
import { BUILTIN_STRATEGIES, loadStrategy, StrategyError } from "../../../jit/strategies/index.ts";
import { buildImage } from "../../../jit/image.ts";
import { program } from "../../../jit/bpf/program.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { fn, jit, kernelSymbols, plainListing, machineFor, PERCPU, STACK_TOP } from "../../helpers/jit.ts";

const funcs = [
  fn("main", 64, [
    st(BPF_DW, R10, -64, 0), alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8),
    alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), alu64.mov.imm(R2, 5), call.helper(2),
    alu64.mov.reg(R7, R0), call.helper(3),
    alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("read"),
    alu64.add.reg(R0, R7), ldx(BPF_DW, R1, R10, -8), alu64.add.reg(R0, R1), exit(),
  ]),
  fn("read", 0, [ldx(BPF_DW, R0, R1, 0), alu64.mov.reg(R2, R0), alu64.add.reg(R0, R2), alu64.add.reg(R0, R2), exit()]),
];

type Where = "task" | "per-CPU";
function run(s: Strategy) {
  const j = jit(funcs, s);
  const m = machineFor(j);
  const at: { rsp: Where; rbp: Where }[] = [];
  const where = (a: bigint): Where => (a >= PERCPU && a < PERCPU + 0x20000n ? "per-CPU" : "task");
  m.addHook(kernelSymbols("bpf_sc_get_stack")!, (mm) => { at.push({ rsp: where(mm.reg("rsp")), rbp: where(mm.reg("rbp")) }); });
  m.call(j.funcs[0]!.image.base, { args: [0n], rsp: STACK_TOP });
  const r = m.run({ maxSteps: 10_000 });
  return { r, at: at[0], m, j };
}

describe("every built-in strategy", () => {
  const sound = BUILTIN_STRATEGIES.filter((s) => s.name !== "r9-no-save");
  test.each(sound.map((s) => [s.name, s] as const))("%s JITs, runs, and returns to the task stack", (_, s) => {
    const { r, m } = run(s);
    expect(r.kind).toBe("completed");
    expect(m.reg("rsp"), "rsp is back where the caller left it").toBe(STACK_TOP);
  });

  test("the sound designs compute the reference result (7 + 12 + 36 = 55); r9-no-save does not", () => {
    const results = Object.fromEntries(BUILTIN_STRATEGIES.map((s) => { const { r } = run(s); return [s.name, r.kind === "completed" ? r.rax : r.kind]; }));
    expect(results).toEqual({
      "baseline": 55n, "r9-private": 55n, "split-stack": 55n, "full-private": 55n, "rbp-private": 55n,
      "split-double-frame": 55n, "limited-recursion": 55n, "r9-no-save": results["r9-no-save"],
    });
    // the helper stub clobbers r9 (as a C function may); without the save the store through r9 goes astray
    expect(results["r9-no-save"]).not.toBe(55n);
  });

  test("where a helper called from the main program finds rsp and rbp", () => {
    const seen = Object.fromEntries(BUILTIN_STRATEGIES.map((s) => [s.name, run(s).at]));
    expect(seen).toEqual({
      "baseline": { rsp: "task", rbp: "task" },
      "r9-private": { rsp: "task", rbp: "task" },
      "r9-no-save": { rsp: "task", rbp: "task" },
      "split-stack": { rsp: "per-CPU", rbp: "task" },
      "full-private": { rsp: "per-CPU", rbp: "per-CPU" },
      "split-double-frame": { rsp: "per-CPU", rbp: "per-CPU" },
      "limited-recursion": { rsp: "per-CPU", rbp: "task" },
      "rbp-private": { rsp: "task", rbp: "per-CPU" },
    });
  });

  test("the main prologues after the upstream entry (endbr64, nop5, nop3)", () => {
    const after = (s: Strategy) => plainListing(jit(funcs, s)).slice(3, 13);
    expect(after(BUILTIN_STRATEGIES.find((s) => s.name === "split-stack")!)).toEqual([
      "pushq %rbp", "movq %rsp, %rbp", "endbr64", "subq $0x40, %rsp", "pushq %rbx", "pushq %r13",
      "movabsq $0x6000000020e8, %r11", "addq %gs:0x10, %r11", "movq %r11, %rsp", "movq $0x0, -0x40(%rbp)", // top guard: 0x600000000040 + 8352 + 8
    ]);
    expect(after(BUILTIN_STRATEGIES.find((s) => s.name === "full-private")!).slice(0, 8)).toEqual([
      "movq %rsp, %r10", "movabsq $0x6000000020e8, %r11", "addq %gs:0x10, %r11", "movq %r11, %rsp",
      "pushq %r10", "pushq %rbp", "movq %rsp, %rbp", "endbr64",
    ]);
    expect(after(BUILTIN_STRATEGIES.find((s) => s.name === "rbp-private")!).slice(0, 7)).toEqual([
      "pushq %rbp", "movq %rsp, %rbp", "endbr64", "pushq %rbx", "pushq %r13", "movabsq $0x600000000088, %rbp", "addq %gs:0x10, %rbp",
    ]);
  });
});

describe("private memory requests", () => {
  const withRequest = (r: object): Strategy => ({ ...BUILTIN_STRATEGIES[1]!, name: "custom", privateMemory: () => [{ fi: 0, size: 80, framePtrOffset: 72, guards: [0, 72], ...r }] });
  test.each([
    [{ size: 81 }, "t/main: 'size' 81 must be a positive multiple of 8"],
    [{ guards: [0, 76] }, "t/main: guards[1] 76 is not an 8-byte-aligned word inside the 80-byte allocation"],
    [{ backLink: 80 }, "t/main: 'backLink' 80 is not an 8-byte-aligned word inside the 80-byte allocation"],
    [{ framePtrOffset: 88 }, "t/main: 'framePtrOffset' 88 is outside the 80-byte allocation"],
    [{ fi: 3 }, "t/function 3: 'fi' 3 names no function (0..1)"],
    [{ stacks: [{ begin: 8, end: 48 }, { begin: 40, end: 72 }] }, "t/main: stacks[1] [40, 72) must lie inside the allocation, above the previous stack, and not be empty"],
    // a field of the wrong shape is named, not a TypeError from reading it
    [{ stacks: "abc" }, "t/main: 'stacks' \"abc\" must be an array of { begin, end } offsets (or absent: one stack, the whole allocation)"],
    [{ stacks: [null] }, "t/main: stacks[0] null must be an object { begin, end }"],
    [{ guards: 8 }, "t/main: 'guards' 8 must be an array of word offsets (empty for none)"],
    [{ guards: [{}] }, "t/main: guards[0] {} is not an 8-byte-aligned word inside the 80-byte allocation"],
  ])("a malformed request %j is refused naming the field", (r, message) => {
    expect(() => jit(funcs, withRequest(r))).toThrow(new StrategyError(`strategy 'custom', private memory of ${message}`));
  });
});

describe("private memory an image cannot place", () => {
  const r9 = BUILTIN_STRATEGIES.find((x) => x.name === "r9-private")!;
  const prog = () => program({ name: "a", type: "tracing", funcs });
  const asking = (name: string, requests: object[], origin?: string): Strategy => ({ ...r9, name, privateMemory: () => requests as never, ...(origin ? { origin } : {}) });
  const req = { fi: 0, size: 64, framePtrOffset: 64, guards: [0] };

  test("two requests for one function are refused (the function would only ever get the first)", () => {
    expect(() => buildImage({ programs: [prog()], task: 0 }, asking("dup", [req, { ...req, size: 128, framePtrOffset: 128 }]))).toThrow(
      new StrategyError("strategy 'dup', private memory of a/main: requested twice (requests 0 and 1 of privateMemory()'s answer); a function has at most one private allocation"),
    );
    expect(buildImage({ programs: [prog()], task: 0 }, asking("two", [req, { ...req, fi: 1 }])).programs[0]!.jit.privates.map((x) => x.fi)).toEqual([0, 1]);
  });

  test("more than the per-CPU area: the strategy is named (a module's: a StrategyError), with the largest request", () => {
    const huge = [{ ...req, size: 8 * 2 ** 40, framePtrOffset: 8, guards: [] }];
    const what = /the per-CPU allocations \(\d+ bytes; the largest private memory request, for a\/main, 8796093022208 bytes\) do not fit the per-CPU area \(16777216 bytes\)$/;
    expect(() => buildImage({ programs: [prog()], task: 0 }, asking("huge", huge))).toThrow(/^under strategy 'huge', the per-CPU allocations/);
    expect(() => buildImage({ programs: [prog()], task: 0 }, asking("huge", huge))).toThrow(what);
    let thrown: unknown;
    try { buildImage({ programs: [prog()], task: 0 }, asking("huge", huge, "/somewhere/mine.mjs")); } catch (e) { thrown = e; }
    expect(thrown).toBeInstanceOf(StrategyError);
    expect((thrown as Error).message).toMatch(/^strategy module \/somewhere\/mine\.mjs: the per-CPU allocations/);
    expect((thrown as Error).message).toMatch(what);
  });

  test("code past the BPF text area: the strategy is named, with the largest function", () => {
    const big: Strategy = { ...BUILTIN_STRATEGIES[0]!, name: "big", origin: "/somewhere/big.mjs", prologue: (e, f) => { BUILTIN_STRATEGIES[0]!.prologue(e, f); e.nops(0x100000); } };
    let thrown: unknown;
    try { buildImage({ programs: [prog()], task: 0 }, big); } catch (e) { thrown = e; }
    expect(thrown).toBeInstanceOf(StrategyError);
    expect((thrown as Error).message).toMatch(new RegExp(`^strategy module /somewhere/big\\.mjs: the JITed programs \\(\\d+ bytes in whole pages; the largest function, a/main, ${buildSize()} bytes\\) do not fit the 1048576-byte BPF text area$`));
    const builtIn: Strategy = { ...BUILTIN_STRATEGIES[0]!, name: "big-built-in", prologue: big.prologue };
    expect(() => buildImage({ programs: [prog()], task: 0 }, builtIn)).toThrow(/^under strategy 'big-built-in', the JITed programs \(\d+ bytes in whole pages; the largest function, a\/main, \d+ bytes\) do not fit/);
    function buildSize(): number {
      // the same function without the nops, plus them
      const img = buildImage({ programs: [prog()], task: 0 }, BUILTIN_STRATEGIES[0]!);
      return img.programs[0]!.jit.funcs[0]!.image.bytes.length + 0x100000;
    }
  });
});

describe("a strategy's hooks", () => {
  test("buildImage() asks privateMemory() once per program, and the JIT places what it answered", () => {
    const asked: string[] = [];
    const r9 = BUILTIN_STRATEGIES.find((x) => x.name === "r9-private")!;
    // a hook that answers differently each time it is asked (8 bytes more each call), and "none"
    // for program b: a second call, for either, would show
    const counting: Strategy = {
      ...r9, name: "counting",
      privateMemory: (p, v) => {
        asked.push(p.name);
        return p.name === "b" ? [] : r9.privateMemory(p, v).map((r) => ({ ...r, size: r.size + 8 * asked.length }));
      },
    };
    const progs = ["a", "b", "c"].map((name) => program({ name, type: "tracing", funcs }));
    const img = buildImage({ programs: progs, task: 0, nested: [1, 2] }, counting);
    expect(asked).toEqual(["a", "b", "c"]);
    // what the JIT placed is the answer the image's counter was decided on: the first call's
    const firstAnswer = (i: number) => r9.privateMemory(img.programs[i]!.xlated, img.programs[i]!.validated).map((r) => r.size + 8 * (i + 1));
    expect(img.programs.map((p) => p.jit.privates.map((x) => x.size))).toEqual([firstAnswer(0), [], firstAnswer(2)]);
    expect(img.programs[0]!.jit.privates.length).toBeGreaterThan(0);
  });
});

describe("loading strategies", () => {
  test("by name", async () => {
    expect((await loadStrategy("r9-private")).name).toBe("r9-private");
  });

  test("an unknown name lists the built-in ones", async () => {
    await expect(loadStrategy("r10-private")).rejects.toThrow("unknown strategy 'r10-private'; built in: baseline, r9-private, split-stack, full-private, rbp-private, split-double-frame, limited-recursion, r9-no-save");
  });

  test("a user's module from a file, and the errors that name what is wrong in it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-strategy-"));
    const baselinePath = fileURLToPath(new URL("../../../jit/strategies/baseline.ts", import.meta.url));
    const good = join(dir, "mine.ts");
    writeFileSync(good, `import { baseline } from ${JSON.stringify(baselinePath)};\nexport default { ...baseline, name: "my-design", summary: "baseline with another name" };\n`);
    const s = await loadStrategy(good);
    expect(s.name).toBe("my-design");
    const { r } = run(s);
    expect(r).toMatchObject({ kind: "completed", rax: 55n });

    const bad = join(dir, "bad.ts");
    writeFileSync(bad, `export const strategy = { name: "bad", summary: "x", privateMemory() { return []; }, frameRegister() { return "rbp"; }, prologue() {}, epilogue() {}, recursionLimit: 1 };\n`);
    await expect(loadStrategy(bad)).rejects.toThrow(new StrategyError(`strategy module ${bad}: 'call' must be a function`));
    await expect(loadStrategy(join(dir, "missing.ts"))).rejects.toThrow("does not exist");
  });

  // prog->active is an int: a limit past INT_MAX was wrapped to 0 by the image's 64-bit table
  // word (2 ** 64), so every counted run was refused and a run passed that never ran
  test.each([2 ** 64, 1e300, 2 ** 53 + 2, 2 ** 31, 0, 1.5])("a module's recursionLimit %s is refused, naming the module and the bound", async (limit) => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-strategy-"));
    const baselinePath = fileURLToPath(new URL("../../../jit/strategies/baseline.ts", import.meta.url));
    const file = join(dir, "limit.ts");
    writeFileSync(file, `import { baseline } from ${JSON.stringify(baselinePath)};\nexport default { ...baseline, name: "limit", summary: "x", recursionLimit: ${limit} };\n`);
    await expect(loadStrategy(file)).rejects.toThrow(new StrategyError(`strategy module ${file}: 'recursionLimit' ${limit} must be an integer in 1..2147483647 (1 is the kernel's exactly-1 rule; the limit is compared with prog->active, an int)`));
  });

  test("a Strategy object's recursionLimit past INT_MAX is refused by buildImage() too; INT_MAX itself is kept", () => {
    const prog = program({ name: "a", type: "tracing", funcs });
    const base = BUILTIN_STRATEGIES[0]!;
    expect(() => buildImage({ programs: [prog], task: 0 }, { ...base, name: "huge", recursionLimit: 2 ** 64 })).toThrow(
      new StrategyError("strategy 'huge': 'recursionLimit' 18446744073709552000 must be an integer in 1..2147483647 (1 is the kernel's exactly-1 rule; the limit is compared with prog->active, an int)"),
    );
    expect(buildImage({ programs: [prog], task: 0 }, { ...base, name: "max", recursionLimit: 2 ** 31 - 1 }).strategy.recursionLimit).toBe(2 ** 31 - 1);
  });
});
