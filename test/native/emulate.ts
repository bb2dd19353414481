// The machine's side of a differential case: run a NativeCase (runner.ts) on the emulator with
// the same memory, registers, flags and GS base, record the end state in the runner's terms,
// and compare the two bit for bit. While it runs, the SDM flag rules (sdm-flags.ts) follow which
// arithmetic flags are undefined, so that only defined flags are compared and a read of an
// undefined flag (a jcc, pushfq) is reported as the case's own defect.
import { Decoder, DecoderOptions, Instruction } from "iced-x86";
import { AF, CF, hex64, Machine, OF, PF, REG_NAMES, SF, toInternal, X86_TRAP_DE, ZF, type RegionKind } from "../../harness/machine/index.ts";
import { ARITH_FLAGS, FlagDefinedness } from "../helpers/sdm-flags.ts";
import { formFlagEffect, formOfCode, type Form } from "./forms.ts";
import type { NativeCase, NativeOutcome } from "./runner.ts";

export type EmulatedOutcome =
  | {
      readonly kind: "stopped" | "signal"; readonly regs: readonly bigint[]; readonly rip: bigint; readonly rflags: number; readonly dumps: readonly Uint8Array[];
      /** For a signal: the one Linux delivers for the machine's result (a fault: SIGSEGV; #DE: SIGFPE). */
      readonly signal?: string;
      readonly message?: string;
    }
  | { readonly kind: "failed"; readonly message: string };

export interface Emulated {
  readonly outcome: EmulatedOutcome;
  /** Arithmetic flags undefined at the end (SDM): left out of the comparison. */
  readonly undefinedFlags: number;
  /** Reads of undefined flags on the way (each: the instruction and the flags). */
  readonly undefinedReads: readonly string[];
  readonly steps: number;
}

/** A machine with the case's regions (text if executable, else data) and loads. */
export function machineFor(c: NativeCase): Machine {
  const kind = (perms: string): RegionKind => (perms[2] === "x" ? "text" : "data");
  const m = new Machine({ regions: c.regions.map((r, i) => ({ name: `region ${i}`, kind: kind(r.perms), start: r.start, size: r.size, perms: r.perms })) });
  for (const l of c.loads) m.load(l.addr, l.bytes);
  return m;
}

interface StepInfo { readonly form: Form | undefined; readonly imm: number; readonly text: string }

/**
 * Run `c` to the stop address, one step at a time, on `m` (by default a machine built from the
 * case, disposed at the end). The case must hold the stop address at [rsp], as the native
 * runner expects the code to find its return address there.
 */
export function emulate(c: NativeCase, m?: Machine, maxSteps = 200_000): Emulated {
  const machine = m ?? machineFor(c);
  const ins = new Instruction();
  try {
    return stepToStop(c, machine, ins, maxSteps);
  } finally {
    ins.free();
    if (m === undefined) machine.dispose();
  }
}

/** Load the case's registers and enter its code as the native runner does. */
function start(c: NativeCase, m: Machine): void {
  const rsp = c.regs[4]!;
  if (m.peek64(rsp) !== c.stop) throw new Error(`emulate: the word at rsp ${hex64(rsp)} must be the stop address ${hex64(c.stop)}`);
  REG_NAMES.forEach((n, i) => m.setReg(n, c.regs[i]!));
  m.gsBase = c.gsBase;
  m.rflags = (c.rflags & ARITH_FLAGS) | 0x202; // as the runner loads them: IF and bit 1 set
  m.call(c.rip, { rsp: rsp + 8n, stopAt: c.stop }); // pushes the stop address where it already is
}

/**
 * The registers and arithmetic flags of the machine when the run of `c` first reaches `addr`;
 * undefined if it never does (it stops, faults or runs out of steps first).
 */
export function stateAt(c: NativeCase, addr: bigint, maxSteps = 200_000): { regs: bigint[]; rflags: number } | undefined {
  const m = machineFor(c);
  try {
    start(c, m);
    while (m.steps < maxSteps) {
      if (m.rip === addr) return { regs: REG_NAMES.map((n) => m.reg(n)), rflags: m.rflags & ARITH_FLAGS };
      if (m.step().kind !== "paused") return undefined;
    }
    return undefined;
  } finally {
    m.dispose();
  }
}

function stepToStop(c: NativeCase, m: Machine, ins: Instruction, maxSteps: number): Emulated {
  start(c, m);
  const flags = new FlagDefinedness();
  const undefinedReads: string[] = [];
  const infos = new Map<bigint, StepInfo>();
  const done = (outcome: EmulatedOutcome): Emulated => ({ outcome, undefinedFlags: flags.undefinedNow, undefinedReads, steps: m.steps });
  for (;;) {
    const ip = m.rip;
    let info = infos.get(ip);
    if (info === undefined && ip !== c.stop) infos.set(ip, (info = decodeAt(m, ip, ins)));
    // The effect is worked out before the step: a shift by cl needs the count it will use.
    const form = info?.form;
    const effect = form === undefined ? undefined
      : formFlagEffect(form, info!.imm, form.operands[1]?.kind === "cl" ? Number(m.reg("rcx") & 0xffn) : undefined);
    const before = m.steps;
    const r = m.step();
    if (effect !== undefined && m.steps > before && (r.kind === "paused" || r.kind === "completed")) {
      const bad = flags.apply(effect);
      if (bad !== 0) undefinedReads.push(`'${info!.text}' at ${hex64(ip)} reads ${flagNames(bad)}, left undefined before it`);
    }
    if (r.kind !== "paused") return done(toOutcome(m, c, r));
    if (m.steps >= maxSteps) return done({ kind: "failed", message: `no stop after ${maxSteps} steps (at ${hex64(m.rip)})` });
  }
}

const FLAG_NAMES: [number, string][] = [[CF, "CF"], [PF, "PF"], [AF, "AF"], [ZF, "ZF"], [SF, "SF"], [OF, "OF"]];
export function flagNames(f: number): string {
  const names = FLAG_NAMES.filter(([b]) => (f & b) !== 0).map(([, n]) => n);
  return names.length === 0 ? "none" : names.join(" ");
}

function decodeAt(m: Machine, ip: bigint, ins: Instruction): StepInfo {
  const bytes = m.memory.peek(toInternal(ip)!, 15) ?? new Uint8Array();
  const dec = new Decoder(64, bytes, DecoderOptions.None);
  try {
    dec.ip = ip;
    dec.decodeOut(ins);
    const form = ins.isInvalid ? undefined : formOfCode(ins.code);
    const imm = form !== undefined && form.operands.some((o) => o.kind === "imm") ? Number(ins.immediate(form.operands.findIndex((o) => o.kind === "imm")) & 0xffn) : 0;
    return { form, imm, text: ins.toString() };
  } finally {
    dec.free();
  }
}

function toOutcome(m: Machine, c: NativeCase, r: ReturnType<Machine["step"]>): EmulatedOutcome {
  const state = () => ({
    regs: REG_NAMES.map((n) => m.reg(n)), rflags: m.rflags,
    dumps: c.dumps.map((d) => m.memory.peek(toInternal(d.addr)!, d.size) ?? new Uint8Array(d.size)),
  });
  switch (r.kind) {
    case "completed": return { kind: "stopped", rip: c.stop, ...state() };
    // A page fault or #GP: Linux sends SIGSEGV (the runner's regions are anonymous memory).
    case "fault": return { kind: "signal", signal: "SIGSEGV", rip: r.rip, message: r.message, ...state() };
    // #DE: Linux sends SIGFPE (FPE_INTDIV) with the divide's address; nothing has changed.
    case "exception":
      if (r.vector === X86_TRAP_DE) return { kind: "signal", signal: "SIGFPE", rip: r.rip, message: r.message, ...state() };
      return { kind: "failed", message: r.message };
    default: return { kind: "failed", message: "message" in r ? r.message : r.kind };
  }
}

const hexBytes = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** Byte ranges where two dumps differ, as `name+0xoff: machine .. | cpu ..` lines (at most `max`). */
function dumpDifferences(name: string, base: bigint, a: Uint8Array, b: Uint8Array, max = 4): string[] {
  const out: string[] = [];
  if (Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)) return out;
  for (let i = 0; i < a.length && out.length < max; i++) {
    if (a[i] === b[i]) continue;
    let j = i;
    while (j < a.length && j - i < 16 && (a[j] !== b[j] || a[j + 1] !== b[j + 1])) j++;
    j = Math.max(j, i + 1);
    out.push(`${name}+0x${i.toString(16)} (${hex64(base + BigInt(i))}): machine ${hexBytes(a.subarray(i, j))} | cpu ${hexBytes(b.subarray(i, j))}`);
    i = j;
  }
  return out;
}

/**
 * Every difference between the machine's end state and the CPU's, one line each (empty when
 * they agree bit for bit): how the run ended, the faulting rip, the 16 registers, the arithmetic
 * flags the SDM defines at the end, and the dumped memory (`names` labels the dumps). A read of
 * an undefined flag on the way is listed too: the case itself is then not well defined.
 */
export function differences(e: Emulated, n: NativeOutcome, c: NativeCase, names: readonly string[]): string[] {
  if (n.kind === "error") throw new Error(`native runner could not run the case: ${n.message}`);
  const out = e.undefinedReads.map((r) => `case defect: ${r}`);
  const m = e.outcome;
  if (m.kind === "failed") return [...out, `machine: ${m.message}`, `cpu: ${n.kind}${n.kind === "signal" ? ` ${n.signal} at ${hex64(n.rip)}` : ""}`];
  if (n.kind === "timeout") return [...out, `machine: ${m.kind}; cpu: no stop within the time limit (at ${hex64(n.rip)})`];
  if (m.kind !== n.kind) {
    out.push(`machine: ${m.kind === "signal" ? `fault at ${hex64(m.rip)}: ${m.message}` : "reached the stop"}; cpu: ${n.kind === "signal" ? `${n.signal} at ${hex64(n.rip)} (address ${hex64(n.address)})` : "reached the stop"}`);
  } else if (m.rip !== n.rip) {
    out.push(`rip: machine ${hex64(m.rip)} | cpu ${hex64(n.rip)}`);
  } else if (m.kind === "signal" && n.kind === "signal" && m.signal !== n.signal) {
    out.push(`signal: machine ${m.signal} (${m.message}) | cpu ${n.signal}`);
  }
  REG_NAMES.forEach((r, i) => {
    if (m.regs[i] !== n.regs[i]) out.push(`${r}: machine ${hex64(m.regs[i]!)} | cpu ${hex64(n.regs[i]!)}`);
  });
  const defined = ARITH_FLAGS & ~e.undefinedFlags;
  if ((m.rflags & defined) !== (n.rflags & defined)) {
    out.push(`flags (defined: ${flagNames(defined)}): machine ${flagNames(m.rflags & defined)} | cpu ${flagNames(n.rflags & defined)}`);
  }
  c.dumps.forEach((d, i) => out.push(...dumpDifferences(names[i] ?? `dump ${i}`, d.addr, m.dumps[i]!, n.dumps[i]!)));
  return out;
}
