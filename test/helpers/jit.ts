// JIT fixtures: a layout for JITed programs and a machine to run them on, with stub helpers.
import { Machine } from "../../harness/machine/index.ts";
import { testProgsLines } from "../../jit/disasm.ts";
import type { Item } from "../../jit/bpf/insn.ts";
import { program, type FuncSource, type ProgType } from "../../jit/bpf/program.ts";
import { validate } from "../../jit/bpf/validate.ts";
import { jitProgram, type JitProgram } from "../../jit/jit.ts";
import type { Strategy } from "../../jit/strategy.ts";
import { bytes } from "./layout.ts";

export const BPF_BASE = 0xffffffffa0000000n;
export const KTEXT = 0xffffffff81000000n;
export const PERCPU = 0xffff88807fc00000n;
export const THIS_CPU_OFF = 0x10;          // gs:-relative address of this_cpu_off
export const PERCPU_PTR_BASE = 0x0000600000000000n; // __percpu pointers handed out from here
/** prog->active lives at the first __percpu pointer; private memory follows it. */
export const ACTIVE_PTR = PERCPU_PTR_BASE;
export const STACK_TOP = 0xffffc90000008000n;

/** Stub kernel helpers: each a few instructions at a fixed address. */
const STUBS: [string, string][] = [
  ["bpf_sc_mix", "48 8d 04 37 48 01 d0 48 31 c8 4c 01 c0 c3"], // lea rax,[rdi+rsi]; add rax,rdx; xor rax,rcx; add rax,r8; ret
  ["bpf_sc_rw", "48 8b 07 48 01 37 c3"],                      // mov rax,[rdi]; add [rdi],rsi; ret
  ["bpf_sc_get_stack", "41 b9 ef be ad de 31 c0 c3"],         // mov r9d,0xdeadbeef (clobbers r9); xor eax,eax; ret
  ["scx_sc_run_nested", "31 c0 c3"],
];
const stubAddr = (i: number) => KTEXT + BigInt(0x100 * i);
export const kernelSymbols = (name: string) => {
  const i = STUBS.findIndex(([n]) => n === name);
  return i < 0 ? undefined : stubAddr(i);
};

export const fn = (name: string, stackDepth: number, body: Item[]): FuncSource => ({ name, stackDepth, body });

export function jit(funcs: FuncSource[], strategy: Strategy, type: ProgType = "kprobe", opts?: { ibt: boolean; sls: boolean }): JitProgram {
  const p = program({ name: "t", type, funcs });
  return jitProgram(p, validate(p), strategy, { base: BPF_BASE, percpuBase: PERCPU_PTR_BASE + 0x40n, thisCpuOff: THIS_CPU_OFF, activePtr: ACTIVE_PTR, kernelSymbols }, opts);
}

/** One function's lines as test_progs prints them, without the offset and bytes columns: what a __jited() line matches. */
export function listing(j: JitProgram, fi = 0): string[] {
  return testProgsLines(j.funcs[fi]!.image.bytes).map((l) => l.text);
}

/** The same lines as `mnemonic operands`, labels dropped: easier to read in expectations that are not __jited() lines. */
export function plainListing(j: JitProgram, fi = 0): string[] {
  return listing(j, fi).map((l) => l.replace(/^(L\d+:)?\t/, "").replace("\t", " "));
}

/**
 * The __jited() matching rule of the selftests (kernel-model.md §7): each expected line matches
 * a disassembled line in order ({{...}} is a regex), "..." allows any lines in between, and
 * consecutive expected lines must match adjacent lines.
 */
export function matchesJited(lines: readonly string[], expected: readonly string[]): boolean {
  const toRe = (e: string) => new RegExp(`^${e.split(/(\{\{.*?\}\})/).map((p) => (p.startsWith("{{") ? p.slice(2, -2) : p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("")}$`);
  const groups: RegExp[][] = [[]];
  for (const e of expected) {
    if (e === "...") groups.push([]);
    else groups.at(-1)!.push(toRe(e));
  }
  let at = 0;
  for (const g of groups) {
    if (g.length === 0) continue;
    let found = -1;
    for (let s = at; s + g.length <= lines.length; s++) {
      if (g.every((re, k) => re.test(lines[s + k]!))) { found = s; break; }
    }
    if (found < 0) return false;
    at = found + g.length;
  }
  return true;
}

/** A machine with the program loaded, stub helpers, a task stack and a per-CPU area. */
export function machineFor(j: JitProgram): Machine {
  const m = new Machine({
    regions: [
      { name: "kernel text", kind: "text", start: KTEXT, size: 0x1000, perms: "r-x" },
      { name: "bpf images", kind: "text", start: BPF_BASE, size: 0x4000, perms: "r-x" },
      { name: "task stack", kind: "stack", start: STACK_TOP - 0x4000n, size: 0x4000, perms: "rw-" },
      { name: "per-CPU", kind: "percpu", start: PERCPU, size: 0x20000, perms: "rw-" },
    ],
    symbols: [
      ...STUBS.map(([name], i) => ({ name, start: stubAddr(i), end: stubAddr(i) + 0x100n, kind: "kernel" as const })),
      ...j.funcs.map((f) => ({ name: f.symbol, start: f.image.base, end: f.image.end, kind: "bpf" as const })),
    ],
  });
  STUBS.forEach(([, code], i) => m.load(stubAddr(i), bytes(code)));
  for (const f of j.funcs) m.load(f.image.base, f.image.bytes);
  // this_cpu_off: CPU 0's per-CPU area minus the __percpu pointer base, so that
  // ptr + this_cpu_off lands in the per-CPU region (private stacks live at PERCPU + 0x1000).
  const off = BigInt.asUintN(64, PERCPU + 0x1000n - PERCPU_PTR_BASE);
  const le = new Uint8Array(8);
  new DataView(le.buffer).setBigUint64(0, off, true);
  m.load(PERCPU + BigInt(THIS_CPU_OFF), le);
  m.load(PERCPU + 0x1000n, Uint8Array.of(1)); // prog->active = 1: this is the outermost activation
  m.gsBase = PERCPU;
  return m;
}
