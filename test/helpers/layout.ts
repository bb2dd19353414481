// A small standard address space for machine tests: kernel text, a data page, a 16 KiB task
// stack and a 4 KiB NMI IST stack with guard pages around each, and a per-CPU page for gs:.
import { Machine, type RegName, type SymbolDef } from "../../harness/machine/index.ts";

export const TEXT = 0xffffffff81000000n;
export const HANDLER = 0xffffffff81002000n; // interrupt handlers live here
export const DATA = 0xffff888000000000n;
export const STACK_LOW = 0xffffc90000004000n;
export const STACK_TOP = 0xffffc90000008000n;
export const IST_LOW = 0xffffc90000010000n;
export const IST_TOP = 0xffffc90000011000n;
export const PERCPU = 0xffff88807fc00000n;
export const STOP = 0xfffffffffffff000n;

export const DEFAULT_SYMBOLS: SymbolDef[] = [
  { name: "test_code", start: TEXT, end: TEXT + 0x1000n, kind: "kernel" },
  { name: "callee", start: TEXT + 0x1000n, end: TEXT + 0x2000n, kind: "kernel" },
  { name: "irq_handler", start: HANDLER, end: HANDLER + 0x1000n, kind: "entry" },
  { name: "nmi_handler", start: HANDLER + 0x1000n, end: HANDLER + 0x2000n, kind: "entry" },
];

export function newMachine(symbols: SymbolDef[] = DEFAULT_SYMBOLS): Machine {
  return new Machine({
    regions: [
      { name: "kernel text", kind: "text", start: TEXT, size: 0x4000, perms: "r-x" },
      { name: "data", kind: "data", start: DATA, size: 0x2000, perms: "rw-" },
      { name: "task stack guard low", kind: "guard", start: STACK_LOW - 0x1000n, size: 0x1000, perms: "---" },
      { name: "task stack", kind: "stack", start: STACK_LOW, size: 0x4000, perms: "rw-" },
      { name: "task stack guard high", kind: "guard", start: STACK_TOP, size: 0x1000, perms: "---" },
      { name: "NMI stack guard", kind: "guard", start: IST_LOW - 0x1000n, size: 0x1000, perms: "---" },
      { name: "NMI stack", kind: "stack", start: IST_LOW, size: 0x1000, perms: "rw-" },
      { name: "per-CPU", kind: "percpu", start: PERCPU, size: 0x1000, perms: "rw-" },
    ],
    symbols,
  });
}

/** Parse "48 89 e5" style hex. */
export function bytes(hex: string): Uint8Array {
  const t = hex.replace(/\s+/g, "");
  return Uint8Array.from(t.match(/../g) ?? [], (b) => parseInt(b, 16));
}

export type Regs = Partial<Record<RegName, bigint>>;

/**
 * Run `code` (hex) as a function called with rsp at the stack top: a `ret` (c3) is appended, so
 * the run completes when the code falls off its end.
 */
export function runSnippet(code: string, regs: Regs = {}, setup?: (m: Machine) => void) {
  const m = newMachine();
  m.load(TEXT, bytes(`${code} c3`));
  for (const [k, v] of Object.entries(regs)) m.setReg(k as RegName, v);
  m.gsBase = PERCPU;
  setup?.(m);
  m.call(TEXT, { rsp: regs.rsp ?? STACK_TOP, stopAt: STOP });
  const result = m.run({ maxSteps: 10_000 });
  return { m, result };
}
