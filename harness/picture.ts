// A text picture of the stacks at one moment, for counterexample reports (design.md §8): every
// stack that holds a live activation, its words from the top down, which activation each word
// belongs to (the callee whose return-address slot is the nearest one above it), the return
// addresses and hardware frames the ground truth knows, rsp, and the rbp chain as the
// frame-pointer unwinder would follow it (unwind_frame.c: next bp = *bp, return address bp + 8).
import { hex64, type Machine, type TruthEntry } from "./machine/index.ts";
import type { Image } from "../jit/image.ts";
import { kernelStacks, privateStacks } from "../jit/private-stacks.ts";

const MAX_WORDS = 40;
const MAX_CHAIN = 32;

interface Area { readonly name: string; readonly begin: bigint; readonly end: bigint }

/** The stacks of an image: the kernel's (task, IRQ, NMI) and every private stack. */
export function stackAreas(img: Image): Area[] {
  return [
    ...kernelStacks(img),
    ...privateStacks(img).map((x) => ({ name: `${x.name} stack`, begin: x.begin, end: x.end })),
  ];
}

export function stackPicture(img: Image, m: Machine, truth: readonly TruthEntry[], bp: bigint): string {
  const areas = stackAreas(img);
  const areaOf = (a: bigint) => areas.find((x) => a >= x.begin && a < x.end);
  const notes = new Map<bigint, string[]>();
  const note = (a: bigint, text: string) => {
    const w = a & ~7n;
    notes.set(w, [...(notes.get(w) ?? []), text]);
  };
  const rsp = m.reg("rsp");
  note(rsp, "<- rsp");
  // Return-address slots and hardware frames: who owns what.
  const slots: { slot: bigint; owner: string }[] = [];
  for (const t of truth) {
    if (t.kind === "frame" && t.slot !== undefined && t.entered !== "root") {
      slots.push({ slot: t.slot, owner: t.function });
      note(t.slot, t.entered === "interrupt" ? `hardware frame of ${t.function}: rip` : `return address of ${t.function}`);
    } else if (t.kind === "interrupt") {
      note(t.rsp, `<- rsp when ${t.name} hit ${t.symbol}`);
    }
  }
  // The rbp chain; an odd rbp is an encoded pt_regs pointer (ENCODE_FRAME_POINTER), followed through regs->bp.
  const chain: bigint[] = [];
  let b = bp;
  while (chain.length < MAX_CHAIN && areaOf(b) !== undefined && !chain.includes(b)) {
    chain.push(b);
    note(b, chain.length === 1 ? "<- rbp (chain 0)" : `rbp chain ${chain.length - 1}`);
    if (b & 1n) {
      note(b - 1n, "pt_regs (encoded in rbp)");
      b = m.peek64(b - 1n + 32n) ?? 0n; // regs->bp
    } else b = m.peek64(b) ?? 0n;
  }
  const owner = (a: bigint, area: Area) => {
    let best: { slot: bigint; owner: string } | undefined;
    for (const s of slots) if (areaOf(s.slot) === area && s.slot >= a && (!best || s.slot < best.slot)) best = s;
    return best?.owner ?? "";
  };
  const value = (a: bigint) => {
    const v = m.peek64(a);
    if (v === undefined) return "(unmapped)".padEnd(16);
    const sym = m.symbols.symbolize(v);
    return sym ? `${hex64(v)} ${sym}` : hex64(v);
  };
  const out: string[] = [];
  for (const area of areas) {
    const here = [...notes.keys()].filter((a) => a >= area.begin && a < area.end);
    if (here.length === 0) continue;
    const low = here.reduce((x, y) => (y < x ? y : x));
    const high = here.reduce((x, y) => (y > x ? y : x));
    const top = high + 16n <= area.end ? high + 16n : area.end;
    const words: bigint[] = [];
    for (let a = top - 8n; a >= low; a -= 8n) words.push(a);
    // Keep the words with notes and their neighbours when the span is long.
    const keep = words.length <= MAX_WORDS ? words : words.filter((a) => notes.has(a) || notes.has(a + 8n) || notes.has(a - 8n));
    out.push(`${area.name} [${hex64(area.begin)}, ${hex64(area.end)}):`);
    let prev: bigint | undefined;
    for (const a of keep) {
      if (prev !== undefined && prev - a > 8n) out.push("  ...");
      const who = owner(a, area);
      out.push(`  ${hex64(a)}  ${value(a).padEnd(52)} ${who.padEnd(30)} ${(notes.get(a) ?? []).join("; ")}`.trimEnd());
      prev = a;
    }
  }
  out.push(`rbp chain: ${chain.map(hex64).join(" -> ") || "(rbp is on no stack)"}${chain.length > 0 ? ` -> ${hex64(b)} (${areaOf(b) ? "seen before" : "on no known stack"})` : ""}`);
  return out.join("\n");
}
