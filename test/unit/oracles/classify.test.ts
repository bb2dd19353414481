// Allowances (harness/oracles/classify.ts): what a correct frame-pointer walk may miss at each
// interrupt boundary, on hand-built truths, so a looser or stricter rule shows here.
import { describe, expect, test } from "vitest";
import { allowances, classify, expectedChain, type WindowOracle } from "../../../harness/oracles/classify.ts";
import type { TruthEntry } from "../../../harness/machine/index.ts";
import type { Walk } from "../../../unwinder/index.ts";

// An NMI at A (in IRQ entry code) whose IRQ interrupted B in f, called from g (C), called from the root (D).
const [A, B, C, D] = [0xa0n, 0xb0n, 0xc0n, 0xd0n];
const frame = (ip: bigint, returnAddress: bigint, entered: "call" | "interrupt" | "root", slot: bigint): TruthEntry =>
  ({ kind: "frame", ip, symbol: "", function: "", entry: 0n, returnAddress, slot, entered });
const truth: TruthEntry[] = [
  { kind: "interrupt", vector: 2, name: "NMI", ip: A, symbol: "", rsp: 0n, frame: 0x1000n },
  frame(A, B, "interrupt", 0x2000n), frame(B, C, "call", 0x3000n), frame(C, D, "root", 0x4000n),
];
const walk = (...ips: bigint[]): Walk => ({ ips, error: false, reachedEnd: true, warnings: [] });
const oracle = (blind: Set<bigint>, windows: Set<bigint>, mayEnd = false): WindowOracle => ({
  inWindow: (ip) => windows.has(ip),
  blindSpot: (ip) => (blind.has(ip) ? { mayEnd } : undefined),
  regsBuilt: () => true,
});

describe("allowances", () => {
  test("a blind spot may skip up to the rip the IRQ interrupted, not that rip's caller", () => {
    const w = oracle(new Set([A]), new Set());
    expect(expectedChain(truth, 0)).toEqual([A, B, C, D]);
    expect(allowances(truth, 0, w)).toEqual([{ after: 0, skip: 1, mayEnd: false }]);
    const cls = (...ips: bigint[]) => classify([A, B, C, D], walk(...ips), allowances(truth, 0, w)).class;
    expect(cls(A, B, C, D)).toBe("EXACT");
    expect(cls(A, C, D)).toBe("WINDOW"); // the skip loop stepped over the IRQ's pt_regs
    expect(cls(A, D)).toBe("WRONG"); // C lost too: not the kernel's doing
    expect(cls(A)).toBe("TRUNCATED");
  });

  test("allowances given as a function: asked only when the walk is not plainly EXACT, and the same classes as given outright", () => {
    const w = oracle(new Set([A]), new Set([B]));
    let asked = 0;
    const lazy = () => { asked++; return allowances(truth, 0, w); };
    const walks = [walk(A, B, C, D), walk(A, D), walk(A, C, D), walk(A), walk(A, 0x99n, D), { ...walk(A, B, C, D), reachedEnd: false }, { ...walk(A, B, C, D), error: true }];
    for (const x of walks) expect(classify([A, B, C, D], x, lazy).class).toBe(classify([A, B, C, D], x, allowances(truth, 0, w)).class);
    expect(asked).toBe(5); // not for the EXACT walk, nor for the complete one with its error flag set
  });

  test("with the interrupted rip in its own frame window, its caller may go too", () => {
    const w = oracle(new Set([A]), new Set([B]));
    expect(allowances(truth, 0, w)).toEqual([{ after: 0, skip: 2, mayEnd: false }, { after: 1, skip: 1, mayEnd: false }]);
    expect(classify([A, B, C, D], walk(A, D), allowances(truth, 0, w)).class).toBe("WINDOW");
  });

  test("the IRQ stack switch may end the walk at regs->ip; a frame window alone skips one", () => {
    expect(classify([A, B, C, D], walk(A), allowances(truth, 0, oracle(new Set([A]), new Set(), true))).class).toBe("WINDOW");
    const w = oracle(new Set(), new Set([A]));
    expect(allowances(truth, 0, w)).toEqual([{ after: 0, skip: 1, mayEnd: false }]);
    expect(classify([A, B, C, D], walk(A, C, D), allowances(truth, 0, w)).class).toBe("WINDOW");
    expect(classify([A, B, C, D], walk(A, D), allowances(truth, 0, w)).class).toBe("WRONG");
  });

  test("an unwinder error is FLAGGED in a window, unless the unwinder calls the loss expected", () => {
    const w = oracle(new Set(), new Set([A]));
    const lost = (expectedLoss: boolean): Walk => ({ ips: [A, C, D], error: true, reachedEnd: false, warnings: [], ...(expectedLoss ? { expectedLoss } : {}) });
    expect(classify([A, B, C, D], lost(false), allowances(truth, 0, w)).class).toBe("FLAGGED");
    expect(classify([A, B, C, D], lost(true), allowances(truth, 0, w)).class).toBe("WINDOW");
  });
});

test("a deeper interrupt's pt_regs are trusted only once its entry code has built them", () => {
  const calls: [bigint, boolean][] = [];
  const w: WindowOracle = {
    inWindow: () => false,
    blindSpot: (ip, _slot, regs) => { calls.push([ip, regs]); return undefined; },
    regsBuilt: (ip) => ip === A, // the IRQ's entry code, now at A, is past ENCODE_FRAME_POINTER
  };
  allowances(truth, 0, w);
  expect(calls).toEqual([[A, true], [B, true]]);
  calls.length = 0;
  allowances(truth, 0, { ...w, regsBuilt: () => false });
  expect(calls).toEqual([[A, true], [B, false]]);
});

describe("allowances that meet", () => {
  test("an unwinder error is allowed where the walk stopped, not where an equal return address sits earlier nor where it passed", () => {
    // [X, Y, X, Z]: the walk stops, flagged, after Y; the error is allowed only at the second X
    const [X, Y, Z] = [0x10n, 0x20n, 0x30n];
    const allow = [{ after: 1, skip: 0, mayEnd: true }, { after: 2, skip: 0, mayEnd: true, errorOk: true }];
    const stopped = (ips: bigint[]): Walk => ({ ips, error: true, reachedEnd: false, warnings: [] });
    expect(classify([X, Y, X, Z], stopped([X, Y]), allow).class).toBe("FLAGGED");
    expect(classify([X, Y, X, Z], stopped([X, Y, X]), allow).class).toBe("WINDOW");
    // the error allowed at A, the walk passing A and stopping at C, where no error is allowed
    const passed = [{ after: 0, skip: 0, mayEnd: true, errorOk: true }, { after: 2, skip: 0, mayEnd: true }];
    expect(classify([A, B, C, D], stopped([A, B, C]), passed).class).toBe("FLAGGED");
    expect(classify([A, B, C, D], stopped([A]), passed).class).toBe("WINDOW");
  });

  test("a deeper boundary compares the rbp its interrupt saw with the interrupted function's entry rbp, not its own", () => {
    // an NMI at A in an IRQ handler (entered with rbp 0x500, the rbp it interrupted) that
    // interrupted B in f; f was entered with rbp `fEntry`; g (C) before it
    const withBp = (fEntry: bigint): TruthEntry[] => [
      { kind: "interrupt", vector: 2, name: "NMI", ip: A, symbol: "", rsp: 0n, frame: 0x1000n, bp: 0x900n },
      { ...frame(A, B, "interrupt", 0x2000n), entryBp: 0x500n } as TruthEntry,
      { kind: "interrupt", vector: 0x20, name: "IRQ", ip: B, symbol: "", rsp: 0n, frame: 0x2000n, bp: 0x500n },
      { ...frame(B, C, "call", 0x3000n), entryBp: fEntry } as TruthEntry,
      frame(C, D, "root", 0x4000n),
    ];
    const seen: [bigint, bigint | undefined, bigint | undefined][] = [];
    const w: WindowOracle = { inWindow: (ip, bp) => (seen.push([ip, bp?.now, bp?.entry]), ip === B && bp?.now === bp?.entry), blindSpot: () => undefined, regsBuilt: () => true };
    expect(allowances(withBp(0x500n), 0, w)).toEqual([{ after: 1, skip: 1, mayEnd: false }]); // f's frame not built: rbp is still its entry rbp
    expect(seen).toEqual([[A, 0x900n, 0x500n], [B, 0x500n, 0x500n]]);
    expect(allowances(withBp(0x600n), 0, w)).toEqual([]); // f had set rbp to something else: no window
  });

  test("a task's first return address that is also an interrupt boundary keeps both allowances", () => {
    // an NMI at A in an IRQ that interrupted a new task at its first instruction R (ret_from_fork_asm)
    const R = 0xf0n;
    const t: TruthEntry[] = [{ kind: "interrupt", vector: 2, name: "NMI", ip: A, symbol: "", rsp: 0n, frame: 0x1000n }, frame(A, R, "interrupt", 0x2000n)];
    const w: WindowOracle = { inWindow: (ip) => ip === R, blindSpot: () => undefined, regsBuilt: () => true, endsStack: (ip) => ip === R };
    const allow = allowances(t, 0, w);
    expect(allow).toEqual([{ after: 1, skip: 0, mayEnd: true, errorOk: true, anything: true }, { after: 1, skip: 1, mayEnd: false }]);
    // past the stack's start the walk reads what it reads (anything), as either allowance alone would not both allow
    expect(classify([A, R], walk(A, R, 0x99n), allow).class).toBe("WINDOW");
    expect(classify([A, R], walk(A, 0x99n), allow).class).toBe("WRONG");
  });
});
