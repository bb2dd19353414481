// Lowering one BPF function to x86-64 (arch/x86/net/bpf_jit_comp.c do_jit()): the upstream
// register map, the upstream instruction choices, and layout by passes over an addrs[] table
// until nothing moves (bpf_int_jit_compile()): jumps take the rel8 form when the previous
// pass's offset fits, starting from upstream's estimate of 64 bytes per instruction.
import { AsmError, type Assembled } from "./asm.ts";
import type { BpfInsn } from "./bpf/insn.ts";
import {
  BPF_ADD, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_CALL, BPF_CLASS, BPF_EXIT, BPF_JA, BPF_JEQ, BPF_JGE,
  BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT, BPF_LDX,
  BPF_LSH, BPF_MOV, BPF_NEG, BPF_OP, BPF_OR, BPF_RSH, BPF_SIZE, BPF_SRC, BPF_ST, BPF_STX, BPF_SUB,
  BPF_X, BPF_XOR, BPF_ALU, sizeBytes,
} from "./bpf/opcodes.ts";
import { StrategyError, type Strategy, type FuncJit } from "./strategy.ts";
import { Emitter, type AluOp, type Cond, type ShiftOp, type Width, type X86Reg } from "./x86/emit.ts";

/** reg2hex[]: BPF R0-R9 (R10 is the strategy's frame register). */
const REG_MAP: readonly X86Reg[] = ["rax", "rdi", "rsi", "rdx", "rcx", "r8", "rbx", "r13", "r14", "r15"];
/** AUX_REG: the JIT's temporary. */
const AUX: X86Reg = "r11";
const CALLEE_SAVED: readonly [number, X86Reg][] = [[6, "rbx"], [7, "r13"], [8, "r14"], [9, "r15"]];

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
const isImm8 = (v: number) => v >= -128 && v <= 127;

export interface LoweredFunc {
  readonly assembled: Assembled;
  /** Address of the first x86 instruction of each BPF instruction of the function. */
  readonly insnAddrs: readonly bigint[];
  readonly passes: number;
}

export class JitError extends Error {
  override name = "JitError";
}

/** Where a call goes: the symbol of a helper, kfunc or BPF function. */
export type CallTarget = (x: BpfInsn, index: number) => string;

/** Lower function `f.fi` at `base`; `symbols` resolves the names `target` returns. */
export function lowerFunction(strategy: Strategy, f: FuncJit, base: bigint, target: CallTarget, symbols: (name: string) => bigint | undefined): LoweredFunc {
  const insns = f.prog.insns.slice(f.func.start, f.func.end);
  const n = insns.length;
  // addrs[k] = offset (from base) where BPF instruction k's code starts; addrs[n] = the end.
  let addrs = Array.from({ length: n + 1 }, (_, k) => 64 * (k + 1));
  let cleanup = 64 * (n + 1);
  let last: { forms: string; out: Assembled; sizesOnly: boolean } | undefined;
  // Converged: this pass's forms are final. A pass assembled for its sizes only is assembled for real.
  const done = (e: Emitter, prev: { out: Assembled; sizesOnly: boolean }, pass: number): LoweredFunc => ({
    assembled: prev.sizesOnly ? e.asm.assemble(base, { symbols }) : prev.out, insnAddrs: addrs.slice(0, n).map((a) => base + BigInt(a)), passes: pass,
  });
  for (let pass = 1; pass <= 20; pass++) {
    const forms: string[] = [];
    const e = emitFunction(strategy, f, insns, addrs, cleanup, target, forms);
    // The previous pass's addresses only choose jump forms: the same choices emit the same
    // instructions, so this pass's bytes are the previous pass's, which were its input: converged.
    const key = forms.join("");
    if (last !== undefined && last.forms === key) return done(e, last, pass);
    // A guess can pick rel8 for a jump that is out of its range (the first pass places the
    // epilogue at the end, so a later exit's jump back to it looks short): do_jit() writes a
    // wrong offset that pass and fixes it on the next. Here that pass is assembled for its sizes.
    let out: Assembled, sizesOnly = false;
    try {
      out = e.asm.assemble(base, { symbols });
    } catch (err) {
      if (!(err instanceof AsmError && err.code === "encode")) throw err;
      out = e.asm.assemble(base, { symbols, provisional: true });
      sizesOnly = true;
    }
    last = { forms: key, out, sizesOnly };
    const next = Array.from({ length: n + 1 }, (_, k) => Number((k < n ? out.labels.get(`insn_${k}`)! : out.end) - base));
    const nextCleanup = Number(out.labels.get("cleanup")! - base);
    if (next.every((v, k) => v === addrs[k]) && nextCleanup === cleanup) return done(e, last, pass);
    addrs = next;
    cleanup = nextCleanup;
  }
  throw new JitError(`${f.prog.name}/${f.func.name}: the image did not converge in 20 passes`);
}

/** `forms` gets one letter per jump: the form the addresses chose ("8" rel8, "4" rel32, "-" elided). */
function emitFunction(strategy: Strategy, f: FuncJit, insns: readonly BpfInsn[], addrs: readonly number[], cleanup: number, target: CallTarget, forms: string[]): Emitter {
  const e = new Emitter(`${f.prog.name}/${f.func.name}`);
  const fp = strategy.frameRegister(f);
  const reg = (r: number): X86Reg => (r === 10 ? fp : REG_MAP[r]!);
  const where = `strategy '${strategy.name}', ${f.prog.name}/${f.func.name}`;
  strategy.prologue(e, f);
  if (e.frameMarks.ready !== 1 || e.frameMarks.gone !== 0) {
    throw new StrategyError(`${where}: the prologue must call e.frameReady() once, where the function's frame is complete (do_jit() records ksym.fp_start there); it called it ${e.frameMarks.ready} time(s)${e.frameMarks.gone ? " and called e.frameGone()" : ""}`);
  }
  let seenExit = false;
  insns.forEach((x, k) => {
    e.label(`insn_${k}`);
    const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
    const dst = reg(x.dst), src = reg(x.src);
    // jmp_offset = addrs[target] - addrs[i] of the previous pass, measured from this insn's end
    // (no closure here: tsx's keepNames makes every closure created per instruction a defineProperty)
    const end = addrs[k + 1]!;
    if (cls === BPF_ALU || cls === BPF_ALU64) {
      const is64 = cls === BPF_ALU64;
      if (op === BPF_MOV) {
        if (isX) e.movReg(is64, dst, src);
        else e.movImm32(is64, dst, x.imm);
      } else if (op === BPF_NEG) {
        e.neg(is64, dst);
      } else if (ALU[op] !== undefined) {
        if (isX) e.aluRR(ALU[op]!, is64, dst, src);
        else e.aluRI(ALU[op]!, is64, dst, x.imm);
      } else if (SHIFTS[op] !== undefined) {
        if (!isX) e.shiftRI(SHIFTS[op]!, is64, dst, x.imm);
        else shiftByReg(e, SHIFTS[op]!, is64, x.dst, x.src, reg);
      } else {
        throw new JitError(`${f.prog.name}/${f.func.name}: insn ${k}: no lowering for opcode 0x${x.code.toString(16)}`);
      }
    } else if (cls === BPF_LDX) {
      e.ldx(sizeBytes(BPF_SIZE(x.code)) as Width, dst, src, x.off);
    } else if (cls === BPF_STX) {
      e.stx(sizeBytes(BPF_SIZE(x.code)) as Width, dst, x.off, src);
    } else if (cls === BPF_ST) {
      e.st(sizeBytes(BPF_SIZE(x.code)) as Width, dst, x.off, x.imm);
    } else if (op === BPF_CALL) {
      const name = target(x, f.func.start + k);
      strategy.call(e, f, () => e.callSymbol(name));
    } else if (op === BPF_EXIT) {
      if (seenExit) {
        const short = isImm8(cleanup - end);
        forms.push(short ? "8" : "4");
        e.jmp(short, "cleanup"); // later exits jump to the first one's epilogue
      } else {
        seenExit = true;
        e.label("cleanup");
        strategy.epilogue(e, f);
        if (e.frameMarks.gone !== 1 || e.frameMarks.ready !== 1) {
          throw new StrategyError(`${where}: the epilogue must call e.frameGone() once, where the frame is torn down (do_jit() records ksym.fp_end there, after \`leave\`); it called it ${e.frameMarks.gone} time(s)${e.frameMarks.ready !== 1 ? " and called e.frameReady() again" : ""}`);
        }
      }
    } else if (op === BPF_JA && cls === BPF_JMP) {
      const off = addrs[k + 1 + x.off]! - end;
      forms.push(off === 0 ? "-" : isImm8(off) ? "8" : "4");
      if (off !== 0) e.jmp(isImm8(off), `insn_${k + 1 + x.off}`); // a jump to the next code is elided
    } else if (cls === BPF_JMP || cls === BPF_JMP32) {
      const is64 = cls === BPF_JMP;
      if (op === BPF_JSET) {
        if (isX) e.testRR(is64, dst, src);
        else e.testRI(is64, dst, x.imm);
      } else if (isX) e.cmpRR(is64, dst, src);
      else if (x.imm === 0) e.testRR(is64, dst, dst); // test dst,dst saves a byte
      else e.cmpRI(is64, dst, x.imm);
      const t = k + 1 + x.off;
      const short = isImm8(addrs[t]! - end);
      forms.push(short ? "8" : "4");
      e.jcc(COND[op]!, short, `insn_${t}`);
    } else {
      throw new JitError(`${f.prog.name}/${f.func.name}: insn ${k}: no lowering for opcode 0x${x.code.toString(16)}`);
    }
  });
  if (!seenExit) throw new JitError(`${f.prog.name}/${f.func.name}: no exit`);
  return e;
}

/**
 * Shifts by a register, as upstream emits them on a CPU without BMI2 (the machine models no
 * shlx/shrx/sarx): the count must be in cl. When it already is (src is BPF R4) just `shl dst,cl`;
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
