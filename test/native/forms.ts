// Every instruction form of the machine's ISA table (harness/machine/isa.ts), with its operands
// read off the iced `Code` name (`Add_rm32_imm8`: an r/m32 destination and an imm8 source) and
// what the differential tests need to know about it. Built from the table, so a form added
// there is a form here; a name this parser does not understand throws when the module loads.
import { Code } from "iced-x86";
import { FAMILIES, OP_NAMES } from "../../harness/machine/index.ts";
import { JCC_CODE_TO_COND } from "../../harness/machine/isa.ts";
import { flagEffect, shiftEffectAnyCount, type FlagEffect } from "../helpers/sdm-flags.ts";

export type Operand =
  | { readonly kind: "reg" | "rm" | "imm" | "acc" | "rel"; readonly bits: number }
  | { readonly kind: "mem" | "cl" | "one" };

/** How the sequence generator uses a form (sequences.ts). */
export type FormKind = "plain" | "push" | "pop" | "pushf" | "popf" | "leave" | "call" | "ret" | "jmp" | "jcc" | "privileged";

export interface Form {
  /** The iced Code name, e.g. `Add_rm32_imm8`. */
  readonly name: string;
  readonly code: number;
  /** The machine's op name (isa.ts OP_NAMES). */
  readonly op: string;
  readonly kind: FormKind;
  /** Runs in user mode (isa.ts userMode). */
  readonly userMode: boolean;
  readonly operands: readonly Operand[];
  /** Operand size in bits (the destination's; 0 for forms without one). */
  readonly bits: number;
  /** Operand 0 is written (not for cmp, test, nop, push, branches). */
  readonly writes0: boolean;
  /** A memory operand is accessed (lea and the multi-byte nops only compute or ignore it). */
  readonly accessesMemory: boolean;
  /** Jcc condition (isa.ts COND), or -1. */
  readonly cond: number;
}

const KIND: Record<string, FormKind> = {
  push: "push", pop: "pop", pushf: "pushf", popf: "popf", leave: "leave",
  call: "call", call_ind: "call", ret: "ret", jmp: "jmp", jmp_ind: "jmp", jcc: "jcc",
  int3: "privileged", ud2: "privileged", cli: "privileged", sti: "privileged", iretq: "privileged",
};
const READS_ONLY = new Set(["cmp", "test", "nop", "push", "call_ind", "jmp_ind"]);
const ACC_BITS: Record<string, number> = { AL: 8, AX: 16, EAX: 32, RAX: 64 };

function parseOperand(tok: string, name: string): Operand | null {
  let m: RegExpMatchArray | null;
  if ((m = /^(rm|r|imm|rel)(8|16|32|64)$/.exec(tok))) return { kind: m[1] === "r" ? "reg" : (m[1] as "rm" | "imm" | "rel"), bits: Number(m[2]) };
  if (tok in ACC_BITS) return { kind: "acc", bits: ACC_BITS[tok]! };
  if (tok === "m") return { kind: "mem" };
  if (tok === "CL") return { kind: "cl" };
  if (tok === "1") return { kind: "one" };
  if (tok === "64" && /_rel(8|32)_64$/.test(name)) return null; // the branch's operand size, not an operand
  throw new Error(`forms.ts: cannot read operand '${tok}' of ${name}`);
}

function makeForm(name: string, op: string, userMode: boolean): Form {
  const code = (Code as unknown as Record<string, number>)[name]!;
  const operands = name.split("_").slice(1).map((t) => parseOperand(t, name)).filter((o): o is Operand => o !== null);
  const sized = operands.find((o) => o.kind === "reg" || o.kind === "rm" || o.kind === "acc");
  const kind = KIND[op] ?? "plain";
  const stack64 = kind === "push" || kind === "pop" || kind === "call" || kind === "jmp";
  return {
    name, code, op, kind, userMode, operands,
    bits: sized !== undefined && "bits" in sized ? sized.bits : stack64 ? 64 : 0,
    writes0: kind === "plain" || kind === "pop" ? !READS_ONLY.has(op) : false,
    accessesMemory: op !== "lea" && op !== "nop",
    cond: JCC_CODE_TO_COND.get(code) ?? -1,
  };
}

/** Every form of the ISA table, in table order. */
export const FORMS: readonly Form[] = FAMILIES.flatMap((f) => f.codes.map((c) => makeForm(c, OP_NAMES[f.op]!, f.userMode)));
/** The forms the differential tests run natively: all but the privileged ones. */
export const USER_FORMS: readonly Form[] = FORMS.filter((f) => f.userMode);

const BY_CODE = new Map(FORMS.map((f) => [f.code, f]));
export function formOfCode(code: number): Form | undefined {
  return BY_CODE.get(code);
}

/** The shift count an instruction with this form uses: 1, its imm8, or undefined for cl. */
export function shiftCount(f: Form, imm: number): number | undefined {
  const src = f.operands[1];
  return src?.kind === "one" ? 1 : src?.kind === "imm" ? imm : undefined;
}

/** The SDM flag effect of one instruction; a shift by cl needs `cl` (undefined: any count). */
export function formFlagEffect(f: Form, imm: number, cl?: number): FlagEffect {
  if (f.op === "shl" || f.op === "shr" || f.op === "sar") {
    const n = shiftCount(f, imm) ?? cl;
    return n === undefined ? shiftEffectAnyCount(f.op, f.bits) : flagEffect(f.op, f.bits, { count: n });
  }
  return flagEffect(f.op, f.bits, { cond: f.cond });
}
