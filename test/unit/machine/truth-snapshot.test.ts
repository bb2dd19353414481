// Ground truth, address hooks, observers and snapshots on a small call chain built with the
// assembler: main -> mid -> leaf, each with a frame-pointer prologue, and an IRQ handler.
import { describe, expect, test } from "vitest";
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "iced-x86";
import { Assembler, type Assembled } from "../../../jit/asm.ts";
import { FIXED, IF, type Activation, type Machine, type TruthEntry } from "../../../harness/machine/index.ts";
import { bytes, DATA, HANDLER, newMachine, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";
import { ShadowStack } from "../../../harness/machine/shadow.ts";

const IRQ = 0x20;

/** main(rdi) calls mid(rdi), which calls leaf(rdi) = rdi*2+1 stored to DATA; all with rbp frames. */
function image(): Assembled {
  const frame = (a: Assembler) => a
    .emit(() => I.createReg(Code.Push_r64, R.RBP))
    .emit(() => I.createRegReg(Code.Mov_rm64_r64, R.RBP, R.RSP));
  const a = new Assembler("chain").label("main");
  frame(a).call({ label: "mid" }).emit(() => I.create(Code.Leaveq)).emit(() => I.create(Code.Retnq));
  frame(a.label("mid")).emit(() => I.createRegI32(Code.Sub_rm64_imm8, R.RSP, 16)).call({ label: "leaf" }).emit(() => I.create(Code.Leaveq)).emit(() => I.create(Code.Retnq));
  frame(a.label("leaf"))
    .emit(() => I.createRegMem(Code.Lea_r64_m, R.RAX, M.createBaseIndexScaleDisplSize(R.RDI, R.RDI, 1, 1n, 1)))
    .emit(() => I.createRegU64(Code.Mov_r64_imm64, R.RCX, DATA))
    .emit(() => I.createMemReg(Code.Mov_rm64_r64, M.createBase(R.RCX), R.RAX))
    .emit(() => I.createReg(Code.Pop_r64, R.RBP))
    .emit(() => I.create(Code.Retnq));
  return a.assemble(TEXT);
}

function setup(): { m: Machine; img: Assembled } {
  const img = image();
  const sym = (n: string, next: string | undefined) => ({ name: n, start: img.labels.get(n)!, end: next ? img.labels.get(next)! : img.end, kind: "kernel" as const });
  const m = newMachine([sym("main", "mid"), sym("mid", "leaf"), sym("leaf", undefined), { name: "irq_handler", start: HANDLER, end: HANDLER + 0x100n, kind: "entry" }]);
  m.load(TEXT, img.bytes);
  m.load(HANDLER, bytes("90 48 cf")); // nop; iretq
  m.setGate(IRQ, HANDLER);
  m.rflags = IF | FIXED;
  m.call(img.labels.get("main")!, { args: [20n], rsp: STACK_TOP, stopAt: STOP });
  return { m, img };
}

const brief = (t: TruthEntry[]) => t.map((e) => (e.kind === "frame" ? `${e.function}@${e.symbol}/${e.entered}` : `<${e.name} at ${e.symbol}>`));

describe("ground truth", () => {
  test("inside a handler the chain has every frame, innermost first, with the interrupt marked", () => {
    const { m, img } = setup();
    const leafBody = img.labels.get("leaf")! + 4n; // after push rbp; mov rbp,rsp
    let chain: TruthEntry[] = [];
    m.addHook(leafBody, (mm) => mm.raise(IRQ));
    m.addHook(HANDLER, (mm) => { chain = mm.truth(); });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 41n });
    expect(brief(chain)).toEqual([
      "irq_handler@irq_handler/interrupt",
      "<IRQ 0x20 at leaf+0x4>",
      "leaf@leaf+0x4/call",
      "mid@mid+0xd/call",
      "main@main+0x9/root",
    ]);
    const leaf = chain[2]!;
    expect(leaf.kind === "frame" && leaf.returnAddress).toBe(img.labels.get("mid")! + 0xdn);
    const root = chain[4]!;
    expect(root.kind === "frame" && root.returnAddress).toBe(STOP);
    const marker = chain[1]!;
    // stop, main's rbp, mid's return, mid's rbp, 16 bytes of mid's locals, leaf's return, leaf's rbp
    expect(marker.kind === "interrupt" && marker.rsp).toBe(STACK_TOP - 8n * 8n);
  });

  test("asked again, the truth follows rip and every change of an activation, at the same depth", () => {
    // (the machine keeps the entries it built for each activation: none may go stale)
    const { m, img } = setup();
    const leaf = img.labels.get("leaf")!;
    const start = m.snapshot(); // main about to run
    m.addHook(leaf, () => "stop");
    expect(m.run()).toMatchObject({ kind: "stopped", symbol: "leaf" });
    const atLeaf = m.truth();
    m.step();
    expect(m.truth()[0]).toMatchObject({ ip: leaf + 1n, symbol: "leaf+0x1" });
    m.step();
    expect(m.truth()[0]).toMatchObject({ ip: leaf + 4n, symbol: "leaf+0x4" });
    // the same calls made 16 bytes lower: mid's and leaf's activations have other slots
    m.restore(start);
    m.setReg("rsp", m.reg("rsp") - 16n);
    expect(m.run()).toMatchObject({ kind: "stopped", symbol: "leaf" });
    const slots = (t: TruthEntry[]) => t.map((e) => (e.kind === "frame" ? e.slot : undefined));
    expect(slots(m.truth())).toEqual(slots(atLeaf).map((x, k) => (k < 2 ? x! - 16n : x)));
  });

  test("returnAddresses() is the truth's frames' return addresses at every boundary, across calls, an interrupt and returns", () => {
    const { m, img } = setup();
    m.addHook(img.labels.get("leaf")! + 4n, (mm) => mm.raise(IRQ));
    const fromTruth = () => m.truth().flatMap((e) => (e.kind === "frame" ? [e.returnAddress] : []));
    const depths = new Set<number>();
    let kept: readonly bigint[] | undefined, shared = 0;
    for (let r = m.runUntil(1); r.kind === "paused"; r = m.runUntil(m.steps + 1)) {
      const got = m.returnAddresses();
      expect(got).toEqual(fromTruth());
      if (got === kept) shared++;
      kept = got;
      depths.add(m.depth);
    }
    expect([...depths].sort()).toEqual([1, 2, 3, 4]); // main, mid, leaf, the handler
    expect(shared).toBeGreaterThan(0); // kept while no return address changes
  });

  test("a caller's entry follows where it resumes: two calls from two sites, the truth asked in each", () => {
    // main calls f, then calls f again from a second site: main's activation is the same one
    // throughout, its entry's ip (where it resumes) moves with each call
    const a = new Assembler("two").label("main")
      .emit(() => I.createReg(Code.Push_r64, R.RBP))
      .emit(() => I.createRegReg(Code.Mov_rm64_r64, R.RBP, R.RSP))
      .call({ label: "f" }).label("back1")
      .emit(() => I.create(Code.Nopd))
      .call({ label: "f" }).label("back2")
      .emit(() => I.create(Code.Leaveq)).emit(() => I.create(Code.Retnq))
      .label("f").emit(() => I.create(Code.Nopd)).emit(() => I.create(Code.Retnq));
    const img = a.assemble(TEXT);
    const m = newMachine([{ name: "main", start: TEXT, end: img.labels.get("f")!, kind: "kernel" }, { name: "f", start: img.labels.get("f")!, end: img.end, kind: "kernel" }]);
    m.load(TEXT, img.bytes);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    const seen: TruthEntry[][] = [];
    m.addHook(img.labels.get("f")! + 1n, (mm) => { seen.push(mm.truth()); }); // f's ret, main one frame out
    expect(m.run()).toMatchObject({ kind: "completed" });
    const mainAt = seen.map((t) => t[1]!).map((e) => [e.ip, e.symbol]);
    const back = (l: string) => img.labels.get(l)!;
    expect(mainAt).toEqual([[back("back1"), `main+0x${(back("back1") - TEXT).toString(16)}`], [back("back2"), `main+0x${(back("back2") - TEXT).toString(16)}`]]);
    // returnAddresses() at the same depth, from the other site: not the first call's chain
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    const chains: bigint[][] = [];
    m.addHook(img.labels.get("f")! + 1n, (mm) => { chains.push([...mm.returnAddresses()]); });
    expect(m.run()).toMatchObject({ kind: "completed" });
    expect(chains).toEqual([[back("back1"), STOP], [back("back2"), STOP]]);
  });

  test("returnAddresses() sees an outer frame's return address change under an unchanged innermost one", () => {
    // main calls f from two sites and f calls g: at g, the depth and g's own return address are
    // the same both times, f's is not
    const a = new Assembler("outer").label("main")
      .emit(() => I.createReg(Code.Push_r64, R.RBP))
      .call({ label: "f" }).label("back1")
      .emit(() => I.create(Code.Nopd))
      .call({ label: "f" }).label("back2")
      .emit(() => I.createReg(Code.Pop_r64, R.RBP)).emit(() => I.create(Code.Retnq))
      .label("f").call({ label: "g" }).label("inF").emit(() => I.create(Code.Retnq))
      .label("g").emit(() => I.create(Code.Nopd)).emit(() => I.create(Code.Retnq));
    const img = a.assemble(TEXT);
    const at = (l: string) => img.labels.get(l)!;
    const m = newMachine([{ name: "main", start: TEXT, end: at("f"), kind: "kernel" }, { name: "f", start: at("f"), end: at("g"), kind: "kernel" }, { name: "g", start: at("g"), end: img.end, kind: "kernel" }]);
    m.load(TEXT, img.bytes);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    const chains: bigint[][] = [];
    m.addHook(at("g") + 1n, (mm) => { chains.push([...mm.returnAddresses()]); });
    expect(m.run()).toMatchObject({ kind: "completed" });
    expect(chains).toEqual([[at("inF"), at("back1"), STOP], [at("inF"), at("back2"), STOP]]);
  });

  test("an activation kept for the truth is the same only while every column of its slot is", () => {
    const sh = new ShadowStack();
    sh.pushInterrupt(-0x7f000000, -0x7effff00, -0x100000, 0x11, 0x22, 236, 0x33, 0x44);
    const r = sh.record(0);
    expect(sh.same(0, r)).toBe(true);
    const columns = ["kind", "vector", "entry", "ret", "slot", "site", "rlo", "rhi", "blo", "bhi"] as const;
    for (const c of columns) {
      const col = sh[c];
      const was = col[0]!;
      col[0] = was + 1;
      expect(sh.same(0, r), c).toBe(false);
      col[0] = was;
    }
  });

  test("observers see every call, return, interrupt and iret in order", () => {
    const { m, img } = setup();
    const events: string[] = [];
    const name = (a: Activation) => m.symbols.symbolize(BigInt.asUintN(64, BigInt(a.entry)))!;
    m.observer = {
      onCall: (a) => events.push(`call ${name(a)}`), onReturn: (a) => events.push(`ret ${name(a)}`),
      onInterrupt: (a) => events.push(`irq ${a.vector}`), onIret: (a) => events.push(`iret ${a.vector}`),
    };
    m.addHook(img.labels.get("leaf")!, (mm) => mm.raise(IRQ));
    m.run();
    // the hook at leaf's entry runs after `call leaf`, before leaf's first instruction
    expect(events).toEqual(["call mid", "call leaf", "irq 32", "iret 32", "ret leaf", "ret mid", "ret main"]);
  });

  test("an observer hears of a return once it has happened: the activation gone, rip at its return address", () => {
    const { m } = setup();
    const seen: [number, bigint, bigint][] = [];
    m.observer = { onReturn: (a) => { seen.push([m.depth, m.rip, BigInt.asUintN(64, BigInt(a.ret))]); } };
    m.run();
    expect(seen.length).toBe(3);
    for (const [, rip, ret] of seen) expect(rip).toBe(ret);
    expect(seen.map(([d]) => d)).toEqual([2, 1, 0]); // leaf's, mid's, main's return
  });
});

describe("address hooks", () => {
  test("a hook fires each time rip reaches its address, before the instruction runs", () => {
    const { m, img } = setup();
    const seen: bigint[] = [];
    const leaf = img.labels.get("leaf")!;
    m.addHook(leaf, (mm) => { seen.push(mm.reg("rbp")); });
    m.run();
    expect(seen).toHaveLength(1);
    expect(seen[0], "push rbp has not run yet: rbp is mid's frame").toBe(STACK_TOP - 8n * 4n);
  });

  test("'stop' pauses the run; resuming continues at the same instruction without firing again", () => {
    const { m, img } = setup();
    let fired = 0;
    m.addHook(img.labels.get("leaf")!, () => { fired++; return "stop"; });
    const r = m.run();
    expect(r).toMatchObject({ kind: "stopped", rip: img.labels.get("leaf")!, symbol: "leaf" });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 41n });
    expect(fired).toBe(1);
  });

  test("an interrupt a hook raises is taken at that boundary and does not make the hook fire twice", () => {
    const { m, img } = setup();
    const leaf = img.labels.get("leaf")!;
    let fired = 0, handlerSawRip = 0n;
    m.addHook(leaf, (mm) => { fired++; mm.raise(IRQ); });
    m.addHook(HANDLER, (mm) => { handlerSawRip = mm.peek64(mm.reg("rsp"))!; }); // the frame's saved RIP
    expect(m.run()).toMatchObject({ kind: "completed", rax: 41n });
    expect(fired).toBe(1);
    expect(handlerSawRip, "taken before leaf's first instruction").toBe(leaf);
  });

  test("a hook added after the code was decoded still fires; clearHooks removes it", () => {
    const { m, img } = setup();
    m.run(); // decodes everything
    let fired = 0;
    m.addHook(img.labels.get("mid")!, () => { fired++; });
    m.call(img.labels.get("main")!, { args: [1n], rsp: STACK_TOP, stopAt: STOP });
    m.run();
    m.clearHooks(img.labels.get("mid")!);
    m.call(img.labels.get("main")!, { args: [1n], rsp: STACK_TOP, stopAt: STOP });
    m.run();
    expect(fired).toBe(1);
  });
});

describe("snapshots", () => {
  test("restore brings back registers, memory, flags, steps and the shadow stack; later writes do not leak", () => {
    const { m, img } = setup();
    m.addHook(img.labels.get("leaf")!, () => "stop");
    m.run();
    const snap = m.snapshot();
    const before = { regs: m.regs(), rip: m.rip, rflags: m.rflags, steps: m.steps, truth: m.truth(), data: m.peek64(DATA) };
    expect(m.run()).toMatchObject({ kind: "completed", rax: 41n });
    expect(m.peek64(DATA)).toBe(41n);
    m.restore(snap);
    expect({ regs: m.regs(), rip: m.rip, rflags: m.rflags, steps: m.steps, truth: m.truth(), data: m.peek64(DATA) }).toEqual(before);
    expect(m.run()).toMatchObject({ kind: "completed", rax: 41n });
    m.restore(snap);
    expect(m.peek64(DATA), "the snapshot's pages stayed untouched").toBe(0n);
  });

  test("forking at every instruction boundary with an IRQ changes no result", () => {
    const { m } = setup();
    const base = m.snapshot();
    const straight = m.run();
    expect(straight).toMatchObject({ kind: "completed", rax: 41n });
    const total = straight.kind === "completed" ? straight.steps : 0;
    const depths: number[] = [];
    m.addHook(HANDLER, (mm) => { depths.push(mm.depth); });
    for (let k = 0; k <= total; k++) {
      m.restore(base);
      expect(m.runUntil(k).kind).toBe(k === total ? "completed" : "paused");
      if (k === total) break;
      const fork = m.snapshot();
      m.raise(IRQ);
      expect(m.run(), `IRQ at step ${k}`).toMatchObject({ kind: "completed", rax: 41n, steps: total + 2 });
      m.restore(fork); // the same fork replays identically without the interrupt
      expect(m.run()).toMatchObject({ kind: "completed", rax: 41n, steps: total });
    }
    expect(depths).toHaveLength(total);
    expect(Math.max(...depths), "deepest: main, mid, leaf and the interrupt").toBe(4);
  });
});
