// Two places where the harness's view of the kernel's interrupt code was not 7.2's (found by a
// review against entry_64.S and objtool): the ORC data of the IRQ exit's register pops, and the
// blind spot of entry code whose rbp CLEAR_REGS has zeroed. NMIs at chosen instruction
// boundaries of test/scenarios/nested.json, an IRQ raised first; the raised instruction is
// checked, so that a change in the synthetic kernel's code shows as such here.
import { describe, expect, test } from "vitest";
import { loadScenario } from "../../../harness/scenario.ts";
import { runScenario, type Injection, type RunOutcome } from "../../../harness/run.ts";
import type { UnwinderName } from "../../../unwinder/index.ts";
import { strategy } from "../../helpers/strategies.ts";

const sc = loadScenario(new URL("../../scenarios/nested.json", import.meta.url).pathname);
const run = (s: string, unwinder: UnwinderName, irqAt: number, nmiAt: number): RunOutcome => {
  const injections: Injection[] = [{ kind: "irq", atStep: irqAt, vector: sc.spec.irq![0]!.vector }, { kind: "nmi", atStep: nmiAt, vector: 2 }];
  return runScenario(sc, strategy(s), { unwinder, policy: "strict", injections });
};
const nmiSample = (o: RunOutcome) => o.samples.find((x) => x.kind === "NMI (perf, from regs)")!;

describe("the IRQ exit's pops keep pt_regs REGS in ORC (objtool's update_cfi_state_regs())", () => {
  test("an NMI at every boundary of the exit, the IRQ taken in kernel code: every ORC walk exact, no warning", () => {
    // the IRQ at step 14 (bpf_sc_run+0x1d); its exit pops pt_regs from step 121 (asm_common_interrupt+0x46)
    for (const u of ["orc-6.13", "orc-6.19"] as const) {
      const seen: string[] = [];
      for (let step = 121; step <= 130; step++) {
        const s = nmiSample(run("baseline", u, 14, step));
        seen.push(s.where.replace(/\+0x[0-9a-f]+$/, ""));
        // (as REGS_PARTIAL there, ORC read rbp from the interrupted regs: "WARNING: stack going
        // in the wrong direction? at bpf_sc_run+0x1d", FLAGGED, at +0x48 and +0x4e)
        expect([s.where, s.class, s.warnings], `${u} step ${step}`).toEqual([s.where, "EXACT", []]);
      }
      expect(new Set(seen), u).toEqual(new Set(["asm_common_interrupt"]));
    }
  });
});

describe("entry code's cleared-rbp blind spot is rbp == 0 only", () => {
  test("an NMI in the IRQ's entry stub: the baseline's walk is a WINDOW; rbp-private's rbp on its private stack is its own loss (TRUNCATED)", () => {
    // the IRQ at step 34 (outer/main's insn 2), the NMI in the stub and asm_common_interrupt's first instruction
    for (const step of [36, 38]) {
      const base = nmiSample(run("baseline", "frame", 34, step));
      expect(base.where, `step ${step}`).toMatch(/^(irq_entry_236|asm_common_interrupt)/);
      expect(base).toMatchObject({ class: "WINDOW", failed: false });
      // (it was excused as the kernel's blind spot: WINDOW, not failed, under either policy)
      const rbp = nmiSample(run("rbp-private", "frame", 34, step));
      expect(rbp).toMatchObject({ where: base.where, class: "TRUNCATED", failed: true });
      expect(rbp.stopped).toMatch(/^the first frame pointer \(\w+\) is on no stack get_stack_info\(\) knows \(it is in the private outer\/main stack\)/);
    }
  });
});
