// Backward jumps. The 7.2 verifier lets a privileged program (every type here needs CAP_BPF or
// CAP_PERFMON) jump backward (cfg.c:135 push_insn(): bpf_capable skips the "back-edge" refusal)
// and then proves termination by walking every iteration, up to BPF_COMPLEXITY_LIMIT_INSNS
// processed instructions (verifier.c:17597), unless states repeat (states.c:1377 "infinite loop
// detected") or a may_goto bounds the loop (states.c:1356). This validator does not enumerate
// states; it accepts the loops whose termination it can see the way a generator builds them:
//
//   counted   a register set to a known constant before the loop, changed in the loop only by one
//             `+= K` or `-= K` that runs exactly once per iteration, and compared with a constant
//             by the backward conditional jump; the counter's run is simulated, and the loop must
//             end before the verifier's instruction budget would;
//   may_goto  a may_goto on every path through the loop, whose target leaves the loop.
//
// Loops nest or are disjoint, and are entered only at their first instruction. This file finds
// the loops and checks their shape; the constant and the simulation need the data flow
// (validate.ts, counterRun()).
import type { BpfInsn } from "./instruction.ts";
import type { Finding } from "./issues.ts";
import { isCondJump, isMayGoto, jumpOffset } from "./fields.ts";
import { aluResult, immU64, jumpTaken } from "./ops.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_ATOMIC, BPF_CALL, BPF_CLASS, BPF_CMPXCHG, BPF_FETCH, BPF_JMP, BPF_K, BPF_LD_IMM64,
  BPF_LDX, BPF_LOAD_ACQ, BPF_MODE, BPF_OP, BPF_SRC, BPF_STORE_REL, BPF_STX, BPF_SUB,
} from "./opcodes.ts";

export interface Loop {
  /** First instruction and the backward jump (absolute indices). */
  readonly head: number;
  readonly latch: number;
  /** A may_goto that bounds the loop, if there is one. */
  readonly mayGoto?: number;
  /** Otherwise the counter: its register and the one instruction that steps it. */
  readonly counter?: { readonly reg: number; readonly step: number };
  /** The loops directly inside this one. */
  readonly inner: Loop[];
}

export const ACCEPTED_LOOPS =
  "accepted: a counted loop (a register set to a constant before the loop, changed in it only by one `+= K`/`-= K` " +
  "that runs once per iteration, compared with a constant by the backward conditional jump) or a loop with a may_goto " +
  "on every iteration that leaves it";

/** Does `x` write register r (the register checks of check_alu_op, check_load_mem, check_atomic, calls)? */
export function writesReg(x: BpfInsn, r: number): boolean {
  const cls = BPF_CLASS(x.code);
  if (cls === BPF_ALU || cls === BPF_ALU64 || cls === BPF_LDX || x.code === BPF_LD_IMM64) return x.dst === r;
  if (cls === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC) {
    if (x.imm === BPF_LOAD_ACQ) return x.dst === r;
    if (x.imm === BPF_STORE_REL) return false;
    if (x.imm === BPF_CMPXCHG) return r === 0;
    return (x.imm & BPF_FETCH) !== 0 && x.src === r;
  }
  if (cls === BPF_JMP && BPF_OP(x.code) === BPF_CALL) return r <= 5; // R0 gets the result, R1-R5 are clobbered
  return false;
}

type Found = { readonly loops: readonly Loop[] } | { readonly at: number; readonly finding: Finding };

/**
 * The loops of the function [start, end); `half(i)`: is i the second half of an ld_imm64.
 * Indices in findings are absolute; messages give them relative to `start`.
 */
export function findLoops(insns: readonly BpfInsn[], start: number, end: number, half: (i: number) => boolean): Found {
  const rel = (i: number) => i - start;
  const jumps: { from: number; to: number }[] = [];
  for (let i = start; i < end; i++) {
    if (half(i)) continue;
    const off = jumpOffset(insns[i]!);
    if (off !== undefined) jumps.push({ from: i, to: i + 1 + off });
  }
  const refuse = (at: number, why: string): Found =>
    ({ at, finding: { rule: "backward-jump", message: `back-edge from insn ${rel(at)} to ${rel(jumps.find((j) => j.from === at)!.to)}: ${why}; ${ACCEPTED_LOOPS}` } });

  const edges = jumps.filter((j) => j.to <= j.from);
  for (const e of edges) if (isMayGoto(insns[e.from]!)) return refuse(e.from, "a may_goto that jumps backward bounds nothing");
  // Nested or disjoint (sorted outermost first: by head, then by the farthest latch).
  edges.sort((a, b) => a.to - b.to || b.from - a.from);
  for (let a = 0; a < edges.length; a++) {
    for (let b = a + 1; b < edges.length; b++) {
      const A = edges[a]!, B = edges[b]!;
      if (B.to <= A.from && B.from > A.from) {
        return refuse(B.from, `it overlaps the loop from insn ${rel(A.to)} to ${rel(A.from)} without nesting in it`);
      }
    }
  }
  for (const e of edges) {
    const into = jumps.find((j) => (j.from < e.to || j.from > e.from) && j.to > e.to && j.to <= e.from);
    if (into) return refuse(e.from, `insn ${rel(into.from)} jumps into the loop at insn ${rel(into.to)}, past its first instruction ${rel(e.to)}`);
  }
  /** Does every path from the loop's head to its latch pass `at` (no jump from [head, at) lands in (at, latch])? */
  const dominates = (e: { from: number; to: number }, at: number) =>
    !jumps.some((j) => j.from >= e.to && j.from < at && j.to > at && j.to <= e.from);

  const loops: Loop[] = [];
  for (const e of edges) {
    // the innermost loop around this one: the last found of those that contain it
    const outer = loops.filter((L) => L.head <= e.to && e.from <= L.latch).at(-1);
    const inside = (i: number) => i >= e.to && i <= e.from;
    const strictlyInner = edges.filter((o) => o !== e && o.to >= e.to && o.from <= e.from);
    let loop: Loop | undefined;
    for (let m = e.to; m < e.from && !loop; m++) {
      const x = insns[m]!;
      if (!half(m) && isMayGoto(x) && !inside(m + 1 + x.off) && dominates(e, m)) loop = { head: e.to, latch: e.from, mayGoto: m, inner: [] };
    }
    if (!loop) {
      const latch = insns[e.from]!;
      if (!isCondJump(latch) || BPF_SRC(latch.code) !== BPF_K) {
        return refuse(e.from, "the backward jump does not compare a counter with a constant, and no may_goto leaves the loop");
      }
      const c = latch.dst;
      const writes: number[] = [];
      for (let i = e.to; i <= e.from; i++) if (!half(i) && writesReg(insns[i]!, c)) writes.push(i);
      if (writes.length !== 1) {
        return refuse(e.from, writes.length === 0 ? `the counter r${c} does not change in the loop` : `the counter r${c} is written by insns ${writes.map(rel).join(", ")}, not by one step`);
      }
      const step = writes[0]!, s = insns[step]!, cls = BPF_CLASS(s.code), op = BPF_OP(s.code);
      if ((cls !== BPF_ALU && cls !== BPF_ALU64) || (op !== BPF_ADD && op !== BPF_SUB) || BPF_SRC(s.code) !== BPF_K) {
        return refuse(e.from, `insn ${rel(step)} changes the counter r${c} other than by adding or subtracting a constant`);
      }
      if (!dominates(e, step)) return refuse(e.from, `the step of r${c} at insn ${rel(step)} does not run on every path through the loop`);
      const again = strictlyInner.find((o) => step >= o.to && step <= o.from);
      if (again) return refuse(e.from, `the step of r${c} at insn ${rel(step)} is inside the inner loop from insn ${rel(again.to)} to ${rel(again.from)}`);
      loop = { head: e.to, latch: e.from, counter: { reg: c, step }, inner: [] };
    }
    outer?.inner.push(loop);
    loops.push(loop);
  }
  return { loops };
}

/**
 * Iterations of a counted loop entered with the counter at `start` (u64): the step runs once per
 * iteration, then the backward jump compares. Undefined if the loop is still going after `max`.
 */
export function counterRun(insns: readonly BpfInsn[], L: Loop, start: bigint, max: number): number | undefined {
  const step = insns[L.counter!.step]!, cmp = insns[L.latch]!;
  let v = start;
  for (let k = 1; k <= max; k++) {
    v = aluResult(step, v, immU64(step));
    if (!jumpTaken(cmp, v, immU64(cmp))) return k;
  }
  return undefined;
}
