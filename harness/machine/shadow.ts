// The ground-truth shadow stack: one entry per live activation (call, interrupt, root), kept as
// parallel typed arrays so that a call or return allocates nothing on the interpreter's path.
import { pairToAddr as pairToAddr__, pairToBig as pairToBig__, toCanonical as toCanonical__ } from "./addr.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const pairToAddr = pairToAddr__, pairToBig = pairToBig__, toCanonical = toCanonical__;

export const ACT_CALL = 0, ACT_INTERRUPT = 1, ACT_ROOT = 2;

/**
 * Activations live at once, at most: far more than any stack of the kernel holds (a 16 KiB task
 * stack, about 200 nested BPF runs), reached only by a recursion nothing stops (a program that
 * runs itself on a path without a recursion counter) whose design keeps resetting rsp instead
 * of running off a stack. The run then ends as a hang; the checks, which walk the live
 * activations, would otherwise slow down with every level until the step budget.
 */
export const MAX_ACTIVATIONS = 4096;

/** Thrown by a push past MAX_ACTIVATIONS (the machine ends the run as a hang). */
export class RunawayNesting extends Error {
  constructor(readonly depth: number) {
    super(`more than ${depth} activations live at once`);
  }
}

/** One activation, as a value (built on demand for observers and queries). */
export interface Activation {
  readonly kind: number;      // ACT_CALL, ACT_INTERRUPT or ACT_ROOT
  readonly entry: number;     // address entered: call target, or the vector's handler
  readonly ret: number;       // where control returns: pushed return address, or interrupted RIP
  readonly slot: number;      // address of the return-address word (call) or of the hardware frame's RIP word
  readonly rsp: number;       // rsp to be restored: after ret (call), or the interrupted rsp (interrupt); NaN if not canonical
  readonly rspRaw: bigint;    // the same, exact (an interrupt can arrive with any value in rsp when its gate has an IST)
  readonly vector: number;    // interrupt vector, or -1
  readonly site: number;      // address of the call instruction, or -1
}

/** An activation's columns (kind, vector, entry, ret, slot, site, rsp and rbp halves). */
export type ActivationRecord = readonly [number, number, number, number, number, number, number, number, number, number];

/**
 * An activation as observers get it, at every call and return: `rspRaw`, a bigint, is made only
 * when asked for (few observers do).
 */
class ActivationAt implements Activation {
  constructor(
    readonly kind: number, readonly entry: number, readonly ret: number, readonly slot: number, readonly rsp: number,
    readonly vector: number, readonly site: number, private readonly rlo: number, private readonly rhi: number,
  ) {}

  get rspRaw(): bigint {
    return this.kind === ACT_INTERRUPT ? pairToBig(this.rlo, this.rhi) : toCanonical(this.slot + 8);
  }
}

export interface ShadowSnapshot {
  readonly depth: number;
  readonly cols: readonly (Int16Array | Float64Array | Uint32Array)[];
}

export class ShadowStack {
  depth = 0;
  kind = new Int16Array(64);
  vector = new Int16Array(64);
  entry = new Float64Array(64);
  ret = new Float64Array(64);
  slot = new Float64Array(64);
  site = new Float64Array(64);
  /** Interrupted rsp of an interrupt activation, as exact halves (a call's rsp is always slot + 8). */
  rlo = new Uint32Array(64);
  rhi = new Uint32Array(64);
  /** rbp when the activation began, as exact halves (meaningless for a root). */
  blo = new Uint32Array(64);
  bhi = new Uint32Array(64);

  push(kind: number, entry: number, ret: number, slot: number, vector: number, site: number, bpLo = 0, bpHi = 0): void {
    const i = this.depth;
    if (i === this.kind.length) this.grow();
    this.kind[i] = kind; this.entry[i] = entry; this.ret[i] = ret; this.slot[i] = slot;
    this.vector[i] = vector; this.site[i] = site; this.blo[i] = bpLo; this.bhi[i] = bpHi;
    this.depth = i + 1;
  }

  /** push() of a call's activation (no vector), with what the emulator's loop inlines (no default parameters). */
  pushCall(entry: number, ret: number, slot: number, site: number, bpLo: number, bpHi: number): void {
    const i = this.depth;
    if (i === this.kind.length) this.grow();
    this.kind[i] = ACT_CALL; this.entry[i] = entry; this.ret[i] = ret; this.slot[i] = slot;
    this.vector[i] = -1; this.site[i] = site; this.blo[i] = bpLo; this.bhi[i] = bpHi;
    this.depth = i + 1;
  }

  pushInterrupt(entry: number, ret: number, frame: number, rspLo: number, rspHi: number, vector: number, bpLo: number, bpHi: number): void {
    this.push(ACT_INTERRUPT, entry, ret, frame, vector, -1, bpLo, bpHi);
    this.rlo[this.depth - 1] = rspLo;
    this.rhi[this.depth - 1] = rspHi;
  }

  at(i: number): Activation {
    const kind = this.kind[i]!, slot = this.slot[i]!;
    const interrupt = kind === ACT_INTERRUPT;
    return new ActivationAt(kind, this.entry[i]!, this.ret[i]!, slot, interrupt ? pairToAddr(this.rlo[i]!, this.rhi[i]!) : slot + 8, this.vector[i]!, this.site[i]!, this.rlo[i]!, this.rhi[i]!);
  }

  /** rbp when activation `i` began (at the call, or the interrupted rbp); undefined for a root. Not in at(): observers, called at every call, never read it. */
  bpAt(i: number): bigint | undefined {
    return this.kind[i] === ACT_ROOT ? undefined : pairToBig(this.blo[i]!, this.bhi[i]!);
  }

  /** Activation `i`'s columns, as numbers (to tell later whether slot i still holds it: same()). */
  record(i: number): ActivationRecord {
    return [this.kind[i]!, this.vector[i]!, this.entry[i]!, this.ret[i]!, this.slot[i]!, this.site[i]!, this.rlo[i]!, this.rhi[i]!, this.blo[i]!, this.bhi[i]!];
  }

  /** Does slot `i` hold the activation `r` recorded (every column equal)? */
  same(i: number, r: ActivationRecord): boolean {
    return this.kind[i] === r[0] && this.vector[i] === r[1] && this.entry[i] === r[2] && this.ret[i] === r[3] && this.slot[i] === r[4] &&
      this.site[i] === r[5] && this.rlo[i] === r[6] && this.rhi[i] === r[7] && this.blo[i] === r[8] && this.bhi[i] === r[9];
  }

  top(): Activation | undefined {
    return this.depth === 0 ? undefined : this.at(this.depth - 1);
  }

  clear(): void {
    this.depth = 0;
  }

  /** The snapshot of a shadow stack holding one activation (a task not yet run), without making the stack. */
  static one(kind: number, entry: number, ret: number, slot: number, vector: number, site: number): ShadowSnapshot {
    const f = (v: number) => Float64Array.of(v), i = (v: number) => Int16Array.of(v), u = () => new Uint32Array(1);
    return { depth: 1, cols: [i(kind), i(vector), f(entry), f(ret), f(slot), f(site), u(), u(), u(), u()] };
  }

  snapshot(): ShadowSnapshot {
    const n = this.depth;
    return { depth: n, cols: this.columns().map((c) => c.slice(0, n)) };
  }

  restore(s: ShadowSnapshot): void {
    while (this.kind.length < s.depth) this.grow();
    this.columns().forEach((c, i) => (c as Float64Array).set(s.cols[i] as Float64Array));
    this.depth = s.depth;
  }

  private columns(): (Int16Array | Float64Array | Uint32Array)[] {
    return [this.kind, this.vector, this.entry, this.ret, this.slot, this.site, this.rlo, this.rhi, this.blo, this.bhi];
  }

  private grow(): void {
    if (this.kind.length >= MAX_ACTIVATIONS) throw new RunawayNesting(MAX_ACTIVATIONS);
    const n = this.kind.length * 2;
    const g = <T extends Int16Array | Float64Array | Uint32Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      b.set(a as never);
      return b;
    };
    this.kind = g(this.kind); this.vector = g(this.vector); this.entry = g(this.entry); this.ret = g(this.ret);
    this.slot = g(this.slot); this.site = g(this.site); this.rlo = g(this.rlo); this.rhi = g(this.rhi);
    this.blo = g(this.blo); this.bhi = g(this.bhi);
  }
}
