// Which arithmetic flags an instruction defines, leaves undefined or reads, from the "Flags
// Affected" section of each instruction in the Intel SDM, Vol. 2 (order 325383). Tests compare a
// flag only where the architecture defines it: the ALU reference (reference.ts) and the
// differential tests against the real CPU (test/native/) both take the rules from here.
import { AF, CF, OF, PF, SF, ZF } from "../../harness/machine/index.ts";

export const ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;

/** What one instruction does to the six arithmetic flags. Flags in neither mask are unaffected. */
export interface FlagEffect {
  /** Set to a defined value. */
  readonly defines: number;
  /** Left undefined (the SDM's "undefined"; real CPUs differ). */
  readonly undefines: number;
  /** Read (a jcc's condition, pushfq's image of RFLAGS). */
  readonly reads: number;
}

const NONE: FlagEffect = Object.freeze({ defines: 0, undefines: 0, reads: 0 });
const effect = (defines: number, undefines = 0, reads = 0): FlagEffect => ({ defines, undefines, reads });

/** The flags a jcc condition (encoding order: O NO B AE E NE BE A S NS P NP L GE LE G) reads. */
export function conditionFlags(cond: number): number {
  return [OF, CF, ZF, CF | ZF, SF, PF, SF | OF, ZF | SF | OF][cond >> 1]!;
}

/**
 * The effect of one instruction. `op` is the machine's op name (isa.ts OP_NAMES: `add`, `imul2`,
 * `jcc`, ...), `bits` its operand size; shifts need their count (unmasked: the rule masks it as
 * the CPU does), jcc its condition.
 */
export function flagEffect(op: string, bits: number, detail: { readonly count?: number; readonly cond?: number } = {}): FlagEffect {
  switch (op) {
    // ADD, SUB, CMP: "The OF, SF, ZF, AF, CF, and PF flags are set according to the result."
    // NEG: "The CF flag set to 0 if the source operand is 0; otherwise it is set to 1. The OF,
    // SF, ZF, AF, and PF flags are set according to the result."
    case "add": case "sub": case "cmp": case "neg":
      return effect(ARITH_FLAGS);
    // AND, OR, XOR, TEST: "The OF and CF flags are cleared; the SF, ZF, and PF flags are set
    // according to the result. The state of the AF flag is undefined."
    case "and": case "or": case "xor": case "test":
      return effect(CF | OF | SF | ZF | PF, AF);
    // INC, DEC: "The CF flag is not affected. The OF, SF, ZF, AF, and PF flags are set according
    // to the result."
    case "inc": case "dec":
      return effect(OF | SF | ZF | AF | PF);
    // SAL/SAR/SHL/SHR: "The count is masked to 5 bits (or 6 bits if in 64-bit mode and REX.W is
    // used)." "If the count is 0, the flags are not affected." Otherwise "The SF, ZF, and PF flags
    // are set according to the result"; "the AF flag is undefined"; "The OF flag is affected
    // only for 1-bit shifts ...; otherwise, it is undefined." CF "contains the value of the last
    // bit shifted out of the destination operand; it is undefined for SHL and SHR instructions
    // where the count is greater than or equal to the size (in bits) of the destination operand."
    case "shl": case "shr": case "sar": {
      if (detail.count === undefined) throw new RangeError(`flagEffect(${op}): the shift count is needed`);
      const n = detail.count & (bits === 64 ? 63 : 31);
      if (n === 0) return NONE;
      const cfUndefined = op !== "sar" && n >= bits;
      return effect(SF | ZF | PF | (cfUndefined ? 0 : CF) | (n === 1 ? OF : 0), AF | (cfUndefined ? CF : 0) | (n === 1 ? 0 : OF));
    }
    // ROL/ROR: "If the masked count is 0, the flags are not affected. If the masked count is 1,
    // then the OF flag is affected, otherwise (masked count is greater than 1) the OF flag is
    // undefined. The CF flag is affected when the masked count is non-zero. The SF, ZF, AF, and
    // PF flags are always unaffected."
    case "rol": case "ror": {
      if (detail.count === undefined) throw new RangeError(`flagEffect(${op}): the rotate count is needed`);
      const n = detail.count & (bits === 64 ? 63 : 31);
      if (n === 0) return NONE;
      return effect(CF | (n === 1 ? OF : 0), n === 1 ? 0 : OF);
    }
    // DIV, IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
    case "div": case "idiv":
      return effect(0, ARITH_FLAGS);
    // XADD: "The CF, PF, AF, SF, ZF, and OF flags are set according to the result of the addition."
    case "xadd":
      return effect(ARITH_FLAGS);
    // CMPXCHG: "The ZF flag is set if the values in the destination operand and register AL, AX,
    // or EAX are equal; otherwise it is cleared. The CF, PF, AF, SF, and OF flags are set
    // according to the results of the comparison operation."
    case "cmpxchg":
      return effect(ARITH_FLAGS);
    // CMOVcc: "Flags Affected: None"; the condition reads its flags.
    case "cmovcc":
      if (detail.cond === undefined) throw new RangeError("flagEffect(cmovcc): the condition is needed");
      return effect(0, 0, conditionFlags(detail.cond));
    // SHLX/SHRX/SARX, BSWAP, XCHG, CBW/CWDE/CDQE, CWD/CDQ/CQO: "Flags Affected: None" (default).
    // IMUL: "For the one operand form of the instruction, the CF and OF flags are set when
    // significant bits are carried into the upper half of the result ... For the two- and
    // three-operand forms ... the CF and OF flags are set when the result must be truncated to fit
    // in the destination operand size ... The SF, ZF, AF, and PF flags are undefined."
    case "imul": case "imul2": case "imul3":
      return effect(CF | OF, SF | ZF | AF | PF);
    // POPF: every flag is loaded from the stack (the arithmetic ones at any privilege level).
    case "popf":
      return effect(ARITH_FLAGS);
    // PUSHF: "Flags Affected: None", but the image it stores reads every flag.
    case "pushf":
      return effect(0, 0, ARITH_FLAGS);
    // Jcc: "Flags Affected: None"; the condition reads its flags.
    case "jcc":
      if (detail.cond === undefined) throw new RangeError("flagEffect(jcc): the condition is needed");
      return effect(0, 0, conditionFlags(detail.cond));
    // NOT, MOV, MOVZX, MOVSX(D), LEA, PUSH, POP, CALL, RET, LEAVE, JMP, NOP, ENDBR64, PAUSE,
    // LFENCE: "Flags Affected: None".
    default:
      return NONE;
  }
}

/**
 * The effect of a shift or rotate whose count is not known (a count in cl, seen before the run): for each
 * flag, defined only if every count defines it, undefined if some count leaves it undefined.
 */
export function shiftEffectAnyCount(op: string, bits: number): FlagEffect {
  let defines = ARITH_FLAGS, undefines = 0;
  for (let n = 0; n < 64; n++) {
    const e = flagEffect(op, bits, { count: n });
    defines &= e.defines;
    undefines |= e.undefines;
  }
  return effect(defines, undefines);
}

/**
 * Which flags are undefined now, instruction by instruction: a flag becomes undefined when an
 * instruction leaves it so, and defined again when one defines it. `apply` returns the flags the
 * instruction reads while they are undefined (a consumer of undefined flags: 0 if none).
 */
export class FlagDefinedness {
  constructor(public undefinedNow = 0) {}

  apply(e: FlagEffect): number {
    const bad = e.reads & this.undefinedNow;
    this.undefinedNow = (this.undefinedNow & ~e.defines) | e.undefines;
    return bad;
  }
}
