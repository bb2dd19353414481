// Private-stack guard words intact at teardown, as bpf_jit_free() checks them with
// priv_stack_check_guard() (arch/x86/net/bpf_jit_comp.c, 7.2): the kernel prints
// "BPF private stack overflow/underflow detected for prog %sx" for the first bad guard. (The
// memory oracle reports each access to a guard as it happens.)
import { hex64 as hex } from "../machine/index.ts";
import { PRIV_STACK_GUARD_VAL } from "../../jit/percpu.ts";
import type { Oracle, RunFailure } from "./types.ts";

export const guards: Oracle = ({ img, m }) => ({
  save: () => () => {},
  report() {
    const failures: RunFailure[] = [];
    for (const g of img.guards) {
      const v = m.peek64(g.addr);
      if (v !== PRIV_STACK_GUARD_VAL) failures.push({ check: "guard", message: `BPF private stack overflow/underflow detected for prog ${g.func}: guard at ${hex(g.addr)} is ${hex(v ?? 0n)}` });
    }
    return { failures };
  },
});
