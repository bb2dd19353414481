// The reference interpreter (design.md §3.1): what each BPF invocation must return, computed
// from the eBPF semantics alone (kernel/bpf/core.c ___bpf_prog_run, 7.2: shifts masked to 63/31,
// ALU32 results zero-extended, JMP32 comparing the low halves, sign-extending loads and moves,
// byte swaps, atomics, ld_imm64, gotol; division made total the way fixups.c:1496 bpf_do_misc_fixups()
// makes it, see ops.ts; may_goto as fixups.c expands it for x86-64) and from the synthetic
// kernel's helpers, kfunc and runner as documented in jit/kernel/kernel.ts. Nothing here is
// shared with the JIT or the machine. Every invocation has an instruction budget, so a loop
// the validator should have refused cannot hang it.
import { HELPERS as HELPERS__ } from "./abi.ts";
import type { BpfInsn } from "./instruction.ts";
import { aluResult as aluResult__, immU64 as immU64__, jumpTaken as jumpTaken__ } from "./ops.ts";
import { BPF_ADD as BPF_ADD__, BPF_ALU as BPF_ALU__, BPF_ALU64 as BPF_ALU64__, BPF_AND as BPF_AND__, BPF_ATOMIC as BPF_ATOMIC__, BPF_CALL as BPF_CALL__, BPF_CLASS as BPF_CLASS__, BPF_CMPXCHG as BPF_CMPXCHG__, BPF_DW as BPF_DW__, BPF_EXIT as BPF_EXIT__, BPF_FETCH as BPF_FETCH__, BPF_HELPER_CALL as BPF_HELPER_CALL__, BPF_JA as BPF_JA__, BPF_JCOND as BPF_JCOND__, BPF_JMP as BPF_JMP__, BPF_JMP32 as BPF_JMP32__, BPF_LD_IMM64 as BPF_LD_IMM64__, BPF_LDX as BPF_LDX__, BPF_LOAD_ACQ as BPF_LOAD_ACQ__, BPF_MAX_TIMED_LOOPS as BPF_MAX_TIMED_LOOPS__, BPF_MEMSX as BPF_MEMSX__, BPF_MODE as BPF_MODE__, BPF_OP as BPF_OP__, BPF_OR as BPF_OR__, BPF_PSEUDO_CALL as BPF_PSEUDO_CALL__, BPF_PSEUDO_KFUNC_CALL as BPF_PSEUDO_KFUNC_CALL__, BPF_SIZE as BPF_SIZE__, BPF_SRC as BPF_SRC__, BPF_ST as BPF_ST__, BPF_STORE_REL as BPF_STORE_REL__, BPF_STX as BPF_STX__, BPF_W as BPF_W__, BPF_X as BPF_X__, BPF_XCHG as BPF_XCHG__, BPF_XOR as BPF_XOR__, sizeBytes as sizeBytes__ } from "./opcodes.ts";
import { ATTACH_PATHS as ATTACH_PATHS__, attachOf as attachOf__, calleeOf as calleeOf__, counterOf as counterOf__, runnerLimit as runnerLimit__, type Program } from "./program.ts";
import { validate as validate__ } from "./validate.ts";
import { CTX_SIZE as CTX_SIZE__, ctxBytes as ctxBytes__, KD as KD__, KERNEL_LAYOUT as KERNEL_LAYOUT__ } from "../kernel/layout.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the interpreter's per-instruction code would pay for at every use.
const HELPERS = HELPERS__, aluResult = aluResult__, immU64 = immU64__, jumpTaken = jumpTaken__, BPF_ADD = BPF_ADD__, BPF_ALU = BPF_ALU__, BPF_ALU64 = BPF_ALU64__, BPF_AND = BPF_AND__, BPF_ATOMIC = BPF_ATOMIC__, BPF_CALL = BPF_CALL__, BPF_CLASS = BPF_CLASS__, BPF_CMPXCHG = BPF_CMPXCHG__, BPF_DW = BPF_DW__, BPF_EXIT = BPF_EXIT__, BPF_FETCH = BPF_FETCH__, BPF_HELPER_CALL = BPF_HELPER_CALL__, BPF_JA = BPF_JA__, BPF_JCOND = BPF_JCOND__, BPF_JMP = BPF_JMP__, BPF_JMP32 = BPF_JMP32__, BPF_LD_IMM64 = BPF_LD_IMM64__, BPF_LDX = BPF_LDX__, BPF_LOAD_ACQ = BPF_LOAD_ACQ__, BPF_MAX_TIMED_LOOPS = BPF_MAX_TIMED_LOOPS__, BPF_MEMSX = BPF_MEMSX__, BPF_MODE = BPF_MODE__, BPF_OP = BPF_OP__, BPF_OR = BPF_OR__, BPF_PSEUDO_CALL = BPF_PSEUDO_CALL__, BPF_PSEUDO_KFUNC_CALL = BPF_PSEUDO_KFUNC_CALL__, BPF_SIZE = BPF_SIZE__, BPF_SRC = BPF_SRC__, BPF_ST = BPF_ST__, BPF_STORE_REL = BPF_STORE_REL__, BPF_STX = BPF_STX__, BPF_W = BPF_W__, BPF_X = BPF_X__, BPF_XCHG = BPF_XCHG__, BPF_XOR = BPF_XOR__, sizeBytes = sizeBytes__, ATTACH_PATHS = ATTACH_PATHS__, attachOf = attachOf__, calleeOf = calleeOf__, counterOf = counterOf__, validate = validate__, runnerLimit = runnerLimit__, CTX_SIZE = CTX_SIZE__, ctxBytes = ctxBytes__, KD = KD__, KERNEL_LAYOUT = KERNEL_LAYOUT__;

const M64 = (1n << 64n) - 1n;
/** What the runner returns for a refused run (-EBUSY) and the kfunc for a bad index (-EINVAL). */
export const REFUSED = BigInt.asUintN(64, -16n);
export const EINVAL = BigInt.asUintN(64, -22n);
/** Nested runs the interpreter follows (a 16 KiB kernel stack holds about 200 of the smallest). */
export const MAX_NESTED_RUNS = 1000;

/**
 * Which recursion counter guards each program (kernel-model.md §2.3): kprobe, tracepoint and
 * perf_event programs run through trace_call_bpf(), which uses the global per-CPU
 * bpf_prog_active (counter index programs.length); the others their own prog->active, or none
 * (an index of their own that no limit applies to: uprobes, struct_ops without a private stack).
 */
export function recursionCounters(programs: readonly Program[]): number[] {
  // (a second attachment of a program shares its prog->active: program.ts Program.linkOf)
  return programs.map((p, i) => {
    const c = ATTACH_PATHS[attachOf(p)].counter;
    return c === "global" ? programs.length : c === "prog" ? p.linkOf ?? i : i;
  });
}

/** A fresh environment: counters at 0, no misses, each program's context where the kernel-layout image puts it. */
export function interpEnv(programs: readonly Program[], nested: readonly number[], recursionLimit: number, kdata: bigint = KERNEL_LAYOUT.kdata): InterpEnv {
  return {
    programs, nested, recursionLimit, counterOf: recursionCounters(programs), active: new Array(programs.length + 1).fill(0), misses: new Array(programs.length).fill(0),
    ctxBase: kdata + BigInt(KD.ctx),
  };
}

export interface InterpEnv {
  readonly programs: readonly Program[];
  /** scx_sc_run_nested(i) runs programs[nested[i]]. */
  readonly nested: readonly number[];
  /** Activations per CPU the runner allows on prog->active (1: the exactly-1 rule; bpf_prog_active's is always 1). */
  readonly recursionLimit: number;
  /** Program → the counter that guards it (recursionCounters()); the program's own index if absent. */
  readonly counterOf?: readonly number[];
  /** Per counter: its value now; per program: misses so far (both updated). */
  readonly active: number[];
  readonly misses: number[];
  /**
   * Where program 0's context is; program p's is CTX_SIZE × p further (R1 at its entry: the
   * runner's table in the synthetic kernel); its bytes are ctxBytes(p), read-only. Absent: R1
   * is the program's index, and there is no context.
   */
  readonly ctxBase?: bigint;
  /** Instruction budget for one top-level invocation (default 1 000 000). */
  budget?: number;
  /**
   * What the top-level program's nested runs returned, in order, when they are given rather than
   * interpreted (the machine's own, each checked on its own: with several tasks, whether a
   * nested run is refused depends on what other tasks hold when it starts).
   */
  nestedResults?: { readonly prog: number; readonly result: bigint }[];
  /**
   * may_goto: how many calls of bpf_check_timed_may_goto() (core.c:3423) after a frame's first
   * still find time left and refresh its count (the first call only records the start time and
   * always refreshes). Default 0: a frame's may_gotos fall through 2 × BPF_MAX_TIMED_LOOPS times
   * in all, and the next one jumps; (2 + n) × BPF_MAX_TIMED_LOOPS with n.
   */
  mayGotoRefreshes?: number;
  /**
   * Called before each instruction with its program, its index and its frame's bytes
   * ([fp - stackDepth, fp)), which it may change (tests corrupt a stack slot at a boundary).
   */
  beforeInsn?: (prog: Program, pc: number, frame: Uint8Array) => void;
}

export class InterpError extends Error {
  override name = "InterpError";
}

/**
 * A stack frame: its frame-pointer value and its bytes [fp - depth, fp); its may_goto count and
 * how often it ran out (fixups.c keeps the count and a timestamp in 16 bytes below the frame).
 */
interface Frame { fp: bigint; base: bigint; bytes: Uint8Array; mayGoto: number; mayGotoCalls: number }

/** The `size`-byte little-endian value at bytes[at] (u64). */
function readLE(bytes: Uint8Array, at: number, size: number): bigint {
  const dv = new DataView(bytes.buffer, bytes.byteOffset + at, size);
  return size === 8 ? dv.getBigUint64(0, true) : BigInt(size === 4 ? dv.getUint32(0, true) : size === 2 ? dv.getUint16(0, true) : dv.getUint8(0));
}

/** Run program `p` through the runner (bpf_sc_run): the recursion check, then the program. */
export function runProgram(env: InterpEnv, p: number): bigint {
  return new Interp(env).run(p);
}

class Interp {
  private frames: Frame[] = [];
  private nextFp = 0x7f0000000000n;
  private steps = 0;
  /** Runs in progress (a nested run through the kfunc is one more). */
  private depth = 0;
  constructor(private readonly env: InterpEnv) {}

  run(p: number): bigint {
    const env = this.env;
    // with no counter a program that runs itself recurses as the kernel would, until
    // its stack overflows; here, a clear error long before the host's own stack does
    if (this.depth >= MAX_NESTED_RUNS) throw new InterpError(`${env.programs[p]!.name}: more than ${MAX_NESTED_RUNS} nested runs (no recursion counter stops them)`);
    const c = env.counterOf?.[p] ?? p;
    env.active[c]!++;
    this.depth++;
    let r: bigint;
    // the runner's limit on the program's counter (program.ts counterOf(), runnerLimit(): none for
    // the uprobes and for struct_ops without a private stack, as 7.2 decides it; the semantics
    // oracle hands the interpreter the machine's nested results, so its own runs are the top-level ones)
    const prog = env.programs[p]!;
    const limit = runnerLimit(counterOf(prog, validate(prog).privStack.some(Boolean)), env.recursionLimit);
    if (limit !== undefined && env.active[c]! > limit) {
      env.misses[prog.linkOf ?? p]!++; // (one bpf_prog, one misses, whichever attachment ran it)
      r = REFUSED;
    } else {
      r = this.func(prog, 0, [env.ctxBase !== undefined ? env.ctxBase + BigInt(p * CTX_SIZE) : BigInt(p), 0n, 0n, 0n, 0n]);
    }
    env.active[c]!--; // __bpf_prog_exit_recur() always decrements
    this.depth--;
    return r;
  }

  /** A read of some program's context, if [addr, addr + size) lies in one. */
  private ctxAt(addr: bigint, size: number): { bytes: Uint8Array; at: number } | undefined {
    const base = this.env.ctxBase;
    if (base === undefined || addr < base) return undefined;
    const off = Number(addr - base), p = Math.floor(off / CTX_SIZE), at = off % CTX_SIZE;
    if (p >= this.env.programs.length || at + size > CTX_SIZE) return undefined;
    return { bytes: (this.ctxCache[p] ??= ctxBytes(p)), at };
  }
  private readonly ctxCache: Uint8Array[] = [];

  private mem(addr: bigint, size: number): { f: Frame; at: number } {
    // (frames never overlap; the innermost, last, is the likeliest)
    for (let i = this.frames.length - 1; i >= 0; i--) {
      const f = this.frames[i]!;
      const at = Number(addr - f.base);
      if (at >= 0 && at + size <= f.bytes.length) return { f, at };
    }
    throw new InterpError(`access of ${size} bytes at ${addr.toString(16)} is outside every live BPF stack frame`);
  }

  private load(addr: bigint, size: number): bigint {
    const ctx = this.ctxAt(addr, size);
    if (ctx !== undefined) return readLE(ctx.bytes, ctx.at, size);
    const { f, at } = this.mem(addr, size);
    return readLE(f.bytes, at, size);
  }

  /** Store `v`, which callers mask to the size (v < 2^(8 × size): Number() is exact below 2^53). */
  private store(addr: bigint, size: number, v: bigint): void {
    const { f, at } = this.mem(addr, size);
    const dv = new DataView(f.bytes.buffer, f.bytes.byteOffset + at, size);
    if (size === 8) dv.setBigUint64(0, v, true);
    else if (size === 4) dv.setUint32(0, Number(v), true);
    else if (size === 2) dv.setUint16(0, Number(v), true);
    else dv.setUint8(0, Number(v));
  }

  private func(prog: Program, fi: number, args: bigint[]): bigint {
    const fn = prog.funcs[fi]!;
    const fp = this.nextFp;
    this.nextFp += 0x100000n;
    const frame: Frame = { fp, base: fp - BigInt(fn.stackDepth), bytes: new Uint8Array(fn.stackDepth), mayGoto: BPF_MAX_TIMED_LOOPS, mayGotoCalls: 0 };
    this.frames.push(frame);
    const r: bigint[] = [0n, ...args, 0n, 0n, 0n, 0n, fp];
    const before = this.env.beforeInsn;
    try {
      for (let pc = fn.start; ; ) {
        if (++this.steps > (this.env.budget ?? 1_000_000)) throw new InterpError(`${prog.name}: more than ${this.env.budget ?? 1_000_000} instructions`);
        if (before !== undefined) before(prog, pc, frame.bytes);
        const x = prog.insns[pc]!;
        const next = this.step(prog, x, pc, r, frame);
        if (next === -1) return r[0]!;
        pc = next;
      }
    } finally {
      this.frames.pop();
    }
  }

  /** Execute one instruction; the next pc, or -1 at exit. */
  private step(prog: Program, x: BpfInsn, pc: number, r: bigint[], frame: Frame): number {
    const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
    if (cls === BPF_ALU64 || cls === BPF_ALU) {
      r[x.dst] = aluResult(x, r[x.dst]!, BPF_SRC(x.code) === BPF_X ? r[x.src]! : immU64(x));
      return pc + 1;
    }
    if (x.code === BPF_LD_IMM64) { // LD_IMM_DW: (u32) insn[0].imm | (u32) insn[1].imm << 32
      const hi = prog.insns[pc + 1];
      if (!hi) throw new InterpError(`${prog.name}: insn ${pc}: ld_imm64 without its second half`);
      r[x.dst] = (BigInt(x.imm >>> 0) | (BigInt(hi.imm >>> 0) << 32n)) & M64;
      return pc + 2;
    }
    if (cls === BPF_LDX) {
      const size = sizeBytes(BPF_SIZE(x.code));
      const v = this.load(r[x.src]! + BigInt(x.off), size);
      // LDX_MEMSX_*: DST = *(s8/s16/s32 *)...; LDX_MEM_*: zero-extended
      r[x.dst] = BPF_MODE(x.code) === BPF_MEMSX ? BigInt.asUintN(64, BigInt.asIntN(8 * size, v)) : v;
      return pc + 1;
    }
    if (cls === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC) { this.atomic(prog, x, pc, r); return pc + 1; }
    if (cls === BPF_STX || cls === BPF_ST) {
      const size = sizeBytes(BPF_SIZE(x.code));
      this.store(r[x.dst]! + BigInt(x.off), size, (cls === BPF_STX ? r[x.src]! : immU64(x)) & ((1n << BigInt(8 * size)) - 1n));
      return pc + 1;
    }
    if (cls === BPF_JMP && op === BPF_CALL) {
      r[0] = this.call(prog, x, pc, r);
      for (let i = 1; i <= 5; i++) r[i] = 0n; // clobbered (the validator forbids reading them)
      return pc + 1;
    }
    if (cls === BPF_JMP && op === BPF_EXIT) return -1;
    if (op === BPF_JA) return pc + 1 + (cls === BPF_JMP32 ? x.imm : x.off); // JMP32_JA: insn += insn->imm
    if (cls === BPF_JMP && op === BPF_JCOND) return this.mayGoto(frame) ? pc + 1 + x.off : pc + 1;
    if (cls === BPF_JMP || cls === BPF_JMP32) {
      return jumpTaken(x, r[x.dst]!, BPF_SRC(x.code) === BPF_X ? r[x.src]! : immU64(x)) ? pc + 1 + x.off : pc + 1;
    }
    throw new InterpError(`${prog.name}: insn ${pc}: opcode 0x${x.code.toString(16).padStart(2, "0")} has no reference semantics`);
  }

  /**
   * One may_goto as fixups.c:1771 expands it for x86-64 (bpf_jit_supports_timed_may_goto()):
   * load the count; 0 jumps; otherwise count - 1, and when that reaches 0,
   * arch_bpf_timed_may_goto → bpf_check_timed_may_goto() gives a fresh BPF_MAX_TIMED_LOOPS or,
   * once the time slice is spent, 0 (so the next may_goto jumps). True: jump.
   */
  private mayGoto(f: Frame): boolean {
    if (f.mayGoto === 0) return true; // if AX == 0 goto target
    if (--f.mayGoto === 0) {          // AX -= 1; if AX == 0: call arch_bpf_timed_may_goto
      f.mayGotoCalls++;
      f.mayGoto = f.mayGotoCalls <= 1 + (this.env.mayGotoRefreshes ?? 0) ? BPF_MAX_TIMED_LOOPS : 0;
    }
    return false;
  }

  /** STX_ATOMIC_*: the read-modify-write operations on W/DW, load-acquire and store-release on any size. */
  private atomic(prog: Program, x: BpfInsn, pc: number, r: bigint[]): void {
    const size = sizeBytes(BPF_SIZE(x.code));
    const mask = size === 8 ? M64 : (1n << BigInt(8 * size)) - 1n;
    if (x.imm === BPF_LOAD_ACQ) { r[x.dst] = this.load(r[x.src]! + BigInt(x.off), size); return; }
    const addr = r[x.dst]! + BigInt(x.off);
    if (x.imm === BPF_STORE_REL) { this.store(addr, size, r[x.src]! & mask); return; }
    if (BPF_SIZE(x.code) !== BPF_W && BPF_SIZE(x.code) !== BPF_DW) throw new InterpError(`${prog.name}: insn ${pc}: atomic 0x${x.imm.toString(16)} of ${size} bytes`);
    const old = this.load(addr, size);
    const v = r[x.src]! & mask;
    switch (x.imm & ~BPF_FETCH) {
      case BPF_ADD: this.store(addr, size, (old + v) & mask); break;
      case BPF_AND: this.store(addr, size, old & v); break;
      case BPF_OR: this.store(addr, size, old | v); break;
      case BPF_XOR: this.store(addr, size, old ^ v); break;
      default:
        if (x.imm === BPF_XCHG) { this.store(addr, size, v); break; }
        if (x.imm === BPF_CMPXCHG) { // R0 = (u32/u64) atomic_cmpxchg(addr, (u32/u64) R0, SRC)
          if (old === (r[0]! & mask)) this.store(addr, size, v);
          r[0] = old;
          return;
        }
        throw new InterpError(`${prog.name}: insn ${pc}: atomic operation 0x${x.imm.toString(16)} has no reference semantics`);
    }
    if (x.imm & BPF_FETCH) r[x.src] = old; // SRC = (u32/u64) atomic_fetch_*(...), atomic_xchg(...)
  }

  private call(prog: Program, x: BpfInsn, pc: number, r: bigint[]): bigint {
    if (x.src === BPF_PSEUDO_CALL) {
      const fi = calleeOf(prog, pc, x.imm);
      return this.func(prog, fi, [r[1]!, r[2]!, r[3]!, r[4]!, r[5]!]);
    }
    if (x.src === BPF_PSEUDO_KFUNC_CALL) {
      // scx_sc_run_nested(i): an unsigned bounds check, then the runner.
      const i = r[1]!;
      if (i >= BigInt(this.env.nested.length)) return EINVAL;
      const given = this.env.nestedResults;
      if (given) {
        // the machine's run, which must be of the program nested[i] names
        const want = this.env.nested[Number(i)]!;
        const r = given.shift();
        if (r === undefined) throw new InterpError(`${prog.name}: insn ${pc}: the program runs ${this.env.programs[want]?.name} through the kfunc (nested[${i}]), and the machine ran nothing there`);
        if (r.prog !== want) throw new InterpError(`${prog.name}: insn ${pc}: the kfunc ran ${this.env.programs[r.prog]?.name ?? `program ${r.prog}`} where nested[${i}] is ${this.env.programs[want]?.name}`);
        return r.result;
      }
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
        case 4: return 0n; // bpf_sc_sleep: sleeps, then returns 0
      }
    }
    throw new InterpError(`${prog.name}: insn ${pc}: no reference for call ${x.src}/${x.imm} (helpers: ${HELPERS.map((h) => h.id).join(", ")})`);
  }
}
