// The frame-pointer window of a function, read from its code: from its entry until its
// `mov rbp,rsp` has executed, and at a `ret` (after `leave`), rbp is still the caller's frame,
// so an FP unwind from an interrupt there misses the immediate caller (objtool's stated limit).
import type { Machine } from "../machine/index.ts";
import { disassemble } from "../../jit/disasm.ts";
import type { WindowOracle } from "./classify.ts";

export class FrameWindows implements WindowOracle {
  /**
   * `stacks`: the kernel's stacks (task, IRQ, NMI; run.ts kernelStacks()), to tell which one an
   * address is on; never private stacks, whose split from rbp is a design's doing.
   * `cache`: windows by symbol, shareable by every machine of one image (its text never changes).
   */
  constructor(
    private readonly m: Machine,
    private readonly stacks: readonly { begin: bigint; end: bigint }[] = [],
    private readonly cache = new Map<string, { movRbp: bigint | undefined; rets: Set<bigint> }>(),
    private readonly encodes = new Map<string, bigint | null>(),
  ) {}

  /** classify.ts WindowOracle: `ip` is in entry code past its ENCODE_FRAME_POINTER (`lea rbp,[rsp+1]`). */
  regsBuilt(ip: bigint): boolean {
    const sym = this.m.symbols.lookup(ip);
    if (!sym || sym.kind !== "entry") return false;
    let lea = this.encodes.get(sym.name);
    if (lea === undefined) {
      const lines = disassemble(this.readCode(sym.start, Number(sym.end - sym.start)), sym.start, { syntax: "intel" });
      lea = lines.find((l) => /^lea rbp,\[rsp\+(0x)?[0-9a-f]*[13579bdf]\]$/.test(l.text))?.address ?? null;
      this.encodes.set(sym.name, lea);
    }
    return lea !== null && ip > lea;
  }

  /**
   * classify.ts WindowOracle: the interrupted rip is in kernel text (not BPF) and in entry code,
   * or the interrupted rbp encodes a pt_regs (bit 0: ENCODE_FRAME_POINTER), or the interrupted
   * rsp and rbp are on two different stacks (call_on_irqstack()). The interrupted rsp and rbp are
   * read from the pt_regs below the hardware frame (ip at 128, bp at 32, sp at 152: struct pt_regs),
   * only when they are complete (`regs`: the sample's own interrupt).
   */
  blindSpot(ip: bigint, slot: bigint, regs: boolean): { mayEnd: boolean } | undefined {
    const kind = this.m.symbols.lookup(ip)?.kind;
    if (kind !== "kernel" && kind !== "entry") return undefined;
    if (!regs) return kind === "entry" ? { mayEnd: false } : undefined; // stale words below a frame prove nothing
    const bp = this.m.peek64(slot - 96n) ?? 0n, sp = this.m.peek64(slot + 24n) ?? 0n;
    const stackOf = (a: bigint) => this.stacks.findIndex((s) => a >= s.begin && a < s.end);
    // rsp one past a stack's top still belongs to it (an empty stack); a user-mode rbp (at
    // do_syscall_64's entry) is on no stack
    const spOn = stackOf(sp - 1n), bpOn = stackOf(bp);
    const split = spOn >= 0 && bpOn >= 0 && spOn !== bpOn;
    return kind === "entry" || (bp & 1n) === 1n || split ? { mayEnd: split } : undefined;
  }

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
