// Machine.sameStateAs(), the test exhaustive mode's early end of a fork rests on
// (harness/property.ts): registers, flags, interrupt state, the ground truth's depth and memory
// byte for byte, except in ranges declared dead.
import { describe, expect, test } from "vitest";
import { makeMachine } from "../../bench/machine.ts";

const STACK = 0xffffc90000000000n;

describe("sameStateAs", () => {
  test("a state compared with itself, after running and restoring, is the same", () => {
    const m = makeMachine();
    m.call(0xffffffff81000000n, { args: [3n], rsp: STACK + 16384n });
    m.runUntil(10);
    const s = m.snapshot();
    expect(m.sameStateAs(s, [])).toBe(true);
    m.runUntil(20);
    expect(m.sameStateAs(s, [])).toBe(false);
    m.restore(s);
    expect(m.sameStateAs(s, [])).toBe(true);
  });

  test("memory: a changed word anywhere differs, unless a dead range holds it; one register differs", () => {
    const m = makeMachine();
    m.call(0xffffffff81000000n, { args: [3n], rsp: STACK + 16384n });
    m.runUntil(10);
    const s = m.snapshot();
    const at = STACK + 0x100n;
    m.load(at, Uint8Array.of(0xaa));
    expect(m.sameStateAs(s, [])).toBe(false);
    expect(m.sameStateAs(s, [[STACK, STACK + 0x100n]])).toBe(false); // the range ends just before it
    expect(m.sameStateAs(s, [[STACK, STACK + 0x108n]])).toBe(true);
    expect(m.sameStateAs(s, [[STACK, STACK + 0x4000n]])).toBe(true); // the whole page dead
    m.restore(s);
    m.setReg("r12", m.reg("r12") ^ 1n);
    expect(m.sameStateAs(s, [[STACK, STACK + 0x4000n]])).toBe(false);
  });

  test("several dead ranges, in any order and overlapping: only the whole words they cover are dead", () => {
    const m = makeMachine();
    m.call(0xffffffff81000000n, { args: [3n], rsp: STACK + 16384n });
    m.runUntil(10);
    const s = m.snapshot();
    m.load(STACK + 0x100n, Uint8Array.of(0xaa)); // in word 0x100..0x104
    m.load(STACK + 0x1ffcn, Uint8Array.of(0xbb)); // the last word of the page
    const same = (...dead: [bigint, bigint][]) => m.sameStateAs(s, dead);
    expect(same([STACK + 0x1ff8n, STACK + 0x2000n], [STACK + 0x80n, STACK + 0x104n])).toBe(true);
    expect(same([STACK + 0x80n, STACK + 0x104n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(true);
    expect(same([STACK + 0x80n, STACK + 0x104n], [STACK + 0x90n, STACK + 0x100n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(true);
    expect(same([STACK + 0x80n, STACK + 0x103n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(false); // ends inside the word
    expect(same([STACK + 0x101n, STACK + 0x200n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(false); // starts inside it
    expect(same([STACK + 0x80n, STACK + 0x104n], [STACK + 0x1000n, STACK + 0x1ffcn])).toBe(false); // the gap: the last word
    expect(same([STACK + 0x104n, STACK + 0x2000n])).toBe(false);
    // on one page, given out of order: the word at 0x100 is in the second range given
    expect(same([STACK + 0x200n, STACK + 0x300n], [STACK + 0x80n, STACK + 0x104n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(true);
    // a bound that is not a canonical address (sameStateAs makes it NaN) covers nothing
    expect(same([STACK, 0x0000800000000000n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(false);
    expect(same([0x0000800000000000n, STACK + 0x200n], [STACK + 0x1ff8n, STACK + 0x2000n])).toBe(false);
    // the first live word after a dead range, and after the last one: compared
    m.restore(s);
    m.load(STACK + 0x104n, Uint8Array.of(0xcc));
    expect(same([STACK + 0x80n, STACK + 0x104n], [STACK + 0x200n, STACK + 0x300n])).toBe(false);
    expect(same([STACK + 0x80n, STACK + 0x104n])).toBe(false);
    expect(same([STACK + 0x80n, STACK + 0x108n])).toBe(true);
    m.restore(s);
    m.load(STACK + 0x300n, Uint8Array.of(0xdd));
    expect(same([STACK + 0x80n, STACK + 0x104n], [STACK + 0x200n, STACK + 0x300n])).toBe(false);
    expect(same([STACK + 0x80n, STACK + 0x104n], [STACK + 0x200n, STACK + 0x304n])).toBe(true);
  });

  test("a pending interrupt differs", () => {
    const m = makeMachine();
    m.call(0xffffffff81000000n, { args: [3n], rsp: STACK + 16384n });
    m.runUntil(4);
    const s = m.snapshot();
    m.raise(2);
    expect(m.sameStateAs(s, [])).toBe(false);
  });
  test("a region mapped after a snapshot: not the same state, and unmapped again once the snapshot is restored", () => {
    const m = makeMachine();
    const s = m.snapshot();
    const EXTRA = 0xffffc90000100000n;
    m.memory.map({ name: "extra", kind: "data", start: EXTRA, size: 0x2000, perms: "rw-" });
    m.load(EXTRA, Uint8Array.of(1));
    expect(m.peek64(EXTRA)).toBe(1n);
    expect(m.sameStateAs(s, [])).toBe(false); // a page the snapshot does not have
    const t = m.snapshot();
    m.restore(s);
    expect(m.peek64(EXTRA)).toBeUndefined();
    expect(m.sameStateAs(t, [])).toBe(false); // and the other way round
    expect(m.sameStateAs(s, [])).toBe(true);
    m.restore(t);
    expect(m.peek64(EXTRA)).toBe(1n);
    expect(m.sameStateAs(t, [])).toBe(true);
  });
  test("snapshots, writes and restores in any order: every word reads as a model of them says (pages are reused after restores)", () => {
    const m = makeMachine();
    m.call(0xffffffff81000000n, { args: [3n], rsp: STACK + 16384n });
    let seed = 7;
    const r = (n: number) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
    let model = new Map<bigint, bigint>();
    const snaps: { s: ReturnType<typeof m.snapshot>; model: Map<bigint, bigint> }[] = [];
    const word = (k: number) => STACK + BigInt(8 * k); // 2,048 words: four pages
    for (let step = 0; step < 3000; step++) {
      const op = r(10);
      if (op < 6) {
        const k = r(2048), v = BigInt(r(1 << 30)) * 4099n;
        const b = new Uint8Array(8);
        new DataView(b.buffer).setBigUint64(0, v, true);
        m.load(word(k), b);
        model.set(word(k), v);
      } else if (op < 8 || snaps.length === 0) {
        snaps.push({ s: m.snapshot(), model: new Map(model) });
      } else {
        const back = snaps[r(snaps.length)]!;
        m.restore(back.s);
        model = new Map(back.model);
      }
      if (step % 50 === 0) for (let k = 0; k < 2048; k += 7) expect(m.peek64(word(k)), `step ${step}, word ${k}`).toBe(model.get(word(k)) ?? 0n);
    }
  });
});
