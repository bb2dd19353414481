// Every instruction form of the machine's ISA table (harness/machine/isa.ts), with its operands
// read off the iced `Code` name (`Add_rm32_imm8`: an r/m32 destination and an imm8 source) and
// what the differential tests need to know about it. Built from the table, so a form added
// there is a form here; a name this parser does not understand throws when the module loads.
import { readFileSync } from "node:fs";
import { Code } from "iced-x86";
import { FAMILIES, OP_NAMES } from "../../harness/machine/index.ts";
import { CODE_TO_COND } from "../../harness/machine/isa.ts";
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
  /** Operand 0 is written (not for cmp, test, nop, push, branches, div, idiv). */
  readonly writes0: boolean;
  /** Operand 1 is written too (xchg, xadd). */
  readonly writes1: boolean;
  /** A memory operand is accessed (lea and the multi-byte nops only compute or ignore it). */
  readonly accessesMemory: boolean;
  /** jcc/cmovcc condition (isa.ts COND), or -1. */
  readonly cond: number;
  /** A CPUID feature the form needs (isa.ts), if any. */
  readonly requires: string | undefined;
}

const KIND: Record<string, FormKind> = {
  push: "push", pop: "pop", pushf: "pushf", popf: "popf", leave: "leave",
  call: "call", call_ind: "call", ret: "ret", jmp: "jmp", jmp_ind: "jmp", jcc: "jcc",
  int3: "privileged", ud2: "privileged", cli: "privileged", sti: "privileged", iretq: "privileged",
};
const READS_ONLY = new Set(["cmp", "test", "nop", "push", "call_ind", "jmp_ind", "div", "idiv"]);
const WRITES_1 = new Set(["xchg", "xadd"]);
const ACC_BITS: Record<string, number> = { AL: 8, AX: 16, EAX: 32, RAX: 64 };

function parseOperand(tok: string, name: string): Operand | null {
  let m: RegExpMatchArray | null;
  if ((m = /^(rm|r|imm|rel)(8|16|32|64)$/.exec(tok))) return { kind: m[1] === "r" ? "reg" : (m[1] as "rm" | "imm" | "rel"), bits: Number(m[2]) };
  if (tok in ACC_BITS) return { kind: "acc", bits: ACC_BITS[tok]! };
  if (tok === "m") return { kind: "mem" };
  if (tok === "CL") return { kind: "cl" };
  if (tok === "1") return { kind: "one" };
  if (tok === "64" && /_rel(8|32)_64$/.test(name)) return null; // the branch's operand size, not an operand
  if (tok === "VEX" || tok === "0F1E") return null; // the encoding or the opcode, not an operand
  throw new Error(`forms.ts: cannot read operand '${tok}' of ${name}`);
}

function makeForm(name: string, op: string, userMode: boolean, requires: string | undefined): Form {
  const code = (Code as unknown as Record<string, number>)[name]!;
  const tokens = name.split("_");
  const operands = tokens.slice(tokens[0] === "VEX" ? 2 : 1).map((t) => parseOperand(t, name)).filter((o): o is Operand => o !== null);
  const sized = operands.find((o) => o.kind === "reg" || o.kind === "rm" || o.kind === "acc");
  const kind = KIND[op] ?? "plain";
  const stack64 = kind === "push" || kind === "pop" || kind === "call" || kind === "jmp";
  return {
    name, code, op, kind, userMode, operands,
    bits: sized !== undefined && "bits" in sized ? sized.bits : stack64 ? 64 : 0,
    writes0: kind === "plain" || kind === "pop" ? !READS_ONLY.has(op) : false,
    writes1: WRITES_1.has(op),
    accessesMemory: op !== "lea" && op !== "nop",
    cond: CODE_TO_COND.get(code) ?? -1,
    requires,
  };
}

/** Every form of the ISA table, in table order. */
export const FORMS: readonly Form[] = FAMILIES.flatMap((f) => f.codes.map((c) => makeForm(c, OP_NAMES[f.op]!, f.userMode, f.requires)));
/** The forms that can run in a user process: all but the privileged ones. */
export const USER_FORMS: readonly Form[] = FORMS.filter((f) => f.userMode);

/**
 * The CPU feature flags of this host, from the `flags` line of /proc/cpuinfo (empty where there
 * is none). `STACKCHECK_HIDE_CPU_FLAGS=bmi2,...` hides some, to see how the tests behave on a
 * host without them.
 */
export function hostCpuFlags(): ReadonlySet<string> {
  let text = "";
  try {
    text = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return new Set();
  }
  const line = /^flags\s*:(.*)$/m.exec(text)?.[1] ?? "";
  const hidden = new Set((process.env.STACKCHECK_HIDE_CPU_FLAGS ?? "").split(",").filter(Boolean));
  return new Set(line.trim().split(/\s+/).filter((f) => f !== "" && !hidden.has(f)));
}

/** The user-mode forms a CPU with these feature flags runs: the differential tests draw only these. */
export function formsFor(cpuFlags: ReadonlySet<string>): readonly Form[] {
  return USER_FORMS.filter((f) => f.requires === undefined || cpuFlags.has(f.requires));
}

/** The forms the differential tests draw on this host (BMI2 forms only where the CPU has BMI2). */
export const DRAWN_FORMS: readonly Form[] = formsFor(hostCpuFlags());
/** User-mode forms this host cannot run (left out of the differential, still covered by unit tests). */
export const HOST_SKIPPED_FORMS: readonly Form[] = USER_FORMS.filter((f) => !DRAWN_FORMS.includes(f));

const BY_CODE = new Map(FORMS.map((f) => [f.code, f]));
export function formOfCode(code: number): Form | undefined {
  return BY_CODE.get(code);
}

/** The shift count an instruction with this form uses: 1, its imm8, or undefined for cl. */
export function shiftCount(f: Form, imm: number): number | undefined {
  const src = f.operands[1];
  return src?.kind === "one" ? 1 : src?.kind === "imm" ? imm : undefined;
}

const COUNTED = new Set(["shl", "shr", "sar", "rol", "ror"]);

/** The SDM flag effect of one instruction; a shift or rotate by cl needs `cl` (undefined: any count). */
export function formFlagEffect(f: Form, imm: number, cl?: number): FlagEffect {
  if (COUNTED.has(f.op)) {
    const n = shiftCount(f, imm) ?? cl;
    return n === undefined ? shiftEffectAnyCount(f.op, f.bits) : flagEffect(f.op, f.bits, { count: n });
  }
  return flagEffect(f.op, f.bits, { cond: f.cond });
}
