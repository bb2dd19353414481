// ABI: callee-saved registers (rbx, rbp, r12-r15) and rsp restored at every return; the
// interrupted context (every register and rflags) restored exactly at iretq.
import { hex64 as hex, REG_NAMES, toCanonical, type Machine, type RegName } from "../machine/index.ts";
import { PerTask, type Oracle, type RunFailure } from "./types.ts";

/** rbx, rbp, r12-r15, by their index in the register file (REG_NAMES). */
const CALLEE_SAVED: readonly number[] = [3, 5, 12, 13, 14, 15];
const ALL: readonly number[] = REG_NAMES.map((_, i) => i);
const RSP = 4;
/** The rflags bits an iretq must give back (CF PF AF ZF SF TF IF DF OF). */
const IRET_FLAGS = 0xcd5;

/**
 * Append the registers `which` as they are now (low and high halves, in turn) to `out`: at every
 * call, so no bigint is made of them unless one turns out not to be restored.
 */
function keep(m: Machine, which: readonly number[], out: number[]): void {
  const { lo, hi } = m.regFile;
  for (const i of which) out.push(lo[i]!, hi[i]!);
}

/** The `k`th register kept from offset `from` of `halves`, as a value. */
const word = (halves: readonly number[], from: number, k: number) => (BigInt(halves[from + 2 * k + 1]!) << 32n) | BigInt(halves[from + 2 * k]!);

export const abi: Oracle = ({ m, fail, sym }) => {
  // per task: the callee-saved registers at each live call (12 halves each, innermost last), the
  // registers at each live interrupt (entries are never changed once added: copies of the
  // containers keep them)
  const st = new PerTask(() => ({ saved: [] as number[], atInterrupt: [] as { regs: number[]; flags: number }[] }), (t) => ({ saved: t.saved.slice(), atInterrupt: t.atInterrupt.slice() }));
  /** Are the registers `which` as kept from offset `from` of `before`? */
  const same = (which: readonly number[], before: readonly number[], from: number) => {
    const { lo, hi } = m.regFile;
    for (let k = 0; k < which.length; k++) if (before[from + 2 * k] !== lo[which[k]!] || before[from + 2 * k + 1] !== hi[which[k]!]) return false;
    return true;
  };
  /** One failure per register of `which` whose value now differs from the one kept at offset `from` of `before`. */
  const unrestored = (check: RunFailure["check"], at: bigint | undefined, which: readonly number[], before: readonly number[], from: number, say: (r: RegName, was: bigint, now: bigint) => string) => {
    which.forEach((r, k) => {
      const name = REG_NAMES[r]!, was = word(before, from, k), now = m.reg(name);
      if (was !== now) fail({ check, message: say(name, was, now), ...(at === undefined ? {} : { at }) });
    });
  };
  // The failures' messages, out of the observers they are for: a closure over an observer's
  // argument would make V8 allocate a context for it at every call and return.
  const notRestoredByReturn = (a: { readonly entry: number; readonly ret: number }, saved: readonly number[], from: number) =>
    unrestored("abi-return", toCanonical(a.entry), CALLEE_SAVED, saved, from, (r, was, now) => `${r} not restored by ${sym(toCanonical(a.entry))}: ${hex(was)} before the call, ${hex(now)} after it returned to ${sym(toCanonical(a.ret))}`);
  const notRestoredByIret = (vector: number, regs: readonly number[]) =>
    unrestored("abi-iret", undefined, ALL, regs, 0, (r, was, now) => `${r} not restored at iretq from vector ${vector}: ${hex(was)} when interrupted, ${hex(now)} after`);
  return {
    onCall: () => { keep(m, CALLEE_SAVED, st.cur.saved); },
    onReturn: (a) => {
      const saved = st.cur.saved;
      if (saved.length === 0) return;
      const from = saved.length - 2 * CALLEE_SAVED.length;
      if (!same(CALLEE_SAVED, saved, from)) notRestoredByReturn(a, saved, from);
      saved.length = from;
      // a call leaves rsp at its slot + 8, canonical (a non-canonical rsp is NaN here, and differs)
      if (m.rspAt !== a.rsp) fail({ check: "abi-return", at: toCanonical(a.entry), message: `rsp ${hex(m.reg("rsp"))} after returning to ${sym(toCanonical(a.ret))}; the call left it at ${hex(a.rspRaw)}` });
    },
    onInterrupt: (a) => {
      // The registers of the interrupted context (rsp: the interrupted one, which may be any
      // value when the gate has an IST) and its rflags (in the frame).
      const regs: number[] = [];
      keep(m, ALL, regs);
      regs[2 * RSP] = Number(a.rspRaw & 0xffffffffn);
      regs[2 * RSP + 1] = Number(a.rspRaw >> 32n);
      st.cur.atInterrupt.push({ regs, flags: Number(m.peek64(m.reg("rsp") + 16n)!) });
    },
    onIret: (a) => {
      const before = st.cur.atInterrupt.pop();
      if (!before) return;
      if (!same(ALL, before.regs, 0)) notRestoredByIret(a.vector, before.regs);
      if ((m.rflags & IRET_FLAGS) !== (before.flags & IRET_FLAGS)) fail({ check: "abi-iret", message: `rflags ${m.rflags.toString(16)} after iretq from vector ${a.vector}, ${before.flags.toString(16)} when interrupted` });
    },
    onSwitch: (prev, next) => st.switch(prev, next),
    save: () => st.save(),
    report: () => ({}),
  };
};
