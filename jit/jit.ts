// JIT a whole program under a strategy: place the private memory the strategy asks for, then JIT
// it as the kernel does: one function at once (bpf_prog_select_runtime()), several as
// jit_subprogs() does (every subprog its own image, called with `call rel32`; a first round
// places them, an extra pass writes the real call targets).
import type { BpfInsn } from "./bpf/insn.ts";
import { BPF_HELPER_CALL, BPF_PSEUDO_CALL } from "./bpf/opcodes.ts";
import { CALL_NAMES, helperOrFixupById, kfuncById } from "./bpf/abi.ts";
import { printInsnAt } from "./bpf/print.ts";
import { calleeOf, type Program } from "./bpf/program.ts";
import type { Validated } from "./bpf/validate.ts";
import { calleeSavedUsed, lowerFunction, type LoweredFunc } from "./lower.ts";
import { FRAME_GONE, FRAME_READY, type InsnRecord, type InsnRecorder } from "./x86/emit.ts";
import { checkPrivateRequest, DEFAULT_JIT_OPTIONS, jitStackDepths, type FuncJit, type JitOptions, type PlacedPrivate, type PrivateRequest, type Strategy } from "./strategy.ts";

export interface JitLayout {
  /** Address of the first function's image; the others follow, 16-byte aligned. */
  readonly base: bigint;
  /** The first __percpu pointer value handed out for private memory (8-byte aligned allocations). */
  readonly percpuBase: bigint;
  /** gs:-relative address of this_cpu_off. */
  readonly thisCpuOff: number;
  /** __percpu pointer of the program's prog->active counter. */
  readonly activePtr?: bigint;
  /** Addresses of helpers and kfuncs by name (the synthetic kernel's symbols). */
  readonly kernelSymbols: (name: string) => bigint | undefined;
  /** Where to keep the records of each function's instructions (CodeImage.decoded), for code that will run. */
  readonly records?: () => InsnRecorder;
  /**
   * The strategy's privateMemory() answer for this program, when the caller has asked for it
   * already (buildImage(), for the program's recursion counter): a strategy's hook is asked once
   * per program and image.
   */
  readonly privateRequests?: readonly PrivateRequest[];
}

/** A function's code where it runs: the bytes from base to end. */
export interface CodeImage {
  readonly base: bigint;
  readonly bytes: Uint8Array;
  /** Address one past the last byte. */
  readonly end: bigint;
  /**
   * The records of the bytes' instructions from the emitters that wrote them (jit/x86/emit.ts),
   * made by the recorder the harness gave (recordInstructions()): the machine's decoded
   * instructions, which it takes instead of decoding the bytes. Absent for code from elsewhere
   * (the kernel's JIT), which the machine decodes.
   */
  readonly decoded?: readonly InsnRecord[];
}

let recorder: (() => InsnRecorder) | undefined;

/**
 * Who will run the JIT's code asks for the records of its instructions (the harness, which loads
 * images into machines: harness/load.ts); buildImage() then has the emitters keep them
 * (CodeImage.decoded). Without it, nothing is recorded and the machine decodes the bytes.
 */
export function recordInstructions(make: () => InsnRecorder): void {
  recorder = make;
}

/** The recorder asked for, if any (buildImage()). */
export const instructionRecorder = (): (() => InsnRecorder) | undefined => recorder;

export interface JitFunction {
  readonly fi: number;
  readonly name: string;
  /** The image symbol, as kallsyms shows BPF functions: bpf_prog_<tag>_<name>. */
  readonly symbol: string;
  readonly image: CodeImage;
  readonly insnAddrs: readonly bigint[];
  /** do_jit()'s addrs[] (offsets): addrs[0] the prologue's end, addrs[k + 1] the end of BPF instruction k. */
  readonly addrs: readonly number[];
  /** Where the strategy said the function's frame is complete and torn down (Emitter.frameReady/frameGone). */
  readonly frame: { readonly ready: bigint; readonly gone: bigint };
  /**
   * ksym.fp_start / fp_end of the ksym that covers this function, as the kernel leaves them
   * (bpf_has_frame_pointer() reads them as offsets from the function's start): do_jit()'s
   * literal values (lower.ts doJit()), 0/0 for the main function of several.
   */
  readonly ksym: { readonly fpStart: number; readonly fpEnd: number };
}

/**
 * The BPF instructions of a JIT'd function by the address where their x86 code starts, as
 * `k: text` (k counted from the function's start), the way bpftool prog dump jited puts them
 * above the code; an address holds several when the instructions before the last emitted no
 * code. `program`: the verifier's output the function was JIT'd from.
 */
export function bpfTextAt(program: Program, f: JitFunction): Map<bigint, string[]> {
  const start = program.funcs[f.fi]!.start;
  const out = new Map<bigint, string[]>();
  f.insnAddrs.forEach((a, k) => {
    const text = printInsnAt(program.insns, start + k, CALL_NAMES);
    if (text !== undefined) out.set(a, [...(out.get(a) ?? []), `${k}: ${text}`]);
  });
  return out;
}

export interface JitProgram {
  readonly strategy: string;
  readonly funcs: readonly JitFunction[];
  readonly privates: readonly PlacedPrivate[];
  readonly end: bigint;
}

/**
 * A stable tag from the instructions (kallsyms shows a 16-hex-digit prog tag): 64-bit FNV-1a
 * over each instruction's code, dst, src, off (16 bits) and imm (32 bits), in 32-bit halves
 * (h * 0x100000001b3 = h * 0x1b3 + h << 40, modulo 2^64; every value fits the low half).
 */
export function tag(insns: readonly BpfInsn[]): string {
  let lo = 0x84222325, hi = 0xcbf29ce4;
  const mix = (v: number) => {
    const l = (lo ^ v) >>> 0;
    const m = l * 0x1b3; // < 2^41: exact
    lo = m >>> 0;
    hi = (hi * 0x1b3 + Math.floor(m / 4294967296) + ((l << 8) >>> 0)) >>> 0;
  };
  for (const x of insns) { mix(x.code); mix(x.dst); mix(x.src); mix(x.off & 0xffff); mix(x.imm >>> 0); }
  return hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
}

export function symbolName(p: Program, fi: number): string {
  const f = p.funcs[fi]!;
  return `bpf_prog_${tag(p.insns.slice(f.start, f.end))}_${f.name}`;
}

export function jitProgram(p: Program, v: Validated, strategy: Strategy, layout: JitLayout, opts: JitOptions = DEFAULT_JIT_OPTIONS): JitProgram {
  // Private memory: __alloc_percpu_gfp(size, 8) per request, handed out in order.
  let next = layout.percpuBase;
  const privates: PlacedPrivate[] = (layout.privateRequests ?? strategy.privateMemory(p, v)).map((r) => {
    checkPrivateRequest(strategy.name, p, r);
    const percpuPtr = next;
    next += BigInt(Math.ceil(r.size / 8) * 8);
    return { ...r, percpuPtr, framePtr: percpuPtr + BigInt(r.framePtrOffset) };
  });
  const depths = jitStackDepths(v);
  const funcJit = (fi: number): FuncJit => {
    const func = p.funcs[fi]!;
    return {
      prog: p, validated: v, fi, func, stackDepth: depths[fi]!, isMain: fi === 0, opts, thisCpuOff: layout.thisCpuOff, activePtr: layout.activePtr ?? 0n,
      calleeSaved: calleeSavedUsed(p.insns.slice(func.start, func.end)),
      priv: privates.find((x) => x.fi === fi),
    };
  };
  const names = p.funcs.map((_, fi) => symbolName(p, fi));
  const target = (x: BpfInsn, i: number): string => {
    if (x.src === BPF_PSEUDO_CALL) return names[calleeOf(p, i, x.imm)]!;
    const sig = x.src === BPF_HELPER_CALL ? helperOrFixupById(x.imm) : kfuncById(x.imm);
    return sig!.name;
  };
  const resolve = (addrs: ReadonlyMap<string, bigint>) => (name: string) => addrs.get(name) ?? layout.kernelSymbols(name);
  // The ksym registered for each function's code: a single function's own, with do_jit()'s
  // fp_start/fp_end; a subprog's func[i] ksym (jit_subprogs() adds them, i >= 1). The main
  // function of several is covered by the main prog's ksym, which bpf_prog_load() adds
  // (kernel/bpf/syscall.c, 7.2) and which never gets func[0]'s values: jit_subprogs() copies
  // bpf_func, jited_len, extable, exception_boundary, ... but not ksym.fp_start/fp_end
  // (kernel/bpf/fixups.c, 7.2), so they stay 0 and bpf_has_frame_pointer() is false there.
  const record = (fi: number, low: LoweredFunc): JitFunction => ({
    fi, name: p.funcs[fi]!.name, symbol: names[fi]!, image: low.assembled, insnAddrs: low.insnAddrs, addrs: low.addrs,
    frame: { ready: low.assembled.labels.get(FRAME_READY)!, gone: low.assembled.labels.get(FRAME_GONE)! },
    ksym: fi === 0 && p.funcs.length > 1 ? { fpStart: 0, fpEnd: 0 } : low.ksym,
  });
  // One function: bpf_prog_select_runtime() JITs the program once, at its image.
  if (p.funcs.length === 1) {
    const low = lowerFunction(strategy, funcJit(0), layout.base, target, resolve(new Map([[names[0]!, layout.base]])), undefined, layout.records);
    return { strategy: strategy.name, funcs: [record(0, low)], privates, end: layout.base + BigInt(Math.ceil(low.assembled.bytes.length / 16) * 16) };
  }
  // jit_subprogs() (kernel/bpf/fixups.c, 7.2): every function JITed once with placeholder
  // call targets, which places its image (calls are rel32: targets do not change sizes); then
  // the real targets, and each function's extra pass into its image.
  const first = p.funcs.map((_, fi) => lowerFunction(strategy, funcJit(fi), layout.base, target, resolve(new Map(names.map((n) => [n, layout.base])))));
  const bases: bigint[] = [];
  let at = layout.base;
  for (const low of first) {
    bases.push(at);
    at += BigInt(Math.ceil(low.assembled.bytes.length / 16) * 16);
  }
  const final = new Map<string, bigint>(names.map((n, fi) => [n, bases[fi]!]));
  const funcs = p.funcs.map((_, fi) => record(fi, lowerFunction(strategy, funcJit(fi), bases[fi]!, target, resolve(final), first[fi]!.state, layout.records)));
  return { strategy: strategy.name, funcs, privates, end: at };
}
