// Random x86-64 instruction sequences for the differential tests: drawn from every user-mode
// form of the machine's ISA table that this host's CPU runs (forms.ts DRAWN_FORMS: the BMI2
// forms only where /proc/cpuinfo lists bmi2), with random initial registers, flags and memory,
// valid by construction and under shrinking:
//   - memory operands land in the mapped data (any addressing mode: base, index*scale,
//     displacement, absolute, RIP-relative, gs:), or near rsp; a setup `movabs` gives the base
//     and index registers the values that make the address land there. Only lea and the
//     multi-byte nops, which never access their operand, take raw registers;
//   - rsp is never a written operand; it moves only through push, pop, call, ret, leave, by
//     bounded amounts, so it stays in the stack region; writes near rsp go below it, so no
//     return address is overwritten;
//   - branches go forward to a unit boundary of their block (or its end), so every run ends;
//     calls go to a subroutine later in the layout order or to an inline body, and every ret
//     returns to its call (subroutine bodies are stack-neutral);
//   - a jcc or pushfq that would read a flag an earlier instruction left undefined (SDM) gets a
//     `cmp` before it that defines every flag.
// A case is a list of units, each one instruction of a chosen form plus the setup it needs, so
// a failing case shrinks to one unit and the operand values that make it differ.
import fc from "fast-check";
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "iced-x86";
import { Assembler, type Assembled } from "../../jit/asm.ts";
import { disassemble, formatListing } from "../../jit/disasm.ts";
import { forEachInstruction } from "../../jit/iced.ts";
import { conditionFlags, flagEffect, ARITH_FLAGS, type FlagEffect } from "../helpers/sdm-flags.ts";
import { DRAWN_FORMS, formFlagEffect, type Form } from "./forms.ts";
import type { NativeCase } from "./runner.ts";

/** The address space of a sequence case (user-space addresses below 2 GiB: absolute disp32 reaches them). */
export const SEQ = {
  stop: 0x0ffff000n,
  code: 0x10000000n, codeSize: 0x4000,
  data: 0x20000000n, dataSize: 0x2000,
  stack: 0x30000000n, stackSize: 0x4000,
} as const;
export const SEQ_DUMP_NAMES = ["data", "stack"] as const;

// ---- raw case: what fast-check generates and shrinks ----

export interface RawMem {
  /** Addressing mode (see memOperand). */
  readonly mode: number;
  readonly gs: boolean;
  readonly base: number;
  readonly index: number;
  readonly scale: number;
  readonly disp: number;
  /** Offset of the accessed bytes in the data region. */
  readonly target: number;
  /** The index register's value (base+index modes). */
  readonly xval: bigint;
}

export interface RawUnit {
  /** Index into DRAWN_FORMS. */
  readonly form: number;
  /** Register choices for operands 0..2 (0..15; 16..19 are ah, ch, dh, bh for 8-bit operands). */
  readonly regs: readonly [number, number, number];
  /** Use memory for the r/m operand (and how to address it). */
  readonly mem: RawMem | null;
  readonly imm: bigint;
  /** Branches: how many units forward. */
  readonly skip: number;
  /** Small choices: which subroutine to call, frame or no frame for leave, a dividend setup, cmpxchg's comparand. */
  readonly variant: number;
}

export interface RawSub { readonly units: readonly RawUnit[]; readonly ret: number }

export interface RawCase {
  readonly regs: readonly bigint[];
  readonly flags: number;
  readonly memSeed: number;
  readonly gsOff: number;
  readonly rspOff: number;
  readonly main: readonly RawUnit[];
  readonly subs: readonly RawSub[];
}

const U64 = (1n << 64n) - 1n;
/** 64-bit values biased to where carries, sign changes and truncation happen. */
export const value64: fc.Arbitrary<bigint> = fc.oneof(
  fc.bigInt({ min: 0n, max: U64 }),
  fc.constantFrom(0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn,
    0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xfffffffffffffffen, U64),
  fc.integer({ min: -300, max: 300 }).map((v) => BigInt.asUintN(64, BigInt(v))),
);

const rawMem: fc.Arbitrary<RawMem> = fc.record({
  mode: fc.nat(6), gs: fc.boolean(), base: fc.nat(15), index: fc.nat(15), scale: fc.nat(3),
  disp: fc.oneof(fc.constant(0), fc.integer({ min: -128, max: 127 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
  target: fc.nat(SEQ.dataSize - 8), xval: value64,
});

/** Form indices: uniform over all forms, with extra weight on the ones that move rsp or rip. */
const FLOW = DRAWN_FORMS.map((f, i) => [f, i] as const).filter(([f]) => f.kind !== "plain").map(([, i]) => i);
const formIndex: fc.Arbitrary<number> = fc.oneof({ arbitrary: fc.nat(DRAWN_FORMS.length - 1), weight: 3 }, { arbitrary: fc.constantFrom(...FLOW), weight: 1 });

export const rawUnit: fc.Arbitrary<RawUnit> = fc.record({
  form: formIndex,
  regs: fc.tuple(fc.nat(19), fc.nat(19), fc.nat(19)),
  mem: fc.option(rawMem, { freq: 2 }),
  imm: value64,
  skip: fc.integer({ min: 1, max: 4 }),
  variant: fc.nat(15),
});

export function rawCase(maxUnits = 24): fc.Arbitrary<RawCase> {
  return fc.record({
    regs: fc.array(value64, { minLength: 16, maxLength: 16 }),
    flags: fc.nat(0xfff),
    memSeed: fc.nat(),
    gsOff: fc.nat(SEQ.dataSize - 1),
    rspOff: fc.integer({ min: -256, max: 256 }),
    main: fc.array(rawUnit, { maxLength: maxUnits, size: "medium" }),
    subs: fc.array(fc.record({ units: fc.array(rawUnit, { maxLength: 6 }), ret: fc.nat(80) }), { maxLength: 3 }),
  });
}

// ---- registers ----

const GPR: Record<8 | 16 | 32 | 64, readonly number[]> = {
  64: [R.RAX, R.RCX, R.RDX, R.RBX, R.RSP, R.RBP, R.RSI, R.RDI, R.R8, R.R9, R.R10, R.R11, R.R12, R.R13, R.R14, R.R15],
  32: [R.EAX, R.ECX, R.EDX, R.EBX, R.ESP, R.EBP, R.ESI, R.EDI, R.R8D, R.R9D, R.R10D, R.R11D, R.R12D, R.R13D, R.R14D, R.R15D],
  16: [R.AX, R.CX, R.DX, R.BX, R.SP, R.BP, R.SI, R.DI, R.R8W, R.R9W, R.R10W, R.R11W, R.R12W, R.R13W, R.R14W, R.R15W],
  8: [R.AL, R.CL, R.DL, R.BL, R.SPL, R.BPL, R.SIL, R.DIL, R.R8L, R.R9L, R.R10L, R.R11L, R.R12L, R.R13L, R.R14L, R.R15L],
};
const HIGH8 = [R.AH, R.CH, R.DH, R.BH];
/** rsp's index in register arrays (RawCase.regs: sequenceCase() sets rsp from rspOff, so that slot's value is unused). */
export const RSP = 4;

/** A register operand: which of the 16 (idx), at what size, and whether it is ah..bh. */
interface Reg { readonly idx: number; readonly bits: number; readonly high: boolean }
const ice = (r: Reg) => (r.high ? HIGH8[r.idx]! : GPR[r.bits as 8 | 16 | 32 | 64][r.idx]!);

/** A register from a raw choice; a written register is never rsp (it would leave the stack). */
function pickReg(bits: number, raw: number, written: boolean): Reg {
  if (bits === 8 && raw >= 16) return { idx: raw - 16, bits, high: true };
  let idx = raw % 16;
  if (written && idx === RSP) idx = 5;
  return { idx, bits, high: false };
}

/** A 64-bit register that is none of `avoid` (and not rsp). */
function freeReg(raw: number, avoid: readonly number[]): number {
  for (let k = 0; k < 16; k++) {
    const idx = (raw + k) % 16;
    if (idx !== RSP && !avoid.includes(idx)) return idx;
  }
  throw new Error("unreachable: no free register");
}

// ---- memory operands ----

interface Mem {
  readonly base: number | "rip" | -1;
  readonly index: number;
  readonly scale: number;
  readonly disp: bigint;
  readonly gs: boolean;
  /** movabs reg, value before the instruction. */
  readonly setup: readonly { readonly idx: number; readonly value: bigint }[];
}
const makeMem = (m: Mem) => () => M.new64(
  m.base === "rip" ? R.RIP : m.base < 0 ? R.None : GPR[64][m.base]!, m.index < 0 ? R.None : GPR[64][m.index]!, m.scale,
  m.base === "rip" ? BigInt.asUintN(64, m.disp) : m.disp, m.base === -1 ? 8 : 1, false, m.gs ? R.GS : R.None);

/** Which registers the memory operand's setup writes. */
const setupRegs = (m: Mem | undefined) => m?.setup.map((s) => s.idx) ?? [];

const MODES_ACCESS = 6;
/**
 * A memory operand for `raw`. Modes: 0 base+index*scale+disp, 1 base+disp, 2 index*scale+disp,
 * 3 absolute disp32, 4 RIP-relative, 5 [rsp+disp] (writes below rsp only), and for operands
 * never accessed (lea, nop) 6: whatever the registers hold. gs: adds the GS base (modes 0-4).
 */
function memOperand(raw: RawMem, accessed: boolean, writes: boolean, size: number, gsBase: bigint, avoid: readonly number[]): Mem {
  const mode = raw.mode % (accessed ? MODES_ACCESS : MODES_ACCESS + 1);
  const scale = 1 << raw.scale;
  const disp = BigInt(raw.disp);
  if (mode === 5) {
    // Near rsp: reads anywhere in [rsp-256, rsp+256); writes only below rsp.
    const d = writes ? -8 - size - (Math.abs(raw.disp) % 248) : (raw.disp % 256);
    return { base: RSP, index: -1, scale: 1, disp: BigInt(d), gs: false, setup: [] };
  }
  if (mode === 6) {
    const index = raw.index % 16 === RSP ? -1 : raw.index % 16;
    return { base: raw.base % 16, index, scale, disp, gs: raw.gs, setup: [] };
  }
  const gs = raw.gs;
  const target = SEQ.data + BigInt(raw.target) - (gs ? gsBase : 0n);
  const base = freeReg(raw.base, avoid);
  const index = freeReg(raw.index, [...avoid, base]);
  const u = (v: bigint) => BigInt.asUintN(64, v);
  switch (mode) {
    case 0: return { base, index, scale, disp, gs, setup: [{ idx: index, value: raw.xval }, { idx: base, value: u(target - raw.xval * BigInt(scale) - disp) }] };
    case 1: return { base, index: -1, scale: 1, disp, gs, setup: [{ idx: base, value: u(target - disp) }] };
    case 2: {
      // index*scale + disp = target: move disp so that target - disp is a multiple of scale.
      const s = BigInt(scale);
      let d = disp + (((target - disp) % s) + s) % s;
      if (d > 0x7fffffffn) d -= s;
      return { base: -1, index, scale, disp: d, gs, setup: [{ idx: index, value: u((target - d) / s) }] };
    }
    case 3: return { base: -1, index: -1, scale: 1, disp: target, gs, setup: [] };
    default: return { base: "rip", index: -1, scale: 1, disp: target, gs, setup: [] };
  }
}

// ---- building a program ----

type Operand = { readonly t: "R"; readonly reg: Reg } | { readonly t: "M"; readonly mem: Mem } | { readonly t: "I"; readonly value: number | bigint };

/** Create the iced instruction for a form and concrete operands (the operand pattern picks the constructor). */
function create(code: number, ops: readonly Operand[]): I {
  const pat = ops.map((o) => o.t).join("");
  const reg = (i: number) => ice((ops[i] as { reg: Reg }).reg);
  const mem = (i: number) => makeMem((ops[i] as { mem: Mem }).mem)();
  const imm = (i: number) => (ops[i] as { value: number | bigint }).value;
  const i32 = (i: number) => Number(imm(i));
  switch (pat) {
    case "": return I.create(code);
    case "R": return I.createReg(code, reg(0));
    case "M": return I.createMem(code, mem(0));
    case "I": return I.createI32(code, i32(0));
    case "RR": return I.createRegReg(code, reg(0), reg(1));
    case "RM": return I.createRegMem(code, reg(0), mem(1));
    case "MR": return I.createMemReg(code, mem(0), reg(1));
    case "RI": return typeof imm(1) === "bigint" ? I.createRegU64(code, reg(0), imm(1) as bigint) : I.createRegI32(code, reg(0), i32(1));
    case "MI": return I.createMemI32(code, mem(0), i32(1));
    case "RRI": return I.createRegRegI32(code, reg(0), reg(1), i32(2));
    case "RMI": return I.createRegMemI32(code, reg(0), mem(1), i32(2));
    case "RRR": return I.createRegRegReg(code, reg(0), reg(1), reg(2));
    case "RMR": return I.createRegMemReg(code, reg(0), mem(1), reg(2));
    default: throw new Error(`sequences: no constructor for operand pattern '${pat}'`);
  }
}

/** ah..bh cannot be encoded with a REX prefix: if anything else needs one, use al..bl instead. */
function fixHighBytes(ops: Operand[]): Operand[] {
  if (!ops.some((o) => o.t === "R" && o.reg.high)) return ops;
  const needsRex = ops.some((o) =>
    (o.t === "R" && !o.reg.high && (o.reg.bits === 64 || o.reg.idx >= 8 || (o.reg.bits === 8 && o.reg.idx >= 4))) ||
    (o.t === "M" && ((typeof o.mem.base === "number" && o.mem.base >= 8) || o.mem.index >= 8)));
  return needsRex ? ops.map((o) => (o.t === "R" && o.reg.high ? { t: "R", reg: { ...o.reg, high: false } } : o)) : ops;
}

/** The value of an immediate operand of `bits` from a raw 64-bit value. */
function immValue(bits: number, raw: bigint): number | bigint {
  return bits === 64 ? BigInt.asUintN(64, raw) : Number(BigInt.asIntN(bits, raw));
}

const code = (name: string) => (Code as unknown as Record<string, number>)[name]!;
const FORM = (name: string) => DRAWN_FORMS.find((f) => f.name === name)!;
const MOVABS = code("Mov_r64_imm64"), MOV_STORE = code("Mov_rm64_r64"), CMP_RR = code("Cmp_rm64_r64");
const LEA = code("Lea_r64_m"), PUSH_R = code("Push_r64"), POP_R = code("Pop_r64"), PUSH_IMM32 = code("Pushq_imm32");
const CALL_REL = code("Call_rel32_64"), JMP_REL8 = code("Jmp_rel8_64"), JMP_REL32 = code("Jmp_rel32_64");
const RETNQ = FORM("Retnq"), RETNQ_IMM = FORM("Retnq_imm16");
const ALL_DEFINED = flagEffect("cmp", 64);
/** popfq may load these: the arithmetic flags, DF and ID (TF would trap, AC would fault on unaligned accesses). */
const POPF_BITS = ARITH_FLAGS | (1 << 10) | (1 << 21);

interface Sub { readonly label: string; readonly ret: Form; readonly retImm: number; readonly exit: number }

/**
 * Emits one program. Built three times per case: to measure which rel8 branches fit, to lay
 * the final code out, and to fill in label addresses that movabs loads (same layout: movabs is
 * always 10 bytes). It also follows which flags are (maybe) undefined, statically: a union over
 * every path into a point.
 */
class Builder {
  readonly asm = new Assembler("sequence");
  /** Flags that may be undefined here (0 also for unreachable code). */
  undef = 0;
  private readonly incoming = new Map<string, number>();
  private nextLabel = 0;
  /** rel8 branches: their assembler item index, label, and id. */
  readonly rel8: { item: number; label: string; id: number }[] = [];
  private branchId = 0;

  constructor(readonly gsBase: bigint, private readonly fits: ReadonlySet<number> | undefined, private readonly addrs: ReadonlyMap<string, bigint> | undefined) {}

  fresh(prefix: string): string {
    return `${prefix}${this.nextLabel++}`;
  }

  /** Place a label: the flags state is the union of falling through and every branch to it. */
  label(name: string): void {
    this.undef |= this.incoming.get(name) ?? 0;
    this.asm.label(name);
  }

  insn(make: () => I, effect?: FlagEffect): void {
    this.asm.emit(make);
    if (effect !== undefined) this.undef = (this.undef & ~effect.defines) | effect.undefines;
  }

  /** Define every flag first if the next instruction reads one that may be undefined. */
  defineFor(reads: number, a: number, b: number): void {
    if ((reads & this.undef) === 0) return;
    this.insn(() => I.createRegReg(CMP_RR, GPR[64][a % 16]!, GPR[64][b % 16]!), ALL_DEFINED);
  }

  /** A near branch to a label; a rel8 form stays rel8 only where it was measured to fit. */
  branch(form: Form | number, label: string): void {
    const c = typeof form === "number" ? form : form.code;
    const name = Code[c]!;
    const id = this.branchId++;
    let use = c;
    if (name.includes("_rel8_")) {
      this.rel8.push({ item: this.asm.length, label, id });
      if (this.fits === undefined || !this.fits.has(id)) use = code(name.replace("_rel8_", "_rel32_"));
    }
    this.asm.branch(use, { label });
    this.reach(label);
  }

  /** Control goes to `label` from here (a branch, or an indirect call or jmp): its state includes this one. */
  reach(label: string): void {
    this.incoming.set(label, (this.incoming.get(label) ?? 0) | this.undef);
  }

  movabs(idx: number, value: bigint): void {
    this.insn(() => I.createRegU64(MOVABS, GPR[64][idx]!, BigInt.asUintN(64, value)));
  }

  /** movabs of a label's address (0 until the layout is known). */
  movabsLabel(idx: number, label: string): void {
    const a = this.addrs?.get(label) ?? 0n;
    this.insn(() => I.createRegU64(MOVABS, GPR[64][idx]!, a));
  }

  setup(m: Mem | undefined): void {
    for (const s of m?.setup ?? []) this.movabs(s.idx, s.value);
  }
}

interface BlockCtx {
  readonly inSub: boolean;
  /** Subroutines this block may call. */
  readonly subs: readonly Sub[];
}

function emitUnit(b: Builder, u: RawUnit, ctx: BlockCtx, target: (skip: number) => string): void {
  const form = DRAWN_FORMS[u.form % DRAWN_FORMS.length]!;
  const [r0, r1, r2] = u.regs;
  switch (form.kind) {
    case "plain": return emitPlain(b, form, u);
    case "push": {
      const src = form.operands[0]!;
      const ops: Operand[] = src.kind === "imm" ? [{ t: "I", value: immValue(src.bits, u.imm) }]
        : src.kind === "rm" && u.mem ? [{ t: "M", mem: memOperand(u.mem, true, false, 8, b.gsBase, []) }]
        : [{ t: "R", reg: pickReg(64, r0, false) }];
      const op0 = ops[0]!;
      if (op0.t === "M") b.setup(op0.mem);
      b.insn(() => create(form.code, ops));
      if (ctx.inSub) b.insn(() => I.createReg(POP_R, GPR[64][freeReg(r1, [])]!)); // keep the body stack-neutral
      return;
    }
    case "pop": {
      const mem = form.operands[0]!.kind === "rm" && u.mem ? memOperand(u.mem, true, true, 8, b.gsBase, []) : undefined;
      const dst = pickReg(64, r0, false);
      if (mem === undefined && dst.idx === RSP) {
        // pop rsp loads rsp from the stack: only a value pushed from rsp keeps it in the stack.
        b.insn(() => I.createReg(PUSH_R, R.RSP));
        b.insn(() => create(form.code, [{ t: "R", reg: dst }]));
        return;
      }
      b.setup(mem);
      if (ctx.inSub) b.insn(() => I.createReg(PUSH_R, GPR[64][r1 % 16]!));
      b.insn(() => create(form.code, [mem ? { t: "M", mem } : { t: "R", reg: dst }]));
      return;
    }
    case "pushf":
      b.defineFor(ARITH_FLAGS, r1, r2); // pushfq stores every flag
      b.insn(() => create(form.code, []), formFlagEffect(form, 0));
      if (ctx.inSub) b.insn(() => I.createReg(POP_R, GPR[64][freeReg(r0, [])]!));
      return;
    case "popf": {
      const v = (Number(u.imm & BigInt(POPF_BITS))) | 0x202;
      b.insn(() => I.createI32(PUSH_IMM32, v));
      b.insn(() => create(form.code, []), formFlagEffect(form, 0));
      return;
    }
    case "leave": {
      const k = 8 * ((u.variant >> 1) & 7);
      if (ctx.inSub || (u.variant & 1) === 1) {
        // A frame: push rbp; mov rbp,rsp; lea rsp,[rsp-k]; leave (stack-neutral).
        b.insn(() => I.createReg(PUSH_R, R.RBP));
        b.insn(() => I.createRegReg(MOV_STORE, R.RBP, R.RSP));
        b.insn(() => I.createRegMem(LEA, R.RSP, M.createBaseDisplSize(R.RSP, BigInt(-k), 1)));
      } else {
        b.insn(() => I.createRegMem(LEA, R.RBP, M.createBaseDisplSize(R.RSP, BigInt(k), 1)));
      }
      b.insn(() => create(form.code, []));
      return;
    }
    case "call": {
      const choice = u.variant % (ctx.subs.length + 1);
      const sub = ctx.subs[choice];
      const inline = sub === undefined ? { label: b.fresh("body"), after: b.fresh("after") } : undefined;
      const to = sub?.label ?? inline!.label;
      emitTransfer(b, form, u, to);
      if (inline) emitInlineBody(b, inline.label, inline.after, RETNQ, 0);
      compensate(b, sub?.retImm ?? 0);
      if (sub) b.undef = sub.exit;
      return;
    }
    case "ret": {
      const body = b.fresh("body"), after = b.fresh("after");
      const n = form === RETNQ_IMM ? Number(u.imm & 0x3fn) : 0;
      b.branch(CALL_REL, body);
      emitInlineBody(b, body, after, form, n);
      compensate(b, n);
      return;
    }
    case "jmp":
      emitTransfer(b, form, u, target(u.skip));
      b.undef = 0; // what follows is reached only by branches to it
      return;
    case "jcc":
      b.defineFor(conditionFlags(form.cond), r1, r2);
      b.branch(form, target(u.skip));
      return;
    case "privileged":
      throw new Error(`sequences: ${form.name} is privileged`);
  }
}

/** call or jmp to a label: rel32/rel8 directly, or through a register or a memory word holding its address. */
function emitTransfer(b: Builder, form: Form, u: RawUnit, label: string): void {
  if (form.operands[0]!.kind === "rel") { b.branch(form, label); return; }
  const mem = u.mem ? memOperand(u.mem, true, true, 8, b.gsBase, []) : undefined;
  const r = freeReg(u.regs[0], setupRegs(mem));
  b.setup(mem);
  b.movabsLabel(r, label);
  b.reach(label);
  if (mem) {
    b.insn(() => I.createMemReg(MOV_STORE, makeMem(mem)(), GPR[64][r]!));
    b.insn(() => create(form.code, [{ t: "M", mem }]));
  } else {
    b.insn(() => create(form.code, [{ t: "R", reg: { idx: r, bits: 64, high: false } }]));
  }
}

/** jmp over a body that only returns: `jmp after; body: ret [n]; after:` (the body is reached by a call). */
function emitInlineBody(b: Builder, body: string, after: string, ret: Form, n: number): void {
  const state = b.undef;
  b.branch(JMP_REL8, after);
  b.label(body);
  b.undef = state;
  b.insn(() => (ret === RETNQ ? I.create(ret.code) : I.createI32(ret.code, n)));
  b.undef = 0;
  b.label(after);
}

/** After a call to a `ret n`, move rsp back down by n (lea: no flags change), so bodies stay stack-neutral. */
function compensate(b: Builder, n: number): void {
  if (n !== 0) b.insn(() => I.createRegMem(LEA, R.RSP, M.createBaseDisplSize(R.RSP, BigInt(-n), 1)));
}

/** Registers a form reads or writes implicitly, which a memory operand's setup must leave alone. */
const IMPLICIT: Record<string, readonly number[]> = { div: [0, 2], idiv: [0, 2], cmpxchg: [0] };

function emitPlain(b: Builder, form: Form, u: RawUnit): void {
  const rm = form.operands.findIndex((o) => o.kind === "rm" || o.kind === "mem");
  const memNeeded = rm >= 0 && (form.operands[rm]!.kind === "mem" || u.mem !== null);
  const rawMem = u.mem ?? { mode: 6, gs: false, base: u.regs[1], index: u.regs[2], scale: 0, disp: 0, target: 0, xval: 0n };
  const size = form.operands[rm]?.kind === "rm" ? (form.operands[rm] as { bits: number }).bits / 8 : 8;
  const mem = memNeeded ? memOperand(rawMem, form.accessesMemory, rm === 0 && form.writes0, size, b.gsBase, IMPLICIT[form.op] ?? []) : undefined;
  let shiftImm = 0;
  let ops: Operand[] = form.operands.map((o, i): Operand => {
    const written = (i === 0 && form.writes0) || (i === 1 && form.writes1);
    switch (o.kind) {
      case "reg": return { t: "R", reg: pickReg(o.bits, u.regs[i]!, written) };
      case "rm": return i === rm && mem ? { t: "M", mem } : { t: "R", reg: pickReg(o.bits, u.regs[i]!, written) };
      case "mem": return { t: "M", mem: mem! };
      case "acc": return { t: "R", reg: { idx: 0, bits: o.bits, high: false } };
      case "cl": return { t: "R", reg: { idx: 1, bits: 8, high: false } };
      case "one": return { t: "I", value: 1 };
      case "imm": {
        const v = immValue(o.bits, u.imm);
        shiftImm = Number(BigInt(v) & 0xffn);
        return { t: "I", value: v };
      }
      case "rel": throw new Error(`sequences: ${form.name} is not a plain form`);
    }
  });
  ops = fixHighBytes(ops);
  // xchg r, rAX with rAX itself is the encoding of nop (90, 66 90, 48 90): take another register.
  const op0 = ops[0];
  if (form.operands[1]?.kind === "acc" && op0?.t === "R" && op0.reg.idx === 0) ops[0] = { t: "R", reg: { ...op0.reg, idx: freeReg(u.regs[2], [0]) } };
  const effect = formFlagEffect(form, shiftImm);
  b.defineFor(effect.reads, u.regs[1], u.regs[2]); // cmovcc reads its condition
  b.setup(mem);
  if (form.op === "div" || form.op === "idiv") emitDividend(b, form, u, ops[0]!);
  if (form.op === "cmpxchg" && (u.variant & 1) === 1) {
    // The accumulator loaded from the destination: the comparison succeeds (unless they overlap).
    const mov = code(`Mov_r${form.bits}_rm${form.bits}`);
    b.insn(() => create(mov, fixHighBytes([{ t: "R", reg: { idx: 0, bits: form.bits, high: false } }, ops[0]!])));
  }
  b.insn(() => create(form.code, ops), effect);
}

const CBW = code("Cbw"), SIGN_EXTEND: Record<number, number> = { 8: CBW, 16: code("Cwd"), 32: code("Cdq"), 64: code("Cqo") };
const MOV_R8_IMM8 = code("Mov_r8_imm8");

/**
 * Before a div or idiv: by `variant`, nothing (a random dividend: mostly a quotient that does
 * not fit), or a dividend that fits as the JIT makes one (the high part zeroed for div; for idiv
 * the sign extension cbw/cwd/cdq/cqo), on its own, from INT_MIN of the size, or with a divisor
 * register of -1 or 0.
 */
function emitDividend(b: Builder, form: Form, u: RawUnit, divisor: Operand): void {
  const v = u.variant & 7;
  if (v === 0) return;
  const bits = form.bits;
  if (v === 5) b.movabs(0, 1n << BigInt(bits - 1));
  // A divisor register other than rax, rdx and rsp (which must keep pointing into the stack).
  const dr = divisor.t === "R" && !divisor.reg.high && ![0, 2, RSP].includes(divisor.reg.idx) ? divisor.reg.idx : -1;
  if (v === 6 && dr >= 0) b.movabs(dr, (1n << 64n) - 1n);
  if (v === 7 && dr >= 0) b.movabs(dr, 0n);
  if (form.op === "idiv") b.insn(() => I.create(SIGN_EXTEND[bits]!));
  else if (bits === 8) b.insn(() => I.createRegI32(MOV_R8_IMM8, R.AH, 0));
  else b.movabs(2, 0n);
}

// ---- the case ----

/** A deterministic byte stream (xorshift32) for memory contents; seed 0 gives zeros. */
export function fillBytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  if (x === 0) return out;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export interface SeqProgram {
  readonly case: NativeCase;
  readonly code: Assembled;
  /** The iced Code of every instruction in the code, in order. */
  readonly codes: readonly number[];
  /** The program as an Intel-syntax listing with unit labels; `mark` flags one address. */
  listing(mark?: bigint): string;
}

function build(raw: RawCase, gsBase: bigint, fits: ReadonlySet<number> | undefined, addrs: ReadonlyMap<string, bigint> | undefined): Builder {
  const b = new Builder(gsBase, fits, addrs);
  // Subroutines first in the layout, last one first: sub j calls only subs after it, whose
  // flags at exit are then known. A subroutine is entered with every flag maybe undefined.
  const subs: Sub[] = [];
  for (let j = raw.subs.length - 1; j >= 0; j--) {
    const s = raw.subs[j]!;
    const label = `sub${j}`;
    b.undef = ARITH_FLAGS;
    b.label(label);
    emitBlock(b, s.units, `sub${j}_u`, `sub${j}_end`, { inSub: true, subs: subs.slice() });
    const ret = s.ret === 0 || s.ret > 64 ? RETNQ : RETNQ_IMM;
    const retImm = ret === RETNQ ? 0 : s.ret;
    b.insn(() => (ret === RETNQ ? I.create(ret.code) : I.createI32(ret.code, retImm)));
    subs.unshift({ label, ret, retImm, exit: b.undef });
  }
  b.undef = 0;
  b.label("main");
  emitBlock(b, raw.main, "u", "end", { inSub: false, subs });
  b.insn(() => I.createBranch(JMP_REL32, SEQ.stop));
  return b;
}

function emitBlock(b: Builder, units: readonly RawUnit[], prefix: string, end: string, ctx: BlockCtx): void {
  units.forEach((u, i) => {
    b.label(`${prefix}${i}`);
    emitUnit(b, u, ctx, (skip) => (i + skip >= units.length ? end : `${prefix}${i + skip}`));
  });
  b.label(end);
}

/** Materialize a raw case: assemble the program and lay out memory and registers. */
export function sequenceCase(raw: RawCase): SeqProgram {
  const gsBase = SEQ.data + BigInt(raw.gsOff);
  // 1: every branch rel32, to measure; 2: the rel8 branches that fit; 3: label addresses filled in.
  const first = build(raw, gsBase, undefined, undefined);
  const a1 = first.asm.assemble(SEQ.code);
  const fits = new Set(first.rel8.filter((r) => {
    const at = a1.insns[r.item]!;
    return a1.labels.get(r.label)! - (at.address + BigInt(at.length)) <= 127n;
  }).map((r) => r.id));
  const a2 = build(raw, gsBase, fits, undefined).asm.assemble(SEQ.code);
  const code = build(raw, gsBase, fits, a2.labels).asm.assemble(SEQ.code);
  if (code.bytes.length !== a2.bytes.length || code.bytes.length > SEQ.codeSize) throw new Error(`sequences: layout changed or code too large (${code.bytes.length} bytes)`);

  const rsp = SEQ.stack + BigInt(SEQ.stackSize / 2 + raw.rspOff);
  const stack = fillBytes(raw.memSeed ^ 0x5a5a5a5a, SEQ.stackSize);
  new DataView(stack.buffer).setBigUint64(Number(rsp - SEQ.stack), SEQ.stop, true); // the return address the code never uses
  const regs = raw.regs.map((v, i) => (i === RSP ? rsp : v));
  const c: NativeCase = {
    regions: [
      { start: SEQ.code, size: SEQ.codeSize, perms: "r-x" },
      { start: SEQ.data, size: SEQ.dataSize, perms: "rw-" },
      { start: SEQ.stack, size: SEQ.stackSize, perms: "rw-" },
    ],
    loads: [{ addr: SEQ.code, bytes: code.bytes }, { addr: SEQ.data, bytes: fillBytes(raw.memSeed, SEQ.dataSize) }, { addr: SEQ.stack, bytes: stack }],
    regs, rip: code.labels.get("main")!, rflags: raw.flags & ARITH_FLAGS, gsBase, stop: SEQ.stop,
    dumps: [{ addr: SEQ.data, size: SEQ.dataSize }, { addr: SEQ.stack, size: SEQ.stackSize }],
  };
  const codes: number[] = [];
  forEachInstruction(code.bytes, SEQ.code, (ins) => { codes.push(ins.code); });
  const names = new Map<bigint, string>();
  for (const [n, a] of code.labels) if (!names.has(a) || /^(u|sub|main|end)/.test(n)) names.set(a, n);
  return {
    case: c, code, codes,
    listing: (mark) => formatListing(disassemble(code.bytes, SEQ.code, { syntax: "intel", symbolize: (a) => names.get(a) }), mark),
  };
}

/**
 * A case that runs hand-written `bytes` (then a jmp to the stop address) with the registers,
 * flags and memory of `raw` (all zero by default).
 */
export function codeCase(bytes: Uint8Array, raw: Partial<RawCase> = {}): NativeCase {
  const base = sequenceCase({ regs: Array<bigint>(16).fill(0n), flags: 0, memSeed: 0, gsOff: 0, rspOff: 0, ...raw, main: [], subs: [] }).case;
  const jmp = new Uint8Array(5);
  jmp[0] = 0xe9;
  new DataView(jmp.buffer).setInt32(1, Number(SEQ.stop - (SEQ.code + BigInt(bytes.length) + 5n)), true);
  return { ...base, loads: [{ addr: SEQ.code, bytes: Uint8Array.from([...bytes, ...jmp]) }, ...base.loads.slice(1)], rip: SEQ.code };
}
