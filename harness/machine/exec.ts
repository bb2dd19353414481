// Instruction semantics, one handler per op id (isa.ts), dispatched through HANDLERS[op].
// On entry `cpu.rip` already holds the next instruction's address; branches overwrite it.
// Handlers read memory before they change registers, so a faulting instruction leaves the
// architectural registers as they were. 64-bit values are uint32 halves (see cpu.ts).
import { hex as hex__, toCanonical as toCanonical__ } from "./addr.ts";
import { Cpu as Cpu__, hiOf as hiOf__, pairToAddr as pairToAddr__, pairToBig as pairToBig__, SIZE_MASK as SIZE_MASK__, Stop as Stop__, X86_TRAP_BP as X86_TRAP_BP__, X86_TRAP_DE as X86_TRAP_DE__, X86_TRAP_UD as X86_TRAP_UD__, interruptName as interruptName__ } from "./cpu.ts";
import { K_MEM as K_MEM__, K_REG as K_REG__, RAX as RAX__, RBP as RBP__, RCX as RCX__, RDX as RDX__, RSP as RSP__, type DInsn } from "./decode.ts";
import { condition as condition__, CF as CF__, F_ADD as F_ADD__, F_CFOF as F_CFOF__, F_DEC as F_DEC__, F_INC as F_INC__, F_LOGIC as F_LOGIC__, F_NEG as F_NEG__, F_SUB as F_SUB__, IF as IF__, OF as OF__, POPF_WRITABLE as POPF_WRITABLE__ } from "./flags.ts";
import { MemFault as MemFault__ } from "./memory.ts";
import { Op as Op__, OP_COUNT as OP_COUNT__ } from "./isa.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const hex = hex__, toCanonical = toCanonical__, Cpu = Cpu__, hiOf = hiOf__, pairToAddr = pairToAddr__, pairToBig = pairToBig__, SIZE_MASK = SIZE_MASK__, Stop = Stop__, X86_TRAP_BP = X86_TRAP_BP__, X86_TRAP_DE = X86_TRAP_DE__, X86_TRAP_UD = X86_TRAP_UD__, interruptName = interruptName__, K_MEM = K_MEM__, K_REG = K_REG__, RAX = RAX__, RBP = RBP__, RCX = RCX__, RDX = RDX__, RSP = RSP__, condition = condition__, CF = CF__, F_ADD = F_ADD__, F_CFOF = F_CFOF__, F_DEC = F_DEC__, F_INC = F_INC__, F_LOGIC = F_LOGIC__, F_NEG = F_NEG__, F_SUB = F_SUB__, IF = IF__, OF = OF__, POPF_WRITABLE = POPF_WRITABLE__, MemFault = MemFault__, Op = Op__, OP_COUNT = OP_COUNT__;
type Cpu = Cpu__;
type Stop = Stop__;
type MemFault = MemFault__;

type Handler = (c: Cpu, d: DInsn) => void;

const TWO_32 = 4294967296;

/** Operand 1 (source) at `size` bytes: low half returned, high half in c.th. */
function src(c: Cpu, d: DInsn, size: number): number {
  const k = d.k1;
  if (k === K_REG) return c.getR(d.r1, size);
  if (k === K_MEM) return c.readMem(c.ea(d), size);
  c.th = d.immHi;
  return d.immLo;
}

/** The address held in halves; a non-canonical value faults (#GP). */
function addrOf(l: number, h: number, access: "read" | "execute"): number {
  const a = pairToAddr(l, h);
  if (a === a) return a;
  throw new MemFault("non-canonical", access, NaN, undefined, pairToBig(l, h));
}

// ---- ALU ----

const A_ADD = 0, A_SUB = 1, A_AND = 2, A_OR = 3, A_XOR = 4;

/**
 * Two-operand ALU: dst = dst OP src (or just flags for cmp/test). Values of size < 8 live in the
 * low half; 64-bit add/sub carry between the halves.
 */
function alu(which: number, kind: number, store: boolean): Handler {
  return (c, d) => {
    const size = d.size;
    const bl = src(c, d, size), bh = c.th;
    const mem = d.k0 === K_MEM;
    const at = mem ? c.ea(d) : 0;
    const al = mem ? c.readMem(at, size) : c.getR(d.r0, size), ah = c.th;
    let rl: number, rh = 0;
    switch (which) {
      case A_ADD: {
        const s = al + bl;
        if (size === 8) { rl = s >>> 0; rh = (ah + bh + (s >= TWO_32 ? 1 : 0)) >>> 0; }
        else rl = (s & SIZE_MASK[size]!) >>> 0;
        break;
      }
      case A_SUB: {
        const s = al - bl;
        if (size === 8) { rl = s >>> 0; rh = (ah - bh - (s < 0 ? 1 : 0)) >>> 0; }
        else rl = (s & SIZE_MASK[size]!) >>> 0;
        break;
      }
      case A_AND: rl = (al & bl) >>> 0; rh = (ah & bh) >>> 0; break;
      case A_OR: rl = (al | bl) >>> 0; rh = (ah | bh) >>> 0; break;
      default: rl = (al ^ bl) >>> 0; rh = (ah ^ bh) >>> 0;
    }
    if (store) {
      if (mem) c.writeMem(at, size, rl, rh);
      else c.setR(d.r0, size, rl, rh);
    }
    c.setLazy(kind, size, al, ah, bl, bh, rl, rh);
  };
}

/** One-operand read-modify-write: neg, not, inc, dec. */
const U_NEG = 0, U_NOT = 1, U_INC = 2, U_DEC = 3;
function unary(which: number): Handler {
  return (c, d) => {
    const size = d.size;
    const mem = d.k0 === K_MEM;
    const at = mem ? c.ea(d) : 0;
    const al = mem ? c.readMem(at, size) : c.getR(d.r0, size), ah = c.th;
    const mask = SIZE_MASK[size]!;
    let rl: number, rh = 0;
    switch (which) {
      case U_NEG:
        rl = ((-al) & mask) >>> 0;
        if (size === 8) rh = (~ah + (al === 0 ? 1 : 0)) >>> 0;
        break;
      case U_NOT:
        rl = (~al & mask) >>> 0;
        if (size === 8) rh = ~ah >>> 0;
        break;
      case U_INC:
        rl = ((al + 1) & mask) >>> 0;
        if (size === 8) rh = (ah + (al === 0xffffffff ? 1 : 0)) >>> 0;
        break;
      default:
        rl = ((al - 1) & mask) >>> 0;
        if (size === 8) rh = (ah - (al === 0 ? 1 : 0)) >>> 0;
    }
    if (mem) c.writeMem(at, size, rl, rh);
    else c.setR(d.r0, size, rl, rh);
    if (which === U_NOT) return; // not changes no flags
    if (which === U_INC || which === U_DEC) c.rflags(); // keep the old CF for the lazy record
    c.setLazy(which === U_NEG ? F_NEG : which === U_INC ? F_INC : F_DEC, size, al, ah, 1, 0, rl, rh);
  };
}

// ---- shifts and rotates ----

const S_SHL = 0, S_SHR = 1, S_SAR = 2;

/**
 * The value of a shift of the `size`-byte value (al, ah) by n (0 < n < size*8 after masking:
 * 1..31, or 1..63 at size 8): the low half returned, the high half in c.th.
 */
function shiftValue(c: Cpu, which: number, size: number, al: number, ah: number, n: number): number {
  let rl: number, rh = 0;
  if (size === 8) {
    if (which === S_SHL) {
      if (n < 32) { rh = ((ah << n) | (al >>> (32 - n))) >>> 0; rl = (al << n) >>> 0; }
      else { rh = (al << (n - 32)) >>> 0; rl = 0; }
    } else {
      const sh = which === S_SAR ? ah | 0 : ah;
      if (n < 32) {
        rl = ((al >>> n) | (ah << (32 - n))) >>> 0;
        rh = which === S_SAR ? (sh >> n) >>> 0 : ah >>> n;
      } else {
        rl = which === S_SAR ? (sh >> (n - 32)) >>> 0 : ah >>> (n - 32);
        rh = which === S_SAR ? (sh >> 31) >>> 0 : 0;
      }
    }
  } else {
    const bits = size * 8, mask = SIZE_MASK[size]!;
    if (which === S_SHL) rl = ((al << n) & mask) >>> 0;
    else if (which === S_SHR) rl = al >>> n;
    else rl = ((((al << (32 - bits)) >> (32 - bits)) >> n) & mask) >>> 0; // sign-extend to 32 bits, then shift
  }
  c.th = rh;
  return rl;
}

/** The last bit a shift by n (masked, nonzero) moves out of the `size`-byte value (al, ah). */
function shiftCarry(which: number, size: number, al: number, ah: number, n: number): number {
  const bits = size * 8;
  if (size === 8) {
    if (which === S_SHL) return n <= 32 ? (ah >>> (32 - n)) & 1 : (al >>> (64 - n)) & 1;
    return n - 1 < 32 ? (al >>> (n - 1)) & 1 : (ah >>> (n - 33)) & 1;
  }
  if (which === S_SHL) return n <= bits ? (al >>> (bits - n)) & 1 : 0;
  if (which === S_SHR) return (al >>> (n - 1)) & 1;
  return (((al << (32 - bits)) >> (32 - bits)) >> (n - 1)) & 1;
}

/** A count of 0 after masking changes no flags; a 32-bit register destination is still written (zero-extended). */
function countZero(c: Cpu, d: DInsn): void {
  if (d.size === 4 && d.k0 !== K_MEM) { c.hi[d.r0] = 0; if (d.r0 === RSP) c.spValid = false; }
}

/**
 * shl/shr/sar by 1, cl or imm8. The count is masked to 5 bits (6 for 64-bit); a masked count of
 * 0 changes no flags. CF is the last bit shifted out; OF is defined for a count of 1 only
 * (shl: MSB(result) XOR CF; shr: MSB(original); sar: 0) and computed the same way otherwise.
 */
function shift(which: number): Handler {
  return (c, d) => {
    const size = d.size, bits = size * 8;
    const raw = d.k1 === K_REG ? c.lo[RCX]! & 0xff : d.immLo;
    const n = raw & (size === 8 ? 63 : 31);
    const mem = d.k0 === K_MEM;
    if (n === 0) { countZero(c, d); return; }
    const at = mem ? c.ea(d) : 0;
    const al = mem ? c.readMem(at, size) : c.getR(d.r0, size), ah = c.th;
    const rl = shiftValue(c, which, size, al, ah, n), rh = c.th;
    const cf = shiftCarry(which, size, al, ah, n);
    if (mem) c.writeMem(at, size, rl, rh);
    else c.setR(d.r0, size, rl, rh);
    const msbR = size === 8 ? rh >>> 31 : (rl >>> (bits - 1)) & 1;
    const msbA = size === 8 ? ah >>> 31 : (al >>> (bits - 1)) & 1;
    const of = which === S_SHL ? msbR ^ cf : which === S_SHR ? msbA : 0;
    c.setLazy(F_CFOF, size, al, ah, (cf ? CF : 0) | (of ? OF : 0), 0, rl, rh);
  };
}

/**
 * shlx/shrx/sarx dst, src, count (BMI2, VEX): the count register masked to 5 bits (6 for 64-bit),
 * no flags changed; a 32-bit destination is zero-extended as any 32-bit write.
 */
function shiftx(which: number): Handler {
  return (c, d) => {
    const size = d.size;
    const al = src(c, d, size), ah = c.th;
    const n = c.lo[d.r2]! & (size === 8 ? 63 : 31);
    const rl = n === 0 ? al : shiftValue(c, which, size, al, ah, n);
    c.setR(d.r0, size, rl, n === 0 ? ah : c.th);
  };
}

/**
 * rol/ror by 1, cl or imm8: the count masked to 5 bits (6 for 64-bit), the rotation by that count
 * modulo the operand size. A masked count of 0 changes no flags; otherwise CF is the bit rotated
 * into the LSB (rol) or MSB (ror), and OF, defined for a count of 1 only, is MSB(result) XOR CF
 * (rol) or the XOR of the two most significant bits (ror), computed the same way for any count.
 * SF, ZF, AF and PF are unchanged.
 */
function rotate(left: boolean): Handler {
  return (c, d) => {
    const size = d.size, bits = size * 8;
    const raw = d.k1 === K_REG ? c.lo[RCX]! & 0xff : d.immLo;
    const masked = raw & (size === 8 ? 63 : 31);
    if (masked === 0) { countZero(c, d); return; }
    const mem = d.k0 === K_MEM;
    const at = mem ? c.ea(d) : 0;
    const al = mem ? c.readMem(at, size) : c.getR(d.r0, size), ah = c.th;
    const n = masked % bits;
    const k = left ? n : (bits - n) % bits; // as a left rotation
    let rl: number, rh = 0;
    if (k === 0) { rl = al; rh = ah; }
    else if (size === 8) {
      // A rotation by 32 or more swaps the halves first.
      const xl = k < 32 ? al : ah, xh = k < 32 ? ah : al, j = k & 31;
      rl = j === 0 ? xl : ((xl << j) | (xh >>> (32 - j))) >>> 0;
      rh = j === 0 ? xh : ((xh << j) | (xl >>> (32 - j))) >>> 0;
    } else {
      rl = (((al << k) | (al >>> (bits - k))) & SIZE_MASK[size]!) >>> 0;
    }
    if (mem) c.writeMem(at, size, rl, rh);
    else c.setR(d.r0, size, rl, rh);
    const msb = size === 8 ? rh >>> 31 : (rl >>> (bits - 1)) & 1;
    const next = size === 8 ? (rh >>> 30) & 1 : (rl >>> (bits - 2)) & 1;
    const cf = left ? rl & 1 : msb;
    const of = left ? msb ^ cf : msb ^ next;
    c.flags = (c.rflags() & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
  };
}

// ---- multiply (rare in generated code: exact bigint arithmetic) ----

function imul(c: Cpu, d: DInsn, al: number, ah: number, bl: number, bh: number): void {
  const size = d.size, bits = size * 8;
  const full = BigInt.asIntN(bits, pairToBig(al, ah)) * BigInt.asIntN(bits, pairToBig(bl, bh));
  const res = BigInt.asUintN(bits, full);
  const rl = Number(res & 0xffffffffn), rh = Number(res >> 32n);
  c.setR(d.r0, size, rl, rh);
  const overflow = BigInt.asIntN(bits, res) !== full;
  c.setLazy(F_CFOF, size, al, ah, overflow ? CF | OF : 0, 0, rl, rh);
}

function trapNoGate(c: Cpu, d: DInsn, vector: number, what: string, why?: string): never {
  throw new Stop({
    kind: "exception", vector, rip: toCanonical(d.ip), symbol: c.symbolize(d.ip),
    message: `${what} at ${c.describe(d.ip)} raised ${interruptName(vector)}${why ? ` (${why})` : ""} and no IDT gate handles it`,
  });
}

// ---- divide (rare: exact bigint arithmetic, which a 128-bit dividend needs anyway) ----

/**
 * #DE, a fault: nothing has changed, and the saved RIP (or the result's rip) is the divide
 * itself. The arithmetic flags, which div and idiv leave undefined (SDM), stay as they were.
 */
function divideError(c: Cpu, d: DInsn, why: string): void {
  if (!c.idt.has(X86_TRAP_DE)) {
    c.rip = d.ip; // the run ends at the divide, as a memory fault ends at the faulting instruction
    trapNoGate(c, d, X86_TRAP_DE, `'${c.disassemble(d.ip)}'`, why);
  }
  c.deliver(X86_TRAP_DE, d.ip);
}

/**
 * div/idiv r/m: AX (8-bit) or rDX:rAX by the operand; the quotient to AL/rAX, the remainder to
 * AH/rDX (truncated toward zero; the remainder has the dividend's sign). A zero divisor or a
 * quotient outside the destination's range raises #DE. The flags are undefined (SDM); the
 * machine leaves them unchanged.
 */
function divide(signed: boolean): Handler {
  return (c, d) => {
    const size = d.size, bits = size * 8, nb = BigInt(bits);
    const vl = d.k0 === K_MEM ? c.readMem(c.ea(d), size) : c.getR(d.r0, size);
    let divisor = pairToBig(vl, c.th);
    if (divisor === 0n) { divideError(c, d, "divide by zero"); return; }
    let dividend: bigint;
    if (size === 1) dividend = BigInt(c.lo[RAX]! & 0xffff);
    else {
      const al = c.getR(RAX, size), ah = c.th;
      const dl = c.getR(RDX, size), dh = c.th;
      dividend = (pairToBig(dl, dh) << nb) | pairToBig(al, ah);
    }
    if (signed) { divisor = BigInt.asIntN(bits, divisor); dividend = BigInt.asIntN(2 * bits, dividend); }
    const q = dividend / divisor, r = dividend % divisor;
    const limit = 1n << (signed ? nb - 1n : nb);
    if (q >= limit || q < (signed ? -limit : 0n)) {
      divideError(c, d, `${hex(dividend)} / ${hex(divisor)}: the quotient ${hex(q)} does not fit in ${bits} bits`);
      return;
    }
    const qu = BigInt.asUintN(bits, q), ru = BigInt.asUintN(bits, r);
    if (size === 1) { c.lo[RAX] = (c.lo[RAX]! & 0xffff0000) | (Number(ru) << 8) | Number(qu); return; }
    c.setR(RAX, size, Number(qu & 0xffffffffn), Number(qu >> 32n));
    c.setR(RDX, size, Number(ru & 0xffffffffn), Number(ru >> 32n));
  };
}

// ---- atomics (one CPU: a locked read-modify-write is an ordinary one) ----

/** (al, ah) + (bl, bh) at `size`: the low half returned, the high half in c.th. */
function addHalves(c: Cpu, size: number, al: number, ah: number, bl: number, bh: number): number {
  const s = al + bl;
  c.th = size === 8 ? (ah + bh + (s >= TWO_32 ? 1 : 0)) >>> 0 : 0;
  return size === 8 ? s >>> 0 : (s & SIZE_MASK[size]!) >>> 0;
}

/** (al, ah) - (bl, bh) at `size`: the low half returned, the high half in c.th. */
function subHalves(c: Cpu, size: number, al: number, ah: number, bl: number, bh: number): number {
  const s = al - bl;
  c.th = size === 8 ? (ah - bh - (s < 0 ? 1 : 0)) >>> 0 : 0;
  return size === 8 ? s >>> 0 : (s & SIZE_MASK[size]!) >>> 0;
}

const bswap32 = (v: number): number => (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;

/** Sign-extend a `from`-byte value (low half) to `size` bytes: low half returned, high in c.th. */
function signExtend(c: Cpu, v: number, from: number, size: number): number {
  const sx = from === 4 ? v | 0 : (v << (32 - from * 8)) >> (32 - from * 8);
  c.th = size === 8 && sx < 0 ? 0xffffffff : 0;
  return (sx & SIZE_MASK[size]!) >>> 0;
}

function store(c: Cpu, d: DInsn, l: number, h: number): void {
  if (d.k0 === K_REG) c.setR(d.r0, d.size, l, h);
  else c.writeMem(c.ea(d, "write"), d.size, l, h);
}

const H: Handler[] = new Array<Handler>(OP_COUNT);

H[Op.UNSUPPORTED] = () => { throw new Error("unreachable: the machine stops before dispatching an unsupported instruction"); };
H[Op.MOV] = (c, d) => { const l = src(c, d, d.size); store(c, d, l, c.th); };
H[Op.MOVZX] = (c, d) => { const l = src(c, d, d.srcSize); store(c, d, l, 0); };
H[Op.MOVSX] = (c, d) => { const l = signExtend(c, src(c, d, d.srcSize), d.srcSize, d.size); store(c, d, l, c.th); };
H[Op.LEA] = (c, d) => {
  const s = c.eaOffsetNumber(d);
  if (s === s) {
    c.setR(d.r0, d.size, (s & SIZE_MASK[d.size]!) >>> 0, d.size === 8 ? hiOf(s) : 0);
  } else {
    const v = BigInt.asUintN(64, c.eaOffset(d));
    c.setR(d.r0, d.size, Number(v & BigInt(SIZE_MASK[d.size]!)), d.size === 8 ? Number(v >> 32n) : 0);
  }
};
H[Op.ADD] = alu(A_ADD, F_ADD, true);
H[Op.OR] = alu(A_OR, F_LOGIC, true);
H[Op.AND] = alu(A_AND, F_LOGIC, true);
H[Op.SUB] = alu(A_SUB, F_SUB, true);
H[Op.XOR] = alu(A_XOR, F_LOGIC, true);
H[Op.CMP] = alu(A_SUB, F_SUB, false);
H[Op.TEST] = alu(A_AND, F_LOGIC, false);
H[Op.NEG] = unary(U_NEG);
H[Op.NOT] = unary(U_NOT);
H[Op.INC] = unary(U_INC);
H[Op.DEC] = unary(U_DEC);
H[Op.SHL] = shift(S_SHL);
H[Op.SHR] = shift(S_SHR);
H[Op.SAR] = shift(S_SAR);
H[Op.IMUL2] = (c, d) => { const bl = src(c, d, d.size), bh = c.th; const al = c.getR(d.r0, d.size); imul(c, d, al, c.th, bl, bh); };
H[Op.IMUL3] = (c, d) => { const al = src(c, d, d.size); imul(c, d, al, c.th, d.immLo, d.immHi); };
H[Op.PUSH] = (c, d) => {
  const k = d.k0;
  // The value is read before rsp moves (`push rsp` pushes the old rsp).
  if (k === K_REG) c.push64(c.lo[d.r0]!, c.hi[d.r0]!);
  else if (k === K_MEM) { const l = c.mem.read64(c.ea(d)); c.push64(l, c.mem.hi); }
  else c.push64(d.immLo, d.immHi);
};
H[Op.POP] = (c, d) => {
  const sp = c.rspInternal();
  const l = c.pop64(), h = c.th;
  if (d.k0 === K_REG) { c.lo[d.r0] = l; c.hi[d.r0] = h; if (d.r0 === RSP) c.spValid = false; return; }
  try {
    c.mem.write64(c.ea(d, "write"), l, h); // the address uses rsp after the increment (SDM: POP)
  } catch (e) {
    c.setRsp(sp); // a faulting instruction leaves the registers as they were
    throw e;
  }
};
H[Op.CALL] = (c, d) => c.call(d.target, d.next, d.ip);
H[Op.CALL_IND] = (c, d) => {
  const l = d.k0 === K_REG ? c.lo[d.r0]! : c.mem.read64(c.ea(d));
  const h = d.k0 === K_REG ? c.hi[d.r0]! : c.mem.hi;
  c.call(addrOf(l, h, "execute"), d.next, d.ip);
};
H[Op.RET] = (c, d) => c.ret(d.ip, d.immLo); // immLo is ret's imm16, or 0
H[Op.LEAVE] = (c) => {
  const s = addrOf(c.lo[RBP]!, c.hi[RBP]!, "read");
  const l = c.mem.read64(s), h = c.mem.hi;
  // rsp = rbp + 8, from rbp's halves with a carry (no division)
  const bl = c.lo[RBP]!;
  c.lo[RSP] = bl + 8;
  c.hi[RSP] = bl >= TWO_32 - 8 ? c.hi[RBP]! + 1 : c.hi[RBP]!;
  c.sp = s + 8;
  c.spValid = true;
  c.lo[RBP] = l;
  c.hi[RBP] = h;
};
H[Op.JMP] = (c, d) => { c.rip = d.target; };
H[Op.JMP_IND] = (c, d) => {
  const l = d.k0 === K_REG ? c.lo[d.r0]! : c.mem.read64(c.ea(d));
  const h = d.k0 === K_REG ? c.hi[d.r0]! : c.mem.hi;
  c.rip = addrOf(l, h, "execute");
};
H[Op.JCC] = (c, d) => { if (c.test(d.cond)) c.rip = d.target; };
H[Op.NOP] = () => {};
H[Op.INT3] = (c, d) => {
  if (!c.idt.has(X86_TRAP_BP)) trapNoGate(c, d, X86_TRAP_BP, "int3");
  c.deliver(X86_TRAP_BP, d.next); // a trap: the saved RIP is the next instruction
};
H[Op.UD2] = (c, d) => {
  if (!c.idt.has(X86_TRAP_UD)) trapNoGate(c, d, X86_TRAP_UD, "ud2");
  c.deliver(X86_TRAP_UD, d.ip); // a fault: the saved RIP is the ud2 itself
};
H[Op.CLI] = (c) => { c.flags &= ~IF; };
H[Op.STI] = (c) => {
  if ((c.flags & IF) === 0) c.stiShadow = c.steps; // interrupts wait one more instruction (STI shadow)
  c.flags |= IF;
};
H[Op.PUSHF] = (c) => c.push64(c.rflags(), 0);
H[Op.POPF] = (c) => {
  const v = c.pop64();
  c.setRflags((v & POPF_WRITABLE) | (c.rflags() & ~POPF_WRITABLE));
};
H[Op.IRETQ] = (c, d) => c.iret(d.ip);

// ---- the forms the Linux 7.2 JIT's lowerings add ----
H[Op.DIV] = divide(false);
H[Op.IDIV] = divide(true);
/** cbw/cwde/cdqe: the lower half of the accumulator sign-extended into all of it. */
H[Op.CBW] = (c, d) => {
  const size = d.size, half = size >> 1;
  const l = signExtend(c, c.getR(RAX, half), half, size);
  c.setR(RAX, size, l, c.th);
};
/** cwd/cdq/cqo: rDX filled with the accumulator's sign bit (cdq zero-extends into rdx). */
H[Op.CWD] = (c, d) => {
  const size = d.size;
  const l = c.getR(RAX, size);
  const neg = (size === 8 ? c.th >>> 31 : (l >>> (size * 8 - 1)) & 1) === 1;
  c.setR(RDX, size, neg ? SIZE_MASK[size]! >>> 0 : 0, neg && size === 8 ? 0xffffffff : 0);
};
/** bswap r32 (zero-extended) / r64; no flags. */
H[Op.BSWAP] = (c, d) => {
  const r = d.r0;
  if (d.size === 8) c.setR(r, 8, bswap32(c.hi[r]!), bswap32(c.lo[r]!));
  else c.setR(r, 4, bswap32(c.lo[r]!), 0);
};
H[Op.ROL] = rotate(true);
H[Op.ROR] = rotate(false);
H[Op.SHLX] = shiftx(S_SHL);
H[Op.SHRX] = shiftx(S_SHR);
H[Op.SARX] = shiftx(S_SAR);
/** xadd r/m, r: r/m = r/m + r, r = the old r/m (in that order: `xadd eax,eax` leaves the sum); flags as add. */
H[Op.XADD] = (c, d) => {
  const size = d.size;
  const bl = c.getR(d.r1, size), bh = c.th;
  const mem = d.k0 === K_MEM;
  const at = mem ? c.ea(d) : 0;
  const al = mem ? c.readMem(at, size) : c.getR(d.r0, size), ah = c.th;
  const rl = addHalves(c, size, al, ah, bl, bh), rh = c.th;
  if (mem) { c.writeMem(at, size, rl, rh); c.setR(d.r1, size, al, ah); }
  else { c.setR(d.r1, size, al, ah); c.setR(d.r0, size, rl, rh); }
  c.setLazy(F_ADD, size, al, ah, bl, bh, rl, rh);
};
/** xchg r/m, r (with memory, implicitly locked) and xchg r, rAX; no flags. */
H[Op.XCHG] = (c, d) => {
  const size = d.size;
  const bl = c.getR(d.r1, size), bh = c.th;
  if (d.k0 === K_MEM) {
    const at = c.ea(d);
    const al = c.readMem(at, size), ah = c.th;
    c.writeMem(at, size, bl, bh);
    c.setR(d.r1, size, al, ah);
    return;
  }
  const al = c.getR(d.r0, size), ah = c.th;
  c.setR(d.r1, size, al, ah);
  c.setR(d.r0, size, bl, bh);
};
/**
 * cmpxchg r/m, r: compare the accumulator with r/m (flags as `cmp rAX, r/m`); equal: r/m = r;
 * not equal: rAX = r/m. A memory destination is written either way: on failure with the value it
 * held ("the destination operand is written back if the comparison fails", SDM Vol. 2A CMPXCHG),
 * so a read-only destination faults even then. A register destination is written only on success
 * (a 32-bit one is not zero-extended on failure), and the accumulator only on failure.
 */
H[Op.CMPXCHG] = (c, d) => {
  const size = d.size;
  const sl = c.getR(d.r1, size), sh = c.th;
  const xl = c.getR(RAX, size), xh = c.th;
  const mem = d.k0 === K_MEM;
  const at = mem ? c.ea(d) : 0;
  const vl = mem ? c.readMem(at, size) : c.getR(d.r0, size), vh = c.th;
  if (xl === vl && xh === vh) {
    if (mem) c.writeMem(at, size, sl, sh);
    else c.setR(d.r0, size, sl, sh);
  } else {
    if (mem) c.writeMem(at, size, vl, vh);
    c.setR(RAX, size, vl, vh);
  }
  const rl = subHalves(c, size, xl, xh, vl, vh);
  c.setLazy(F_SUB, size, xl, xh, vl, vh, rl, c.th);
};
/**
 * cmovcc r, r/m: the source is read (and may fault) whatever the condition; a 32-bit destination
 * is zero-extended even when the condition is false (SDM Vol. 2A CMOVcc, 64-bit mode).
 */
H[Op.CMOVCC] = (c, d) => {
  const size = d.size;
  const l = src(c, d, size), h = c.th;
  if (c.test(d.cond)) c.setR(d.r0, size, l, h);
  else if (size === 4) c.setR(d.r0, 4, c.lo[d.r0]!, 0);
};

// ---- specialised forms (decode.ts specialise()) ----
H[Op.MOV_RR64] = (c, d) => { c.lo[d.r0] = c.lo[d.r1]!; c.hi[d.r0] = c.hi[d.r1]!; };
H[Op.MOV_LOAD64] = (c, d) => { const l = c.mem.read64(c.ea(d)); c.lo[d.r0] = l; c.hi[d.r0] = c.mem.hi; };
H[Op.MOV_STORE64] = (c, d) => c.mem.write64(c.ea(d, "write"), c.lo[d.r1]!, c.hi[d.r1]!);
H[Op.PUSH_R] = (c, d) => c.push64(c.lo[d.r0]!, c.hi[d.r0]!);
H[Op.POP_R] = (c, d) => { const l = c.pop64(); c.lo[d.r0] = l; c.hi[d.r0] = c.th; };
function addSubRI(sub: boolean, store: boolean): Handler {
  return (c, d) => {
    const r = d.r0, al = c.lo[r]!, ah = c.hi[r]!, bl = d.immLo, bh = d.immHi;
    let rl: number, rh: number;
    if (sub) { const s = al - bl; rl = s >>> 0; rh = (ah - bh - (s < 0 ? 1 : 0)) >>> 0; }
    else { const s = al + bl; rl = s >>> 0; rh = (ah + bh + (s >= TWO_32 ? 1 : 0)) >>> 0; }
    if (store) { c.lo[r] = rl; c.hi[r] = rh; }
    c.setLazy(sub ? F_SUB : F_ADD, 8, al, ah, bl, bh, rl, rh);
  };
}
H[Op.ADD_RI64] = addSubRI(false, true);
H[Op.SUB_RI64] = addSubRI(true, true);
H[Op.CMP_RI64] = addSubRI(true, false);
H[Op.ADD_RR64] = (c, d) => {
  const lo = c.lo, hi = c.hi, r0 = d.r0, r1 = d.r1, al = lo[r0]!, ah = hi[r0]!, bl = lo[r1]!, bh = hi[r1]!;
  const s = al + bl, rl = s >>> 0, rh = (ah + bh + (s >= TWO_32 ? 1 : 0)) >>> 0;
  lo[r0] = rl; hi[r0] = rh;
  c.setLazy(F_ADD, 8, al, ah, bl, bh, rl, rh);
};
/** sub and cmp r64, r64. */
function subRR64(store: boolean): Handler {
  return (c, d) => {
    const lo = c.lo, hi = c.hi, r0 = d.r0, r1 = d.r1, al = lo[r0]!, ah = hi[r0]!, bl = lo[r1]!, bh = hi[r1]!;
    const s = al - bl, rl = s >>> 0, rh = (ah - bh - (s < 0 ? 1 : 0)) >>> 0;
    if (store) { lo[r0] = rl; hi[r0] = rh; }
    c.setLazy(F_SUB, 8, al, ah, bl, bh, rl, rh);
  };
}
H[Op.SUB_RR64] = subRR64(true);
H[Op.CMP_RR64] = subRR64(false);
H[Op.AND_RR64] = (c, d) => {
  const lo = c.lo, hi = c.hi, r0 = d.r0, r1 = d.r1, al = lo[r0]!, ah = hi[r0]!, bl = lo[r1]!, bh = hi[r1]!;
  const rl = (al & bl) >>> 0, rh = (ah & bh) >>> 0;
  lo[r0] = rl; hi[r0] = rh;
  c.setLazy(F_LOGIC, 8, al, ah, bl, bh, rl, rh);
};
H[Op.OR_RR64] = (c, d) => {
  const lo = c.lo, hi = c.hi, r0 = d.r0, r1 = d.r1, al = lo[r0]!, ah = hi[r0]!, bl = lo[r1]!, bh = hi[r1]!;
  const rl = (al | bl) >>> 0, rh = (ah | bh) >>> 0;
  lo[r0] = rl; hi[r0] = rh;
  c.setLazy(F_LOGIC, 8, al, ah, bl, bh, rl, rh);
};
H[Op.XOR_RR64] = (c, d) => {
  const lo = c.lo, hi = c.hi, r0 = d.r0, r1 = d.r1, al = lo[r0]!, ah = hi[r0]!, bl = lo[r1]!, bh = hi[r1]!;
  const rl = (al ^ bl) >>> 0, rh = (ah ^ bh) >>> 0;
  lo[r0] = rl; hi[r0] = rh;
  c.setLazy(F_LOGIC, 8, al, ah, bl, bh, rl, rh);
};
H[Op.TEST_RR64] = (c, d) => {
  const lo = c.lo, hi = c.hi, al = lo[d.r0]!, ah = hi[d.r0]!, bl = lo[d.r1]!, bh = hi[d.r1]!;
  c.setLazy(F_LOGIC, 8, al, ah, bl, bh, (al & bl) >>> 0, (ah & bh) >>> 0);
};
/** xor r32, r32: the result zero-extended (rsp as the destination stays on the generic op). */
H[Op.XOR_RR32] = (c, d) => {
  const lo = c.lo, r0 = d.r0, al = lo[r0]!, bl = lo[d.r1]!, rl = (al ^ bl) >>> 0;
  lo[r0] = rl; c.hi[r0] = 0;
  c.setLazy(F_LOGIC, 4, al, 0, bl, 0, rl, 0);
};
/** mov r64, imm (sign-extended imm32 or imm64) and mov r32, imm32 (zero-extended: immHi is 0). */
H[Op.MOV_RI] = (c, d) => { c.lo[d.r0] = d.immLo; c.hi[d.r0] = d.immHi; };

for (let i = 0; i < OP_COUNT; i++) if (H[i] === undefined) throw new Error(`exec.ts: no handler for op ${i}`);

export const HANDLERS: readonly Handler[] = H;
