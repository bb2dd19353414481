// Lowering one function of a plan to BPF (design.md §7: bodies that store known values, pass
// stack pointers to helpers and subprogs, call out, read back and fold everything into r0).
//
// Registers: R6 is the accumulator, R7..R9 keep the pointer parameters (copied from R2..R4 at
// entry, since calls clobber R1..R5), R1..R5 carry arguments, R0 results. A subprog receives the
// caller's accumulator in R1 and returns its own, so `acc = f(acc, …)` chains.
//
// The data-flow discipline that makes every corruption visible: each value stored into a slot
// (own or, through a pointer parameter, a caller's) is read exactly once — by the store that
// replaces it, by bpf_sc_rw, or by the read-back before exit — and each read is folded into the
// accumulator by a step that is a bijection of the value read (add, xor, and the helpers:
// bpf_sc_mix is a bijection of its first argument, a subprog's result of its R1). So changing
// any one stored value between its store and its read changes the function's result, and
// through the same chain, the program's. bpf_sc_rw reads the old value and writes 3·old + x:
// the old value is folded from its return, and the slot is then checked with
// `acc ^= *slot - 3·ret` (x when the helper is right) and refilled, so nothing is read twice.
//
// The accumulator is materialised lazily (main: a constant until first needed; a subprog: R1
// until something clobbers it), so a call can be the very first instruction after the prologue,
// and with `atExit` the last before the epilogue: the JIT's rare call shapes.
import { alu32, alu64, atomic, bswap, call, end, exit, insn, ld_imm64, ldx, st, stx, type BpfInsn, type Item, type Size } from "../../jit/bpf/insn.ts";
import {
  BPF_B, BPF_DW, BPF_H, BPF_JA, BPF_JCOND, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JSGT, BPF_K, BPF_MAY_GOTO, BPF_W, R0, R1, R2, R3, R4, R5, R6, R7, R10, type Reg,
} from "../../jit/bpf/opcodes.ts";
import type { PlanAtomic, PlanCall, PlanCallItem, PlanCtx, PlanFunc, PlanItem, PlanLoop, PlanMath, PlanNested } from "../plan.ts";
import type { ProgType } from "../../jit/bpf/program.ts";
import { ctxReadable } from "../../jit/bpf/validate.ts";
import { MAX_ITEMS, MAX_SLOTS, RUN_BUDGET } from "../plan.ts";
import { clamp, s32, upTo, wrap } from "./num.ts";
import {
  epilogueSteps, HELPER_STEPS, MAY_GOTO_INIT, MAY_GOTO_PASS, prologueSteps, SPIN_LOOP_STEPS, type Callee, type FuncShape,
} from "./steps.ts";

/** One emitted instruction, with what is fixed up once the frame size and the layout are known. */
export interface Sym {
  readonly x: BpfInsn;
  /** For an own slot: slot × 8 + byte, added to -depth in `field`; otherwise -1. */
  readonly at: number;
  readonly field: "off" | "imm";
  /** The plan index of the function a BPF-to-BPF call enters, or -1. */
  readonly callee: number;
  /** Own slots holding a value still to be read, just before this instruction (bit k: slot k). */
  readonly live: number;
}

export interface LoweredBody {
  readonly insns: readonly Sym[];
  readonly shape: FuncShape;
  /** Steps of one activation, nested runs counted as allowed (steps.ts activationCost()). */
  readonly cost: number;
  readonly nslots: number;
  /** Plan indices of the subprogs it calls. */
  readonly subprogs: readonly number[];
}

/** What the function's calls enter, decided by the program-level lowering. */
export interface BodyEnv {
  readonly isMain: boolean;
  /** The program's type: which context reads it may make. */
  readonly type: ProgType;
  readonly seed: number;
  /** Pointer parameters (0 for main). */
  readonly params: number;
  /** The later function a call names, or undefined when there is none. */
  subprog(target: number): { readonly fi: number; readonly params: number; readonly cost: number } | undefined;
  /** What a nested run becomes: the kfunc's argument, what it enters, its steps. */
  nested(target: number): { readonly index: number; readonly callee: Callee; readonly cost: number };
  /** May this function hold the plan's loop that only may_goto bounds (taken by the first such loop)? */
  spin(): boolean;
  /** Does the program sleep where the plan says so (sleepable, in a plan with tasks)? */
  readonly sleepable?: boolean;
}

export const HELPER_MIX = 1, HELPER_RW = 2, HELPER_SAMPLE = 3, HELPER_SLEEP = 4, KFUNC_RUN_NESTED = 1000;
const SIZE_OF_WIDTH: Readonly<Record<number, Size>> = { 8: BPF_DW, 4: BPF_W, 2: BPF_H, 1: BPF_B };
const ARGS: readonly Reg[] = [R1, R2, R3, R4, R5];
/** R7, R8, R9: where the pointer parameters live. */
const PARAM_REGS: readonly Reg[] = [7, 8, 9];

/** A slot as an operand: an own slot (based on R10, offset fixed up later) or a pointer parameter. */
interface Place { readonly base: Reg; readonly slot: number }

function insnOf(it: Item): BpfInsn {
  if (it.kind !== "insn") throw new Error("generators: a label where an instruction was expected");
  return it.insn;
}

class Body {
  readonly out: Sym[] = [];
  private live = 0;
  private acc: "seed" | "r1" | "r6";
  private used = 0;
  /** It has a may_goto: the verifier's fix-ups store its count and timestamp first (2 instructions). */
  private mayGoto = false;
  private straight = 0;
  private readonly straights: number[] = [];
  private readonly calls: Callee[] = [];
  private readonly subprogs: number[] = [];
  private cost = 0;
  readonly nslots: number;
  private readonly init: readonly number[];

  constructor(f: PlanFunc, private readonly env: BodyEnv) {
    const slots = upTo(f.slots, MAX_SLOTS);
    this.nslots = Math.max(1, slots.length);
    this.init = Array.from({ length: this.nslots }, (_, k) => s32(slots[k] ?? 0));
    this.acc = env.isMain ? "seed" : "r1";
  }

  // ---- emitting ----

  private put(x: BpfInsn, at = -1, field: "off" | "imm" = "off", callee = -1): void {
    if (x.dst >= 6 && x.dst <= 9) this.used |= 1 << x.dst;
    if (x.src >= 6 && x.src <= 9) this.used |= 1 << x.src;
    this.out.push({ x, at, field, callee, live: this.live });
  }
  /** A straight-line instruction, `steps` x86 instructions once JITed (baseline; after the verifier's fix-ups). */
  private op(it: Item, steps = 1): void {
    this.put(insnOf(it));
    this.straight += steps;
    this.cost += steps;
  }
  /** A raw instruction (jumps by offset). */
  private raw(x: BpfInsn, steps = 1): void {
    this.put(x);
    this.straight += steps;
    this.cost += steps;
  }
  /** An access to a slot: own slots get their offset fixed up, parameters use offset `byte`. */
  private mem(make: (base: Reg, off: number) => Item, p: Place, byte: number, steps = 1): void {
    if (p.slot < 0) return this.op(make(p.base, byte), steps);
    this.put(insnOf(make(R10, 0)), p.slot * 8 + byte);
    this.straight += steps;
    this.cost += steps;
  }
  private callOut(it: Item, c: Callee, calleeCost: number, fi = -1): void {
    this.put(insnOf(it), -1, "off", fi);
    this.straights.push(this.straight);
    this.straight = 0;
    this.calls.push(c);
    this.cost += 1 + calleeCost;
    if (fi >= 0) this.subprogs.push(fi);
  }
  private affordable(calleeCost: number): boolean {
    return this.cost + 1 + calleeCost <= RUN_BUDGET;
  }

  // ---- slots and the accumulator ----

  private place(ref: number): Place {
    const k = wrap(ref, this.nslots + this.env.params);
    return k < this.nslots ? { base: R10, slot: k } : { base: PARAM_REGS[k - this.nslots]!, slot: -1 };
  }
  private isLive(p: Place): boolean {
    return p.slot < 0 || (this.live & (1 << p.slot)) !== 0; // a caller's slot always holds a value
  }
  private setLive(p: Place, on: boolean): void {
    if (p.slot >= 0) this.live = on ? this.live | (1 << p.slot) : this.live & ~(1 << p.slot);
  }
  /** Move the accumulator out of R1 before R1 is used for anything else. */
  private freeR1(): void {
    if (this.acc === "r1") { this.op(alu64.mov.reg(R6, R1)); this.acc = "r6"; }
  }
  private accToR6(): void {
    this.freeR1();
    if (this.acc === "seed") { this.op(alu64.mov.imm(R6, this.env.seed)); this.acc = "r6"; }
  }
  private accToR1(): void {
    if (this.acc === "r6") this.op(alu64.mov.reg(R1, R6));
    else if (this.acc === "seed") this.op(alu64.mov.imm(R1, this.env.seed));
  }
  /** Give a slot a value to read if it has none (its initial value). */
  private ensureLive(p: Place): void {
    if (this.isLive(p)) return;
    this.mem((b, o) => st(BPF_DW, b, o, this.init[p.slot]!), p, 0);
    this.setLive(p, true);
  }
  /** Read a slot's value once and fold it in: `r1 = *(u64 *)slot; acc += r1`. */
  private consume(p: Place): void {
    this.accToR6();
    this.mem((b, o) => ldx(BPF_DW, R1, b, o), p, 0);
    this.setLive(p, false);
    this.op(alu64.add.reg(R6, R1));
  }
  /** `reg = &slot`. */
  private pointer(reg: Reg, p: Place): void {
    if (p.slot < 0) return this.op(alu64.mov.reg(reg, p.base));
    this.op(alu64.mov.reg(reg, R10));
    this.put(insnOf(alu64.add.imm(reg, 0)), p.slot * 8, "imm");
    this.straight++;
    this.cost++;
  }

  // ---- items ----

  item(it: PlanItem): void {
    switch (it.op) {
      case "store": return this.store(it.slot, it.value, it.width, it.how);
      case "rw": return this.rw(it.slot, it.value);
      case "math": return this.math(it);
      case "atomic": return this.atomic(it);
      case "loop": return this.loop(it);
      case "ctx": return this.ctx(it);
      case "sleep": return this.sleep();
      default: return this.callItem(it, false);
    }
  }

  /** acc += f(a, b), f one of MATH_KINDS, computed in R1 (and R2). */
  private math(m: PlanMath): void {
    this.freeR1();
    const a = s32(m.a), b = s32(m.b);
    MATH_KINDS[wrap(m.kind, MATH_KINDS.length)]!.emit(a, b, (it, steps) => this.op(it, steps), (x, steps) => this.raw(x, steps));
    this.accToR6();
    this.op(alu64.add.reg(R6, R1));
  }

  /** An atomic on a slot: what it reads is folded in, what it leaves is read later. */
  private atomic(m: PlanAtomic): void {
    const p = this.place(m.slot), v = s32(m.value);
    this.freeR1();
    const kind = ATOMIC_KINDS[wrap(m.kind, ATOMIC_KINDS.length)]!;
    if (kind === "store_release") {
      if (this.isLive(p)) this.consume(p);
      this.op(alu64.mov.imm(R1, v));
      this.mem((b, o) => atomic.storeRelease(BPF_DW, b, R1, o), p, 0);
      this.setLive(p, true);
      return;
    }
    this.ensureLive(p);
    this.accToR6();
    if (kind === "load_acquire") {
      this.mem((b, o) => atomic.loadAcquire(BPF_DW, R1, b, o), p, 0);
      this.setLive(p, false);
      this.op(alu64.add.reg(R6, R1));
      return;
    }
    if (kind === "add") { // lock add: nothing read here; the slot holds old + v for the read-back
      this.op(alu64.mov.imm(R1, v));
      this.mem((b, o) => atomic.add(BPF_DW, b, R1, o), p, 0);
      return;
    }
    if (kind === "cmpxchg") { // r0 = the old value; the slot gets v if it held v ^ 1, else keeps it
      this.op(alu64.mov.imm(R0, v ^ 1));
      this.op(alu64.mov.imm(R1, v));
      this.mem((b, o) => atomic.cmpxchg(BPF_DW, b, R1, o), p, 0);
      this.op(alu64.add.reg(R6, R0));
      return;
    }
    // fetch_add, xchg: one instruction; fetch_or (64) and fetch_xor (32): the cmpxchg loop, 8 instructions
    this.op(alu64.mov.imm(R1, v));
    if (kind === "fetch_add") this.mem((b, o) => atomic.fetchAdd(BPF_DW, b, R1, o), p, 0);
    else if (kind === "xchg") this.mem((b, o) => atomic.xchg(BPF_DW, b, R1, o), p, 0);
    else if (kind === "fetch_or") this.mem((b, o) => atomic.fetchOr(BPF_DW, b, R1, o), p, 0, 8);
    else this.mem((b, o) => atomic.fetchXor(BPF_W, b, R1, o), p, 0, 8);
    this.op(alu64.add.reg(R6, R1));
  }

  /** Where the program's context is kept (R7), once saveCtx() ran at the main function's entry. */
  private ctxSaved = false;

  /** Keep R1, the context, in R7 (main only, first thing: anything else may clobber R1). */
  saveCtx(): void {
    this.op(alu64.mov.reg(R7, R1));
    this.ctxSaved = true;
  }

  /** acc += a read of the context at an offset and width the type allows (ctxRead()). */
  private ctx(m: PlanCtx): void {
    const at = this.ctxSaved ? ctxRead(this.env.type, m.off, m.width) : undefined;
    if (at === undefined) return;
    this.freeR1();
    this.op(ldx(SIZE_OF_WIDTH[at.width]!, R1, R7, at.off));
    this.accToR6();
    this.op(alu64.add.reg(R6, R1));
  }

  /**
   * A loop with a may_goto in it, counting its passes in R2, which is then added to the
   * accumulator: `r2 = 0; l: may_goto out; r2 += 1; if r2 < n goto l` (n passes), or, when the
   * plan allows one here, `goto l` in place of the test (bounded by may_goto alone).
   */
  private loop(m: PlanLoop): void {
    this.freeR1();
    const want = clamp(m.passes, 0, 8);
    const spin = want === 0 && this.env.spin();
    const n = want === 0 ? 8 : want;
    this.mayGoto = true;
    this.op(alu64.mov.imm(R2, 0));
    if (spin) {
      // the passes, refills and the final exit, as one straight run (steps.ts SPIN_LOOP_STEPS)
      this.raw(insn(BPF_JMP | BPF_JCOND, 0, BPF_MAY_GOTO, 2, 0), SPIN_LOOP_STEPS);
      this.op(alu64.add.imm(R2, 1), 0);
      this.raw(insn(BPF_JMP | BPF_JA, 0, 0, -3, 0), 0);
    } else {
      this.raw(insn(BPF_JMP | BPF_JCOND, 0, BPF_MAY_GOTO, 2, 0), n * MAY_GOTO_PASS);
      this.op(alu64.add.imm(R2, 1), n);
      this.raw(insn(BPF_JMP | BPF_JLT | BPF_K, R2, 0, -3, n), 2 * n);
    }
    this.accToR6();
    this.op(alu64.add.reg(R6, R2));
  }

  private store(slot: number, value: number, width: number, how: string): void {
    const p = this.place(slot), v = s32(value);
    this.freeR1();
    if (this.isLive(p)) this.consume(p);
    const w = SIZE_OF_WIDTH[width] === undefined ? 8 : width;
    const size = SIZE_OF_WIDTH[w]!;
    if (how === "reg64") this.op(alu64.mov.imm(R1, v));
    else if (how === "reg32") this.op(alu32.mov.imm(R1, v)); // zero-extends
    for (let b = 0; b < 8; b += w) {
      if (how === "reg64" || how === "reg32") this.mem((base, o) => stx(size, base, R1, o), p, b);
      else this.mem((base, o) => st(size, base, o, v), p, b);
    }
    this.setLive(p, true);
  }

  private rw(slot: number, value: number): void {
    const p = this.place(slot), v = s32(value);
    if (!this.affordable(HELPER_STEPS[HELPER_RW]!)) return this.sample(false);
    this.freeR1();
    this.ensureLive(p);
    this.pointer(R1, p);
    this.op(alu64.mov.imm(R2, v));
    this.callOut(call.helper(HELPER_RW), { kind: "helper", id: HELPER_RW }, HELPER_STEPS[HELPER_RW]!);
    this.accToR6();
    this.op(alu64.add.reg(R6, R0)); // the old value, as the helper returned it
    this.mem((b, o) => ldx(BPF_DW, R1, b, o), p, 0);
    this.setLive(p, false);
    this.op(alu64.mov.reg(R2, R0)); // r1 - 3·old: x when the helper read and wrote the slot right
    this.op(alu64.add.reg(R2, R0));
    this.op(alu64.add.reg(R2, R0));
    this.op(alu64.sub.reg(R1, R2));
    this.op(alu64.xor.reg(R6, R1));
    this.mem((b, o) => st(BPF_DW, b, o, v), p, 0);
    this.setLive(p, true);
  }

  /** A call item in the body (`tail` false) or right before the epilogue, its result returned. */
  callItem(it: PlanCallItem, tail: boolean): void {
    switch (it.op) {
      case "mix": return this.mix(it.value, tail);
      case "call": return this.subprogCall(it, tail);
      case "nested": return this.nested(it, tail);
      default: return this.sample(tail);
    }
  }

  private mix(value: number, tail: boolean): void {
    if (!this.affordable(HELPER_STEPS[HELPER_MIX]!)) return this.sample(tail);
    this.accToR1();
    this.op(alu64.mov.imm(R2, s32(value)));
    for (const r of [R3, R4, R5] as const) this.op(alu64.mov.reg(r, R2));
    this.callOut(call.helper(HELPER_MIX), { kind: "helper", id: HELPER_MIX }, HELPER_STEPS[HELPER_MIX]!);
    this.afterAccCall(tail);
  }

  /** bpf_sc_sleep(), in a sleepable program; nothing elsewhere. It returns 0: nothing to fold. */
  private sleep(): void {
    if (!this.env.sleepable || !this.affordable(HELPER_STEPS[HELPER_SLEEP]!)) return;
    this.freeR1();
    this.callOut(call.helper(HELPER_SLEEP), { kind: "helper", id: HELPER_SLEEP }, HELPER_STEPS[HELPER_SLEEP]!);
  }

  private sample(tail: boolean): void {
    this.freeR1();
    this.callOut(call.helper(HELPER_SAMPLE), { kind: "helper", id: HELPER_SAMPLE }, HELPER_STEPS[HELPER_SAMPLE]!);
    if (tail) this.returnAcc(); // bpf_sc_get_stack() returns 0: return the accumulator
  }

  private subprogCall(it: PlanCall, tail: boolean): void {
    const c = this.env.subprog(it.target);
    // At the tail the own slots are read already: only pointer parameters can be passed on.
    if (c === undefined || !this.affordable(c.cost) || (tail && c.params > this.env.params)) return this.sample(tail);
    this.accToR1();
    const ptrs = upTo(it.ptrs, c.params);
    for (let q = 0; q < c.params; q++) {
      const ref = ptrs[q] ?? q;
      const p = tail ? this.place(this.nslots + wrap(ref, this.env.params)) : this.place(ref);
      this.ensureLive(p);
      this.pointer(ARGS[1 + q]!, p);
    }
    this.callOut(call.subprog("callee"), { kind: "subprog", fi: c.fi }, c.cost, c.fi);
    this.afterAccCall(tail);
  }

  private nested(it: PlanNested, tail: boolean): void {
    const n = this.env.nested(it.target);
    if (!this.affordable(n.cost)) return this.sample(tail);
    this.freeR1();
    this.op(alu64.mov.imm(R1, n.index));
    this.callOut(call.kfunc(KFUNC_RUN_NESTED), n.callee, n.cost);
    // acc ^= the nested program's result (at the tail: r0 ^= acc, then return r0)
    const into = tail ? R0 : R6, other = tail ? R6 : R0;
    if (this.acc === "seed") {
      if (!tail) this.op(alu64.mov.reg(R6, R0));
      this.op(alu64.xor.imm(into, this.env.seed));
    } else this.op(alu64.xor.reg(into, other));
    if (!tail) this.acc = "r6";
  }

  /** After a call that took the accumulator in R1: it is R0 now. */
  private afterAccCall(tail: boolean): void {
    if (tail) return;
    this.op(alu64.mov.reg(R6, R0));
    this.acc = "r6";
  }

  /** r0 = the accumulator. */
  private returnAcc(): void {
    if (this.acc === "seed") this.op(alu64.mov.imm(R0, this.env.seed));
    else this.op(alu64.mov.reg(R0, this.acc === "r1" ? R1 : R6));
  }

  // ---- whole function ----

  saveParams(): void {
    for (let q = 0; q < this.env.params; q++) this.op(alu64.mov.reg(PARAM_REGS[q]!, ARGS[1 + q]!));
  }

  /** Read back every live own slot, then return the accumulator or end with the exit call. */
  finish(atExit: PlanCallItem | null): LoweredBody {
    for (let k = 0; k < this.nslots; k++) if (this.live & (1 << k)) this.consume({ base: R10, slot: k });
    if (atExit === null) this.returnAcc();
    else this.callItem(atExit, true);
    this.put(insnOf(exit()));
    this.straights.push(this.straight);
    if (this.mayGoto) { this.straights[0]! += MAY_GOTO_INIT; this.cost += MAY_GOTO_INIT; }
    let pushes = 0;
    for (let r = 6; r <= 9; r++) if (this.used & (1 << r)) pushes++;
    // an own slot touched, or a may_goto's 16 bytes: the JIT's depth is not 0
    const stack = this.mayGoto || this.out.some((s) => s.at >= 0);
    const shape: FuncShape = { pushes, stack, straight: this.straights, calls: this.calls };
    return { insns: this.out, shape, cost: this.cost + prologueSteps(pushes, stack) + epilogueSteps(pushes), nslots: this.nslots, subprogs: this.subprogs };
  }
}

/**
 * The computations of PlanMath, each with the x86 instructions its BPF instructions execute once
 * JITed under baseline after the verifier's fix-ups (jit/lower.ts, jit/bpf/fixups.ts), so the
 * step model stays exact: a division pushes and pops rax and rdx around `div`; a division by a
 * register runs the fix-up's guard first (its path known from b); a to_le 64 emits nothing.
 */
type Put = (it: Item, steps: number) => void;
type PutRaw = (x: BpfInsn, steps: number) => void;
const nz = (b: number) => (b === 0 ? 7 : b);
export const MATH_KINDS: readonly { readonly name: string; emit(a: number, b: number, op: Put, raw: PutRaw): void }[] = [
  { name: "mul imm", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.mul.imm(R1, b), 1); } },
  { name: "mul reg 32", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.mov.imm(R2, b), 1); op(alu32.mul.reg(R1, R2), 1); } },
  // push rax, push rdx, mov r11,imm, mov rax,rdi, xor edx,edx / cqo, div r11, mov rdi,rax|rdx, pop rdx, pop rax
  { name: "div imm", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.div.imm(R1, nz(b)), 9); } },
  { name: "mod imm 32", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu32.mod.imm(R1, nz(b)), 9); } },
  { name: "sdiv imm", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.sdiv.imm(R1, b === -1 ? 3 : nz(b)), 9); } },
  // the guard: `if r2 != 0 goto +2` (test, jne), then the 8 of the division, or `w1 ^= w1; goto +1`
  { name: "div reg", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.mov.imm(R2, b), 1); op(alu64.div.reg(R1, R2), b !== 0 ? 10 : 4); } },
  // `if r2 == 0 goto +1` (test, je), then the 8 of the modulo
  { name: "mod reg", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.mov.imm(R2, b), 1); op(alu64.mod.reg(R1, R2), b !== 0 ? 10 : 2); } },
  // AX = r2; AX += 1; `if AX > 1` (cmp, ja) to the sdiv's 8; else `if AX == 0` (test, je), `r1 = 0`, `r1 = -r1`, `goto +1`
  { name: "sdiv reg", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.mov.imm(R2, b), 1); op(alu64.sdiv.reg(R1, R2), b === 0 ? 9 : b === -1 ? 8 : 12); } },
  // AX = r2; w AX += 1; `if w AX > 1` to the smod's 8 and `goto +1`; `if w AX == 1` to `w1 = w1`; else `w1 = 0`, two gotos
  { name: "smod reg 32", emit: (a, b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.mov.imm(R2, b), 1); op(alu32.smod.reg(R1, R2), b === 0 ? 7 : b === -1 ? 9 : 13); } },
  { name: "movsx8", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.movsx(R1, R1, 8), 1); } },
  { name: "movsx16 32", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu32.movsx(R1, R1, 16), 1); } },
  { name: "movsx32", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(alu64.movsx(R1, R1, 32), 1); } },
  { name: "bswap64", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(bswap(R1, 64), 1); } },
  { name: "bswap16", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(bswap(R1, 16), 2); } }, // ror r16,8; movzx
  { name: "be32", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(end.toBe(R1, 32), 1); } },
  { name: "le16", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(end.toLe(R1, 16), 1); } },
  { name: "le64", emit: (a, _b, op) => { op(alu64.mov.imm(R1, a), 1); op(end.toLe(R1, 64), 0); } }, // no code at all
  { name: "ld_imm64", emit: (a, b, op) => { const [lo, hi] = ld_imm64(R1, (BigInt(a) << 32n) | BigInt(b >>> 0)); op(lo, 1); op(hi, 0); } },
  // `if w1 s> b goto +1` (cmp or test, jg), `r1 ^= b` when not taken
  { name: "jmp32", emit: (a, b, op, raw) => { op(alu64.mov.imm(R1, a), 1); raw(insn(BPF_JMP32 | BPF_JSGT | BPF_K, R1, 0, 1, b), 2); op(alu64.xor.imm(R1, b), a > b ? 0 : 1); } },
];

/** What PlanAtomic does to its slot. */
export const ATOMIC_KINDS = ["fetch_add", "xchg", "fetch_or", "fetch_xor", "add", "cmpxchg", "load_acquire", "store_release"] as const;

/**
 * A context read the program type allows (validate.ts ctxAccess(), from 7.2's is_valid_access()):
 * kprobe within pt_regs, tracepoint within the record past its first 8 bytes, raw_tp within the
 * 12 u64 arguments, aligned to the width; undefined for the other types.
 */
export function ctxRead(type: ProgType, off: number, width: number): { off: number; width: 1 | 2 | 4 | 8 } | undefined {
  const w = (SIZE_OF_WIDTH[width] === undefined ? 8 : width) as 1 | 2 | 4 | 8;
  const range = ctxReadable(type);
  if (range === undefined) return undefined;
  const slots = Math.floor((range.to - range.from) / w);
  return { off: range.from + wrap(Math.trunc(off), slots) * w, width: w };
}

/** Lower one function's body: parameters saved, the entry call, the items, the read-back, the exit call. */
export function lowerBody(f: PlanFunc, env: BodyEnv): LoweredBody {
  const b = new Body(f, env);
  b.saveParams();
  // The context, kept for the body's reads (a main function with reads and no entry call: an
  // entry call must stay the first instruction, and R1 does not survive it).
  if (env.isMain && !f.atEntry && upTo(f.body, MAX_ITEMS).some((it) => it.op === "ctx" && ctxRead(env.type, it.off, it.width) !== undefined)) b.saveCtx();
  if (f.atEntry) b.callItem(f.atEntry, false);
  for (const it of upTo(f.body, MAX_ITEMS)) b.item(it);
  return b.finish(f.atExit ?? null);
}

/** Pointer parameters a function takes (main takes none). */
export const paramsOf = (f: PlanFunc, isMain: boolean): number => (isMain ? 0 : clamp(f.params, 0, PARAM_REGS.length));
