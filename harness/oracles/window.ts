// The frame-pointer window of a function, read from its code: from its entry until its
// `mov rbp,rsp` has executed, and at a `ret` (after `leave`), rbp is still the caller's frame,
// so an FP unwind from an interrupt there misses the immediate caller (objtool's stated limit).
import type { Machine, TruthEntry } from "../machine/index.ts";
import { disassemble } from "../../jit/disasm.ts";
import { blindSpot, type BlindSpot } from "./classify.ts";

/**
 * Whether an NMI that interrupted `regs` (its pt_regs' ip, sp and bp) sits in a kernel blind
 * spot (classify.ts blindSpot()); `stacks`: the stacks' bounds, to tell which one an address is on.
 */
export function nmiBlindSpot(m: Machine, stacks: readonly { begin: bigint; end: bigint }[], truth: readonly TruthEntry[], from: number, regs: { ip: bigint; sp: bigint; bp: bigint }): BlindSpot | undefined {
  const kind = m.symbols.lookup(regs.ip)?.kind;
  const stackOf = (a: bigint) => stacks.findIndex((s) => a >= s.begin && a < s.end);
  // rsp one past a stack's top still belongs to it (an empty stack): compare sp - 1
  const sp = stackOf(regs.sp - 1n), bp = stackOf(regs.bp);
  return blindSpot(truth, from, {
    kernelText: kind === "kernel" || kind === "entry",
    entryCode: kind === "entry",
    encodedBp: (regs.bp & 1n) === 1n,
    splitStacks: sp >= 0 && bp >= 0 && sp !== bp, // a user-mode rbp (do_syscall_64's entry) is on none
  });
}

export class FrameWindows {
  private readonly cache = new Map<string, { movRbp: bigint | undefined; rets: Set<bigint> }>();
  constructor(private readonly m: Machine) {}

  /** Is `rip` at or before its function's first `mov rbp,rsp`, or at a `ret`? */
  inWindow(rip: bigint): boolean {
    const sym = this.m.symbols.lookup(rip);
    if (!sym) return false;
    let w = this.cache.get(sym.name);
    if (!w) {
      const bytes = this.readCode(sym.start, Number(sym.end - sym.start));
      const lines = disassemble(bytes, sym.start, { syntax: "intel" });
      const mov = lines.find((l) => l.text === "mov rbp,rsp");
      w = { movRbp: mov?.address, rets: new Set(lines.filter((l) => l.text === "ret").map((l) => l.address)) };
      this.cache.set(sym.name, w);
    }
    return (w.movRbp !== undefined && rip <= w.movRbp) || w.rets.has(rip);
  }

  private readCode(start: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i += 8) {
      const v = this.m.peek64(start + BigInt(i)) ?? 0n;
      for (let b = 0; b < 8 && i + b < len; b++) out[i + b] = Number((v >> BigInt(8 * b)) & 0xffn);
    }
    return out;
  }
}
