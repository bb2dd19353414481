// The frame-pointer window of a function, read from its code: from its entry until its
// `mov rbp,rsp` has executed, and at a `ret` (after `leave`), rbp is still the caller's frame,
// so an FP unwind from an interrupt there misses the immediate caller (objtool's stated limit).
import { decodeCode, GENERIC_OP, K_REG, Op, RBP, RSP, toCanonical, toInternal, type Machine } from "../machine/index.ts";
import { PT_REGS } from "../../arch/ptrace.ts";
import { ContentCache } from "../machine/content-cache.ts";
import type { WindowOracle } from "./classify.ts";

/** What one function's code says about its frame pointer, read once per symbol. */
export interface FrameCode {
  /** Its first `mov rbp,rsp`. */
  readonly movRbp: bigint | undefined;
  readonly rets: ReadonlySet<bigint>;
  /** Entry code: its ENCODE_FRAME_POINTER (`lea rbp,[rsp+1]`: an odd displacement). */
  readonly encode: bigint | undefined;
}

/** Function code read by address and content, across images. */
const byContent = new ContentCache<FrameCode>(1 << 20);

/** The facts, from the function's decoded instructions. */
function frameCode(bytes: Uint8Array, start: bigint): FrameCode {
  return byContent.get(start, bytes, () => {
    const code = decodeCode(bytes, start);
    const at = (d: (typeof code)[number] | undefined) => (d === undefined ? undefined : toCanonical(d.ip));
    const reg = (k: number, r: number, want: number) => k === K_REG && r === want;
    return {
      movRbp: at(code.find((d) => GENERIC_OP[d.op] === Op.MOV && d.size === 8 && reg(d.k0, d.r0, RBP) && reg(d.k1, d.r1, RSP))),
      rets: new Set(code.filter((d) => d.op === Op.RET).map((d) => toCanonical(d.ip))),
      // `lea rbp,[rsp+odd]`: rbp = &pt_regs | 1
      encode: at(code.find((d) => d.op === Op.LEA && reg(d.k0, d.r0, RBP) && d.base === RSP && d.index < 0 && (d.disp & 1) === 1)),
    };
  });
}

export class FrameWindows implements WindowOracle {
  /**
   * `stacks`: the kernel's stacks (task, IRQ, NMI; jit/private-stacks.ts kernelStacks()), to tell which one an
   * address is on; never private stacks, whose split from rbp is a design's doing.
   * `cache`: windows by symbol, shareable by every machine of one image (its text never changes).
   */
  constructor(
    private readonly m: Machine,
    private readonly stacks: readonly { begin: bigint; end: bigint; task?: boolean }[] = [],
    private readonly cache = new Map<string, FrameCode>(),
    /** The context switch's blind spot [from, to]: rsp on the next task's stack while current is still the previous one. */
    private readonly switchWindow?: { readonly from: bigint; readonly to: bigint },
    /** Where tasks' stacks start (ret_from_fork_asm). */
    private readonly stackStarts: readonly bigint[] = [],
  ) {}

  /** classify.ts WindowOracle: a new task's first return address, where unwinding ends. */
  endsStack(ip: bigint): boolean {
    return this.stackStarts.includes(ip);
  }

  /** The code facts of the function holding `ip`, from its bytes (cached by symbol). */
  private code(ip: bigint): { kind: string; code: FrameCode } | undefined {
    const sym = this.m.symbols.lookup(ip);
    if (!sym) return undefined;
    let code = this.cache.get(sym.name);
    if (!code) {
      const bytes = this.m.memory.peek(toInternal(sym.start)!, Number(sym.end - sym.start)) ?? new Uint8Array(0);
      code = frameCode(bytes, sym.start);
      this.cache.set(sym.name, code);
    }
    return { kind: sym.kind, code };
  }

  /** classify.ts WindowOracle: `ip` is in entry code past its ENCODE_FRAME_POINTER. */
  regsBuilt(ip: bigint): boolean {
    const c = this.code(ip);
    return c !== undefined && c.kind === "entry" && c.code.encode !== undefined && ip > c.code.encode;
  }

  /**
   * classify.ts WindowOracle: the interrupted rip is in kernel text (not BPF) and in entry code,
   * or the interrupted rbp encodes a pt_regs (bit 0: ENCODE_FRAME_POINTER), or the interrupted
   * rsp and rbp are on two different stacks (call_on_irqstack()). The walk may end there when
   * rsp and rbp are split, or in entry code whose rbp is on no stack (CLEAR_REGS zeroed it). The interrupted rsp and rbp are
   * read from the pt_regs whose ip word is the hardware frame's RIP word (struct pt_regs),
   * only when they are complete (`regs`: the sample's own interrupt).
   */
  blindSpot(ip: bigint, slot: bigint, regs: boolean): { mayEnd: boolean; errorOk?: boolean; anything?: boolean } | undefined {
    // __switch_to_asm has loaded next's rsp and popped next's registers, __switch_to() has not
    // made next current yet: the kernel walks current (prev) from regs on next's stack, so no
    // walk from here can be held to either chain (the ground truth changes tasks at switch_current)
    if (this.switchWindow && ip >= this.switchWindow.from && ip <= this.switchWindow.to) return { mayEnd: true, errorOk: true, anything: true };
    const kind = this.m.symbols.lookup(ip)?.kind;
    if (kind !== "kernel" && kind !== "entry") return undefined;
    if (!regs) return kind === "entry" ? { mayEnd: false } : undefined; // stale words below a frame prove nothing
    const field = (f: keyof typeof PT_REGS) => this.m.peek64(slot + BigInt(PT_REGS[f] - PT_REGS.ip)) ?? 0n;
    const bp = field("bp"), sp = field("sp");
    const stackOf = (a: bigint) => this.stacks.findIndex((s) => a >= s.begin && a < s.end);
    // rsp one past a stack's top still belongs to it (an empty stack); a user-mode rbp (at
    // do_syscall_64's entry) is on no stack
    const spOn = stackOf(sp - 1n), bpOn = stackOf(bp);
    const split = spOn >= 0 && bpOn >= 0 && spOn !== bpOn;
    // In entry code between CLEAR_REGS's `xor ebp,ebp` and ENCODE_FRAME_POINTER rbp is 0 (on no
    // stack): __unwind_start() from those regs finds no stack for bp and is done at once. Only
    // 0: an rbp a design left on its private stack (the entry stub and PUSH_REGS run before
    // CLEAR_REGS) is on no kernel stack either, and that loss is the design's.
    const cleared = kind === "entry" && bp === 0n;
    // rsp on one task's stack and rbp on another's: __switch_to_asm has loaded next's rsp and
    // current_task is still prev (until __switch_to()), so get_stack_info() does not know rsp's
    // stack; ORC gives up there with its error set, as it would in the kernel
    const switching = split && this.stacks[spOn]!.task && this.stacks[bpOn]!.task;
    return kind === "entry" || (bp & 1n) === 1n || split ? { mayEnd: split || cleared, ...(switching ? { errorOk: true } : {}) } : undefined;
  }

  /**
   * Is `rip` at or before its function's first `mov rbp,rsp`, or at a `ret`? Kernel code that
   * never sets up a frame is in its window throughout: rbp is its caller's frame
   * (__switch_to_asm, SYM_FUNC_START with pushes only; ret_from_fork_asm, a task's first code).
   */
  inWindow(rip: bigint): boolean {
    const c = this.code(rip);
    const w = c?.code;
    if (w === undefined) return false;
    if (w.movRbp === undefined && c!.kind === "kernel") return true;
    return (w.movRbp !== undefined && rip <= w.movRbp) || w.rets.has(rip);
  }
}
