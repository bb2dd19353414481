// RFLAGS, with lazy evaluation of the arithmetic flags.
//
// Arithmetic instructions record (kind, size, a, b, result) as uint32 halves; the six arithmetic
// flags are computed only when something reads them (jcc, pushfq, an interrupt frame, a
// snapshot). Shifts and imul compute CF and OF when they execute and record them in `bl`.

export const CF = 1 << 0, PF = 1 << 2, AF = 1 << 4, ZF = 1 << 6, SF = 1 << 7;
export const TF = 1 << 8, IF = 1 << 9, DF = 1 << 10, OF = 1 << 11, NT = 1 << 14, RF = 1 << 16, VM = 1 << 17;
/** Bit 1 of RFLAGS always reads as 1 (X86_EFLAGS_FIXED; perf_hw_regs() tests it). */
export const FIXED = 1 << 1;
export const ARITH = CF | PF | AF | ZF | SF | OF;
/** Bits popfq may change at CPL 0: the arithmetic flags, TF, IF, DF, IOPL, NT, AC, ID. */
export const POPF_WRITABLE = ARITH | TF | IF | DF | (3 << 12) | (1 << 14) | (1 << 18) | (1 << 21);

/** Lazy-flag kinds. F_CFOF: CF and OF precomputed in `bl` (shifts, imul); SF, ZF, PF from the result. */
export const F_NONE = 0, F_ADD = 1, F_SUB = 2, F_LOGIC = 3, F_INC = 4, F_DEC = 5, F_NEG = 6, F_CFOF = 7;

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i, n = 0;
  while (b) { n += b & 1; b >>= 1; }
  PARITY[i] = n % 2 === 0 ? PF : 0;
}

/** The lazy record, as the CPU holds it. */
export interface LazyFlags {
  fKind: number; fSize: number;
  fAl: number; fAh: number; fBl: number; fBh: number; fRl: number; fRh: number;
}

/** Sign bit of a value of `size` bytes given as halves. */
function sign(size: number, l: number, h: number): number {
  return size === 8 ? h >>> 31 : (l >>> (size * 8 - 1)) & 1;
}

/** Unsigned a < b for values given as halves. */
function below(al: number, ah: number, bl: number, bh: number): boolean {
  return ah < bh || (ah === bh && al < bl);
}

/** Is the value the minimum signed value of its size (only the sign bit set)? */
function isSignOnly(size: number, l: number, h: number): boolean {
  return size === 8 ? h === 0x80000000 && l === 0 : l === 1 << (size * 8 - 1) >>> 0;
}

/** The arithmetic flag bits of a lazy record; `oldCF` is the carry before it (inc/dec keep it). */
export function arithFlags(f: LazyFlags, oldCF: number): number {
  const size = f.fSize, al = f.fAl, ah = f.fAh, bl = f.fBl, bh = f.fBh, rl = f.fRl, rh = f.fRh;
  let out = PARITY[rl & 0xff]!;
  if (rl === 0 && rh === 0) out |= ZF;
  if (sign(size, rl, rh)) out |= SF;
  switch (f.fKind) {
    case F_ADD:
      if (below(rl, rh, al, ah)) out |= CF;
      if (sign(size, al ^ rl, ah ^ rh) & sign(size, bl ^ rl, bh ^ rh)) out |= OF;
      if ((al ^ bl ^ rl) & 0x10) out |= AF;
      break;
    case F_SUB:
      if (below(al, ah, bl, bh)) out |= CF;
      if (sign(size, al ^ bl, ah ^ bh) & sign(size, al ^ rl, ah ^ rh)) out |= OF;
      if ((al ^ bl ^ rl) & 0x10) out |= AF;
      break;
    case F_LOGIC:
      break; // CF = OF = 0; AF undefined (0 here)
    case F_INC:
      out |= oldCF;
      if (isSignOnly(size, rl, rh)) out |= OF;
      if ((rl & 0xf) === 0) out |= AF;
      break;
    case F_DEC:
      out |= oldCF;
      if (isSignOnly(size, al, ah)) out |= OF;
      if ((al & 0xf) === 0) out |= AF;
      break;
    case F_NEG:
      if (al !== 0 || ah !== 0) out |= CF;
      if (isSignOnly(size, al, ah)) out |= OF;
      if (al & 0xf) out |= AF;
      break;
    case F_CFOF:
      out |= bl & (CF | OF);
      break;
  }
  return out;
}

/** Evaluate a Jcc condition code (0..15, encoding order) against materialised flags. */
export function condition(cond: number, f: number): boolean {
  let r: boolean;
  switch (cond >> 1) {
    case 0: r = (f & OF) !== 0; break;                       // O
    case 1: r = (f & CF) !== 0; break;                       // B
    case 2: r = (f & ZF) !== 0; break;                       // E
    case 3: r = (f & (CF | ZF)) !== 0; break;                // BE
    case 4: r = (f & SF) !== 0; break;                       // S
    case 5: r = (f & PF) !== 0; break;                       // P
    case 6: r = ((f & SF) !== 0) !== ((f & OF) !== 0); break; // L
    default: r = (f & ZF) !== 0 || ((f & SF) !== 0) !== ((f & OF) !== 0); // LE
  }
  return (cond & 1) === 0 ? r : !r;
}
