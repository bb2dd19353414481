// The frame-pointer window of a function, read from its code: from its entry until its
// `mov rbp,rsp` has executed, and at a `ret` (after `leave`), rbp is still the caller's frame,
// so an FP unwind from an interrupt there misses the immediate caller (objtool's stated limit).
import type { Machine } from "../machine/index.ts";
import { disassemble } from "../../jit/disasm.ts";

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
