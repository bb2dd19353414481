// ABI: callee-saved registers (rbx, rbp, r12-r15) and rsp restored at every return; the
// interrupted context (every register and rflags) restored exactly at iretq.
import { hex64 as hex, toCanonical, type RegName } from "../machine/index.ts";
import { PerTask, type Oracle, type RunFailure } from "./types.ts";

const CALLEE_SAVED: readonly RegName[] = ["rbx", "rbp", "r12", "r13", "r14", "r15"];
const ALL: readonly RegName[] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
/** The rflags bits an iretq must give back (CF PF AF ZF SF TF IF DF OF). */
const IRET_FLAGS = 0xcd5;

export const abi: Oracle = ({ m, fail, sym }) => {
  const regsNow = (names: readonly RegName[]) => names.map((n) => m.reg(n));
  // per task: the callee-saved registers at each live call, the registers at each live interrupt
  // (entries are never changed once added: copies of the containers keep them)
  const st = new PerTask(() => ({ saved: [] as bigint[][], atInterrupt: [] as { regs: bigint[]; flags: number }[] }), (t) => ({ saved: t.saved.slice(), atInterrupt: t.atInterrupt.slice() }));
  /** One failure per register of `names` whose value now differs from `before`. */
  const unrestored = (check: RunFailure["check"], at: bigint | undefined, names: readonly RegName[], before: readonly bigint[], say: (r: RegName, was: bigint, now: bigint) => string) => {
    const after = regsNow(names);
    names.forEach((r, i) => { if (before[i] !== after[i]) fail({ check, message: say(r, before[i]!, after[i]!), ...(at === undefined ? {} : { at }) }); });
  };
  return {
    onCall: () => { st.cur.saved.push(regsNow(CALLEE_SAVED)); },
    onReturn: (a) => {
      const before = st.cur.saved.pop();
      if (!before) return;
      unrestored("abi-return", toCanonical(a.entry), CALLEE_SAVED, before, (r, was, now) => `${r} not restored by ${sym(toCanonical(a.entry))}: ${hex(was)} before the call, ${hex(now)} after it returned to ${sym(toCanonical(a.ret))}`);
      if (m.reg("rsp") !== a.rspRaw) fail({ check: "abi-return", at: toCanonical(a.entry), message: `rsp ${hex(m.reg("rsp"))} after returning to ${sym(toCanonical(a.ret))}; the call left it at ${hex(a.rspRaw)}` });
    },
    onInterrupt: (a) => {
      // The registers of the interrupted context (rsp: the interrupted one) and its rflags (in the frame).
      const regs = regsNow(ALL);
      regs[4] = a.rspRaw;
      st.cur.atInterrupt.push({ regs, flags: Number(m.peek64(m.reg("rsp") + 16n)!) });
    },
    onIret: (a) => {
      const before = st.cur.atInterrupt.pop();
      if (!before) return;
      unrestored("abi-iret", undefined, ALL, before.regs, (r, was, now) => `${r} not restored at iretq from vector ${a.vector}: ${hex(was)} when interrupted, ${hex(now)} after`);
      if ((m.rflags & IRET_FLAGS) !== (before.flags & IRET_FLAGS)) fail({ check: "abi-iret", message: `rflags ${m.rflags.toString(16)} after iretq from vector ${a.vector}, ${before.flags.toString(16)} when interrupted` });
    },
    onSwitch: (prev, next) => st.switch(prev, next),
    save: () => st.save(),
    report: () => ({}),
  };
};
