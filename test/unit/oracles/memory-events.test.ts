// The memory oracle's rules for live bytes, and where the stacks oracle puts rsp, driven by
// hand-made events on a loaded image: the oracles are given internal addresses (addr.ts: kernel
// addresses are negative numbers), and a word read from memory may be no kernel address at all.
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { ACT_CALL, ACT_INTERRUPT } from "../../../harness/machine/shadow.ts";
import { toCanonical, toInternal, type Activation } from "../../../harness/machine/index.ts";
import { loadImage } from "../../../harness/load.ts";
import { memory } from "../../../harness/oracles/memory.ts";
import { stacks } from "../../../harness/oracles/stacks.ts";
import type { RunFailure } from "../../../harness/oracles/types.ts";
import { loadScenario } from "../../../harness/scenario.ts";
import { envFromImage } from "../../../harness/unwind-env.ts";
import { buildImage } from "../../../jit/image.ts";
import { TASK } from "../../../jit/kernel/layout.ts";
import { privateStacks } from "../../../jit/private-stacks.ts";
import { strategy } from "../../helpers/strategies.ts";

const I = (a: bigint) => toInternal(a)!;
const u64 = (v: bigint) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true); return b; };

/** Under r9-private: tick-preempts-bpf has two tasks; nested's outer/main, a 128-byte private stack. */
function setup(file = "tick-preempts-bpf.json") {
  const sc = loadScenario(fileURLToPath(new URL(`../../scenarios/${file}`, import.meta.url)));
  const img = buildImage(sc.spec, strategy("r9-private"));
  const m = loadImage(img);
  const failures: RunFailure[] = [];
  const o = memory({ img, m, env: envFromImage(img, m, "none"), fail: (f) => failures.push(f), sym: (a) => m.symbols.describe(a), budgets: {} });
  const main = img.programs.flatMap((p) => p.jit.funcs)[0]!;
  const kernelIp = I(img.kernel.addr("bpf_sc_run"));
  return { img, m, o, failures, main: { base: I(main.image.base) }, kernelIp };
}

const act = (over: Partial<Activation>): Activation => ({ kind: ACT_CALL, entry: 0, ret: 0, slot: 0, rsp: NaN, rspRaw: 0n, vector: -1, site: -1, ...over });

describe("memory oracle, by events", () => {
  test("with rsp on a private stack, a nested context may write above it, but not into what the contexts outside wrote", () => {
    const { img, o, failures, main, kernelIp } = setup("nested.json");
    const p = privateStacks(img)[0]!;
    expect(p.top - p.begin).toBeGreaterThanOrEqual(128n);
    const top = I(p.top), task = I(img.tasks[0]!.stack.end);
    // the program runs (called from the runner, rsp on the task stack) and writes 8 bytes at top - 48
    o.onCall!(act({ entry: main.base, site: kernelIp, slot: task - 0x100, rsp: task - 0xf8, rspRaw: toCanonical(task - 0xf8) }));
    o.onWrite!(top - 48, 8, main.base + 4);
    // an interrupt taken with rsp on that private stack, 128 bytes below its top (a design that moved rsp there)
    o.onInterrupt!(act({ kind: ACT_INTERRUPT, entry: kernelIp, ret: main.base + 4, slot: top - 168, rsp: top - 128, rspRaw: toCanonical(top - 128), vector: 236 }));
    o.onWrite!(top - 32, 8, kernelIp); // above rsp, above all the outside wrote: another slot's, free
    expect(failures).toEqual([]);
    o.onWrite!(top - 100, 8, kernelIp); // above rsp, below what the program wrote: its live data
    expect(failures.map((f) => f.message)).toEqual([expect.stringMatching(/^8-byte write at [0-9a-f]{16} by bpf_sc_run .*lands at or above rsp [0-9a-f]{16} that vector 236 \(taken at .*\) left on the private outer\/main stack: live data of the context it interrupted$/)]);
  });

  test("another task's stack from its saved rsp up is live, whatever word its thread.sp holds", () => {
    const { img, m, o, failures, kernelIp } = setup();
    const t1 = img.tasks[1]!;
    o.onSwitch!(0, 1);
    o.onSwitch!(1, 0); // task 1 is switched out (its contexts: the task itself)
    m.setReg("rsp", img.tasks[0]!.stack.end - 0x200n);
    const threadSp = t1.struct + BigInt(TASK.threadSp), end = I(t1.stack.end);
    const live = (sp: bigint, at: number) => {
      m.load(threadSp, u64(sp));
      const n = failures.length;
      o.onWrite!(at, 8, kernelIp);
      return failures.length > n;
    };
    // a kernel address on its stack: below it is free, from it up is live
    expect(live(t1.stack.end - 0x40n, end - 0x80)).toBe(false);
    expect(live(t1.stack.end - 0x40n, end - 0x20)).toBe(true);
    // 0, and a non-canonical word: every kernel address is above them (as the CPU compares)
    expect(live(0n, end - 0x80)).toBe(true);
    expect(live(0x8000000000000000n, end - 0x80)).toBe(true);
    expect(failures.at(-1)!.message).toMatch(/writes into task 1 stack above its saved rsp 8000000000000000: live data of task 1, which is switched out in the middle of it$/);
    // the task being switched in: rsp inside the switch frame at its saved rsp; then its writes
    // are its own (compared as the CPU compares the words: unsigned, canonical or not)
    for (const sp of [t1.stack.end - 0x40n, 0x0000900000000000n]) {
      m.setReg("rsp", sp + 8n);
      expect(live(sp, end - 0x20), sp.toString(16)).toBe(false);
    }
  });
  test("stacks: rsp at a stack's top is on that stack (the last byte pushed), not on what lies above it", () => {
    const { img, m, kernelIp } = setup();
    const o = stacks({ img, m, env: envFromImage(img, m, "none"), fail: () => {}, sym: (a) => m.symbols.describe(a), budgets: {} });
    const top = img.tasks[1]!.stack.end; // a guard page lies above it
    o.onInterrupt!(act({ kind: ACT_INTERRUPT, entry: kernelIp, ret: kernelIp, slot: I(top) - 40, rsp: I(top), rspRaw: top, vector: 236 }));
    expect(o.report().highWater).toContainEqual({ stack: "TASK 1", bytes: 0 });
  });
});
