// The image's layout is a parameter: the kernel layout by default (the canonical addresses every
// golden listing and report uses), or the same image at low user-space addresses, which is how
// the differential tests run JIT output natively (test/native/). Same code, same results.
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { loadScenario } from "../../../harness/scenario.ts";
import { buildImage } from "../../../jit/image.ts";
import { KERNEL_LAYOUT, KDATA, KTEXT, PERCPU, TASK_PT_REGS, USER_LAYOUT_SPAN, userLayout } from "../../../jit/kernel/layout.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { loadImage, startTask } from "../../../harness/load.ts";

const example = loadScenario(fileURLToPath(new URL("../../scenarios/nested.json", import.meta.url)));
const USER_BASE = 0x10000000n;

describe("layouts", () => {
  test("an image is at the kernel layout unless told otherwise", () => {
    const img = buildImage(example.spec, BUILTIN_STRATEGIES[0]!);
    expect(img.layout).toBe(KERNEL_LAYOUT);
    expect(img.taskPtRegs).toBe(TASK_PT_REGS);
    expect(img.kernel.addr("entry_SYSCALL_64")).toBe(KTEXT);
  });

  test("a user layout places every region, symbol and load in [base, base + span), below 2 GiB", () => {
    const l = userLayout(USER_BASE);
    for (const s of BUILTIN_STRATEGIES) {
      const img = buildImage(example.spec, s, undefined, l);
      const inside = (a: bigint) => a >= USER_BASE - 0x1000n && a < USER_BASE + BigInt(USER_LAYOUT_SPAN);
      for (const r of img.regions) expect(inside(r.start), `${s.name}: region ${r.name}`).toBe(true);
      for (const x of img.symbols) expect(inside(x.start), `${s.name}: symbol ${x.name}`).toBe(true);
      for (const x of img.loads) expect(inside(x.addr), `${s.name}: load at ${x.addr.toString(16)}`).toBe(true);
      const m = loadImage(img);
      expect(m.gsBase).toBe(l.percpu);
      m.dispose();
    }
  });

  test.each(BUILTIN_STRATEGIES.map((s) => s.name))("under %s the scenario computes the same at both layouts", (name) => {
    const s = BUILTIN_STRATEGIES.find((x) => x.name === name)!;
    const results = [KERNEL_LAYOUT, userLayout(USER_BASE)].map((l) => {
      const img = buildImage(example.spec, s, undefined, l);
      const m = loadImage(img);
      startTask(img, m);
      const r = m.run({ maxSteps: 100_000 });
      return { kind: r.kind, rax: r.kind === "completed" ? r.rax : undefined, steps: m.steps };
    });
    expect(results[1]).toEqual(results[0]);
  });

  test("kernel data must stay reachable as a sign-extended imm32, and a user layout must fit below 2 GiB", () => {
    expect(() => userLayout(0x7ff00000n)).toThrow(/below 2 GiB/);
    expect(() => userLayout(0x10000800n)).toThrow(/page aligned/);
    const far = { ...KERNEL_LAYOUT, kdata: 0x0000100000000000n };
    expect(() => buildImage(example.spec, BUILTIN_STRATEGIES[0]!, undefined, far)).toThrow(/sign-extended imm32/);
    expect(KERNEL_LAYOUT).toMatchObject({ kdata: KDATA, percpu: PERCPU });
  });
});
