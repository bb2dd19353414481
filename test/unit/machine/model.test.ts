// Model-based test (fc.commands): random sequences of push, pop, mov rbp,rsp, leave, call, ret,
// IRQ/NMI delivery and iretq, each executed as one real instruction on the machine, checked
// after every step against a simple model of stack memory, rsp/rbp and the activation chain.
import { fc, test } from "@fast-check/vitest";
import { expect } from "vitest";
import { FIXED, IF, KERNEL_CS, KERNEL_DS, type Machine } from "../../../harness/machine/index.ts";
import { bytes, HANDLER, IST_TOP, newMachine, STACK_LOW, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";

// One instruction per snippet, at fixed addresses; a command points rip at one and steps once.
const S = { push: TEXT, pop: TEXT + 0x10n, movRbp: TEXT + 0x20n, leave: TEXT + 0x30n, call: TEXT + 0x40n, ret: TEXT + 0x50n, iret: TEXT + 0x60n, nop: TEXT + 0x70n };
const CALLEE = TEXT + 0x1000n;
const NMI_HANDLER = HANDLER + 0x1000n;
const IRQ = 0x20;

type Word = { value: bigint; tag: "data" | "ret" | "frame" };
type Act = { kind: "call"; ret: bigint } | { kind: "irq" | "nmi"; rip: bigint; rsp: bigint; frame: bigint };
interface Model {
  mem: Map<bigint, Word>;
  rsp: bigint;
  rbp: bigint | undefined; // set by mov rbp,rsp while the words down to rsp are data
  acts: Act[];
  rip: bigint;
}
type Real = Machine;
type Cmd = fc.Command<Model, Real>;

function check(m: Model, r: Real): void {
  expect(r.reg("rsp").toString(16), "rsp").toBe(m.rsp.toString(16));
  expect(r.rip.toString(16), "rip").toBe(m.rip.toString(16));
  // (one expect for every word: an expect per word cost more than the machine it checks)
  const words = [...m.mem].filter(([a]) => a >= m.rsp || a >= IST_TOP - 0x1000n);
  const wrong = words.filter(([a, w]) => r.peek64(a) !== w.value);
  expect(wrong.map(([a, w]) => `word at ${a.toString(16)} (${w.tag}): ${r.peek64(a)?.toString(16)}`), "words that differ from the model").toEqual(wrong.map(([a, w]) => `word at ${a.toString(16)} (${w.tag}): ${w.value.toString(16)}`));
  const truth = r.truth();
  const entered = truth.filter((t) => t.kind === "frame").map((t) => (t.kind === "frame" ? t.entered : ""));
  expect(entered).toEqual([...m.acts.map((a) => (a.kind === "call" ? "call" : "interrupt")).reverse(), "root"]);
  const boundaries = truth.filter((t) => t.kind === "interrupt").map((t) => (t.kind === "interrupt" ? [t.name, t.ip, t.rsp] : []));
  const interrupts = m.acts.filter((a): a is Extract<Act, { frame: bigint }> => a.kind !== "call").reverse();
  expect(boundaries).toEqual(interrupts.map((a) => [a.kind === "nmi" ? "NMI" : "IRQ 0x20", a.rip, a.rsp]));
}

function step(r: Real, at: bigint): void {
  r.rip = at;
  const res = r.step();
  expect(res.kind, JSON.stringify(res, (_, v) => (typeof v === "bigint" ? v.toString(16) : v))).toBe("paused");
}

const room = (m: Model) => m.rsp - 128n > STACK_LOW || m.rsp <= IST_TOP && m.rsp - 128n > IST_TOP - 0x1000n;

class Push implements Cmd {
  constructor(readonly v: bigint) {}
  check = (m: Readonly<Model>) => room(m);
  run(m: Model, r: Real) {
    r.setReg("rax", this.v);
    step(r, S.push);
    m.rsp -= 8n; m.mem.set(m.rsp, { value: this.v, tag: "data" }); m.rip = S.push + 1n;
    check(m, r);
  }
  toString = () => `push ${this.v.toString(16)}`;
}
class Pop implements Cmd {
  check = (m: Readonly<Model>) => m.mem.get(m.rsp)?.tag === "data" && (m.rbp === undefined || m.rsp < m.rbp);
  run(m: Model, r: Real) {
    const w = m.mem.get(m.rsp)!;
    step(r, S.pop);
    expect(r.reg("rbx")).toBe(w.value);
    m.mem.delete(m.rsp); m.rsp += 8n; m.rip = S.pop + 1n;
    check(m, r);
  }
  toString = () => "pop rbx";
}
class MovRbpRsp implements Cmd {
  check = (m: Readonly<Model>) => m.mem.get(m.rsp)?.tag === "data";
  run(m: Model, r: Real) {
    step(r, S.movRbp);
    expect(r.reg("rbp")).toBe(m.rsp);
    m.rbp = m.rsp; m.rip = S.movRbp + 3n;
    check(m, r);
  }
  toString = () => "mov rbp,rsp";
}
class Leave implements Cmd {
  check = (m: Readonly<Model>) => m.rbp !== undefined && m.rbp >= m.rsp && [...m.mem].every(([a, w]) => a < m.rsp || a > m.rbp! || w.tag === "data");
  run(m: Model, r: Real) {
    const saved = m.mem.get(m.rbp!)!.value;
    step(r, S.leave);
    expect(r.reg("rbp")).toBe(saved);
    for (let a = m.rsp; a <= m.rbp!; a += 8n) m.mem.delete(a);
    m.rsp = m.rbp! + 8n; m.rbp = undefined; m.rip = S.leave + 1n;
    check(m, r);
  }
  toString = () => "leave";
}
class Call implements Cmd {
  check = (m: Readonly<Model>) => room(m);
  run(m: Model, r: Real) {
    step(r, S.call);
    m.rsp -= 8n; m.mem.set(m.rsp, { value: S.call + 5n, tag: "ret" }); m.acts.push({ kind: "call", ret: S.call + 5n });
    m.rbp = undefined; m.rip = CALLEE;
    check(m, r);
  }
  toString = () => "call callee";
}
class Ret implements Cmd {
  check = (m: Readonly<Model>) => m.acts.at(-1)?.kind === "call" && m.mem.get(m.rsp)?.tag === "ret";
  run(m: Model, r: Real) {
    step(r, S.ret);
    m.mem.delete(m.rsp); m.rsp += 8n; m.acts.pop(); m.rbp = undefined; m.rip = S.call + 5n;
    check(m, r);
  }
  toString = () => "ret";
}
class Interrupt implements Cmd {
  constructor(readonly nmi: boolean) {}
  check = (m: Readonly<Model>) => room(m) && !(this.nmi && m.acts.some((a) => a.kind === "nmi"));
  run(m: Model, r: Real) {
    r.rflags = IF | FIXED; // as if the code had interrupts enabled
    r.rip = S.nop;
    r.raise(this.nmi ? 2 : IRQ);
    const res = r.step(); // delivery, then the handler's first instruction (a nop)
    expect(res.kind).toBe("paused");
    const top = this.nmi ? IST_TOP : (m.rsp / 16n) * 16n;
    const frame = top - 40n;
    [S.nop, KERNEL_CS, BigInt(IF | FIXED), m.rsp, KERNEL_DS].forEach((v, i) => m.mem.set(frame + 8n * BigInt(i), { value: v, tag: "frame" }));
    m.acts.push({ kind: this.nmi ? "nmi" : "irq", rip: S.nop, rsp: m.rsp, frame });
    m.rsp = frame; m.rbp = undefined; m.rip = (this.nmi ? NMI_HANDLER : HANDLER) + 1n;
    check(m, r);
  }
  toString = () => (this.nmi ? "NMI" : "IRQ");
}
class Iret implements Cmd {
  check = (m: Readonly<Model>) => { const a = m.acts.at(-1); return a !== undefined && a.kind !== "call" && a.frame === m.rsp; };
  run(m: Model, r: Real) {
    const a = m.acts.pop() as Extract<Act, { frame: bigint }>;
    step(r, S.iret);
    for (let i = 0n; i < 5n; i++) m.mem.delete(a.frame + 8n * i);
    m.rsp = a.rsp; m.rbp = undefined; m.rip = a.rip;
    expect(r.rflags & IF).toBe(IF);
    check(m, r);
  }
  toString = () => "iretq";
}

const commands = [
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => new Push(v)),
  fc.constant(new Pop()), fc.constant(new MovRbpRsp()), fc.constant(new Leave()),
  fc.constant(new Call()), fc.constant(new Ret()),
  fc.boolean().map((nmi) => new Interrupt(nmi)), fc.constant(new Iret()),
];

test.prop([fc.commands(commands, { size: "medium" })], { numRuns: 150 })("push/pop/call/ret/leave/interrupt/iret match the stack model", (cmds) => {
  const setup = () => {
    const r = newMachine();
    r.load(S.push, bytes("50")); r.load(S.pop, bytes("5b")); r.load(S.movRbp, bytes("48 89 e5")); r.load(S.leave, bytes("c9"));
    r.load(S.call, bytes("e8 bb 0f 00 00")); // call CALLEE (TEXT+0x1000)
    r.load(S.ret, bytes("c3")); r.load(S.iret, bytes("48 cf")); r.load(S.nop, bytes("90"));
    r.load(CALLEE, bytes("90")); r.load(HANDLER, bytes("90 90")); r.load(NMI_HANDLER, bytes("90 90"));
    r.setGate(IRQ, HANDLER); r.setGate(2, NMI_HANDLER, 1); r.setIst(1, IST_TOP);
    r.call(S.nop, { rsp: STACK_TOP, stopAt: STOP });
    const model: Model = { mem: new Map([[STACK_TOP - 8n, { value: STOP, tag: "ret" }]]), rsp: STACK_TOP - 8n, rbp: undefined, acts: [], rip: S.nop };
    return { model, real: r };
  };
  fc.modelRun(setup, cmds);
});
