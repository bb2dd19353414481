// JIT a whole program under a strategy: place the private memory the strategy asks for, size
// every function, give each its address, then lower each with the real call targets
// (jit_subprogs(): every subprog is its own image, called with `call rel32`).
import type { Assembled } from "./asm.ts";
import type { BpfInsn } from "./bpf/insn.ts";
import { BPF_HELPER_CALL, BPF_PSEUDO_CALL } from "./bpf/opcodes.ts";
import { helperById, kfuncById } from "./bpf/abi.ts";
import type { Program } from "./bpf/program.ts";
import type { Validated } from "./bpf/validate.ts";
import { calleeSavedUsed, lowerFunction } from "./lower.ts";
import { FRAME_GONE, FRAME_READY } from "./x86/emit.ts";
import { checkPrivateRequest, DEFAULT_JIT_OPTIONS, type FuncJit, type JitOptions, type PlacedPrivate, type Strategy } from "./strategy.ts";

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
}

export interface JitFunction {
  readonly fi: number;
  readonly name: string;
  /** The image symbol, as kallsyms shows BPF functions: bpf_prog_<tag>_<name>. */
  readonly symbol: string;
  readonly image: Assembled;
  readonly insnAddrs: readonly bigint[];
  /** Where the strategy said the function's frame is complete and torn down (Emitter.frameReady/frameGone). */
  readonly frame: { readonly ready: bigint; readonly gone: bigint };
  /** ksym.fp_start / fp_end as do_jit() stores them: offsets from the function's start (kernel/bpf/core.c bpf_has_frame_pointer()). */
  readonly ksym: { readonly fpStart: number; readonly fpEnd: number };
}

export interface JitProgram {
  readonly strategy: string;
  readonly funcs: readonly JitFunction[];
  readonly privates: readonly PlacedPrivate[];
  readonly end: bigint;
}

/** A stable tag from the instructions (kallsyms shows a 16-hex-digit prog tag). */
function tag(insns: readonly BpfInsn[]): string {
  let h = 0xcbf29ce484222325n;
  for (const x of insns) for (const v of [x.code, x.dst, x.src, x.off & 0xffff, x.imm >>> 0]) h = BigInt.asUintN(64, (h ^ BigInt(v)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

export function symbolName(p: Program, fi: number): string {
  const f = p.funcs[fi]!;
  return `bpf_prog_${tag(p.insns.slice(f.start, f.end))}_${f.name}`;
}

export function jitProgram(p: Program, v: Validated, strategy: Strategy, layout: JitLayout, opts: JitOptions = DEFAULT_JIT_OPTIONS): JitProgram {
  // Private memory: __alloc_percpu_gfp(size, 8) per request, handed out in order.
  let next = layout.percpuBase;
  const privates: PlacedPrivate[] = strategy.privateMemory(p, v).map((r) => {
    checkPrivateRequest(strategy.name, p, r);
    const percpuPtr = next;
    next += BigInt(Math.ceil(r.size / 8) * 8);
    return { ...r, percpuPtr, framePtr: percpuPtr + BigInt(r.framePtrOffset) };
  });
  const funcJit = (fi: number): FuncJit => {
    const func = p.funcs[fi]!;
    return {
      prog: p, validated: v, fi, func, isMain: fi === 0, opts, thisCpuOff: layout.thisCpuOff, activePtr: layout.activePtr ?? 0n,
      calleeSaved: calleeSavedUsed(p.insns.slice(func.start, func.end)),
      priv: privates.find((x) => x.fi === fi),
    };
  };
  const names = p.funcs.map((_, fi) => symbolName(p, fi));
  const target = (x: BpfInsn, i: number): string => {
    if (x.src === BPF_PSEUDO_CALL) return names[p.funcs.findIndex((g) => g.start === i + 1 + x.imm)]!;
    const sig = x.src === BPF_HELPER_CALL ? helperById(x.imm) : kfuncById(x.imm);
    return sig!.name;
  };
  // Pass 1: sizes (call targets do not change instruction sizes: every call is rel32).
  const provisional = new Map<string, bigint>(names.map((n) => [n, layout.base]));
  const resolve = (addrs: Map<string, bigint>) => (name: string) => addrs.get(name) ?? layout.kernelSymbols(name);
  const sizes = p.funcs.map((_, fi) => lowerFunction(strategy, funcJit(fi), layout.base, target, resolve(provisional)).assembled.bytes.length);
  const bases: bigint[] = [];
  let at = layout.base;
  for (const s of sizes) {
    bases.push(at);
    at += BigInt(Math.ceil(s / 16) * 16);
  }
  const final = new Map<string, bigint>(names.map((n, fi) => [n, bases[fi]!]));
  const funcs = p.funcs.map((f, fi): JitFunction => {
    const low = lowerFunction(strategy, funcJit(fi), bases[fi]!, target, resolve(final));
    const ready = low.assembled.labels.get(FRAME_READY)!, gone = low.assembled.labels.get(FRAME_GONE)!;
    const base = low.assembled.base;
    return {
      fi, name: f.name, symbol: names[fi]!, image: low.assembled, insnAddrs: low.insnAddrs,
      frame: { ready, gone }, ksym: { fpStart: Number(ready - base), fpEnd: Number(gone - base) },
    };
  });
  return { strategy: strategy.name, funcs, privates, end: at };
}
