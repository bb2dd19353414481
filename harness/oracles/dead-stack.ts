// No instruction reads a dead stack. x86-64 kernel code has no red zone (arch/x86/Makefile, 7.2:
// `KBUILD_CFLAGS += -mno-red-zone`): an IRQ or exception taken in kernel mode has its hardware
// frame pushed below rsp at any instruction boundary (only NMI, #DF, #MC and #DB switch to an
// IST stack), so what lies below rsp on the stack rsp is on is nobody's, and while rsp
// is on a task stack so are the IRQ and NMI stacks (no context is on them). Code that reads there
// reads what the next interrupt may have overwritten: a JIT whose epilogue pops by
// `add rsp,N; mov reg,[rsp-8]` passes every run in which no interrupt lands in between.
//
// The same areas are what exhaustive mode's early end leaves out of its comparison of a fork with
// the unforked run (property.ts): this check is that premise checked, on every run. deadSpans()
// is the one definition both use.
import { hex64 as hex, toCanonical, toInternal } from "../machine/index.ts";
import { kernelStacks, privateStacks } from "../../jit/private-stacks.ts";
import type { Image } from "../../jit/image.ts";
import type { Oracle } from "./types.ts";

/** A stack, at internal addresses (addr.ts): its name, [begin, end), and whose it is. */
export interface StackSpan { readonly name: string; readonly begin: number; readonly end: number; readonly kind: "task" | "interrupt" | "private" }

/** The kernel's stacks (task, IRQ, NMI) and the image's private stacks, at internal addresses. */
export function stackSpans(img: Image): StackSpan[] {
  return [
    ...kernelStacks(img).map((s) => ({ name: s.name, begin: toInternal(s.begin)!, end: toInternal(s.end)!, kind: s.task ? "task" as const : "interrupt" as const })),
    ...privateStacks(img).map((s) => ({ name: s.name, begin: toInternal(s.begin)!, end: toInternal(s.end)!, kind: "private" as const })),
  ];
}

/** The stack rsp is on, or undefined. (A loop, not find(): the check asks at every stack switch.) */
function spanAt(spans: readonly StackSpan[], rsp: number): StackSpan | undefined {
  for (const s of spans) if (rsp >= s.begin && rsp < s.end) return s;
  return undefined;
}

/**
 * The dead areas at a boundary whose rsp is `rsp`: the stack rsp is on, below rsp; and when that
 * is a task's stack, every IRQ and NMI stack (kernel stacks that are not a task's). [begin, end)
 * pairs; none when rsp is on no stack this image has.
 */
export function deadSpans(spans: readonly StackSpan[], rsp: number): [number, number][] {
  const on = spanAt(spans, rsp);
  if (on === undefined) return [];
  const dead: [number, number][] = [[on.begin, rsp]];
  if (on.kind === "task") for (const s of spans) if (s.kind === "interrupt") dead.push([s.begin, s.end]);
  return dead;
}

export const deadStack: Oracle = ({ img, m, fail, sym }) => {
  const spans = stackSpans(img);
  const interruptStacks = spans.filter((s) => s.kind === "interrupt");
  let reported = 0;
  /** The stack rsp was on at the last read (it changes only at a stack switch). */
  let last: StackSpan | undefined;
  return {
    // every stack; the per-CPU area that holds the private ones is watched for reads anyway
    reads: spans.map((s) => ({ begin: toCanonical(s.begin), end: toCanonical(s.end) })),
    onRead(addr, size, ip) {
      const rsp = m.rspAt;
      const end = addr + size;
      let on = last;
      if (on === undefined || rsp < on.begin || rsp >= on.end) {
        on = spanAt(spans, rsp);
        if (on === undefined) return;
        last = on;
      }
      if (addr >= rsp && end <= on.end) return; // the live part of rsp's stack: most reads
      // deadSpans()'s areas, without making them at every read: below rsp on its stack, and the
      // IRQ and NMI stacks while it is a task's (loops, not find(): this runs at every stack read)
      let what: string | undefined;
      if (addr < rsp && end > on.begin) what = `${rsp - addr} bytes below rsp ${hex(toCanonical(rsp))} on the ${on.name}, where an interrupt may push (the kernel has no red zone)`;
      else if (on.kind === "task") {
        for (const s of interruptStacks) {
          if (addr < s.end && end > s.begin) { what = `the ${s.name}, which no context is using (rsp ${hex(toCanonical(rsp))} is on the ${on.name})`; break; }
        }
      }
      if (what === undefined || reported++ >= 4) return; // (a few are enough for a report)
      const at = toCanonical(ip);
      fail({ check: "dead-stack", message: `${sym(at)} reads ${size} bytes at ${hex(toCanonical(addr))}: ${what}`, at });
    },
    save() {
      const n = reported;
      return () => { reported = n; };
    },
    // (its failures are in the run's list as they happen: nothing to add at the end)
    failing: () => false,
    report: () => ({}),
  };
};
