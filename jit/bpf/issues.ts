// What the validator reports: one issue, as data (the rule, the function, the instruction, the
// message, which is the 7.2 verifier's own wherever it has one), inside one ValidationError.

export type Rule =
  | "opcode" | "unsupported" | "reserved-fields" | "ld-imm64" | "jump-range" | "backward-jump" | "fall-through"
  | "unreachable" | "call-target" | "unknown-helper" | "unknown-kfunc" | "recursion" | "call-depth" | "stack-size"
  | "combined-stack-size" | "stack-bounds" | "stack-alignment" | "uninit-stack" | "uninit-reg" | "fp-read-only"
  | "pointer-arithmetic" | "pointer-leak" | "invalid-mem-access" | "atomic" | "div-by-zero" | "helper-arg"
  | "return-value" | "shift-range" | "ctx-access" | "sleepable" | "attach";

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

/** An issue before it is placed in a function. */
export interface Finding {
  readonly rule: Rule;
  readonly message: string;
}
