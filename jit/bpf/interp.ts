// The reference interpreter (design.md §3.1): what each BPF invocation must return, computed
// from the eBPF semantics alone (kernel/bpf/core.c ___bpf_prog_run: shifts masked to 63/31,
// ALU32 results zero-extended, JMP32 comparing the low halves) and from the synthetic kernel's
// helpers, kfunc and runner as documented in jit/kernel/kernel.ts. Nothing here is shared with
// the JIT or the machine.
import { HELPERS } from "./abi.ts";
import type { BpfInsn } from "./insn.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_CALL, BPF_CLASS, BPF_EXIT, BPF_HELPER_CALL, BPF_JA, BPF_JEQ,
  BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT,
  BPF_LDX, BPF_LSH, BPF_MOV, BPF_NEG, BPF_OP, BPF_OR, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, BPF_RSH, BPF_SIZE,
  BPF_SRC, BPF_ST, BPF_STX, BPF_SUB, BPF_X, BPF_XOR, sizeBytes,
} from "./opcodes.ts";
import type { Program } from "./program.ts";

const M64 = (1n << 64n) - 1n, M32 = 0xffffffffn;
/** What the runner returns for a refused run (-EBUSY) and the kfunc for a bad index (-EINVAL). */
export const REFUSED = BigInt.asUintN(64, -16n);
export const EINVAL = BigInt.asUintN(64, -22n);

/**
 * Which recursion counter guards each program (kernel-model.md §2.3): kprobe, tracepoint and
 * perf_event programs run through trace_call_bpf(), which uses the global per-CPU
 * bpf_prog_active (counter index programs.length); the others have their own prog->active.
 */
export function recursionCounters(programs: readonly Program[]): number[] {
  return programs.map((p, i) => (p.type === "kprobe" || p.type === "tracepoint" || p.type === "perf_event" ? programs.length : i));
}

/** A fresh environment: counters at 0, no misses. */
export function interpEnv(programs: readonly Program[], nested: readonly number[], recursionLimit: number): InterpEnv {
  return { programs, nested, recursionLimit, counterOf: recursionCounters(programs), active: new Array(programs.length + 1).fill(0), misses: new Array(programs.length).fill(0) };
}

export interface InterpEnv {
  readonly programs: readonly Program[];
  /** scx_sc_run_nested(i) runs programs[nested[i]]. */
  readonly nested: readonly number[];
  /** Activations per CPU the runner allows (1: the exactly-1 rule). */
  readonly recursionLimit: number;
  /** Program → the counter that guards it (recursionCounters()); the program's own index if absent. */
  readonly counterOf?: readonly number[];
  /** Per counter: its value now; per program: misses so far (both updated). */
  readonly active: number[];
  readonly misses: number[];
  /** Instruction budget for one top-level invocation. */
  budget?: number;
}

export class InterpError extends Error {
  override name = "InterpError";
}

/** A stack frame: its frame-pointer value and its bytes [fp - depth, fp). */
interface Frame { fp: bigint; bytes: Uint8Array }

/** Run program `p` through the runner (bpf_sc_run): the recursion check, then the program. */
export function runProgram(env: InterpEnv, p: number): bigint {
  return new Interp(env).run(p);
}

class Interp {
  private frames: Frame[] = [];
  private nextFp = 0x7f0000000000n;
  private steps = 0;
  constructor(private readonly env: InterpEnv) {}

  run(p: number): bigint {
    const env = this.env;
    const c = env.counterOf?.[p] ?? p;
    env.active[c]!++;
    let r: bigint;
    if (env.active[c]! > env.recursionLimit) {
      env.misses[p]!++;
      r = REFUSED;
    } else {
      const prog = env.programs[p]!;
      r = this.func(prog, 0, [BigInt(p), 0n, 0n, 0n, 0n]);
    }
    env.active[c]!--; // __bpf_prog_exit_recur() always decrements
    return r;
  }

  private mem(addr: bigint, size: number): { f: Frame; at: number } {
    for (const f of this.frames) {
      const at = Number(addr - (f.fp - BigInt(f.bytes.length)));
      if (at >= 0 && at + size <= f.bytes.length) return { f, at };
    }
    throw new InterpError(`access of ${size} bytes at ${addr.toString(16)} is outside every live BPF stack frame`);
  }

  private load(addr: bigint, size: number): bigint {
    const { f, at } = this.mem(addr, size);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(f.bytes[at + i]!);
    return v;
  }

  private store(addr: bigint, size: number, v: bigint): void {
    const { f, at } = this.mem(addr, size);
    for (let i = 0; i < size; i++) f.bytes[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
  }

  private func(prog: Program, fi: number, args: bigint[]): bigint {
    const fn = prog.funcs[fi]!;
    const fp = this.nextFp;
    this.nextFp += 0x100000n;
    this.frames.push({ fp, bytes: new Uint8Array(fn.stackDepth) });
    const r: bigint[] = [0n, ...args, 0n, 0n, 0n, 0n, fp];
    try {
      for (let pc = fn.start; ; ) {
        if (++this.steps > (this.env.budget ?? 1_000_000)) throw new InterpError(`${prog.name}: more than ${this.env.budget ?? 1_000_000} instructions`);
        const x = prog.insns[pc]!;
        const next = this.step(prog, x, pc, r);
        if (next === -1) return r[0]!;
        pc = next;
      }
    } finally {
      this.frames.pop();
    }
  }

  /** Execute one instruction; the next pc, or -1 at exit. */
  private step(prog: Program, x: BpfInsn, pc: number, r: bigint[]): number {
    const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
    const imm64 = BigInt.asUintN(64, BigInt(x.imm));
    if (cls === BPF_ALU64 || cls === BPF_ALU) {
      const is64 = cls === BPF_ALU64;
      const mask = is64 ? M64 : M32;
      const a = r[x.dst]! & mask;
      const b = (BPF_SRC(x.code) === BPF_X ? r[x.src]! : imm64) & mask;
      const bits = is64 ? 64 : 32;
      let v: bigint;
      switch (op) {
        case BPF_MOV: v = b; break;
        case BPF_ADD: v = a + b; break;
        case BPF_SUB: v = a - b; break;
        case BPF_AND: v = a & b; break;
        case BPF_OR: v = a | b; break;
        case BPF_XOR: v = a ^ b; break;
        case BPF_LSH: v = a << (b & BigInt(bits - 1)); break;
        case BPF_RSH: v = a >> (b & BigInt(bits - 1)); break;
        case BPF_ARSH: v = BigInt.asIntN(bits, a) >> (b & BigInt(bits - 1)); break;
        case BPF_NEG: v = -a; break;
        default: throw new InterpError(`${prog.name}: insn ${pc}: ALU op 0x${op.toString(16)} is not in the subset`);
      }
      r[x.dst] = v & mask; // ALU32 results are zero-extended
      return pc + 1;
    }
    if (cls === BPF_LDX) { r[x.dst] = this.load(r[x.src]! + BigInt(x.off), sizeBytes(BPF_SIZE(x.code))); return pc + 1; }
    if (cls === BPF_STX || cls === BPF_ST) {
      const size = sizeBytes(BPF_SIZE(x.code));
      this.store(r[x.dst]! + BigInt(x.off), size, (cls === BPF_STX ? r[x.src]! : imm64) & ((1n << BigInt(8 * size)) - 1n));
      return pc + 1;
    }
    if (op === BPF_CALL) {
      r[0] = this.call(prog, x, pc, r);
      for (let i = 1; i <= 5; i++) r[i] = 0n; // clobbered (the validator forbids reading them)
      return pc + 1;
    }
    if (op === BPF_EXIT) return -1;
    if (op === BPF_JA) return pc + 1 + x.off;
    const is64 = cls === BPF_JMP;
    const bits = is64 ? 64 : 32;
    const mask = is64 ? M64 : M32;
    const a = r[x.dst]! & mask, b = (BPF_SRC(x.code) === BPF_X ? r[x.src]! : imm64) & mask;
    const sa = BigInt.asIntN(bits, a), sb = BigInt.asIntN(bits, b);
    let t: boolean;
    switch (op) {
      case BPF_JEQ: t = a === b; break;
      case BPF_JNE: t = a !== b; break;
      case BPF_JGT: t = a > b; break;
      case BPF_JGE: t = a >= b; break;
      case BPF_JLT: t = a < b; break;
      case BPF_JLE: t = a <= b; break;
      case BPF_JSGT: t = sa > sb; break;
      case BPF_JSGE: t = sa >= sb; break;
      case BPF_JSLT: t = sa < sb; break;
      case BPF_JSLE: t = sa <= sb; break;
      case BPF_JSET: t = (a & b) !== 0n; break;
      default: throw new InterpError(`${prog.name}: insn ${pc}: jump op 0x${op.toString(16)} is not in the subset`);
    }
    return t ? pc + 1 + x.off : pc + 1;
  }

  private call(prog: Program, x: BpfInsn, pc: number, r: bigint[]): bigint {
    if (x.src === BPF_PSEUDO_CALL) {
      const fi = prog.funcs.findIndex((f) => f.start === pc + 1 + x.imm);
      return this.func(prog, fi, [r[1]!, r[2]!, r[3]!, r[4]!, r[5]!]);
    }
    if (x.src === BPF_PSEUDO_KFUNC_CALL) {
      // scx_sc_run_nested(i): an unsigned bounds check, then the runner.
      const i = r[1]!;
      if (i >= BigInt(this.env.nested.length)) return EINVAL;
      return this.run(this.env.nested[Number(i)]!);
    }
    if (x.src === BPF_HELPER_CALL) {
      switch (x.imm) {
        case 1: return (((r[1]! * 31n + r[2]!) ^ r[3]!) + 2n * r[4]! - r[5]!) & M64; // bpf_sc_mix
        case 2: { // bpf_sc_rw
          const old = this.load(r[1]!, 8);
          this.store(r[1]!, 8, (3n * old + r[2]!) & M64);
          return old;
        }
        case 3: return 0n; // bpf_sc_get_stack
      }
    }
    throw new InterpError(`${prog.name}: insn ${pc}: no reference for call ${x.src}/${x.imm} (helpers: ${HELPERS.map((h) => h.id).join(", ")})`);
  }
}
