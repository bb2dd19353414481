// The two JIT backends behind one interface (design.md §10): the TypeScript JIT (jit.ts), which
// lowers every design, and the kernel's own arch/x86/net/bpf_jit_comp.c from a tree
// (tree/backend.ts), which lowers the designs that tree implements. Both give a JitProgram:
// bytes at the addresses asked for, addrs[], the frame window and ksym values, the private
// stacks; the image and everything downstream are the same for both.
import type { Program } from "./bpf/program.ts";
import type { Validated } from "./bpf/validate.ts";
import { jitProgram, type JitLayout, type JitProgram } from "./jit.ts";
import { DEFAULT_JIT_OPTIONS, type JitOptions, type Strategy } from "./strategy.ts";

export interface JitBackend {
  /** `ts`, or `kernel`. */
  readonly name: "ts" | "kernel";
  /** For reports: which JIT, and for the kernel's the tree (path, version, hash of bpf_jit_comp.c). */
  readonly describe: string;
  /** The options this backend builds with, if it decides them itself (a tree's Kconfig). */
  readonly options?: JitOptions;
  /** Refuse, with a StrategyError, a strategy this backend cannot lower (before a campaign starts). */
  admit(strategy: Strategy): void;
  /** JIT one program under a strategy at the layout's addresses. */
  jitProgram(p: Program, v: Validated, strategy: Strategy, layout: JitLayout, opts: JitOptions): JitProgram;
}

/** The TypeScript JIT: every design, built-in or a user's module. */
export const TS_JIT: JitBackend = { name: "ts", describe: "ts (the TypeScript JIT)", admit: () => {}, jitProgram };

/** The TypeScript JIT for a CPU with BMI2 (shlx/shrx/sarx for shifts by a register). */
export const TS_JIT_BMI2: JitBackend = { ...TS_JIT, describe: "ts (the TypeScript JIT), CPU with BMI2", options: { ...DEFAULT_JIT_OPTIONS, bmi2: true } };
