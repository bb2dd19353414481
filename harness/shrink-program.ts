// Shrinking one BPF program by instructions: fast-check shrinks what a generator drew, but a
// plan's lowering keeps its scaffolding (argument set-up, result folding), so after it each
// instruction is tried away in turn (with jumps and subprog calls renumbered around it) while
// the program stays valid and the failure persists. Used by jit-diff for the program whose
// function differs.
import type { BpfInsn } from "../jit/bpf/insn.ts";
import { BPF_CALL, BPF_CLASS, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32, BPF_LD_IMM64, BPF_OP, BPF_PSEUDO_CALL } from "../jit/bpf/opcodes.ts";
import type { Program } from "../jit/bpf/program.ts";
import { ValidationError } from "../jit/bpf/issues.ts";
import { isLdImm64SecondHalf } from "../jit/bpf/print.ts";
import { validate } from "../jit/bpf/validate.ts";

/** Which field of `x` holds a relative target (jumps: off; gotol and subprog calls: imm), if any. */
function relField(x: BpfInsn): "off" | "imm" | undefined {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
  if (cls !== BPF_JMP && cls !== BPF_JMP32) return undefined;
  if (op === BPF_EXIT) return undefined;
  if (op === BPF_CALL) return cls === BPF_JMP && x.src === BPF_PSEUDO_CALL ? "imm" : undefined;
  return cls === BPF_JMP32 && op === BPF_JA ? "imm" : "off";
}

/**
 * The program without instructions [r, r + n) (an ld_imm64 goes with its second half): every
 * relative target renumbered, a jump to a removed instruction now reaching the one after it.
 * undefined when that empties a function.
 */
export function withoutInsns(p: Program, r: number, n = 1): Program | undefined {
  const newIndex = (t: number) => (t < r ? t : t < r + n ? r : t - n);
  const insns: BpfInsn[] = [];
  p.insns.forEach((x, j) => {
    if (j >= r && j < r + n) return;
    const field = relField(x);
    if (field === undefined) { insns.push(x); return; }
    const rel = field === "off" ? x.off : x.imm;
    const to = newIndex(j + 1 + rel) - (newIndex(j) + 1);
    insns.push(field === "off" ? { ...x, off: to } : { ...x, imm: to });
  });
  const funcs = p.funcs.map((f) => ({ ...f, start: newIndex(f.start), end: f.end <= r ? f.end : f.end - Math.min(n, f.end - r) }));
  if (funcs.some((f) => f.end <= f.start)) return undefined;
  return { ...p, insns, funcs };
}

/** Still valid under the verifier model (stackcheck's validator). */
function valid(p: Program): boolean {
  try {
    validate(p);
    return true;
  } catch (e) {
    if (e instanceof ValidationError) return false;
    throw e;
  }
}

/**
 * Remove instructions one at a time, last to first, repeating while any goes, keeping each
 * removal that leaves a valid program on which `fails` still holds. `steps`: removals kept.
 */
export function shrinkProgram(p: Program, fails: (p: Program) => boolean): { program: Program; steps: number } {
  let steps = 0;
  for (let again = true; again;) {
    again = false;
    for (let r = p.insns.length - 1; r >= 0; r--) {
      if (r >= p.insns.length) continue;
      if (isLdImm64SecondHalf(p.insns, r)) continue; // tried with its first half
      const n = p.insns[r]!.code === BPF_LD_IMM64 ? 2 : 1;
      const q = withoutInsns(p, r, n);
      if (q === undefined || !valid(q) || !fails(q)) continue;
      p = q;
      steps++;
      again = true;
    }
  }
  return { program: p, steps };
}
