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

/** One word of a stack in the picture: its value, what it points at, whose it is, what it is. */
export interface PictureWord {
  readonly addr: bigint;
  /** undefined: unmapped. */
  readonly value: bigint | undefined;
  /** The symbol the value points into, if any. */
  readonly symbol?: string;
  /** The activation the word belongs to (the callee whose return-address slot is the nearest above it). */
  readonly owner: string;
  readonly notes: readonly string[];
  /** Words were left out just above this one. */
  readonly gap: boolean;
}

/** The stacks at one moment: each stack with a live activation, its words from the top down, and the rbp chain. */
export interface StackPicture {
  readonly stacks: readonly { readonly name: string; readonly begin: bigint; readonly end: bigint; readonly words: readonly PictureWord[] }[];
  readonly rbpChain: string;
}

/** The stacks of an image: the kernel's (task, IRQ, NMI) and every private stack. */
export function stackAreas(img: Image): Area[] {
  return [
    ...kernelStacks(img),
    ...privateStacks(img).map((x) => ({ name: `${x.name} stack`, begin: x.begin, end: x.end })),
  ];
}

export function stackPicture(img: Image, m: Machine, truth: readonly TruthEntry[], bp: bigint): StackPicture {
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
  const stacks: StackPicture["stacks"][number][] = [];
  for (const area of areas) {
    const here = [...notes.keys()].filter((a) => a >= area.begin && a < area.end);
    if (here.length === 0) continue;
    const low = here.reduce((x, y) => (y < x ? y : x));
    const high = here.reduce((x, y) => (y > x ? y : x));
    const top = high + 16n <= area.end ? high + 16n : area.end;
    const all: bigint[] = [];
    for (let a = top - 8n; a >= low; a -= 8n) all.push(a);
    // Keep the words with notes and their neighbours when the span is long.
    const keep = all.length <= MAX_WORDS ? all : all.filter((a) => notes.has(a) || notes.has(a + 8n) || notes.has(a - 8n));
    let prev: bigint | undefined;
    const words = keep.map((a): PictureWord => {
      const value = m.peek64(a);
      const symbol = value === undefined ? undefined : m.symbols.symbolize(value);
      const w = { addr: a, value, ...(symbol ? { symbol } : {}), owner: owner(a, area), notes: notes.get(a) ?? [], gap: prev !== undefined && prev - a > 8n };
      prev = a;
      return w;
    });
    stacks.push({ name: area.name, begin: area.begin, end: area.end, words });
  }
  const rbpChain = `${chain.map(hex64).join(" -> ") || "(rbp is on no stack)"}${chain.length > 0 ? ` -> ${hex64(b)} (${areaOf(b) ? "seen before" : "on no known stack"})` : ""}`;
  return { stacks, rbpChain };
}

/**
 * The picture as text. wide: one line a word (address, value and symbol, owner, notes).
 * narrow (80 columns, for mail): words as offsets into their stack, the owner and notes on a
 * line of their own when they do not fit.
 */
export function renderPicture(p: StackPicture, layout: "wide" | "narrow" = "wide"): string[] {
  const out: string[] = [];
  for (const st of p.stacks) {
    out.push(layout === "wide" ? `${st.name} [${hex64(st.begin)}, ${hex64(st.end)}):` : `${st.name} [${hex64(st.begin)}, ${hex64(st.end)}),`, ...(layout === "wide" ? [] : ["  words as offsets from its base:"]));
    for (const w of st.words) {
      if (w.gap) out.push("  ...");
      const value = w.value === undefined ? "(unmapped)".padEnd(16) : hex64(w.value);
      const what = [w.owner ? `[${w.owner}]` : "", w.notes.join("; ")].filter(Boolean).join(" ");
      if (layout === "wide") {
        out.push(`  ${hex64(w.addr)}  ${`${value}${w.symbol ? ` ${w.symbol}` : ""}`.padEnd(52)} ${w.owner.padEnd(30)} ${w.notes.join("; ")}`.trimEnd());
        continue;
      }
      const line = `  +${(w.addr - st.begin).toString(16).padStart(4, "0")} ${value}${w.symbol ? ` ${w.symbol}` : ""}`;
      if (what && line.length + 2 + what.length <= 80) out.push(`${line}  ${what}`);
      else out.push(line, ...(what ? [`        ${what}`] : []));
    }
  }
  out.push(`rbp chain: ${p.rbpChain}`);
  return out;
}
