// The ORC unwinder (arch/x86/kernel/unwind_orc.c; kernel-model.md §5) in its two versions:
//   orc-6.13: BPF code has no ORC data; orc_find() returns NULL and the unwinder falls back to
//             orc_fp_entry (the frame-pointer step) and sets the error: "just a guess";
//   orc-6.19: orc_bpf_find() returns orc_fp_entry without the error when the ip is inside the
//             function's [fp_start, fp_end) window (bpf_has_frame_pointer()); elsewhere the same
//             error-marking fallback.
// The synthetic kernel's text gets exact ORC data, derived here objtool-style from its code.
// Stacks are found by address (stack_access_ok()), not by next_sp; the visit mask still applies.
import type { Machine } from "../harness/machine/index.ts";
import type { Image } from "../jit/image.ts";
import { disassemble } from "../jit/disasm.ts";
import { getStackInfo, onStack, STACK_TYPE_UNKNOWN, Warnings, type StackInfo, type UnwindEnv } from "./stack.ts";
import type { Walk } from "./index.ts";

export type OrcVersion = "orc-6.13" | "orc-6.19";

const CALL = 0, REGS = 1, REGS_PARTIAL = 2, END_OF_STACK = 3, UNDEFINED = 4;
export interface OrcEntry {
  readonly type: number;
  readonly spReg: "SP" | "BP";
  readonly spOffset: number;
  readonly bpReg: "UNDEFINED" | "PREV_SP";
  readonly bpOffset: number;
  readonly signal: boolean;
}
/** orc_fp_entry: the frame-pointer guess for code without ORC data. */
export const ORC_FP_ENTRY: OrcEntry = { type: CALL, spReg: "BP", spOffset: 16, bpReg: "PREV_SP", bpOffset: -16, signal: false };
const PT_REGS_SIZE = 168n, IRET_FRAME_OFFSET = 128n, IRET_FRAME_SIZE = 40n;

/** An ORC table: entries by instruction start, looked up for the instruction containing an ip. */
export class OrcTable {
  private readonly starts: bigint[] = [];
  private readonly entries: OrcEntry[] = [];
  add(at: bigint, e: OrcEntry): void { this.starts.push(at); this.entries.push(e); }
  find(ip: bigint, lo: bigint, hi: bigint): OrcEntry | undefined {
    if (ip < lo || ip >= hi) return undefined;
    let a = 0, b = this.starts.length - 1, best = -1;
    while (a <= b) { const m = (a + b) >> 1; if (this.starts[m]! <= ip) { best = m; a = m + 1; } else b = m - 1; }
    return best < 0 ? undefined : this.entries[best];
  }
}

/**
 * objtool for the synthetic kernel: follow each function's stack height instruction by
 * instruction (push, pop, mov rbp,rsp, sub/add rsp, leave; the state at a branch target comes
 * from the branch), and for entry code the pt_regs being built (REGS_PARTIAL until PUSH_REGS is
 * complete, then REGS).
 */
export function kernelOrc(img: Image, m: Machine): OrcTable {
  const t = new OrcTable();
  const read = (start: bigint, len: number) => {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) out[i] = Number(((m.peek64(start + BigInt(i & ~7)) ?? 0n) >> BigInt(8 * (i & 7))) & 0xffn);
    return out;
  };
  const syms = img.kernel.symbols.slice().sort((a, b) => (a.start < b.start ? -1 : 1));
  for (const s of syms) {
    const lines = disassemble(read(s.start, Number(s.end - s.start)), s.start, { syntax: "intel" });
    if (s.name === "entry_SYSCALL_64") { // pt_regs at sp around the call to do_syscall_64
      for (const l of lines) t.add(l.address, { type: REGS, spReg: "SP", spOffset: 0, bpReg: "UNDEFINED", bpOffset: 0, signal: true });
      continue;
    }
    if (s.kind === "entry") { // IRQ stubs, asm_common_interrupt, asm_exc_nmi: words pushed above the iret frame
      let pushed = s.name === "asm_common_interrupt" ? 1 : 0; // orig_ax pushed by the stub
      for (const l of lines) {
        t.add(l.address, pushed === 16
          ? { type: REGS, spReg: "SP", spOffset: 0, bpReg: "UNDEFINED", bpOffset: 0, signal: true }
          : { type: REGS_PARTIAL, spReg: "SP", spOffset: 8 * pushed, bpReg: "UNDEFINED", bpOffset: 0, signal: true });
        if (l.text.startsWith("push")) pushed++;
        else if (l.text.startsWith("pop")) pushed--;
        else if (l.text === "add rsp,0x8") pushed--;
      }
      continue;
    }
    // A C function with a frame pointer.
    type St = { bp: boolean; off: number; saved: boolean };
    let st: St = { bp: false, off: 8, saved: false };
    const atTarget = new Map<bigint, St>();
    let dead = false;
    for (const l of lines) {
      if (dead) st = atTarget.get(l.address) ?? st;
      dead = false;
      t.add(l.address, { type: CALL, spReg: st.bp ? "BP" : "SP", spOffset: st.bp ? 16 : st.off, bpReg: st.saved ? "PREV_SP" : "UNDEFINED", bpOffset: -16, signal: false });
      const x = l.text;
      const next: St = { ...st };
      if (x === "push rbp" && !st.bp) { next.off += 8; next.saved = true; }
      else if (x.startsWith("push") && !st.bp) next.off += 8;
      else if (x === "pop rbp") { next.bp = false; next.saved = false; next.off = 8; }
      else if (x.startsWith("pop") && !st.bp && x !== "pop rsp") next.off -= 8;
      else if (x === "mov rbp,rsp") next.bp = true;
      else if (x === "leave") { next.bp = false; next.saved = false; next.off = 8; }
      else if (/^sub rsp,/.test(x) && !st.bp) next.off += Number(x.split(",")[1]);
      else if (/^add rsp,/.test(x) && !st.bp) next.off -= Number(x.split(",")[1]);
      if (/^j/.test(x) && l.refers === undefined) {
        const target = BigInt(x.split(" ")[1]!);
        if (target >= s.start && target < s.end && !atTarget.has(target)) atTarget.set(target, next);
      }
      if (x === "ret" || x.startsWith("jmp ") || x === "ud2") dead = true;
      st = next;
    }
  }
  return t;
}

interface OrcState {
  ip: bigint; sp: bigint; bp: bigint; signal: boolean; error: boolean;
  regs: bigint; fullRegs: boolean;
  stackInfo: StackInfo; visit: { mask: bigint }; warnings: Warnings;
}

export interface OrcEnv extends UnwindEnv {
  readonly version: OrcVersion;
  readonly kernel: OrcTable;
  readonly kernelText: { lo: bigint; hi: bigint };
  /** BPF functions' fp windows (v6.19 bpf_has_frame_pointer()). */
  readonly bpfWindows: readonly { start: bigint; fpStart: bigint; fpEnd: bigint; end: bigint }[];
}

const rd = (env: UnwindEnv, a: bigint) => env.mem.read64(a) ?? 0n;
const userMode = (env: UnwindEnv, regs: bigint) => (rd(env, regs + 136n) & 3n) !== 0n;

/** orc_find(); undefined is "no ORC data" (the error-marking fallback). */
function orcFind(env: OrcEnv, ip: bigint): { orc: OrcEntry; reliable: boolean } | undefined {
  const k = env.kernel.find(ip, env.kernelText.lo, env.kernelText.hi);
  if (k) return { orc: k, reliable: true };
  if (env.version === "orc-6.19") {
    const w = env.bpfWindows.find((x) => ip >= x.start && ip < x.end);
    if (w && ip >= w.fpStart && ip < w.fpEnd) return { orc: ORC_FP_ENTRY, reliable: true }; // orc_bpf_find()
  }
  return undefined;
}

function stackAccessOk(env: OrcEnv, s: OrcState, addr: bigint, len: bigint): boolean {
  if (onStack(s.stackInfo, addr, len)) return true;
  return getStackInfo(env, addr, s.stackInfo, s.visit, s.warnings) && onStack(s.stackInfo, addr, len);
}

function deref(env: OrcEnv, s: OrcState, addr: bigint): bigint | undefined {
  return stackAccessOk(env, s, addr, 8n) ? rd(env, addr) : undefined;
}

/** unwind_next_frame() (ORC). */
export function orcNextFrame(env: OrcEnv, s: OrcState): boolean {
  if (s.stackInfo.type === STACK_TYPE_UNKNOWN) return false;
  const origIp = s.ip, prevSp = s.sp, prevType = s.stackInfo.type;
  const err = (warning?: string) => { s.error = true; if (warning) s.warnings.once(warning.split(" at ")[0]!, warning); return theEnd(s); };
  if (s.regs !== 0n && userMode(env, s.regs)) return theEnd(s);
  const found = orcFind(env, s.signal ? s.ip : s.ip - 1n);
  let orc: OrcEntry;
  if (!found) { orc = ORC_FP_ENTRY; s.error = true; } // "just a guess": no longer reliable
  else {
    orc = found.orc;
    if (orc.type === UNDEFINED) return err();
    if (orc.type === END_OF_STACK) return theEnd(s);
  }
  s.signal = orc.signal;
  const sp = (orc.spReg === "SP" ? s.sp : s.bp) + BigInt(orc.spOffset);
  if (orc.type === CALL) {
    const ip = deref(env, s, sp - 8n);
    if (ip === undefined) return err();
    s.ip = ip; s.sp = sp; s.regs = 0n;
  } else if (orc.type === REGS) {
    if (!stackAccessOk(env, s, sp, PT_REGS_SIZE)) return err(`WARNING: can't access registers at ${env.symbolize(origIp)}`);
    s.ip = rd(env, sp + 128n); s.sp = rd(env, sp + 152n); s.regs = sp; s.fullRegs = true;
  } else {
    if (!stackAccessOk(env, s, sp, IRET_FRAME_SIZE)) return err(`WARNING: can't access iret registers at ${env.symbolize(origIp)}`);
    s.ip = rd(env, sp); s.sp = rd(env, sp + 24n); s.regs = sp - IRET_FRAME_OFFSET; s.fullRegs = false;
  }
  if (orc.bpReg === "UNDEFINED") {
    if (s.regs !== 0n && s.fullRegs) s.bp = rd(env, s.regs + 32n); // get_reg(bp)
  } else {
    const bp = deref(env, s, sp + BigInt(orc.bpOffset));
    if (bp === undefined) return err();
    s.bp = bp;
  }
  if (s.stackInfo.type === prevType && onStack(s.stackInfo, s.sp, 8n) && s.sp <= prevSp) {
    return err(`WARNING: stack going in the wrong direction? at ${env.symbolize(origIp)}`);
  }
  return true;
}

function theEnd(s: OrcState): false {
  s.stackInfo.type = STACK_TYPE_UNKNOWN;
  return false;
}

/** __unwind_start() (ORC): from regs (then skip the regs frame), or from a running function's ip/sp/bp. */
export function orcStart(env: OrcEnv, from: { regs?: bigint; ip?: bigint; sp?: bigint; bp?: bigint }): OrcState {
  const s: OrcState = {
    ip: 0n, sp: 0n, bp: 0n, signal: false, error: false, regs: 0n, fullRegs: false,
    stackInfo: { type: STACK_TYPE_UNKNOWN, begin: 0n, end: 0n, nextSp: 0n }, visit: { mask: 0n }, warnings: new Warnings(),
  };
  const regs = from.regs ?? 0n;
  if (regs !== 0n) {
    if (userMode(env, regs)) return s;
    s.ip = rd(env, regs + 128n); s.sp = rd(env, regs + 152n); s.bp = rd(env, regs + 32n);
    s.regs = regs; s.fullRegs = true; s.signal = true;
  } else {
    s.ip = from.ip ?? 0n; s.sp = from.sp ?? 0n; s.bp = from.bp ?? 0n; s.signal = true;
  }
  if (!getStackInfo(env, s.sp, s.stackInfo, s.visit, s.warnings)) {
    s.error = true; // maybe overflowed into a guard page: try the next page up
    if (!getStackInfo(env, (s.sp + 0xfffn) & ~0xfffn, s.stackInfo, s.visit, s.warnings)) return s;
  }
  if (regs !== 0n) orcNextFrame(env, s); // skip the regs frame
  return s;
}

/** A walk: [regs->ip,] then the unwinder's return addresses until done or 0 (perf-style: errors do not stop it). */
export function orcWalk(env: OrcEnv, from: { regs?: bigint; ip?: bigint; sp?: bigint; bp?: bigint }): Walk {
  const ips: bigint[] = [];
  if (from.regs) ips.push(rd(env, from.regs + 128n));
  const s = orcStart(env, from);
  let reachedEnd = false;
  if (!from.regs && s.stackInfo.type !== STACK_TYPE_UNKNOWN) orcNextFrame(env, s); // report callers, as the FP walk does
  for (; s.stackInfo.type !== STACK_TYPE_UNKNOWN; orcNextFrame(env, s)) {
    if (s.regs === env.taskPtRegs) { reachedEnd = true; break; }
    const addr = env.isKernelText(s.ip) ? s.ip : 0n;
    if (addr === 0n) break;
    ips.push(addr);
  }
  return { ips, error: s.error, reachedEnd, warnings: s.warnings.lines };
}

/**
 * The ORC table of each kernel (image.ts caches kernels: every image of a campaign shares a few).
 * objtool's output depends on the text alone, and kernel text is mapped r-x (a write faults), so
 * the table read from the first machine holds for every machine loaded from the same kernel.
 */
const kernelTables = new WeakMap<Image["kernel"], OrcTable>();

export function orcEnvFromImage(base: UnwindEnv, img: Image, m: Machine, version: OrcVersion): OrcEnv {
  const k = img.kernel.text;
  let table = kernelTables.get(img.kernel);
  if (table === undefined) kernelTables.set(img.kernel, (table = kernelOrc(img, m)));
  return {
    ...base, version, kernel: table, kernelText: { lo: k.base, hi: k.end },
    bpfWindows: img.fpWindows.map((w) => ({ start: w.start, fpStart: w.fpStart, fpEnd: w.fpEnd, end: w.end })),
  };
}
