// The frame-pointer window of a function: where its frame is not built yet or is torn down, so
// that rbp is still its caller's frame and an FP unwind from an interrupt there misses the
// immediate caller (objtool's stated limit). For a BPF function the window is where the JIT says
// the frame is built (frameReady()/frameGone(): do_jit()'s ksym.fp_start/fp_end marks) and for
// kernel code where its own `mov rbp,rsp` and `ret` are; in both, only while the interrupted rbp is
// still the one the function was entered with (the truth's, at its call): the unwinder reads rbp alone.
import { decodeCode, GENERIC_OP, K_REG, Op, RBP, RSP, toCanonical, type Machine, type SymbolEntry } from "../machine/index.ts";
import { PT_REGS } from "../../arch/ptrace.ts";
import type { Image } from "../../jit/image.ts";
import type { Kernel } from "../../jit/kernel/kernel.ts";
import { kernelStacks } from "../../jit/private-stacks.ts";
import type { EntryBp, WindowOracle } from "./classify.ts";

/** What one function's code says about its frame pointer, read once per symbol. */
export interface FrameCode {
  /** Its first `mov rbp,rsp` (kernel code; a BPF function's frame is where its JIT says). */
  readonly movRbp: bigint | undefined;
  readonly rets: ReadonlySet<bigint>;
  /** Entry code: its ENCODE_FRAME_POINTER (`lea rbp,[rsp+1]`: an odd displacement). */
  readonly encode: bigint | undefined;
}

/**
 * The kernel's functions' facts by symbol start (the internal address), per kernel: every image
 * of a kernel loads its text unchanged (jit/image.ts kernelFor()), and text cannot be written.
 * Keyed by the kernel, which campaigns keep (a few dozen at most), not by anything of one
 * scenario. (Not BPF functions: a campaign's images almost never repeat one, and each kept here
 * would live long enough for V8 to move it into its old generation; an image's own runs share
 * its facts by symbol instead, FrameWindowOptions.cache.) Until it was kept by kernel, a run
 * found a kernel function's facts by its bytes: a copy of them and a string of them as a key,
 * at the first sample that asked, in every run.
 */
const kernelCodes = new WeakMap<Kernel, Map<number, FrameCode>>();

/** The facts, from the function's decoded instructions. */
function frameCode(bytes: Uint8Array, start: bigint): FrameCode {
  const code = decodeCode(bytes, start);
  const at = (d: (typeof code)[number] | undefined) => (d === undefined ? undefined : toCanonical(d.ip));
  const reg = (k: number, r: number, want: number) => k === K_REG && r === want;
  return {
    movRbp: at(code.find((d) => GENERIC_OP[d.op] === Op.MOV && d.size === 8 && reg(d.k0, d.r0, RBP) && reg(d.k1, d.r1, RSP))),
    rets: new Set(code.filter((d) => d.op === Op.RET).map((d) => toCanonical(d.ip))),
    // `lea rbp,[rsp+odd]`: rbp = &pt_regs | 1
    encode: at(code.find((d) => d.op === Op.LEA && reg(d.k0, d.r0, RBP) && d.base === RSP && d.index < 0 && (d.disp & 1) === 1)),
  };
}

/** Where a BPF function's frame is complete and where it is torn down (JitFunction.frame). */
export interface DeclaredFrame {
  readonly ready: bigint;
  readonly gone: bigint;
}

export interface FrameWindowOptions {
  /**
   * The kernel's stacks (task, IRQ, NMI; jit/private-stacks.ts kernelStacks()), to tell which one an
   * address is on; never private stacks, whose split from rbp is a design's doing.
   */
  readonly stacks?: readonly { begin: bigint; end: bigint; task?: boolean }[];
  /** Code facts by symbol, shareable by every machine of one image (its text never changes). */
  readonly cache?: Map<string, FrameCode>;
  /** The kernel's functions' code facts by symbol start, shared by every image of the kernel. */
  readonly kernelCode?: Map<number, FrameCode>;
  /** The context switch's blind spot [from, to]: rsp on the next task's stack while current is still the previous one. */
  readonly switchWindow?: { readonly from: bigint; readonly to: bigint };
  /** Where tasks' stacks start (ret_from_fork_asm). */
  readonly stackStarts?: readonly bigint[];
  /** Each BPF function's frame marks, by its start address. */
  readonly frames?: ReadonlyMap<bigint, DeclaredFrame>;
}

/** The window oracle of an image's machine: its kernel stacks, its BPF functions' frame marks, the switch's blind spot. */
export function frameWindows(img: Image, m: Machine, cache?: Map<string, FrameCode>): FrameWindows {
  const k = img.kernel;
  const frames = new Map(img.programs.flatMap((p) => p.jit.funcs.map((f) => [f.image.base, f.frame] as const)));
  let kernelCode = kernelCodes.get(k);
  if (kernelCode === undefined) kernelCodes.set(k, (kernelCode = new Map()));
  return new FrameWindows(m, {
    stacks: kernelStacks(img), frames, kernelCode, ...(cache ? { cache } : {}),
    ...(img.multitask ? { switchWindow: { from: k.addr("switch_rsp_loaded"), to: k.addr("switch_current") }, stackStarts: [k.addr("ret_from_fork_asm")] } : {}),
  });
}

export class FrameWindows implements WindowOracle {
  private readonly stacks: readonly { begin: bigint; end: bigint; task?: boolean }[];
  private readonly cache: Map<string, FrameCode>;
  private readonly kernelCode: Map<number, FrameCode>;
  private readonly switchWindow: { readonly from: bigint; readonly to: bigint } | undefined;
  private readonly stackStarts: readonly bigint[];
  private readonly frames: ReadonlyMap<bigint, DeclaredFrame>;

  constructor(private readonly m: Machine, o: FrameWindowOptions = {}) {
    this.stacks = o.stacks ?? [];
    this.cache = o.cache ?? new Map();
    this.kernelCode = o.kernelCode ?? new Map();
    this.switchWindow = o.switchWindow;
    this.stackStarts = o.stackStarts ?? [];
    this.frames = o.frames ?? new Map();
  }

  /** classify.ts WindowOracle: a new task's first return address, where unwinding ends. */
  endsStack(ip: bigint): boolean {
    return this.stackStarts.includes(ip);
  }

  /** Per symbol-table entry, what code() answers (asked at every sample's boundaries). */
  private readonly bySymbol = new Map<SymbolEntry, { kind: string; start: bigint; code: FrameCode }>(); // (one run's: a Map, jit/recent-cache.ts)

  /** The code facts of the function holding `ip`, from its bytes (cached by symbol). */
  private code(ip: bigint): { kind: string; start: bigint; code: FrameCode } | undefined {
    const sym = this.m.symbols.entryOf(ip);
    if (!sym) return undefined;
    let known = this.bySymbol.get(sym);
    if (known === undefined) {
      const start = toCanonical(sym.start);
      // (kernel text, its symbols' kinds: the kernel's, by start; anything else, this image's, by name)
      const kernel = sym.kind === "kernel" || sym.kind === "entry";
      let code = kernel ? this.kernelCode.get(sym.start) : this.cache.get(sym.name);
      if (!code) {
        code = frameCode(this.m.memory.peek(sym.start, sym.end - sym.start) ?? new Uint8Array(0), start);
        if (kernel) this.kernelCode.set(sym.start, code);
        else this.cache.set(sym.name, code);
      }
      known = { kind: sym.kind, start, code };
      this.bySymbol.set(sym, known);
    }
    return known;
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
    const kind = this.m.symbols.kindOf(ip);
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
   * classify.ts WindowOracle. A BPF function's window: before its frame is complete
   * (frameReady(), ksym.fp_start), and from its teardown (frameGone(), after `leave`) to the `ret`
   * that follows; do_jit() emits that epilogue at the first BPF_EXIT, where code may follow
   * (bpf_jit_comp.c:do_jit(), 7.2). Kernel code's: at or before its first `mov rbp,rsp`, or at a
   * `ret`; kernel code that never sets up a frame is in its window throughout (__switch_to_asm,
   * SYM_FUNC_START with pushes only; ret_from_fork_asm, a task's first code). With `bp` known,
   * only while the interrupted rbp is the one the function was entered with: anywhere else the
   * frame unwinder reads some other frame, and what it misses is not this window's.
   */
  inWindow(rip: bigint, bp?: EntryBp): boolean {
    if (bp !== undefined && bp.now !== bp.entry) return false;
    const c = this.code(rip);
    if (c === undefined) return false;
    const w = c.code;
    const declared = this.frames.get(c.start);
    if (declared !== undefined) {
      if (rip < declared.ready) return true;
      if (rip < declared.gone) return false;
      let ret: bigint | undefined;
      for (const r of w.rets) if (r >= declared.gone && (ret === undefined || r < ret)) ret = r;
      return ret !== undefined && rip <= ret;
    }
    if (w.movRbp === undefined && c.kind === "kernel") return true;
    return (w.movRbp !== undefined && rip <= w.movRbp) || w.rets.has(rip);
  }
}
