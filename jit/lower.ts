// Lowering one BPF function to x86-64 as arch/x86/net/bpf_jit_comp.c (7.2) does it:
//   - bpf_int_jit_compile(): addrs[] starts at 64 bytes per instruction; passes of do_jit()
//     until the image stops changing length; then one more pass into the image, which must
//     land every instruction where the last pass put it ("bpf_jit: fatal error" otherwise); from
//     PADDING_PASSES on, and in a subprog's extra pass, jumps that shrank are padded with nops;
//     after MAX_PASSES without converging the JIT gives up;
//   - do_jit(): the strategy's prologue, then each instruction with the upstream register map
//     and instruction choices; addrs[i] is updated in place as the pass goes, so a jump reads
//     this pass's addresses behind it and the last pass's ahead of it; `cleanup_addr` (the first
//     exit's epilogue) is this pass's once the first exit is emitted; rel8 jumps only up to
//     +123 (is_imm8_jmp_offset()).
import type { Assembled } from "./asm.ts";
import type { BpfInsn } from "./bpf/insn.ts";
import {
  BPF_ADD, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_ATOMIC, BPF_CALL, BPF_CLASS, BPF_CMPXCHG, BPF_DIV, BPF_END, BPF_EXIT, BPF_FETCH, BPF_JA, BPF_JEQ, BPF_JGE,
  BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT, BPF_LD_IMM64, BPF_LDX,
  BPF_LOAD_ACQ, BPF_REG_AX, BPF_LSH, BPF_MEM, BPF_MEMSX, BPF_MOD, BPF_MODE, BPF_MOV, BPF_MUL, BPF_NEG, BPF_OP, BPF_OR, BPF_RSH, BPF_SIZE, BPF_SRC, BPF_ST,
  BPF_STORE_REL, BPF_STX, BPF_SUB, BPF_X, BPF_XCHG, BPF_XOR, BPF_ALU, sizeBytes,
} from "./bpf/opcodes.ts";
import { StrategyError, type Strategy, type FuncJit } from "./strategy.ts";
import { isLdImm64SecondHalf as isSecondHalf } from "./bpf/print.ts";
import { isImm8JmpOffset, isSimm32 } from "./x86/encode.ts";
import { Emitter, FRAME_GONE, FRAME_READY, JitError, type AluOp, type Cond, type InsnRecord, type InsnRecorder, type ShiftOp, type Width, type X86Reg } from "./x86/emit.ts";

export { JitError };

/** reg2hex[]: BPF R0-R9 (R10 is the strategy's frame register). */
const REG_MAP: readonly X86Reg[] = ["rax", "rdi", "rsi", "rdx", "rcx", "r8", "rbx", "r13", "r14", "r15"];
/** BPF_PROBE_MEM, BPF_PROBE_MEMSX (modes the verifier gives BTF-pointer loads) and BPF_TAIL_CALL (include/linux/filter.h, uapi bpf.h). */
const BPF_PROBE_MEM = 0x20, BPF_PROBE_MEMSX = 0x40, BPF_TAIL_CALL = 0xf0;
/** AUX_REG: the JIT's temporary. */
const AUX: X86Reg = "r11";
const CALLEE_SAVED: readonly [number, X86Reg][] = [[6, "rbx"], [7, "r13"], [8, "r14"], [9, "r15"]];
/** MAX_PASSES, PADDING_PASSES (bpf_int_jit_compile()). */
const MAX_PASSES = 20, PADDING_PASSES = MAX_PASSES - 5;

/** detect_reg_usage(): the callee-saved registers a function touches, in push order. */
export function calleeSavedUsed(insns: readonly BpfInsn[]): X86Reg[] {
  return CALLEE_SAVED.filter(([bpf]) => insns.some((x) => x.dst === bpf || x.src === bpf)).map(([, r]) => r);
}

const ALU: Record<number, AluOp> = { [BPF_ADD]: "add", [BPF_SUB]: "sub", [BPF_AND]: "and", [BPF_OR]: "or", [BPF_XOR]: "xor" };
const SHIFTS: Record<number, ShiftOp> = { [BPF_LSH]: "shl", [BPF_RSH]: "shr", [BPF_ARSH]: "sar" };
const COND: Record<number, Cond> = {
  [BPF_JEQ]: "e", [BPF_JNE]: "ne", [BPF_JGT]: "a", [BPF_JLT]: "b", [BPF_JGE]: "ae", [BPF_JLE]: "be",
  [BPF_JSGT]: "g", [BPF_JSLT]: "l", [BPF_JSGE]: "ge", [BPF_JSLE]: "le", [BPF_JSET]: "ne",
};

/** The JIT's state between bpf_int_jit_compile() calls of one subprog (struct x64_jit_data). */
export interface JitState {
  readonly addrs: Int32Array;
  readonly cleanup: number;
  readonly proglen: number;
}

export interface LoweredFunc {
  /** The code, with the machine's records of it when lowerFunction() was given `records`. */
  readonly assembled: Assembled & { readonly decoded?: readonly InsnRecord[] };
  /** Address of the first x86 instruction of each BPF instruction of the function. */
  readonly insnAddrs: readonly bigint[];
  /** do_jit()'s addrs[]: addrs[0] the prologue's end, addrs[k + 1] the end of instruction k. */
  readonly addrs: readonly number[];
  /** ksym.fp_start / fp_end as do_jit() stores them (`prog - temp`, see doJit()). */
  readonly ksym: { readonly fpStart: number; readonly fpEnd: number };
  readonly passes: number;
  /** What a subprog's extra pass starts from. */
  readonly state: JitState;
}

/**
 * Each BPF instruction's first byte, from addrs[]. An ld_imm64's second half has no code of its
 * own: it starts where its first half does (its addrs[] entry, the first half's end, is the
 * stale first estimate: see doJit()).
 */
export function insnAddrsOf(insns: readonly BpfInsn[], addrs: ArrayLike<number>, base: bigint): bigint[] {
  return Array.from({ length: insns.length }, (_, k) => base + BigInt(k > 0 && isSecondHalf(insns, k) ? addrs[k - 1]! : addrs[k]!));
}

/** Where a call goes: the symbol of a helper, kfunc or BPF function. */
export type CallTarget = (x: BpfInsn, index: number) => string;

/**
 * bpf_int_jit_compile() of function `f.fi` at `base`; `symbols` resolves the names `target`
 * returns. `resume`: a subprog's extra pass (jit_subprogs() calls the JIT again once every
 * subprog has its address): one pass into the image from the state the first call left, with
 * padding on. `records`: where the pass into the image keeps the machine's record of each
 * instruction (the image's `decoded`), for code that will run as it is.
 */
export function lowerFunction(
  strategy: Strategy, f: FuncJit, base: bigint, target: CallTarget, symbols: (name: string) => bigint | undefined, resume?: JitState,
  records?: () => InsnRecorder,
): LoweredFunc {
  const insns = f.prog.insns.slice(f.func.start, f.func.end);
  const n = insns.length;
  const name = `${f.prog.name}/${f.func.name}`;
  // Before the first pass, a rough estimate: each BPF instruction is under 64 bytes.
  const addrs = resume ? Int32Array.from(resume.addrs) : Int32Array.from({ length: n + 1 }, (_, i) => 64 * (i + 1));
  const ctx = { cleanup: resume ? resume.cleanup : 64 * (n + 1) };
  let oldproglen = resume ? resume.proglen : 0;
  let image = resume !== undefined, padding = resume !== undefined;
  for (let pass = 0; pass < MAX_PASSES || image; pass++) {
    if (!padding && pass >= PADDING_PASSES) padding = true;
    const out = doJit(strategy, f, insns, addrs, ctx, padding, image, base, target, symbols, image ? records?.() : undefined);
    if (image) {
      if (out.proglen !== oldproglen) throw new JitError(`${name}: bpf_jit: proglen=${out.proglen} != oldproglen=${oldproglen}`);
      const assembled = out.e.finish();
      return {
        assembled, addrs: [...addrs], insnAddrs: insnAddrsOf(insns, addrs, base), passes: pass + 1,
        ksym: out.ksym, state: { addrs: Int32Array.from(addrs), cleanup: ctx.cleanup, proglen: out.proglen },
      };
    }
    if (out.proglen === oldproglen) image = true; // bpf_jit_binary_pack_alloc(): the next pass writes the image
    oldproglen = out.proglen;
  }
  throw new JitError(`${name}: the JIT did not converge in ${MAX_PASSES} passes (bpf_int_jit_compile() gives up; with BPF_JIT_ALWAYS_ON the load fails)`);
}

/** Why the model does not lower an encoding the kernel's JIT has a case for. */
const NOT_MODELLED = (what: string) => `${what} is not modelled (stackcheck's programs have no arena, BTF pointers, tail calls or stack arguments)`;

/**
 * One do_jit() pass: the code, its length, and ksym.fp_start/fp_end as do_jit() records them.
 * `prog` is reset to `temp` at the start of every instruction, so `fp_start = prog - temp`
 * right after emit_prologue() is an offset from the image start, while `fp_end = prog - temp`
 * right after the first exit's `leave` is an offset from the start of that exit instruction's
 * code (bpf_jit_comp.c do_jit(), 7.2: the same line's emit_return() adds addrs[i - 1] to it,
 * the ksym assignment does not).
 */
function doJit(
  strategy: Strategy, f: FuncJit, insns: readonly BpfInsn[], addrs: Int32Array, ctx: { cleanup: number }, padding: boolean, image: boolean,
  base: bigint, target: CallTarget, symbols: (name: string) => bigint | undefined, records: InsnRecorder | undefined,
): { e: Emitter; proglen: number; ksym: { fpStart: number; fpEnd: number } } {
  const name = `${f.prog.name}/${f.func.name}`;
  // (no notes: nothing reads a JIT function's as text; `disasm` lists its bytes through iced)
  const e = new Emitter(name, { base, symbols, notes: false, ...(records ? { records } : {}) });
  const fp = strategy.frameRegister(f);
  const bmi2 = f.opts.bmi2 === true;
  const where = `strategy '${strategy.name}', ${name}`;
  strategy.prologue(e, f);
  if (e.frameMarks.ready !== 1 || e.frameMarks.gone !== 0) {
    throw new StrategyError(`${where}: the prologue must call e.frameReady() once, where the function's frame is complete (do_jit() records ksym.fp_start there); it called it ${e.frameMarks.ready} time(s)${e.frameMarks.gone ? " and called e.frameGone()" : ""}`);
  }
  const fpStart = e.labelOffset(FRAME_READY)!;
  let fpEnd = 0;
  let proglen = e.offset;
  addrs[0] = proglen;
  let seenExit = false;
  const unknown = (x: BpfInsn, k: number) => new JitError(`${name}: insn ${k}: bpf_jit: unknown opcode ${x.code.toString(16).padStart(2, "0")}`);
  for (let i = 1; i <= insns.length; i++) {
    const x = insns[i - 1]!;
    const k = i - 1;
    const start = e.offset; // `temp`: this instruction's code starts here
    /** The instruction's size in the last pass (INSN_SZ_DIFF adds what is emitted of it so far). */
    const lastSize = addrs[i]! - addrs[i - 1]!;
    const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
    const dst = regOf(x.dst, fp, name, k), src = regOf(x.src, fp, name, k);
    if (cls === BPF_ALU || cls === BPF_ALU64) {
      const is64 = cls === BPF_ALU64;
      if (op === BPF_MOV) {
        if (!isX) e.movImm32(is64, dst, x.imm);
        else if (is64 && x.imm !== 0) throw new JitError(`${name}: insn ${k}: ${NOT_MODELLED("an address-space cast or per-CPU address move (mov with imm)")}`);
        else if (x.off === 0) e.movReg(is64, dst, src);
        else e.movsxReg(x.off as 8 | 16 | 32, is64, dst, src); // emit_movsx_reg()
      } else if (op === BPF_NEG) {
        e.neg(is64, dst);
      } else if (ALU[op] !== undefined) {
        if (isX) e.aluRR(ALU[op]!, is64, dst, src);
        else e.aluRI(ALU[op]!, is64, dst, x.imm);
      } else if (op === BPF_DIV || op === BPF_MOD) {
        divMod(e, x, is64, dst, src);
      } else if (op === BPF_MUL) {
        if (isX) e.imulRR(is64, dst, src);
        else e.imulRI(is64, dst, x.imm);
      } else if (SHIFTS[op] !== undefined) {
        if (!isX) e.shiftRI(SHIFTS[op]!, is64, dst, x.imm);
        else if (bmi2 && x.src !== 4) e.shiftx(SHIFTS[op]!, is64, dst, src); // BMI2 shifts aren't better when the count is already in rcx
        else shiftByReg(e, SHIFTS[op]!, is64, x.dst, x.src, (r) => regOf(r, fp, name, k));
      } else if (op === BPF_END) {
        byteSwap(e, is64, isX, x.imm, dst);
      } else {
        throw unknown(x, k);
      }
    } else if (x.code === BPF_LD_IMM64) {
      // emit_mov_imm64(dst, insn[1].imm, insn[0].imm); insn++; i++: the second half's addrs[]
      // entry is written below, the first half's (i before the increment) keeps what it had
      // (the first estimate, 64 × its index), as do_jit() leaves it.
      const hi = insns[i]?.imm ?? 0;
      e.movImm64(dst, (BigInt(hi >>> 0) << 32n) | BigInt(x.imm >>> 0));
      i++;
    } else if (cls === BPF_LDX) {
      const mode = BPF_MODE(x.code), size = sizeBytes(BPF_SIZE(x.code)) as Width;
      if (mode === BPF_MEM) e.ldx(size, dst, src, x.off);
      else if (mode === BPF_MEMSX && size !== 8) e.ldsx(size as 1 | 2 | 4, dst, src, x.off);
      else if (mode === BPF_PROBE_MEM || mode === BPF_PROBE_MEMSX) throw new JitError(`${name}: insn ${k}: ${NOT_MODELLED("a BTF-pointer load (BPF_PROBE_MEM, with an exception-table entry)")}`);
      else throw unknown(x, k);
    } else if (cls === BPF_STX) {
      const mode = BPF_MODE(x.code), size = sizeBytes(BPF_SIZE(x.code)) as Width;
      if (mode === BPF_MEM) e.stx(size, dst, x.off, src);
      else if (mode === BPF_ATOMIC) atomic(e, x, size, dst, src, name, k);
      else throw unknown(x, k);
    } else if (cls === BPF_ST) {
      if (BPF_MODE(x.code) !== BPF_MEM) throw unknown(x, k);
      e.st(sizeBytes(BPF_SIZE(x.code)) as Width, dst, x.off, x.imm);
    } else if (cls === BPF_JMP && op === BPF_CALL) {
      const callee = target(x, f.func.start + k);
      strategy.call(e, f, () => e.callSymbol(callee));
    } else if (cls === BPF_JMP && op === BPF_EXIT) {
      if (seenExit) {
        emitJmp(e, ctx.cleanup - addrs[i]!, padding, lastSize - (e.offset - start), name, k); // later exits jump to the first one's epilogue
      } else {
        seenExit = true;
        ctx.cleanup = proglen; // cleanup_addr: this pass's start of the first exit
        e.label("cleanup");
        strategy.epilogue(e, f);
        const marks: { ready: number; gone: number } = { ...e.frameMarks }; // (the prologue check narrowed the fields)
        if (marks.gone !== 1 || marks.ready !== 1) {
          throw new StrategyError(`${where}: the epilogue must call e.frameGone() once, where the frame is torn down (do_jit() records ksym.fp_end there, after \`leave\`); it called it ${marks.gone} time(s)${marks.ready !== 1 ? " and called e.frameReady() again" : ""}`);
        }
        fpEnd = e.labelOffset(FRAME_GONE)! - start; // `prog - temp` inside this instruction
      }
    } else if (op === BPF_JA && (cls === BPF_JMP || cls === BPF_JMP32)) {
      if (isX) throw new JitError(`${name}: insn ${k}: ${NOT_MODELLED("an indirect jump (gotox)")}`);
      // BPF_JMP: off; BPF_JMP32 (gotol): imm. -1 always jumps back two bytes (a self-loop).
      const off = cls === BPF_JMP ? x.off : x.imm;
      const rel = off === -1 ? -2 : addrs[i + off]! - addrs[i]!;
      if (rel === 0) {
        // a jump to the next instruction is elided; with padding, as long as it was last pass
        if (padding) {
          const nops = lastSize - (e.offset - start);
          if (nops !== 0 && nops !== 2 && nops !== 5) throw new JitError(`${name}: insn ${k}: unexpected nop jump padding: ${nops} bytes`);
          e.nops(nops);
        }
      } else {
        emitJmp(e, rel, padding, lastSize - (e.offset - start), name, k);
      }
    } else if ((cls === BPF_JMP || cls === BPF_JMP32) && COND[op] !== undefined) {
      const is64 = cls === BPF_JMP;
      if (op === BPF_JSET) {
        if (isX) e.testRR(is64, dst, src);
        else e.testRI(is64, dst, x.imm);
      } else if (isX) e.cmpRR(is64, dst, src);
      else if (x.imm === 0) e.testRR(is64, dst, dst); // test dst,dst saves a byte
      else e.cmpRI(is64, dst, x.imm);
      const rel = addrs[i + x.off]! - addrs[i]!;
      if (isImm8JmpOffset(rel)) {
        if (padding) {
          const nops = lastSize - (e.offset - start) - 2;
          if (nops !== 0 && nops !== 4) throw new JitError(`${name}: insn ${k}: unexpected jmp_cond padding: ${nops} bytes`);
          e.nops(nops);
        }
        e.jcc(COND[op]!, true, rel);
      } else if (isSimm32(BigInt(rel))) {
        e.jcc(COND[op]!, false, rel);
      } else {
        throw new JitError(`${name}: insn ${k}: cond_jmp gen bug ${rel.toString(16)}`);
      }
    } else if (cls === BPF_JMP && op === BPF_TAIL_CALL) {
      throw new JitError(`${name}: insn ${k}: ${NOT_MODELLED("a tail call")}`);
    } else {
      throw unknown(x, k); // BPF_JCOND (may_goto) too: the verifier's fix-ups replace it before the JIT runs
    }
    const ilen = e.offset - start;
    // Writing the image: every instruction must land where the last pass put it.
    if (image && proglen + ilen !== addrs[i]) throw new JitError(`${name}: insn ${k}: bpf_jit: fatal error (the instruction moved in the final pass)`);
    proglen += ilen;
    addrs[i] = proglen;
  }
  if (!seenExit) throw new JitError(`${name}: no exit`);
  return { e, proglen, ksym: { fpStart, fpEnd } };
}

/** reg2hex[] for one instruction's register field: R10 is the strategy's frame register, BPF_REG_AX r10. */
function regOf(r: number, fp: X86Reg, name: string, k: number): X86Reg {
  if (r === 10) return fp;
  if (r === BPF_REG_AX) return "r10";
  const x = REG_MAP[r];
  if (x === undefined) throw new JitError(`${name}: insn ${k}: ${r === 11 ? NOT_MODELLED("BPF_REG_PARAMS (stack arguments)") : `register ${r} is not a BPF register`}`);
  return x;
}

/**
 * BPF_DIV / BPF_MOD, unsigned (off 0) and signed (off 1): save rax and rdx unless the
 * destination is one of them, the divisor in r11 when it is an immediate or lives in rax/rdx,
 * the dividend in rax, `xor edx,edx; div` or `cdq/cqo; idiv`, the quotient or remainder into
 * the destination, rdx and rax back (do_jit(), 7.2). Division by zero and INT_MIN / -1 are the
 * verifier's fix-ups' business (jit/bpf/fixups.ts); this code would raise #DE.
 */
function divMod(e: Emitter, x: BpfInsn, is64: boolean, dst: X86Reg, src: X86Reg): void {
  if (x.dst !== 0) e.push("rax");
  if (x.dst !== 3) e.push("rdx");
  let divisor = src;
  if (BPF_SRC(x.code) === BPF_X) {
    if (x.src === 0 || x.src === 3) {
      e.movReg(true, AUX, src); // EMIT_mov(AUX_REG, src_reg)
      divisor = AUX;
    }
  } else {
    e.movR11Imm32(x.imm);
    divisor = AUX;
  }
  if (x.dst !== 0) e.movReg(is64, "rax", dst);
  if (x.off === 0) {
    e.xorEdx();
    e.div(false, is64, divisor);
  } else {
    e.cdq(BPF_CLASS(x.code) !== BPF_ALU);
    e.div(true, is64, divisor);
  }
  if (BPF_OP(x.code) === BPF_MOD && x.dst !== 3) e.movReg(is64, dst, "rdx");
  else if (BPF_OP(x.code) === BPF_DIV && x.dst !== 0) e.movReg(is64, dst, "rax");
  if (x.dst !== 3) e.pop("rdx");
  if (x.dst !== 0) e.pop("rax");
}

/**
 * BPF_END and BPF_BSWAP (do_jit(), 7.2): to_be (BPF_ALU | BPF_TO_BE) and bswap (BPF_ALU64 |
 * BPF_TO_LE) swap: 16 as `ror r16,8; movzx`, 32 and 64 as `bswap`; to_le (BPF_ALU | BPF_TO_LE)
 * only truncates: 16 `movzx`, 32 `mov r32,r32`, 64 nothing.
 */
function byteSwap(e: Emitter, is64: boolean, toBe: boolean, bits: number, dst: X86Reg): void {
  if (toBe || is64) {
    if (bits === 16) e.ror16by8(dst).movzx16(dst);
    else if (bits === 32) e.bswap(false, dst);
    else if (bits === 64) e.bswap(true, dst);
  } else if (bits === 16) e.movzx16(dst);
  else if (bits === 32) e.movSelf32(dst);
}

/**
 * BPF_STX | BPF_ATOMIC (do_jit(), 7.2): and/or/xor with BPF_FETCH as a cmpxchg loop (rax saved
 * in BPF_REG_AX, the new value built in r11, `jne` back until the swap wins); load-acquire and
 * store-release as plain loads and stores (x86 is TSO); the rest as one locked instruction
 * (emit_atomic_rmw()). 1- and 2-byte read-modify-writes are refused as upstream refuses them.
 */
function atomic(e: Emitter, x: BpfInsn, size: Width, dst: X86Reg, src: X86Reg, name: string, k: number): void {
  const op = x.imm;
  if (op === BPF_LOAD_ACQ) { e.ldx(size, dst, src, x.off); return; } // dst = smp_load_acquire(src + off)
  if (op === BPF_STORE_REL) { e.stx(size, dst, x.off, src); return; }
  if (size !== 4 && size !== 8) throw new JitError(`${name}: insn ${k}: bpf_jit: 1- and 2-byte RMW atomics are not supported`);
  const fetchLoop = op === (BPF_AND | BPF_FETCH) || op === (BPF_OR | BPF_FETCH) || op === (BPF_XOR | BPF_FETCH);
  if (fetchLoop) {
    const is64 = size === 8;
    e.movReg(true, "r10", "rax"); // emit_mov_reg(true, BPF_REG_AX, BPF_REG_0): rax is cmpxchg's operand
    const realSrc = x.src === 0 ? "r10" : src, realDst = x.dst === 0 ? "r10" : dst;
    const loop = e.offset;
    e.ldx(size, "rax", realDst, x.off);
    e.movReg(is64, AUX, "rax");
    e.aluRR(ALU[BPF_OP(op)]!, is64, AUX, realSrc);
    e.atomicRmw("cmpxchg", size, realDst, x.off, AUX);
    e.jcc("ne", true, -(e.offset - loop) - 2);
    e.movReg(is64, realSrc, "rax");
    e.movReg(true, "rax", "r10");
    return;
  }
  const rmw = op === BPF_ADD ? "add" : op === BPF_AND ? "and" : op === BPF_OR ? "or" : op === BPF_XOR ? "xor"
    : op === (BPF_ADD | BPF_FETCH) ? "xadd" : op === BPF_XCHG ? "xchg" : op === BPF_CMPXCHG ? "cmpxchg" : undefined;
  if (rmw === undefined) throw new JitError(`${name}: insn ${k}: bpf_jit: unknown atomic opcode ${op.toString(16).padStart(2, "0")}`);
  e.atomicRmw(rmw, size, dst, x.off, src);
}

/** emit_jmp: `jmp rel8` (padded in the late passes when it shrank) or `jmp rel32`; `sizeDiff`: INSN_SZ_DIFF. */
function emitJmp(e: Emitter, rel: number, padding: boolean, sizeDiff: number, name: string, k: number): void {
  if (isImm8JmpOffset(rel)) {
    if (padding) {
      const nops = sizeDiff - 2;
      if (nops !== 0 && nops !== 3) throw new JitError(`${name}: insn ${k}: unexpected jump padding: ${nops} bytes`);
      e.nops(nops);
    }
    e.jmp(true, rel);
  } else if (isSimm32(BigInt(rel))) {
    e.jmp(false, rel);
  } else {
    throw new JitError(`${name}: insn ${k}: jmp gen bug ${rel.toString(16)}`);
  }
}

/**
 * Shifts by a register, as upstream emits them on a CPU without BMI2 (JitOptions.bmi2 off):
 * the count must be in cl. When it already is (src is BPF R4) just `shl dst,cl`;
 * otherwise save rcx with `push rcx` … `pop rcx`, or, when the destination is rcx itself, shift
 * a copy in r11 (AUX_REG) and move it back.
 */
function shiftByReg(e: Emitter, op: ShiftOp, is64: boolean, bpfDst: number, bpfSrc: number, reg: (r: number) => X86Reg): void {
  let dst = reg(bpfDst);
  if (bpfSrc !== 4) {
    if (bpfDst === 4) {
      e.movReg(true, AUX, dst);
      dst = AUX;
    } else {
      e.push("rcx");
    }
    e.movReg(true, "rcx", reg(bpfSrc));
  }
  e.shiftRCl(op, is64, dst);
  if (bpfSrc !== 4) {
    if (bpfDst === 4) e.movReg(true, reg(bpfDst), AUX);
    else e.pop("rcx");
  }
}
