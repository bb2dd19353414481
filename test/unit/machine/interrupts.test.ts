// Interrupt delivery as on hardware (SDM Vol. 3A §6.14; kernel-model.md §6.1): the exact memory
// image of the frame, alignment, the IST switch, iretq, masking, the STI shadow, NMI blocking.
import { describe, expect, test } from "vitest";
import { FIXED, IF, KERNEL_CS, KERNEL_DS, USER_CS, USER_DS, type Machine } from "../../../harness/machine/index.ts";
import { bytes, HANDLER, IST_TOP, newMachine, STACK_LOW, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";

const IRQ = 0x20;
const NMI = 2;
const NMI_HANDLER = HANDLER + 0x1000n;
const IRETQ = "48 cf";

/** Code at TEXT, `iretq` handlers for IRQ 0x20/0x30 and the NMI (IST 1); IF set; called. */
function setup(code: string, opts: { irqHandler?: string; nmiHandler?: string; rsp?: bigint } = {}): Machine {
  const m = newMachine();
  m.load(TEXT, bytes(code));
  m.load(HANDLER, bytes(opts.irqHandler ?? IRETQ));
  m.load(NMI_HANDLER, bytes(opts.nmiHandler ?? IRETQ));
  m.setGate(IRQ, HANDLER);
  m.setGate(0x30, HANDLER);
  m.setGate(NMI, NMI_HANDLER, 1);
  m.setIst(1, IST_TOP);
  m.rflags = IF | FIXED;
  m.call(TEXT, { rsp: opts.rsp ?? STACK_TOP, stopAt: STOP });
  return m;
}

function words(m: Machine, at: bigint, n: number): bigint[] {
  return Array.from({ length: n }, (_, i) => m.peek64(at + BigInt(8 * i))!);
}

/** Record (rsp, the five frame words, rflags, truth) every time `addr` is reached. */
function record(m: Machine, addr: bigint) {
  const seen: { rsp: bigint; frame: bigint[]; rflags: number; truth: ReturnType<Machine["truth"]> }[] = [];
  m.addHook(addr, (mm) => {
    seen.push({ rsp: mm.reg("rsp"), frame: words(mm, mm.reg("rsp"), 5), rflags: mm.rflags, truth: mm.truth() });
  });
  return seen;
}

describe("interrupt frame", () => {
  test("an IRQ aligns rsp down to 16 and pushes SS, RSP, RFLAGS, CS, RIP in that order", () => {
    const m = setup("90 90 c3"); // nop; nop; ret — rsp = STACK_TOP - 8 inside (8 mod 16)
    const seen = record(m, HANDLER);
    expect(m.runUntil(1).kind).toBe("paused");
    m.raise(IRQ);
    expect(m.run().kind).toBe("completed");
    expect(seen).toHaveLength(1);
    const interruptedRsp = STACK_TOP - 8n;
    const aligned = STACK_TOP - 16n;
    expect(seen[0]!.rsp).toBe(aligned - 40n);
    expect(seen[0]!.frame).toEqual([TEXT + 1n, KERNEL_CS, BigInt(IF | FIXED), interruptedRsp, KERNEL_DS]);
    expect(seen[0]!.rflags & IF, "the gate clears IF").toBe(0);
  });

  test("an already aligned rsp gets no padding", () => {
    const m = setup("6a 00 90 58 c3"); // push 0; nop; pop rax; ret — rsp = STACK_TOP - 16 after the push
    const seen = record(m, HANDLER);
    m.runUntil(1);
    m.raise(IRQ);
    expect(m.run().kind).toBe("completed");
    expect(seen[0]!.rsp).toBe(STACK_TOP - 16n - 40n);
    expect(seen[0]!.frame[3]).toBe(STACK_TOP - 16n);
  });

  test("the frame is exactly those five words in memory, byte for byte", () => {
    const m = setup("90 90 c3");
    let image: Uint8Array | undefined;
    m.addHook(HANDLER, (mm) => {
      const rsp = mm.reg("rsp");
      image = Uint8Array.from({ length: 40 }, (_, i) => Number((mm.peek64(rsp + BigInt(i & ~7))! >> BigInt(8 * (i & 7))) & 0xffn));
    });
    m.runUntil(1);
    m.raise(IRQ);
    m.run();
    const expected = new Uint8Array(40);
    const dv = new DataView(expected.buffer);
    [TEXT + 1n, KERNEL_CS, BigInt(IF | FIXED), STACK_TOP - 8n, KERNEL_DS].forEach((w, i) => dv.setBigUint64(8 * i, w, true));
    expect(image).toEqual(expected);
  });

  test("the NMI switches to its IST stack; the frame records the interrupted task-stack rsp", () => {
    const m = setup("90 90 c3");
    const seen = record(m, NMI_HANDLER);
    m.runUntil(1);
    m.raise(NMI);
    expect(m.run().kind).toBe("completed");
    expect(seen[0]!.rsp).toBe(IST_TOP - 40n);
    expect(seen[0]!.frame).toEqual([TEXT + 1n, KERNEL_CS, BigInt(IF | FIXED), STACK_TOP - 8n, KERNEL_DS]);
  });

  test("from user mode the frame goes on TSS.RSP0 and records the user SS:RSP", () => {
    const m = setup("90 90 c3");
    m.setRsp0(IST_TOP);
    m.cs = USER_CS;
    m.ss = USER_DS;
    const seen = record(m, HANDLER);
    m.runUntil(1);
    m.raise(IRQ);
    m.run();
    expect(seen[0]!.rsp).toBe(IST_TOP - 40n);
    expect(seen[0]!.frame).toEqual([TEXT + 1n, USER_CS, BigInt(IF | FIXED), STACK_TOP - 8n, USER_DS]);
  });
});

describe("iretq", () => {
  test("restores rip, rsp, rflags, cs and ss exactly", () => {
    const m = setup("90 90 c3", { irqHandler: `48 c7 c0 07 00 00 00 ${IRETQ}` }); // handler: mov rax,7; iretq
    m.runUntil(1);
    const before = { rsp: m.reg("rsp"), rflags: m.rflags, cs: m.cs, ss: m.ss };
    m.raise(IRQ);
    const r = m.step(); // delivery, then the handler's first instruction
    expect(r.kind).toBe("paused");
    expect(m.rip).toBe(HANDLER + 7n);
    expect(m.step().kind).toBe("paused"); // iretq
    expect({ rip: m.rip, rsp: m.reg("rsp"), rflags: m.rflags, cs: m.cs, ss: m.ss }).toEqual({ rip: TEXT + 1n, ...before });
    expect(m.reg("rax")).toBe(7n);
    expect(m.run().kind).toBe("completed");
  });

  test("a handler that changes the saved RIP is a control-flow failure naming both addresses", () => {
    const m = setup("90 90 c3", { irqHandler: `48 83 04 24 01 ${IRETQ}` }); // add qword [rsp],1; iretq
    m.runUntil(1);
    m.raise(IRQ);
    const r = m.run();
    expect(r.kind).toBe("control-flow");
    if (r.kind !== "control-flow") return;
    expect(r.reason).toBe("iret-mismatch");
    expect(r.expected).toBe(TEXT + 1n);
    expect(r.actual).toBe(TEXT + 2n);
    expect(r.rip).toBe(HANDLER + 5n);
    expect(r.message).toContain("ffffffff81000002");
    expect(r.message).toContain("ffffffff81000001 <test_code+0x1>");
  });

  test("a ret inside a handler with no call is a control-flow failure", () => {
    const m = setup("90 90 c3", { irqHandler: "c3" });
    m.runUntil(1);
    m.raise(IRQ);
    const r = m.run();
    expect(r.kind).toBe("control-flow");
    if (r.kind === "control-flow") expect(r.message).toContain("expected an iretq");
  });
});

describe("masking and priority", () => {
  test("an IRQ raised while IF is clear stays pending and is taken one instruction after sti", () => {
    // cli; nop; nop; sti; nop; nop; ret
    const m = setup("fa 90 90 fb 90 90 c3");
    const seen = record(m, HANDLER);
    m.runUntil(1);
    m.raise(IRQ);
    expect(m.runUntil(3).kind).toBe("paused");
    expect(seen).toHaveLength(0);
    expect(m.pending.irqs).toEqual([IRQ]);
    expect(m.run().kind).toBe("completed");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.frame[0], "delivered after the instruction in the STI shadow").toBe(TEXT + 5n);
  });

  test("an NMI is taken while IF is clear", () => {
    const m = setup("fa 90 90 fb c3");
    const seen = record(m, NMI_HANDLER);
    m.runUntil(2);
    m.raise(NMI);
    expect(m.run().kind).toBe("completed");
    expect(seen[0]!.frame[0]).toBe(TEXT + 2n);
    expect(BigInt(IF) & seen[0]!.frame[2]!).toBe(0n);
  });

  test("a second NMI waits until the first one's iretq", () => {
    const m = setup("90 90 c3", { nmiHandler: `90 ${IRETQ}` });
    const seen = record(m, NMI_HANDLER);
    m.addHook(NMI_HANDLER + 1n, (mm) => { if (seen.length === 1) mm.raise(NMI); });
    m.runUntil(1);
    m.raise(NMI);
    expect(m.run().kind).toBe("completed");
    expect(seen).toHaveLength(2);
    expect(seen[1]!.rsp, "not nested: the first frame was popped").toBe(IST_TOP - 40n);
    expect(seen[1]!.frame[0]).toBe(TEXT + 1n);
  });

  test("an NMI nests over an IRQ handler, on its own stack", () => {
    const m = setup("90 90 c3", { irqHandler: `90 90 ${IRETQ}` });
    const seen = record(m, NMI_HANDLER);
    let raised = false;
    m.addHook(HANDLER + 1n, (mm) => { if (!raised) mm.raise(NMI); raised = true; });
    m.runUntil(1);
    m.raise(IRQ);
    expect(m.run().kind).toBe("completed");
    expect(seen[0]!.frame[0]).toBe(HANDLER + 1n);
    const kinds = seen[0]!.truth.map((t) => (t.kind === "interrupt" ? t.name : t.function));
    expect(kinds).toEqual(["nmi_handler", "NMI", "irq_handler", "IRQ 0x20", "test_code"]);
  });

  test("the higher vector is delivered first; the lower waits for IF", () => {
    const m = setup("90 90 c3");
    const seen = record(m, HANDLER);
    m.runUntil(1);
    m.raise(IRQ);
    m.raise(0x30);
    m.run();
    expect(seen).toHaveLength(2);
    expect(seen.map((s) => s.truth[1]!.kind === "interrupt" && s.truth[1]!.vector)).toEqual([0x30, IRQ]);
  });
});

describe("delivery failures and exceptions", () => {
  test("an interrupt whose frame lands in a guard page is a double fault", () => {
    const m = setup("90 90 c3", { rsp: STACK_LOW + 16n });
    m.runUntil(1);
    m.raise(IRQ);
    const r = m.run();
    expect(r.kind).toBe("fault");
    if (r.kind !== "fault") return;
    expect(r.regionKind).toBe("guard");
    expect(r.region).toBe("task stack guard low");
    expect(r.duringInterrupt).toBe(IRQ);
    expect(r.rip).toBe(TEXT + 1n);
    expect(r.message).toMatch(/^double fault: delivering IRQ 0x20 at ffffffff81000001 <test_code\+0x1>/);
  });

  test("an IRQ with no IDT gate ends the run with an exception result", () => {
    const m = setup("90 90 c3");
    m.runUntil(1);
    m.raise(0x41);
    const r = m.run();
    expect(r.kind).toBe("exception");
    if (r.kind === "exception") expect(r.message).toBe("IRQ 0x41 at ffffffff81000001 <test_code+0x1> has no IDT gate");
  });

  test("int3 is a trap through vector 3: the saved RIP is the next instruction", () => {
    const m = setup("90 cc 90 c3");
    m.setGate(3, HANDLER);
    const seen = record(m, HANDLER);
    expect(m.run().kind).toBe("completed");
    expect(seen[0]!.frame[0]).toBe(TEXT + 2n);
  });

  test("int3 and ud2 with no gate end the run at the instruction", () => {
    for (const [code, vector, at] of [["90 cc c3", 3, 1n], ["90 90 0f 0b c3", 6, 2n]] as const) {
      const m = setup(code);
      const r = m.run();
      expect(r.kind).toBe("exception");
      if (r.kind === "exception") {
        expect(r.vector).toBe(vector);
        expect(r.rip).toBe(TEXT + at);
      }
    }
  });
});
