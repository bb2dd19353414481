// Regressions from the review of the machine: each test reproduces a case that once ended in an
// exception, a silently wrong result or a stale state.
import { describe, expect, test } from "vitest";
import { FIXED, IF, Machine } from "../../../harness/machine/index.ts";
import { Memory } from "../../../harness/machine/memory.ts";
import { bytes, DATA, HANDLER, IST_TOP, newMachine, runSnippet, STACK_TOP, STOP, TEXT } from "../../helpers/layout.ts";

const NMI_HANDLER = HANDLER + 0x1000n;

describe("machine review regressions", () => {
  test("an NMI on its IST stack while rsp is not canonical ends in a typed result, and the truth shows the raw rsp", () => {
    const m = newMachine();
    m.load(TEXT, bytes("48 89 c4 90 90 c3")); // mov rsp,rax; nop; nop; ret
    m.load(NMI_HANDLER, bytes("90 48 cf"));
    m.setGate(2, NMI_HANDLER, 1);
    m.setIst(1, IST_TOP);
    m.setReg("rax", 0x8000000000000000n);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    let marker: unknown;
    m.addHook(NMI_HANDLER, (mm) => { marker = mm.truth()[1]; });
    m.runUntil(1);
    m.raise(2);
    const r = m.run();
    expect(marker).toMatchObject({ kind: "interrupt", name: "NMI", rsp: 0x8000000000000000n });
    expect(r).toMatchObject({ kind: "fault", reason: "non-canonical", address: 0x8000000000000000n, rip: TEXT + 5n });
  });

  test("call() starts without the previous run's STI shadow", () => {
    const m = newMachine();
    m.load(TEXT, bytes("fb c3"));
    m.load(TEXT + 0x10n, bytes("90 90 c3"));
    m.load(HANDLER, bytes("48 cf"));
    m.setGate(0x20, HANDLER);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run().kind).toBe("completed"); // sti with IF clear: a shadow at step 1
    m.call(TEXT + 0x10n, { rsp: STACK_TOP, stopAt: STOP });
    let saved = 0n;
    m.addHook(HANDLER, (mm) => { saved = mm.peek64(mm.reg("rsp"))!; });
    m.runUntil(1);
    m.raise(0x20);
    m.run();
    expect(saved).toBe(TEXT + 0x11n);
  });

  test("call() starts without the NMI blocking of a run that stopped inside an NMI handler", () => {
    const m = newMachine();
    m.load(TEXT, bytes("90 90 c3"));
    m.load(NMI_HANDLER, bytes("90 48 cf"));
    m.setGate(2, NMI_HANDLER, 1);
    m.setIst(1, IST_TOP);
    let entered = 0;
    m.addHook(NMI_HANDLER, () => { entered++; return entered === 1 ? "stop" : undefined; });
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.runUntil(1);
    m.raise(2);
    expect(m.run().kind).toBe("stopped");
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.runUntil(1);
    m.raise(2);
    expect(m.run().kind).toBe("completed");
    expect(entered).toBe(2);
  });

  test("call and jmp through a memory operand", () => {
    // mov qword [rdi],TEXT+0x20 via rax; call qword ptr [rdi]; jmp qword ptr [rdi+8] ... target code sets rax
    const setup = (mm: ReturnType<typeof newMachine>) => {
      mm.load(TEXT + 0x20n, bytes("b8 07 00 00 00 c3")); // mov eax,7; ret
      const le = new Uint8Array(16);
      new DataView(le.buffer).setBigUint64(0, TEXT + 0x20n, true);
      new DataView(le.buffer).setBigUint64(8, TEXT + 0x30n, true);
      mm.load(DATA, le);
      mm.load(TEXT + 0x30n, bytes("48 83 c0 01 c3")); // add rax,1; ret (returns from the snippet)
    };
    const { result } = runSnippet("ff 17 ff 67 08", { rdi: DATA }, setup);
    expect(result).toMatchObject({ kind: "completed", rax: 8n });
  });

  test("restoring a snapshot taken before a load() runs the code the snapshot holds", () => {
    const m = newMachine();
    m.load(TEXT, bytes("48 c7 c0 01 00 00 00 c3"));
    const snap = m.snapshot();
    m.load(TEXT, bytes("48 c7 c0 02 00 00 00 c3"));
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ rax: 2n });
    m.restore(snap);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ rax: 1n });
  });

  test("a writable and executable region is refused (W^X)", () => {
    expect(() => newMachine().map({ name: "jit scratch", kind: "text", start: 0xffffffffc0000000n, size: 0x1000, perms: "rwx" }))
      .toThrow("region 'jit scratch': perms 'rwx' are writable and executable; kernel text is read-only (W^X)");
  });

  test("a faulting pop into memory leaves rsp as it was", () => {
    const { m, result } = runSnippet("6a 05 8f 07", { rdi: 0xffff888000100000n });
    expect(result.kind).toBe("fault");
    expect(m.reg("rsp")).toBe(STACK_TOP - 16n);
  });

  test("a write to a non-canonical address is reported as a write", () => {
    const { result } = runSnippet("48 89 07", { rdi: 0x0000800000000000n });
    expect(result).toMatchObject({ kind: "fault", reason: "non-canonical", access: "write" });
  });

  test("delivery clears NT as well as IF and TF", () => {
    const m = newMachine();
    m.load(TEXT, bytes("68 02 42 00 00 9d 90 c3")); // push 0x4202 (NT|IF|fixed); popfq; nop; ret
    m.load(HANDLER, bytes("9c 58 48 cf"));          // pushfq; pop rax; iretq
    m.setGate(0x20, HANDLER);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.runUntil(2);
    m.raise(0x20);
    m.run();
    expect(m.reg("rax")).toBe(BigInt(FIXED));
    expect(m.rflags & (IF | (1 << 14))).toBe(IF | (1 << 14)); // iretq restored NT and IF
  });

  test("runUntil a step already passed is a usage error", () => {
    const m = newMachine();
    m.load(TEXT, bytes("90 90 90 90 c3"));
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.runUntil(3);
    expect(() => m.runUntil(2)).toThrow("runUntil(2): the run is already at step 3");
  });

  test("an executable region mapped through machine.memory still runs", () => {
    const m = newMachine();
    m.memory.map({ name: "late text", kind: "text", start: 0xffffffffc0000000n, size: 0x1000, perms: "r-x" });
    m.load(0xffffffffc0000000n, bytes("b8 05 00 00 00 c3"));
    m.call(0xffffffffc0000000n, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 5n });
  });
});

describe("the stop address", () => {
  test("may be real code (entry text): reaching it completes the run instead of executing it", () => {
    const m = newMachine();
    m.load(TEXT, bytes("b8 05 00 00 00 c3"));        // the function: mov eax,5; ret
    m.load(TEXT + 0x100n, bytes("0f 0b"));           // "entry code" after the call: ud2 if it ever ran
    m.call(TEXT, { rsp: STACK_TOP, stopAt: TEXT + 0x100n });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 5n });
    m.call(TEXT + 0x100n, { rsp: STACK_TOP, stopAt: STOP }); // once it is no longer the stop, it runs
    expect(m.run().kind).toBe("exception");
  });
});

describe("hooks and the machine's fast paths", () => {
  test("hooks at an instruction the machine does not model run first: one may stop the run, or move rip past it", () => {
    const code = "90 0f a2 b8 07 00 00 00 c3"; // nop; cpuid; mov eax,7; ret
    const stopped = newMachine();
    stopped.load(TEXT, bytes(code));
    stopped.addHook(TEXT + 1n, () => "stop");
    stopped.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(stopped.run()).toMatchObject({ kind: "stopped", rip: TEXT + 1n });
    const skipped = newMachine();
    skipped.load(TEXT, bytes(code));
    skipped.addHook(TEXT + 1n, (mm) => { mm.rip = TEXT + 3n; });
    skipped.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(skipped.run()).toMatchObject({ kind: "completed", rax: 7n });
    const plain = newMachine();
    plain.load(TEXT, bytes(code));
    plain.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(plain.run()).toMatchObject({ kind: "unsupported", rip: TEXT + 1n });
  });

  test("a hook at the stop address never runs (arriving completes the run), and never reaches another machine", () => {
    const end = TEXT + 0x100n;
    let fired = 0;
    const m = newMachine();
    m.load(TEXT, bytes("b8 05 00 00 00 c3"));
    m.load(end, bytes("90"));
    m.call(TEXT, { rsp: STACK_TOP, stopAt: end });
    m.addHook(end, () => { fired++; return "stop"; });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 5n });
    const other = newMachine();
    other.load(TEXT, bytes("b8 06 00 00 00 c3"));
    other.load(end, bytes("90"));
    other.call(TEXT, { rsp: STACK_TOP, stopAt: end });
    expect(other.run()).toMatchObject({ kind: "completed", rax: 6n });
    expect(fired).toBe(0);
  });

  test("machines that load the same code share its decoded instructions, never each other's hooks", () => {
    const code = bytes("b8 05 00 00 00 90 c3"); // mov eax,5; nop; ret
    let fired = 0;
    const a = newMachine();
    a.load(TEXT, code);
    const b = newMachine();
    b.load(TEXT, code);
    a.addHook(TEXT + 5n, () => { fired++; });
    const c = newMachine(); // loaded after the hook was added elsewhere
    c.load(TEXT, code);
    for (const m of [b, c]) {
      m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
      expect(m.run()).toMatchObject({ kind: "completed", rax: 5n });
    }
    expect(fired).toBe(0);
    a.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    a.run();
    expect(fired).toBe(1);
    a.clearHooks(TEXT + 5n);
    a.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    a.run();
    expect(fired).toBe(1);
  });

  test("an instruction decoded when first reached (a later load cut its block short) runs with its hooks the first time", () => {
    let fired = 0;
    const m = newMachine();
    m.load(TEXT, bytes("b8 05 00 00 00 90 c3")); // mov eax,5; nop; ret
    m.load(TEXT + 7n, bytes("90")); // drops the cached instructions of the 15 bytes before it
    m.addHook(TEXT + 5n, () => { fired++; });
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 5n });
    expect(fired).toBe(1);
  });

  test("hooks added or removed by a hook change the next arrival, not this one; a remover after clearHooks() removes nothing else", () => {
    const m = newMachine();
    m.load(TEXT, bytes("b8 05 00 00 00 90 c3"));
    const at = TEXT + 5n;
    const log: string[] = [];
    const removeSelf = m.addHook(at, () => { log.push("self"); removeSelf(); });
    m.addHook(at, () => { log.push("second"); });
    m.addHook(at, (mm) => { log.push("adder"); if (log.length < 4) mm.addHook(at, () => { log.push("added"); }); });
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.run();
    expect(log).toEqual(["self", "second", "adder"]);
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.run();
    expect(log.slice(3)).toEqual(["second", "adder", "added"]);
    // a remover called after clearHooks() must not take hooks added since
    const stale = m.addHook(at, () => {});
    m.clearHooks(at);
    let later = 0;
    m.addHook(at, () => { later++; });
    stale();
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    m.run();
    expect(later).toBe(1);
  });

  test("after a hook moves rip away, the next arrival at its address fires it again", () => {
    const m = newMachine();
    m.load(TEXT, bytes("90 c3")); // A: nop; ret
    m.load(TEXT + 0x10n, bytes("eb ee")); // jmp A
    let fired = 0;
    m.addHook(TEXT, (mm) => { if (++fired === 1) mm.rip = TEXT + 0x10n; });
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run().kind).toBe("completed");
    expect(fired).toBe(2);
  });

  test("hooks removed during an interrupt taken at their address: a hook added there later fires at the next arrival", () => {
    for (const withIrq of [true, false]) {
      const m = newMachine();
      m.load(TEXT, bytes("b9 03 00 00 00 90 ff c9 75 fb c3")); // mov ecx,3; A: nop; dec ecx; jnz A; ret
      m.load(HANDLER, bytes("48 cf"));
      m.setGate(0x20, HANDLER);
      const A = TEXT + 5n;
      const log: string[] = [];
      const remove = m.addHook(A, (mm) => { log.push("h1"); if (withIrq) mm.raise(0x20); remove(); });
      m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
      m.rflags = 0x202;
      m.runUntil(withIrq ? 4 : 3); // paused before jnz (the iretq counts a step)
      m.addHook(A, () => { log.push("h2"); });
      expect(m.run().kind).toBe("completed");
      expect(log, `with an interrupt: ${withIrq}`).toEqual(["h1", "h2", "h2"]);
    }
  });

  test("restores back and forth between snapshots of different code run the code each one holds", () => {
    // a: code 1; b: code 2 loaded after a; then back to a, code 3 loaded, and to b again: every
    // restore whose region changed since its snapshot decodes again, however the bytes changed
    const m = newMachine();
    const mov = (v: number) => bytes(`48 c7 c0 0${v} 00 00 00 c3`);
    const rax = () => { m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP }); return m.run(); };
    m.load(TEXT, mov(1));
    const a = m.snapshot();
    m.load(TEXT, mov(2));
    const b = m.snapshot();
    expect(rax()).toMatchObject({ rax: 2n });
    m.restore(a);
    expect(rax()).toMatchObject({ rax: 1n });
    m.restore(b); // (the restore to a changed the bytes after b was taken)
    expect(rax()).toMatchObject({ rax: 2n });
    m.restore(a);
    m.load(TEXT, mov(3));
    expect(rax()).toMatchObject({ rax: 3n });
    m.restore(b);
    expect(rax()).toMatchObject({ rax: 2n });
    m.restore(a);
    expect(rax()).toMatchObject({ rax: 1n });
  });

  test("an instruction at the end of a code region that spans into the next one runs the bytes there now, after loads and restores", () => {
    // (from a review: a region's cache was kept while the first bytes of the region above changed)
    const m = newMachine();
    const Q = 0xffffffffa0000000n, R = Q + 0x1000n;
    m.map({ name: "q", kind: "text", start: Q, size: 0x1000, perms: "r-x" });
    m.map({ name: "r", kind: "text", start: R, size: 0x1000, perms: "r-x" });
    const at = R - 2n; // mov eax, imm32: its opcode and one byte in q, three bytes and a ret in r
    m.load(at, bytes("b8 01"));
    const upper = (v: number) => bytes(`0${v} 00 00 c3`);
    const rax = () => { m.call(at, { rsp: STACK_TOP, stopAt: STOP }); return m.run(); };
    m.load(R, upper(1));
    const s1 = m.snapshot();
    expect(rax()).toMatchObject({ rax: 0x101n });
    m.load(R, upper(2)); // a load into r alone
    expect(rax()).toMatchObject({ rax: 0x201n });
    const s2 = m.snapshot();
    m.restore(s1);
    expect(rax()).toMatchObject({ rax: 0x101n });
    m.restore(s2);
    expect(rax()).toMatchObject({ rax: 0x201n });
  });

  test.each(["machine", "memory"] as const)("an instruction cut short by the end of executable memory is decoded again once the next region is mapped (through the %s), and a restore to before unmaps it", (via) => {
    // (from a review: its decode as no instruction was kept after the region above came)
    const m = newMachine();
    const Q = 0xffffffffa0000000n, R = Q + 0x1000n;
    m.map({ name: "q", kind: "text", start: Q, size: 0x1000, perms: "r-x" });
    m.load(R - 2n, bytes("b8 01")); // mov eax, imm32 with two of its five bytes
    const run = () => { m.call(R - 2n, { rsp: STACK_TOP, stopAt: STOP }); return m.run(); };
    expect(run()).toMatchObject({ kind: "unsupported" });
    const s = m.snapshot();
    const r = { name: "r", kind: "text" as const, start: R, size: 0x1000, perms: "r-x" };
    if (via === "machine") m.map(r); else m.memory.map(r);
    // mov eax, 1 (its last three bytes zeros from r), then add [rax], al: a write to address 1
    expect(run()).toMatchObject({ kind: "fault", address: 1n });
    m.restore(s);
    expect(run()).toMatchObject({ kind: "unsupported" });
  });

  test("a load of whole pages copies them: neither the caller's bytes nor the memory changes the other afterwards", () => {
    const m = newMachine();
    const src = Buffer.alloc(0x2000, 7); // (a Buffer's slice() is a view: the load must copy)
    m.load(STACK_TOP - 0x2000n, src);
    src[0] = 1;
    expect(m.peek64(STACK_TOP - 0x2000n)).toBe(0x0707070707070707n);
    m.load(STACK_TOP - 0x1000n, Uint8Array.of(9));
    expect(src[0x1000]).toBe(7);
  });

  test("code loaded into a region mapped through machine.memory is decoded again after a restore() to before the load", () => {
    const m = newMachine();
    const R = 0xffffffffa0000000n;
    m.memory.map({ name: "jit", kind: "text", start: R, size: 0x1000, perms: "r-x" });
    m.load(R, bytes("b8 01 00 00 00 c3")); // mov eax,1; ret
    const s = m.snapshot();
    m.load(R, bytes("b8 02 00 00 00 c3")); // mov eax,2; ret
    m.call(R, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 2n });
    m.restore(s);
    m.call(R, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ kind: "completed", rax: 1n });
  });

  test("a memory watcher that moves rip during an inlined load, store, push or pop is obeyed", () => {
    // each form at TEXT, then `mov eax,1; ret`, which must not run; the watcher sends rip to
    // TEXT+0x20, where the code returns 2 (popping what a push left first)
    const cases = [
      ["48 89 07", "mov [rdi],rax", "b8 02 00 00 00 c3", "write", DATA],
      ["48 8b 07", "mov rax,[rdi]", "b8 02 00 00 00 c3", "read", DATA],
      ["57", "push rdi", "58 b8 02 00 00 00 c3", "write", STACK_TOP - 0x100n],
      ["57 58", "push rdi; pop rax", "b8 02 00 00 00 c3", "read", STACK_TOP - 0x100n],
    ] as const;
    for (const [form, what, target, access, watched] of cases) {
      const m = newMachine();
      m.load(TEXT, bytes(`${form} b8 01 00 00 00 c3`));
      m.load(TEXT + 0x20n, bytes(target));
      m.setReg("rdi", DATA);
      m.call(TEXT, { rsp: STACK_TOP - 0x40n, stopAt: STOP });
      const redirect = () => { m.rip = TEXT + 0x20n; };
      if (access === "read") m.watchReads(watched, watched + 0x100n, redirect);
      else m.watchWrites(watched, watched + 0x100n, redirect);
      expect(m.run(), what).toMatchObject({ kind: "completed", rax: 2n });
    }
  });
});

describe("the rsp cache stays coherent with every way rsp is written", () => {
  const cases: [string, string, bigint][] = [
    // code, description, expected rax; each writes rsp some way and then uses the stack
    ["48 89 e3 48 83 ec 10 6a 07 58 48 89 dc", "mov rbx,rsp; sub rsp,16; push 7; pop rax; mov rsp,rbx", 7n],
    ["48 89 e3 48 8d 64 24 f0 6a 09 58 48 89 dc", "mov rbx,rsp; lea rsp,[rsp-16]; push 9; pop rax; mov rsp,rbx", 9n],
    ["48 89 e3 48 83 e4 f0 6a 05 58 48 89 dc", "mov rbx,rsp; and rsp,-16; push 5; pop rax; mov rsp,rbx", 5n],
    ["54 5c 6a 03 58", "push rsp; pop rsp; push 3; pop rax", 3n],
    ["55 48 89 e5 48 83 ec 20 6a 0b 58 c9", "push rbp; mov rbp,rsp; sub rsp,32; push 11; pop rax; leave", 11n],
  ];
  test.each(cases)("%s (%s)", (code, _desc, rax) => {
    const { result, m } = runSnippet(code);
    expect(result).toMatchObject({ kind: "completed", rax });
    expect(m.reg("rsp")).toBe(STACK_TOP);
  });

  test("push, call, ret and pop carry into rsp's high half across a 4 GiB boundary, both ways", () => {
    // a stack whose pages straddle ...0100000000: rsp's low half wraps below 0 and back above 2^32
    const BASE = 0xffffc90100000000n;
    const m = new Machine({
      regions: [
        { name: "text", kind: "text", start: TEXT, size: 0x1000, perms: "r-x" },
        { name: "stack", kind: "stack", start: BASE - 0x1000n, size: 0x2000, perms: "rw-" },
      ],
    });
    // push 5; call f; pop rax; ret; f: mov rdx,rsp; ret
    m.load(TEXT, bytes("6a 05 e8 02 00 00 00 58 c3 48 89 e2 c3"));
    m.call(TEXT, { rsp: BASE + 8n, stopAt: STOP }); // the stop address at BASE, rsp = BASE: the next push crosses
    m.runUntil(1); // push 5: rsp below the boundary
    expect(m.reg("rsp")).toBe(BASE - 8n);
    expect(m.memory.peek64(-0x36ff00000008)).toBe(5n);
    m.runUntil(3); // call f; mov rdx,rsp: the return address pushed below
    expect(m.reg("rdx")).toBe(BASE - 16n);
    expect(m.run()).toMatchObject({ kind: "completed", rax: 5n }); // ret, pop rax (back above the boundary), ret to the stop address
    expect(m.reg("rsp")).toBe(BASE + 8n);
  });

  test("pushing rsp across the bottom of the canonical range faults as non-canonical", () => {
    const m = newMachine();
    m.load(TEXT, bytes("48 89 c4 6a 01 c3")); // mov rsp,rax; push 1
    m.setReg("rax", 0xffff800000000000n);     // the lowest canonical upper-half address
    m.call(TEXT, { rsp: STACK_TOP, stopAt: STOP });
    expect(m.run()).toMatchObject({ kind: "fault", reason: "non-canonical", address: 0xffff7ffffffffff8n, rip: TEXT + 3n });
  });
});

describe("loads of zeros", () => {
  // (Memory.loadAt() skips zeros bound for a page nobody has written: an image's kernel data is mostly zeros)
  test("zeros loaded over written bytes overwrite them, in this epoch and after a snapshot; over unwritten pages they read as zeros", () => {
    const mem = new Memory();
    const base = 0xffff_c900_0000_0000n;
    mem.map({ name: "data", kind: "data", start: base, size: 3 * 4096, perms: "rw-" });
    const a = Number(BigInt.asIntN(64, base));
    const read = (off: number, n: number) => [...mem.peek(a + off, n)!];
    mem.load(base, new Uint8Array(3 * 4096)); // all unwritten: nothing to copy
    expect(read(0, 3 * 4096).every((b) => b === 0)).toBe(true);
    mem.load(base + 4096n + 10n, new Uint8Array([1, 2, 3]));
    mem.load(base, new Uint8Array(2 * 4096)); // a whole page and a written one
    expect(read(4096 + 10, 3)).toEqual([0, 0, 0]);
    mem.load(base + 4096n + 10n, new Uint8Array([4, 5, 6]));
    const snap = mem.snapshot();
    mem.load(base + 4096n + 8n, new Uint8Array(8)); // part of a page shared with the snapshot
    expect(read(4096 + 8, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    mem.restore(snap);
    expect(read(4096 + 10, 3)).toEqual([4, 5, 6]);
    // a load whose first page is zeros and whose second, bound for a page nobody has written, is not
    const fresh = new Memory();
    fresh.map({ name: "data", kind: "data", start: base, size: 2 * 4096, perms: "rw-" });
    const two = new Uint8Array(2 * 4096);
    two[4096] = 7;
    fresh.load(base, two);
    expect([...fresh.peek(a + 4096, 1)!]).toEqual([7]);
    // zeros are no way past a guard page
    const guarded = new Memory();
    guarded.map({ name: "guard", kind: "guard", start: base, size: 4096, perms: "---" });
    expect(() => guarded.load(base, new Uint8Array(16))).toThrow(/guard/);
  });
});
