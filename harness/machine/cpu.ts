// CPU state and the operations instructions and interrupt delivery share: register access by
// operand size, effective addresses, stack pushes and pops, lazy flags, interrupt delivery and
// the ground-truth shadow stack. The instruction handlers (exec.ts) operate on this state.
//
// Value convention: a 64-bit value is two uint32 halves (lo, hi). Registers live in two
// Uint32Arrays. Converting between bigint and number costs 40-55 ns in V8, and an interpreter
// that kept bigint registers spent most of its time converting on every push, pop and memory
// operand (measured: 7 M insn/s); halves need no conversion at all. Values of 1, 2 and 4 bytes
// are the low half, masked, with hi = 0. Functions that produce a 64-bit value return the low
// half and leave the high half in `th` (registers, operands) or `mem.hi` (memory).
import { hex as hex__, hex64 as hex64__, hiOf as hiOf__, pairToAddr as pairToAddr__, pairToBig as pairToBig__, toCanonical as toCanonical__ } from "./addr.ts";
import { RSP as RSP__, type DInsn } from "./decode.ts";
import { arithFlags as arithFlags__, condition as condition__, ARITH as ARITH__, CF as CF__, F_LOGIC as F_LOGIC__, F_NONE as F_NONE__, F_SUB as F_SUB__, FIXED as FIXED__, IF as IF__, NT as NT__, RF as RF__, TF as TF__, VM as VM__ } from "./flags.ts";
import { MemFault as MemFault__, type Memory } from "./memory.ts";
import type { RunResult } from "./results.ts";
import { ACT_INTERRUPT as ACT_INTERRUPT__, ShadowStack as ShadowStack__, type Activation } from "./shadow.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const hex = hex__, hex64 = hex64__, hiOf = hiOf__, pairToAddr = pairToAddr__, pairToBig = pairToBig__, toCanonical = toCanonical__, RSP = RSP__, arithFlags = arithFlags__, condition = condition__, ARITH = ARITH__, CF = CF__, F_LOGIC = F_LOGIC__, F_NONE = F_NONE__, F_SUB = F_SUB__, FIXED = FIXED__, IF = IF__, NT = NT__, RF = RF__, TF = TF__, VM = VM__, MemFault = MemFault__, ACT_INTERRUPT = ACT_INTERRUPT__, ShadowStack = ShadowStack__;
type MemFault = MemFault__;
type ShadowStack = ShadowStack__;

export { ACT_CALL, ACT_INTERRUPT, ACT_ROOT, type Activation } from "./shadow.ts";
export { hiOf, pairToAddr, pairToBig } from "./addr.ts";

const TWO_32 = 4294967296;

/** Unsigned (al, ah) < (bl, bh). */
function below(al: number, ah: number, bl: number, bh: number): boolean {
  return ah < bh || (ah === bh && al < bl);
}

/** The sign bit of a `size`-byte value given as halves. */
function signOf(size: number, l: number, h: number): boolean {
  return size === 8 ? h >= 0x80000000 : ((l >>> (size * 8 - 1)) & 1) === 1;
}

/** Signed (al, ah) < (bl, bh) at `size` bytes (values below 8 bytes are masked to their size, hi 0). */
function lessSigned(size: number, al: number, ah: number, bl: number, bh: number): boolean {
  if (size === 8) { const x = ah | 0, y = bh | 0; return x < y || (x === y && al < bl); }
  const sh = 32 - size * 8;
  return ((al << sh) >> sh) < ((bl << sh) >> sh);
}
const TWO_47 = 2 ** 47;

/** Segment selectors of the x86-64 kernel (arch/x86/include/asm/segment.h). */
export const KERNEL_CS = 0x10n, KERNEL_DS = 0x18n, USER_CS = 0x33n, USER_DS = 0x2bn;

/** Well-known vectors (arch/x86/include/asm/trapnr.h). */
export const X86_TRAP_DE = 0, X86_TRAP_NMI = 2, X86_TRAP_BP = 3, X86_TRAP_UD = 6, X86_TRAP_DF = 8;


/** Mask of an operand size in bytes (1, 2, 4) for the low half. */
export const SIZE_MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];

export interface Gate { readonly handler: number; readonly ist: number }

/** Something that watches control transfers (oracles use it; off by default). */
export interface Observer {
  onCall?(a: Activation, cpu: Cpu): void;
  onReturn?(a: Activation, cpu: Cpu): void;
  /** The ground truth switched tasks (Machine.switchTask()): `prev`'s activations were put aside, `next`'s came back. */
  onSwitch?(prev: number, next: number): void;
  onInterrupt?(a: Activation, cpu: Cpu): void;
  onIret?(a: Activation, cpu: Cpu): void;
}

/** Thrown by handlers to end a run with a result other than a memory fault. */
export class Stop {
  constructor(readonly result: RunResult) {}
}

export function interruptName(vector: number): string {
  switch (vector) {
    case X86_TRAP_DE: return "#DE";
    case X86_TRAP_NMI: return "NMI";
    case X86_TRAP_BP: return "#BP";
    case X86_TRAP_UD: return "#UD";
    case X86_TRAP_DF: return "#DF";
    default: return `IRQ ${hex(vector)}`;
  }
}

export class Cpu {
  /** General registers in x86 encoding order: low and high 32-bit halves. */
  readonly lo = new Uint32Array(16);
  readonly hi = new Uint32Array(16);
  /** High half of the last 64-bit value a helper returned. */
  th = 0;
  /**
   * RSP as an internal address, valid while spValid: push, pop, call, ret and leave move it and
   * RSP's halves together without a float division; any other write to RSP (setR, iretq,
   * restoring a snapshot, the API) clears spValid and the next stack access recomputes it.
   */
  sp = 0;
  spValid = false;
  rip = 0;
  /** RFLAGS; the arithmetic bits are stale while a lazy record is pending (fKind !== F_NONE). */
  flags = FIXED;
  fKind = F_NONE;
  fSize = 8;
  fAl = 0; fAh = 0; fBl = 0; fBh = 0; fRl = 0; fRh = 0;
  gsBase = 0;
  cs = KERNEL_CS;
  ss = KERNEL_DS;
  steps = 0;
  /** Interrupts are inhibited at the boundary where steps === stiShadow (the STI shadow). */
  stiShadow = -1;
  nmiBlocked = false;
  pendingNmi = false;
  /** pendingNmi || pendingIrqs.length > 0: the one test the interpreter loop makes per step. */
  pendingAny = false;
  /** Pending maskable vectors, delivered highest first (the APIC's priority order). */
  pendingIrqs: number[] = [];
  readonly shadow = new ShadowStack();
  readonly idt = new Map<number, Gate>();
  /** TSS.IST[1..7] (index 0 unused) and TSS.RSP0, internal addresses (0 = not set). */
  readonly ist: number[] = new Array<number>(8).fill(0);
  rsp0 = 0;
  observer: Observer | null = null;

  constructor(
    readonly mem: Memory,
    readonly symbolize: (addr: number) => string,
    /** Intel-syntax text of the instruction at an internal address (for exception messages). */
    readonly disassemble: (addr: number) => string = () => "?",
  ) {}

  // ---- registers by operand size (idx 16..19 = AH, CH, DH, BH) ----

  /** Register value at `size`: the low half; the high half (size 8) in `th`. */
  getR(idx: number, size: number): number {
    if (size === 8) { this.th = this.hi[idx]!; return this.lo[idx]!; }
    this.th = 0;
    if (idx >= 16) return (this.lo[idx - 16]! >>> 8) & 0xff;
    return size === 4 ? this.lo[idx]! : this.lo[idx]! & SIZE_MASK[size]!;
  }

  /** Write a value already masked to `size`; 32-bit writes zero the upper half. */
  setR(idx: number, size: number, l: number, h: number): void {
    if (idx === RSP) this.spValid = false;
    switch (size) {
      case 8: this.lo[idx] = l; this.hi[idx] = h; return;
      case 4: this.lo[idx] = l; this.hi[idx] = 0; return;
      case 2: this.lo[idx] = (this.lo[idx]! & 0xffff0000) | l; return;
      default:
        if (idx >= 16) this.lo[idx - 16] = (this.lo[idx - 16]! & 0xffff00ff) | (l << 8);
        else this.lo[idx] = (this.lo[idx]! & 0xffffff00) | l;
    }
  }

  /** A register as an internal address (NaN if it does not hold a canonical address). */
  regAddr(idx: number): number {
    return pairToAddr(this.lo[idx]!, this.hi[idx]!);
  }

  // ---- memory by operand size ----

  readMem(a: number, size: number): number {
    const m = this.mem;
    switch (size) {
      case 8: { const l = m.read64(a); this.th = m.hi; return l; }
      case 4: this.th = 0; return m.read32(a);
      case 2: this.th = 0; return m.read16(a);
      default: this.th = 0; return m.read8(a);
    }
  }

  writeMem(a: number, size: number, l: number, h: number): void {
    const m = this.mem;
    switch (size) {
      case 8: m.write64(a, l, h); return;
      case 4: m.write32(a, l); return;
      case 2: m.write16(a, l); return;
      default: m.write8(a, l);
    }
  }

  /**
   * Effective address of the memory operand, gs: base included, as an internal address.
   * Plain number arithmetic is exact while every term is below 2^52 in magnitude; anything else
   * (huge register values, wrap-around) takes the exact bigint path.
   */
  ea(d: DInsn, access: "read" | "write" = "read"): number {
    let a = this.eaOffsetNumber(d);
    if (d.gs) a += this.gsBase;
    if (a >= -TWO_47 && a < TWO_47) return a; // false for NaN too
    return this.eaExact(d, access);
  }

  /** Offset part only (lea ignores segments) as a number when exact, else NaN. */
  eaOffsetNumber(d: DInsn): number {
    let a = d.disp;
    if (d.base >= 0) {
      const h = this.hi[d.base]! | 0;
      if (h <= -0x100000 || h >= 0x100000) return NaN;
      a += h * TWO_32 + this.lo[d.base]!;
    }
    if (d.index >= 0) {
      const h = this.hi[d.index]! | 0;
      if (h <= -0x10000 || h >= 0x10000) return NaN;
      a += (h * TWO_32 + this.lo[d.index]!) * d.scale;
    }
    return a;
  }

  /** Offset part only (lea ignores segments), exact, not yet truncated. */
  eaOffset(d: DInsn): bigint {
    let a = BigInt(d.disp);
    if (d.base >= 0) a += BigInt.asIntN(64, pairToBig(this.lo[d.base]!, this.hi[d.base]!));
    if (d.index >= 0) a += BigInt.asIntN(64, pairToBig(this.lo[d.index]!, this.hi[d.index]!)) * BigInt(d.scale);
    return a;
  }

  private eaExact(d: DInsn, access: "read" | "write"): number {
    let a = BigInt.asIntN(64, this.eaOffset(d));
    if (d.gs) a = BigInt.asIntN(64, a + BigInt(this.gsBase));
    const s = Number(a);
    if (s >= -TWO_47 && s < TWO_47) return s;
    throw new MemFault("non-canonical", access, NaN, undefined, BigInt.asUintN(64, a));
  }

  // ---- stack ----

  rspInternal(): number {
    // (small enough for V8 to inline into the loop, the cold path in rspRecompute(); and sp is
    // always read from the field: merged with a call's result it was boxed, a heap number at
    // every push, pop, call and ret, seen in V8's code for the loop)
    if (this.spValid !== true) this.rspRecompute();
    return this.sp;
  }

  /** Make sp valid from RSP's halves, or fault: RSP does not hold a canonical address. */
  private rspRecompute(): void {
    const s = pairToAddr(this.lo[RSP]!, this.hi[RSP]!);
    if (s === s) { // not NaN
      this.sp = s;
      this.spValid = true;
      return;
    }
    throw new MemFault("non-canonical", "write", NaN, undefined, pairToBig(this.lo[RSP]!, this.hi[RSP]!));
  }

  setRsp(a: number): void {
    this.lo[RSP] = a >>> 0;
    this.hi[RSP] = hiOf(a);
    this.sp = a;
    this.spValid = true;
  }

  /** rsp += delta (|delta| < 2^31) on a valid canonical rsp: halves moved with a carry, no division. */
  private moveRsp(delta: number): void {
    const nl = this.lo[RSP]! + delta;
    this.lo[RSP] = nl; // a Uint32Array store wraps modulo 2^32
    if (nl < 0 || nl >= TWO_32) this.hi[RSP] = this.hi[RSP]! + (nl < 0 ? -1 : 1);
    const sp = this.sp + delta;
    this.sp = sp;
    if (sp >= TWO_47 || sp < -TWO_47) this.spValid = false; // crossed out of canonical: recompute (and fault)
  }

  push64(l: number, h: number): void {
    const a = this.rspInternal() - 8;
    if (a < -TWO_47) this.belowCanonical(a);
    this.mem.write64(a, l, h);
    this.moveRsp(-8);
  }

  /** A push below the canonical range: the fault (out of push64(), which V8 then inlines). */
  private belowCanonical(a: number): never {
    throw new MemFault("non-canonical", "write", NaN, undefined, BigInt.asUintN(64, BigInt(a)));
  }

  /** Pop a qword: low half returned, high half in `th`. */
  pop64(): number {
    const a = this.rspInternal();
    const l = this.mem.read64(a);
    this.th = this.mem.hi;
    this.moveRsp(8);
    return l;
  }

  // ---- flags ----

  /** Record an arithmetic result for lazy flag evaluation. */
  setLazy(kind: number, size: number, al: number, ah: number, bl: number, bh: number, rl: number, rh: number): void {
    this.fKind = kind; this.fSize = size;
    this.fAl = al; this.fAh = ah; this.fBl = bl; this.fBh = bh; this.fRl = rl; this.fRh = rh;
  }

  /** Full RFLAGS value (materialises the lazy arithmetic flags). */
  rflags(): number {
    if (this.fKind !== F_NONE) {
      this.flags = (this.flags & ~ARITH) | arithFlags(this, this.flags & CF);
      this.fKind = F_NONE;
    }
    return this.flags;
  }

  /**
   * A jcc/cmovcc condition (isa.ts COND) on the current flags. After a sub/cmp or a logic op the
   * common conditions come from the lazy record itself (the comparison it stands for), without
   * materialising RFLAGS; anything else reads rflags(). Equal to condition(cond, rflags())
   * always (test/unit/machine/flags.test.ts).
   */
  test(cond: number): boolean {
    const k = this.fKind;
    // E/NE after sub/cmp or a logic op (the commonest jcc) inline; the rest in testSlow()
    if ((cond >> 1) === 2 && (k === F_SUB || k === F_LOGIC)) return ((this.fRl | this.fRh) === 0) === ((cond & 1) === 0);
    return this.testSlow(cond);
  }

  private testSlow(cond: number): boolean {
    const k = this.fKind;
    if (k !== F_SUB && k !== F_LOGIC) return condition(cond, this.rflags());
    const rl = this.fRl, rh = this.fRh;
    let r: boolean;
    switch (cond >> 1) {
      case 1: r = k === F_SUB && below(this.fAl, this.fAh, this.fBl, this.fBh); break; // B: CF
      case 2: r = rl === 0 && rh === 0; break; // E: ZF
      case 3: r = (rl === 0 && rh === 0) || (k === F_SUB && below(this.fAl, this.fAh, this.fBl, this.fBh)); break; // BE: CF | ZF
      case 4: r = signOf(this.fSize, rl, rh); break; // S
      case 6: r = k === F_SUB ? lessSigned(this.fSize, this.fAl, this.fAh, this.fBl, this.fBh) : signOf(this.fSize, rl, rh); break; // L: SF != OF
      case 7: r = (rl === 0 && rh === 0) || (k === F_SUB ? lessSigned(this.fSize, this.fAl, this.fAh, this.fBl, this.fBh) : signOf(this.fSize, rl, rh)); break; // LE
      default: return condition(cond, this.rflags()); // O, P
    }
    return (cond & 1) === 0 ? r : !r;
  }

  setRflags(v: number): void {
    this.fKind = F_NONE;
    this.flags = v | FIXED;
  }

  // ---- control transfer with ground truth ----

  call(target: number, ret: number, site: number): void {
    this.push64(ret >>> 0, hiOf(ret));
    this.shadow.pushCall(target, ret, this.sp, site, this.lo[5]!, this.hi[5]!); // the slot push64() left in sp; rbp
    this.rip = target;
    if (this.observer !== null) this.notifyCall();
  }

  private notifyCall(): void {
    this.observer!.onCall?.(this.shadow.top()!, this);
  }

  /** `ret [imm16]`: pop the return address and check it against the activation that pushed it. */
  ret(ip: number, extra: number): void {
    const at = this.rspInternal();
    const l = this.mem.read64(at), h = this.mem.hi;
    const to = pairToAddr(l, h);
    const sh = this.shadow, top = sh.depth - 1;
    if (top < 0 || sh.kind[top] === ACT_INTERRUPT || sh.ret[top] !== to) this.retMismatch(ip, at, l, h);
    this.moveRsp(8 + extra);
    this.rip = to;
    if (this.observer !== null) return this.retObserved();
    sh.depth--;
  }

  /** The end of a `ret` with an observer: it hears of the activation that ended. */
  private retObserved(): void {
    const sh = this.shadow, done = sh.top()!;
    sh.depth--;
    this.observer!.onReturn?.(done, this);
  }

  /** A `ret` whose return address (halves l, h, read at `at`) is not the innermost call's: the run stops, naming both. */
  private retMismatch(ip: number, at: number, l: number, h: number): never {
    const sh = this.shadow, to = pairToAddr(l, h);
    const act = sh.top();
    const v = pairToBig(l, h);
    const expected = act === undefined ? "no activation (the shadow stack is empty)"
      : act.kind === ACT_INTERRUPT ? `an iretq (the innermost activation is ${interruptName(act.vector)} taken at ${this.describe(act.ret)})`
      : `${this.describe(act.ret)}, pushed by the call at ${act.site >= 0 ? this.describe(act.site) : "entry"}`;
    throw new Stop({
      kind: "control-flow", reason: "ret-mismatch", rip: toCanonical(ip), symbol: this.symbolize(ip),
      expected: act && act.kind !== ACT_INTERRUPT ? toCanonical(act.ret) : undefined, actual: v,
      message: `ret at ${this.describe(ip)} returned to ${hex64(v)}${this.symAt(to)} (read from ${hex64(at)}); expected ${expected}`,
    });
  }

  // ---- interrupts (Intel SDM Vol. 3A §6.14; kernel-model.md §6.1) ----

  /**
   * Deliver `vector` now, at an instruction boundary, with `ret` as the saved RIP: load the IST
   * stack if the gate has one (TSS.RSP0 when coming from user mode), align RSP down to 16, push
   * SS, RSP, RFLAGS, CS, RIP, clear IF and TF, and jump to the handler. A fault while pushing
   * the frame ends the run as a double fault.
   */
  deliver(vector: number, ret: number): void {
    const gate = this.idt.get(vector);
    if (gate === undefined) {
      throw new Stop({
        kind: "exception", vector, rip: toCanonical(ret), symbol: this.symbolize(ret),
        message: `${interruptName(vector)} at ${this.describe(ret)} has no IDT gate`,
      });
    }
    const oldLo = this.lo[RSP]!, oldHi = this.hi[RSP]!;
    const flags = this.rflags();
    const fromUser = (this.cs & 3n) !== 0n;
    let sp: number;
    if (gate.ist !== 0) sp = this.ist[gate.ist]!;
    else if (fromUser) sp = this.rsp0;
    else sp = pairToAddr(oldLo, oldHi);
    sp = Math.floor(sp / 16) * 16; // align down to 16 (also right for negative internal addresses)
    const frame = sp - 40;
    try {
      if (!(frame >= -TWO_47 && sp < TWO_47)) throw new MemFault("non-canonical", "write", NaN, undefined, pairToBig(oldLo, oldHi));
      const m = this.mem;
      m.write64(sp - 8, Number(this.ss), 0);
      m.write64(sp - 16, oldLo, oldHi);
      m.write64(sp - 24, flags, 0);
      m.write64(sp - 32, Number(this.cs), 0);
      m.write64(sp - 40, ret >>> 0, hiOf(ret));
    } catch (e) {
      if (!(e instanceof MemFault)) throw e;
      throw new Stop({
        kind: "fault", reason: e.reason, access: "write",
        address: e.raw ?? toCanonical(e.addr), region: e.region?.name, regionKind: e.region?.kind,
        rip: toCanonical(ret), symbol: this.symbolize(ret), duringInterrupt: vector,
        message: `double fault: delivering ${interruptName(vector)} at ${this.describe(ret)}, pushing the interrupt frame faulted: ${e.describe()}`,
      });
    }
    this.shadow.pushInterrupt(gate.handler, ret, frame, oldLo, oldHi, vector, this.lo[5]!, this.hi[5]!); // the interrupted rbp
    this.setRsp(frame);
    this.cs = KERNEL_CS;
    if (fromUser) this.ss = 0n; // a privilege change to CPL 0 loads a NULL SS in 64-bit mode
    this.flags = (this.flags & ~(IF | TF | NT | RF | VM)) | FIXED; // SDM §6.12.1.3: TF, VM, RF, NT cleared; IF for an interrupt gate
    if (vector === X86_TRAP_NMI) this.nmiBlocked = true;
    this.rip = gate.handler;
    if (this.observer !== null) this.observer.onInterrupt?.(this.shadow.top()!, this);
  }

  /** `iretq`: pop RIP, CS, RFLAGS, RSP, SS; must return exactly to the interrupted context. */
  iret(ip: number): void {
    const sp = this.rspInternal();
    const m = this.mem;
    const ripL = m.read64(sp), ripH = m.hi;
    const cs = m.read64(sp + 8);
    const fl = m.read64(sp + 16);
    const rspL = m.read64(sp + 24), rspH = m.hi;
    const ss = m.read64(sp + 32);
    const to = pairToAddr(ripL, ripH);
    const top = this.shadow.top();
    if (top === undefined || top.kind !== ACT_INTERRUPT || top.ret !== to || top.rspRaw !== pairToBig(rspL, rspH)) {
      const expected = top?.kind === ACT_INTERRUPT
        ? `rip ${this.describe(top.ret)} rsp ${hex64(top.rspRaw)} (${interruptName(top.vector)})`
        : "no interrupt activation is live";
      const rip = pairToBig(ripL, ripH);
      throw new Stop({
        kind: "control-flow", reason: "iret-mismatch", rip: toCanonical(ip), symbol: this.symbolize(ip),
        expected: top?.kind === ACT_INTERRUPT ? toCanonical(top.ret) : undefined, actual: rip,
        message: `iretq at ${this.describe(ip)} resumes rip ${hex64(rip)}${this.symAt(to)} rsp ${hex64(pairToBig(rspL, rspH))}; expected ${expected}`,
      });
    }
    this.shadow.depth--;
    this.rip = to;
    this.cs = BigInt(cs & 0xffff);
    this.ss = BigInt(ss & 0xffff);
    this.lo[RSP] = rspL;
    this.hi[RSP] = rspH;
    this.spValid = false;
    this.setRflags(fl & ~(1 << 16)); // RF is not kept
    this.nmiBlocked = false; // any IRET unblocks NMIs (SDM §6.7.1)
    if (this.observer !== null) this.observer.onIret?.(top, this);
  }

  describe(addr: number): string {
    return `${hex64(toCanonical(addr))}${this.symAt(addr)}`;
  }

  private symAt(addr: number): string {
    if (addr !== addr) return "";
    const s = this.symbolize(addr);
    return s === "" ? "" : ` <${s}>`;
  }
}
