// The verifier rules that matter to stack discipline (kernel-model.md §2.2), applied to a
// Program: structure (known opcodes, forward jumps in range, every path ends in exit, no
// unreachable code), the call graph (no recursion, MAX_CALL_FRAMES), private-stack eligibility
// and the stack limits (check_max_stack_depth[_subprog]()), then an abstract interpretation of
// register types and stack initialisation along every path (do_check()), walking subprogs per
// call site so that stack pointers passed as arguments are checked in the caller's frame.
// Each rejection names the function, the instruction index within it, and the rule.
import { helperById, kfuncById, type ArgKind, type CallSig } from "./abi.ts";
import type { BpfInsn } from "./insn.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_CALL, BPF_CLASS, BPF_EXIT, BPF_HELPER_CALL, BPF_JA, BPF_JEQ,
  BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT,
  BPF_LDX, BPF_LSH, BPF_MEM, BPF_MODE, BPF_MOV, BPF_NEG, BPF_OP, BPF_OR, BPF_PRIV_STACK_MIN_SIZE, BPF_PSEUDO_CALL,
  BPF_PSEUDO_KFUNC_CALL, BPF_RSH, BPF_SIZE, BPF_SRC, BPF_ST, BPF_STX, BPF_SUB, BPF_X, BPF_XOR, MAX_BPF_STACK,
  MAX_CALL_FRAMES, sizeBytes,
} from "./opcodes.ts";
import type { Program } from "./program.ts";

export type Rule =
  | "opcode" | "jump-range" | "backward-jump" | "fall-through" | "unreachable" | "call-target" | "unknown-helper"
  | "unknown-kfunc" | "recursion" | "call-depth" | "stack-size" | "combined-stack-size" | "stack-bounds"
  | "stack-alignment" | "uninit-stack" | "uninit-reg" | "fp-read-only" | "pointer-arithmetic" | "invalid-mem-access"
  | "helper-arg" | "return-value" | "shift-range" | "reserved-fields";

export interface ValidationIssue {
  readonly rule: Rule;
  readonly func: string;
  /** Instruction index within the function (-1 for whole-program rules). */
  readonly insn: number;
  readonly message: string;
}

export class ValidationError extends Error {
  override name = "ValidationError";
  constructor(readonly program: string, readonly issue: ValidationIssue) {
    super(`program ${program}, function ${issue.func}${issue.insn >= 0 ? `, insn ${issue.insn}` : ""}: ${issue.message} [${issue.rule}]`);
  }
}

export interface Validated {
  /** Per function: does it run on a private stack (jits_use_priv_stack)? */
  readonly privStack: readonly boolean[];
  /** Per function: stack depth rounded as the verifier rounds it for JITed programs (16). */
  readonly verifierDepth: readonly number[];
  /** The deepest chain of BPF frames (main = 1). */
  readonly callDepth: number;
  /** The largest sum of non-private depths along a call chain (the combined-stack rule). */
  readonly combinedDepth: number;
}

const ALU_OPS = new Set([BPF_MOV, BPF_ADD, BPF_SUB, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH, BPF_ARSH, BPF_NEG]);
const JMP_OPS = new Set([BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE, BPF_JSET]);

/** round_up_stack_depth() for a JITed program. */
export const roundUp16 = (d: number) => Math.ceil(d / 16) * 16;

// ---- abstract state ----

/** A register: not readable, a number, the ctx pointer, a pointer into frame `frame`'s stack, or path-dependent. */
type RegT = { t: "uninit" } | { t: "scalar" } | { t: "ctx" } | { t: "fp"; frame: number; off: number } | { t: "mixed" };
interface State {
  regs: RegT[];
  /** Per live frame (0 = main): one flag per stack byte, index d + off for off in [-d, 0). */
  init: Uint8Array[];
}

const UNINIT: RegT = { t: "uninit" }, SCALAR: RegT = { t: "scalar" }, MIXED: RegT = { t: "mixed" };

function clone(s: State): State {
  return { regs: s.regs.slice(), init: s.init.map((a) => a.slice()) };
}

function sameReg(a: RegT, b: RegT): boolean {
  return a.t === b.t && (a.t !== "fp" || (b.t === "fp" && a.frame === b.frame && a.off === b.off));
}

/** The meet of two states at a join point: what holds on both paths. */
function meet(a: State, b: State): State {
  return {
    regs: a.regs.map((r, i) => (sameReg(r, b.regs[i]!) ? r : r.t === "uninit" || b.regs[i]!.t === "uninit" ? UNINIT : MIXED)),
    init: a.init.map((x, f) => x.map((v, i) => v & b.init[f]![i]!)),
  };
}

class Checker {
  private depths: number[];
  constructor(private readonly p: Program) {
    this.depths = p.funcs.map((f) => f.stackDepth);
  }

  fail(rule: Rule, fi: number, i: number, message: string): never {
    const f = this.p.funcs[fi]!;
    throw new ValidationError(this.p.name, { rule, func: f.name, insn: i < 0 ? -1 : i - f.start, message });
  }

  /** Structure of one function; returns its subprog call targets (function indices). */
  structure(fi: number): number[] {
    const p = this.p, f = p.funcs[fi]!;
    const callees: number[] = [];
    // Closures made once per function, over the instruction at hand (not one pair per instruction).
    let i = f.start;
    let x = p.insns[i]!;
    const bad = () => this.fail("opcode", fi, i, `unsupported opcode 0x${x.code.toString(16).padStart(2, "0")}`);
    // Reserved fields must be zero (check_alu_op(), check_mem_access paths, check_cfg()):
    // e.g. a MOV|X with off 8 would be BPF_MOVSX, which is not in the subset.
    const reserved = (what: string, ok: boolean) => { if (!ok) this.fail("reserved-fields", fi, i, `${what} uses reserved fields`); };
    for (; i < f.end; i++) {
      x = p.insns[i]!;
      const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
      const isX = BPF_SRC(x.code) === BPF_X;
      if (cls === BPF_ALU || cls === BPF_ALU64) {
        if (op === BPF_NEG) reserved("BPF_NEG", x.src === 0 && x.off === 0 && x.imm === 0);
        else reserved(op === BPF_MOV ? "BPF_MOV" : "BPF_ALU", x.off === 0 && (isX ? x.imm === 0 : x.src === 0));
      } else if (cls === BPF_LDX) reserved("BPF_LDX", x.imm === 0);
      else if (cls === BPF_STX) reserved("BPF_STX", x.imm === 0);
      else if (cls === BPF_ST) reserved("BPF_ST", x.src === 0);
      else if (op === BPF_CALL && cls === BPF_JMP) reserved("BPF_CALL", x.dst === 0 && x.off === 0);
      else if (op === BPF_EXIT && cls === BPF_JMP) reserved("BPF_EXIT", x.dst === 0 && x.src === 0 && x.off === 0 && x.imm === 0);
      else if (op === BPF_JA && cls === BPF_JMP) reserved("BPF_JA", x.dst === 0 && x.src === 0 && x.imm === 0);
      else if (cls === BPF_JMP || cls === BPF_JMP32) reserved("BPF_JMP/JMP32", isX ? x.imm === 0 : x.src === 0);
      if (cls === BPF_ALU || cls === BPF_ALU64) {
        if (!ALU_OPS.has(op)) bad();
        if (op === BPF_NEG && BPF_SRC(x.code) === BPF_X) bad();
        if ((op === BPF_LSH || op === BPF_RSH || op === BPF_ARSH) && BPF_SRC(x.code) !== BPF_X) {
          const max = cls === BPF_ALU64 ? 63 : 31;
          if (x.imm < 0 || x.imm > max) this.fail("shift-range", fi, i, `invalid shift ${x.imm}`);
        }
      } else if (cls === BPF_LDX || cls === BPF_STX || cls === BPF_ST) {
        if (BPF_MODE(x.code) !== BPF_MEM) bad();
      } else if (cls === BPF_JMP || cls === BPF_JMP32) {
        if (op === BPF_CALL && cls === BPF_JMP) {
          if (x.src === BPF_PSEUDO_CALL) {
            const target = i + 1 + x.imm;
            const ci = p.funcs.findIndex((g) => g.start === target);
            if (ci < 0) this.fail("call-target", fi, i, `call to insn ${target}, which does not start a function`);
            callees.push(ci);
          } else if (x.src === BPF_HELPER_CALL) {
            if (!helperById(x.imm)) this.fail("unknown-helper", fi, i, `invalid func unknown#${x.imm}`);
          } else if (x.src === BPF_PSEUDO_KFUNC_CALL) {
            if (!kfuncById(x.imm)) this.fail("unknown-kfunc", fi, i, `kernel function ${x.imm} is not a kfunc of the synthetic kernel`);
          } else bad();
        } else if (op === BPF_EXIT && cls === BPF_JMP) {
          // fine
        } else if (op === BPF_JA && cls === BPF_JMP || JMP_OPS.has(op)) {
          if (x.off < 0) this.fail("backward-jump", fi, i, `back-edge from insn ${i - f.start} to ${i - f.start + 1 + x.off}`);
          const target = i + 1 + x.off;
          if (target >= f.end) this.fail("jump-range", fi, i, `jump out of range from insn ${i - f.start} to ${target - f.start}`);
        } else bad();
      } else bad();
    }
    const last = p.insns[f.end - 1]!;
    if (!(BPF_CLASS(last.code) === BPF_JMP && BPF_OP(last.code) === BPF_EXIT)) {
      this.fail("fall-through", fi, f.end - 1, "the last instruction is not exit: control falls off the end of the function");
    }
    return callees;
  }

  run(): Validated {
    const p = this.p;
    const callees = p.funcs.map((_, fi) => this.structure(fi));
    // Call graph: no recursion, at most MAX_CALL_FRAMES frames (check_max_stack_depth).
    const mode = privStackMode(p);
    const priv = p.funcs.map((f) => mode && roundUp16(f.stackDepth) >= BPF_PRIV_STACK_MIN_SIZE);
    p.funcs.forEach((f, fi) => {
      const d = roundUp16(f.stackDepth);
      if (priv[fi] && d > MAX_BPF_STACK) this.fail("stack-size", fi, -1, `stack size of subprog ${fi} is ${d}. Too large`);
    });
    let callDepth = 0, combined = 0;
    const walk = (fi: number, chain: number[], sum: number) => {
      if (chain.includes(fi)) this.fail("recursion", chain.at(-1)!, -1, `recursive call from ${p.funcs[chain.at(-1)!]!.name} to ${p.funcs[fi]!.name}`);
      const frames = chain.length + 1;
      if (frames > MAX_CALL_FRAMES) this.fail("call-depth", fi, -1, `the call stack of ${frames} frames is too deep`);
      const total = sum + (priv[fi] ? 0 : roundUp16(p.funcs[fi]!.stackDepth));
      if (total > MAX_BPF_STACK) this.fail("combined-stack-size", fi, -1, `combined stack size of ${frames} calls is ${total}. Too large`);
      callDepth = Math.max(callDepth, frames);
      combined = Math.max(combined, total);
      for (const c of new Set(callees[fi])) walk(c, [...chain, fi], total);
    };
    walk(0, [], 0);
    // A function no call reaches is unreachable code (check_cfg()).
    const reached = new Set<number>([0]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const f of reached) for (const c of callees[f]!) if (!reached.has(c)) { reached.add(c); grew = true; }
    }
    p.funcs.forEach((f, fi) => { if (!reached.has(fi)) this.fail("unreachable", fi, f.start, `unreachable insn ${f.start}: no call reaches function ${f.name}`); });
    // Data flow from the main program's entry: R1 = ctx, R10 = its frame pointer.
    const entry: State = { regs: Array.from({ length: 11 }, () => UNINIT), init: [new Uint8Array(this.depths[0]!)] };
    entry.regs[1] = { t: "ctx" };
    entry.regs[10] = { t: "fp", frame: 0, off: 0 };
    const exit = this.func(0, entry);
    if (exit.regs[0]!.t !== "scalar") this.fail("return-value", 0, p.funcs[0]!.end - 1, "R0 leaks addr as return value");
    return { privStack: priv, verifierDepth: p.funcs.map((f) => roundUp16(f.stackDepth)), callDepth, combinedDepth: combined };
  }

  /** Interpret function `fi` from `entry`; returns the meet of its exit states. */
  private func(fi: number, entry: State): State {
    const p = this.p, f = p.funcs[fi]!;

    const at: (State | undefined)[] = new Array(f.end - f.start);
    at[0] = entry;
    let exit: State | undefined;
    const flow = (to: number, s: State) => {
      const k = to - f.start;
      at[k] = at[k] === undefined ? s : meet(at[k]!, s);
    };
    // `reg` is made once per function, over the instruction and state at hand.
    let i = f.start;
    let s: State = entry;
    const reg = (r: number): RegT => {
      const v = s.regs[r]!;
      if (v.t === "uninit") this.fail("uninit-reg", fi, i, `R${r} !read_ok`);
      if (v.t === "mixed") this.fail("uninit-reg", fi, i, `R${r} has different types on different paths`);
      return v;
    };
    for (; i < f.end; i++) {
      const s0 = at[i - f.start];
      if (s0 === undefined) this.fail("unreachable", fi, i, `unreachable insn ${i - f.start}`);
      s = clone(s0);
      const x = p.insns[i]!;
      const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
      if (cls === BPF_ALU || cls === BPF_ALU64) {
        if (x.dst === 10) this.fail("fp-read-only", fi, i, "frame pointer is read only");
        this.alu(fi, i, x, s, reg);
        flow(i + 1, s);
      } else if (cls === BPF_LDX) {
        if (x.dst === 10) this.fail("fp-read-only", fi, i, "frame pointer is read only");
        this.access(fi, i, s, reg(x.src), x.src, x.off, sizeBytes(BPF_SIZE(x.code)), "read");
        s.regs[x.dst] = SCALAR;
        flow(i + 1, s);
      } else if (cls === BPF_STX || cls === BPF_ST) {
        if (cls === BPF_STX) reg(x.src);
        this.access(fi, i, s, reg(x.dst), x.dst, x.off, sizeBytes(BPF_SIZE(x.code)), "write");
        flow(i + 1, s);
      } else if (op === BPF_CALL) {
        this.call(fi, i, x, s, reg);
        flow(i + 1, s);
      } else if (op === BPF_EXIT) {
        reg(0);
        exit = exit === undefined ? s : meet(exit, s);
      } else if (op === BPF_JA) {
        flow(i + 1 + x.off, s);
      } else {
        const a = reg(x.dst);
        const b = BPF_SRC(x.code) === BPF_X ? reg(x.src) : SCALAR;
        if (a.t !== "scalar" || b.t !== "scalar") this.fail("pointer-arithmetic", fi, i, "pointer comparison prohibited");
        flow(i + 1, s);
        flow(i + 1 + x.off, clone(s));
      }
    }
    return exit!;
  }

  private alu(fi: number, i: number, x: BpfInsn, s: State, reg: (r: number) => RegT): void {
    const op = BPF_OP(x.code), is64 = BPF_CLASS(x.code) === BPF_ALU64, isX = BPF_SRC(x.code) === BPF_X;
    if (op === BPF_MOV) {
      const v = isX ? reg(x.src) : SCALAR;
      if (v.t !== "scalar" && !is64) this.fail("pointer-arithmetic", fi, i, `R${x.src} 32-bit pointer arithmetic prohibited`);
      s.regs[x.dst] = v;
      return;
    }
    const d = reg(x.dst);
    const v = isX ? reg(x.src) : SCALAR;
    if (v.t !== "scalar") this.fail("pointer-arithmetic", fi, i, `R${x.src} pointer used as an operand of ${is64 ? "" : "32-bit "}arithmetic`);
    if (d.t === "scalar") return;
    if (d.t === "fp" && is64 && !isX && (op === BPF_ADD || op === BPF_SUB)) {
      s.regs[x.dst] = { t: "fp", frame: d.frame, off: d.off + (op === BPF_ADD ? x.imm : -x.imm) };
      return;
    }
    this.fail("pointer-arithmetic", fi, i, `R${x.dst} pointer arithmetic prohibited (only 64-bit add/sub of a constant)`);
  }

  private access(fi: number, i: number, s: State, ptr: RegT, r: number, off: number, size: number, kind: "read" | "write"): void {
    if (ptr.t !== "fp") this.fail("invalid-mem-access", fi, i, `R${r} invalid mem access '${ptr.t}'`);
    const depth = this.depthOfFrame(s, ptr.frame);
    const at = ptr.off + off;
    if (at < -depth || at + size > 0) this.fail("stack-bounds", fi, i, `invalid ${kind} to stack R${r} off=${at} size=${size} (stack depth ${depth})`);
    if (at % size !== 0) this.fail("stack-alignment", fi, i, `misaligned stack access off ${at} size ${size}`);
    const flags = s.init[ptr.frame]!;
    for (let b = 0; b < size; b++) {
      if (kind === "write") flags[depth + at + b] = 1;
      else if (!flags[depth + at + b]) this.fail("uninit-stack", fi, i, `invalid read from stack R${r} off ${at} size ${size}: byte ${at + b} is not initialised`);
    }
  }

  private depthOfFrame(s: State, frame: number): number {
    return s.init[frame]!.length;
  }

  private call(fi: number, i: number, x: BpfInsn, s: State, reg: (r: number) => RegT): void {
    if (x.src === BPF_PSEUDO_CALL) {
      const ci = this.p.funcs.findIndex((g) => g.start === i + 1 + x.imm);
      const entry: State = { regs: Array.from({ length: 11 }, () => UNINIT), init: [...s.init.map((a) => a.slice()), new Uint8Array(this.depths[ci]!)] };
      for (let r = 1; r <= 5; r++) entry.regs[r] = s.regs[r]!;
      entry.regs[10] = { t: "fp", frame: entry.init.length - 1, off: 0 };
      const out = this.func(ci, entry);
      const r0 = out.regs[0]!;
      // prepare_func_exit(): no stack pointer at all goes back, not even one into a caller's frame.
      if (r0.t === "fp") this.fail("return-value", ci, this.p.funcs[ci]!.end - 1, "cannot return stack pointer to the caller");
      s.init = out.init.slice(0, -1); // what the callee initialised in its callers' frames stays initialised
      s.regs[0] = r0.t === "ctx" ? r0 : SCALAR;
    } else {
      const sig: CallSig = (x.src === BPF_HELPER_CALL ? helperById(x.imm) : kfuncById(x.imm))!;
      sig.args.forEach((kind, a) => this.arg(fi, i, s, reg, a + 1, kind, sig.name));
      s.regs[0] = SCALAR;
    }
    for (let r = 1; r <= 5; r++) s.regs[r] = UNINIT; // caller-saved registers are clobbered
  }

  private arg(fi: number, i: number, s: State, reg: (r: number) => RegT, r: number, kind: ArgKind, fn: string): void {
    const v = reg(r);
    if (kind === "scalar" && v.t !== "scalar") this.fail("helper-arg", fi, i, `${fn}: R${r} type=${v.t} expected=scalar`);
    if (kind === "stack-ptr-8") {
      if (v.t !== "fp") this.fail("helper-arg", fi, i, `${fn}: R${r} type=${v.t} expected=fp`);
      this.access(fi, i, s, v, r, 0, 8, "read");
    }
  }
}

/** bpf_enable_priv_stack(): may this program's subprogs use private stacks at all? */
export function privStackMode(p: Program): boolean {
  switch (p.type) {
    case "kprobe": case "tracepoint": case "perf_event": case "raw_tp": return true;
    case "tracing": return true; // bpf_prog_check_recur(): expected_attach_type != BPF_TRACE_ITER
    case "struct_ops": return p.privStackRequested; // check_recur is jits_use_priv_stack: false at this point
  }
}

const validated = new WeakMap<Program, Validated>();

/**
 * Validate a program; throws ValidationError naming the function, instruction and rule. Once per
 * program object: a scenario's programs are checked when the file is read and again when the
 * image is built, and programs are not changed after they are made.
 */
export function validate(p: Program): Validated {
  let v = validated.get(p);
  if (!v) validated.set(p, (v = new Checker(p).run()));
  return v;
}
