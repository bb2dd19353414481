// The machine: one x86-64 CPU in ring 0 running pre-decoded code over paged memory, with
// hardware-faithful interrupt delivery, a ground-truth shadow stack, address hooks, a step
// budget and copy-on-write snapshots. Every run ends in a typed result (results.ts).
import { hex64 as hex64__, mustBeCanonical as mustBeCanonical__, pairToAddr, toCanonical as toCanonical__, toInternal as toInternalAddr } from "./addr.ts";
import { ACT_CALL as ACT_CALL__, ACT_INTERRUPT as ACT_INTERRUPT__, ACT_ROOT as ACT_ROOT__, Cpu as Cpu__, hiOf as hiOf__, interruptName as interruptName__, pairToBig as pairToBig__, Stop as Stop__, X86_TRAP_NMI as X86_TRAP_NMI__, type Observer } from "./cpu.ts";
import { RunawayNesting, ShadowStack, type ActivationRecord, type ShadowSnapshot } from "./shadow.ts";
import { InsnDecoder as InsnDecoder__, NOT_DECODED as NOT_DECODED__, REG_NAMES as REG_NAMES__, RSP as RSP__, copyInsn as copyInsn__, setHooks as setHooks__, unsupportedWhy as unsupportedWhy__, type DInsn, type HookFn, type RegName } from "./decode.ts";
import { HANDLERS as HANDLERS__ } from "./exec.ts";
import { hexBytes } from "../../jit/disasm.ts";
import { Op } from "./isa.ts";
import { F_NONE as F_NONE__, IF as IF__ } from "./flags.ts";
import { MemFault as MemFault__, Memory as Memory__, type MemorySnapshot, type Region, type RegionDef } from "./memory.ts";
import type { FinalResult, RunResult } from "./results.ts";
import { SymbolTable as SymbolTable__, symbolTableOf as symbolTableOf__, type SymbolDef } from "./symbols.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const hex64 = hex64__, mustBeCanonical = mustBeCanonical__, toCanonical = toCanonical__, ACT_CALL = ACT_CALL__, ACT_INTERRUPT = ACT_INTERRUPT__, ACT_ROOT = ACT_ROOT__, Cpu = Cpu__, hiOf = hiOf__, interruptName = interruptName__, pairToBig = pairToBig__, Stop = Stop__, X86_TRAP_NMI = X86_TRAP_NMI__, InsnDecoder = InsnDecoder__, NOT_DECODED = NOT_DECODED__, REG_NAMES = REG_NAMES__, RSP = RSP__, copyInsn = copyInsn__, setHooks = setHooks__, unsupportedWhy = unsupportedWhy__, HANDLERS = HANDLERS__, F_NONE = F_NONE__, IF = IF__, MemFault = MemFault__, Memory = Memory__, SymbolTable = SymbolTable__, symbolTableOf = symbolTableOf__;
type Cpu = Cpu__;
type Stop = Stop__;
type InsnDecoder = InsnDecoder__;
type MemFault = MemFault__;
type Memory = Memory__;
type SymbolTable = SymbolTable__;


/** Where `call()` returns to when nothing else is given: the top page, never mapped. */
export const DEFAULT_STOP_ADDRESS = 0xfffffffffffff000n;
/** What the loop finds at the stop address: an op-0 marker that means "completed", never cached. */
const STOP_INSN: DInsn = { ...NOT_DECODED, ip: NaN };

const OP_MOV_RR64 = Op.MOV_RR64, OP_MOV_LOAD64 = Op.MOV_LOAD64, OP_MOV_STORE64 = Op.MOV_STORE64, OP_PUSH_R = Op.PUSH_R, OP_POP_R = Op.POP_R;
const OP_JMP = Op.JMP, OP_JCC = Op.JCC, OP_CALL = Op.CALL, OP_RET = Op.RET, OP_NOP = Op.NOP;
const OP_ADD_RI64 = Op.ADD_RI64, OP_SUB_RI64 = Op.SUB_RI64, OP_CMP_RI64 = Op.CMP_RI64, OP_LEA = Op.LEA, OP_ADD_RR64 = Op.ADD_RR64, OP_XOR_RR64 = Op.XOR_RR64;
// register-only ops whose handlers the loop calls by name (a direct call V8 can inline): they never move rip
const H_ADD_RI64 = HANDLERS__[OP_ADD_RI64]!, H_SUB_RI64 = HANDLERS__[OP_SUB_RI64]!, H_CMP_RI64 = HANDLERS__[OP_CMP_RI64]!;
const H_LEA = HANDLERS__[OP_LEA]!, H_ADD_RR64 = HANDLERS__[OP_ADD_RR64]!, H_XOR_RR64 = HANDLERS__[OP_XOR_RR64]!;

/** Default step budget of a run. */
export const DEFAULT_MAX_STEPS = 10_000_000;

/** A memory watcher given internal addresses (addr.ts): the access's address and size, and the instruction that made it. */
export type InternalWatcher = (addr: number, size: number, ip: number) => void;

export interface MachineConfig {
  readonly regions?: readonly RegionDef[];
  readonly symbols?: readonly SymbolDef[];
}

export interface CallOptions {
  /** Up to six integer arguments in rdi, rsi, rdx, rcx, r8, r9. */
  readonly args?: readonly bigint[];
  /** Return address pushed for the entry; reaching it completes the run. */
  readonly stopAt?: bigint;
  /** Push this as the return address instead, and complete the run at `stopAt` only (several tasks: the run ends elsewhere). */
  readonly returnTo?: bigint;
  /** Initial rsp; defaults to the current rsp. */
  readonly rsp?: bigint;
}

export interface RunOptions {
  /** Step budget counted from the last `call()`; exceeding it gives a `hang` result. */
  readonly maxSteps?: number;
}

/** One entry of the true chain, innermost first. */
export type TruthEntry =
  | {
      readonly kind: "frame";
      /** Where this activation executes now (innermost) or resumes (the others). */
      readonly ip: bigint;
      /** `symbol+off` of ip. */
      readonly symbol: string;
      /** The function that was entered (call target or interrupt handler). */
      readonly function: string;
      readonly entry: bigint;
      /** Where it returns: its pushed return address, the interrupted RIP, or the stop address. */
      readonly returnAddress: bigint | undefined;
      /** Address of the word holding the return address (or the hardware frame's RIP word). */
      readonly slot: bigint | undefined;
      readonly entered: "call" | "interrupt" | "root" | "unknown";
      /** rbp when it was entered (at the call; the interrupted rbp), unknown for a root. */
      readonly entryBp?: bigint;
    }
  | {
      readonly kind: "interrupt";
      readonly vector: number;
      readonly name: string;
      /** The interrupted RIP and rsp. */
      readonly ip: bigint;
      readonly symbol: string;
      readonly rsp: bigint;
      /** Address of the five-word hardware frame (its RIP word). */
      readonly frame: bigint;
      /** The interrupted rbp. */
      readonly bp?: bigint;
    };

export interface MachineSnapshot {
  readonly lo: Uint32Array;
  readonly hi: Uint32Array;
  readonly rip: number;
  readonly flags: number;
  readonly gsBase: number;
  readonly cs: bigint;
  readonly ss: bigint;
  readonly steps: number;
  readonly stiShadow: number;
  readonly nmiBlocked: boolean;
  readonly pendingNmi: boolean;
  readonly pendingIrqs: readonly number[];
  readonly shadow: ShadowSnapshot;
  readonly stopRip: number;
  readonly hookFired: readonly number[];
  readonly codeEpoch: number;
  readonly mem: MemorySnapshot;
  readonly parked: ReadonlyMap<number, ParkedTask>;
  readonly running: number;
}

/** The ground truth of a task that is not running: its activations and hook bookkeeping, kept while it is switched out. */
export interface ParkedTask {
  readonly shadow: ShadowSnapshot;
  readonly hookFired: readonly number[];
}

/**
 * An executable region and its decode cache: one slot per byte, NOT_DECODED until decoded;
 * `changed`, the code epoch at which its bytes last changed (a load, or a restore that changed them).
 */
interface CodeRegion { start: number; end: number; slots: DInsn[]; changed: number }

export class Machine {
  readonly memory = new Memory();
  private symbolTable: SymbolTable;
  private readonly cpu: Cpu;
  private readonly decoder = new InsnDecoder();
  private readonly code: CodeRegion[] = [];
  private hooks = new Map<number, HookFn[]>();
  private stopRip = mustBeCanonical(DEFAULT_STOP_ADDRESS, "stop");
  // hookFired[depth] = the ip whose hooks already fired for the execution about to happen at
  // that shadow depth (an interrupt taken at that boundary, whatever hooks fire inside it, must
  // not make them fire again when it returns). Cleared when the instruction executes.
  private hookFired: number[] = [];
  /** Bumped by every load() into executable memory; a snapshot remembers it (see restore()). */
  private codeEpoch = 0;
  // Decode-cache window: the code region execution is in.
  private cLo = 0;
  private cLen = 0;
  private cSlots: DInsn[] = [];

  constructor(config: MachineConfig = {}) {
    this.symbolTable = config.symbols ? symbolTableOf(config.symbols) : new SymbolTable([]);
    this.cpu = new Cpu(this.memory, (a) => this.symbols.symbolizeInternal(a) ?? "", (a) => this.disassembleAt(toCanonical(a)));
    for (const r of config.regions ?? []) this.map(r);
  }

  /** The symbol table every address the machine reports is described by. */
  get symbols(): SymbolTable {
    return this.symbolTable;
  }

  /** Describe addresses by `defs` from now on (a machine reused for another image of the same layout). */
  setSymbols(defs: readonly SymbolDef[]): void {
    this.symbolTable = symbolTableOf(defs);
    this.truthCache = []; // (its entries name symbols)
  }

  /** Release the WASM objects held by the decoder. */
  dispose(): void {
    this.decoder.free();
  }

  // ---- memory and code ----

  map(def: RegionDef): Region {
    const r = this.memory.map(def);
    if (r.x) this.codeRegion(r);
    return r;
  }

  /** The decode cache of an executable region, made the first time it is asked for. */
  private codeRegion(r: Region): CodeRegion {
    let cr = this.code.find((c) => c.start === r.start);
    if (cr === undefined) {
      this.codeChanged(r.start, r.end); // (executable bytes that were not: what a region right below decoded without them goes)
      this.code.push((cr = { start: r.start, end: r.end, slots: new Array<DInsn>(r.end - r.start).fill(NOT_DECODED), changed: ++this.codeEpoch }));
    }
    return cr;
  }

  /**
   * Executable bytes [lo, hi) changed: every cached instruction that may overlap them goes, up to
   * 15 bytes before them and so also at the end of a code region right below (an instruction
   * there may be fetched across, memory.ts fetch()), and those regions' bytes have changed now
   * (a restore to a snapshot from before drops their caches).
   */
  private codeChanged(lo: number, hi: number): void {
    for (const cr of this.code) {
      if (hi <= cr.start || lo - 15 >= cr.end) continue;
      cr.changed = ++this.codeEpoch;
      for (let i = Math.max(cr.start, lo - 15); i < Math.min(cr.end, hi); i++) cr.slots[i - cr.start] = NOT_DECODED;
    }
  }

  /**
   * Copy bytes into memory (any permissions). Code loaded this way is pre-decoded in one pass,
   * or taken from `decoded`, the records of exactly these bytes from the code that wrote them
   * (the JIT's emitters: jit/x86/emit.ts).
   */
  load(addr: bigint, bytes: Uint8Array, decoded?: readonly DInsn[]): void {
    this.memory.load(addr, bytes);
    const a = mustBeCanonical(addr, "load");
    // an executable region mapped through `machine.memory` gets its decode cache now, so that the
    // code epoch moves and a restore() to a snapshot from before this load decodes again
    for (const r of this.memory.regions) if (r.x && a < r.end && a + bytes.length > r.start) this.codeRegion(r);
    this.codeChanged(a, a + bytes.length);
    for (const cr of this.code) {
      if (a + bytes.length <= cr.start || a >= cr.end) continue;
      const lo = Math.max(cr.start, a), hi = Math.min(cr.end, a + bytes.length);
      // (records for other bytes, a part of these too, are not taken: decodedBlock() checks)
      this.decoder.decodeBlock(bytes.subarray(lo - a, hi - a), lo, (d) => {
        if (d.next <= hi) this.attach(cr, d);
      }, decoded);
    }
    this.cLo = this.cLen = 0;
  }

  /**
   * Put a decoded instruction in its slot. Decoded blocks are shared between machines (decode.ts
   * decodeBlock()); an instruction with hooks gets a copy of this machine's own to hold them.
   * `whole` false: the bytes stopped at a page the machine cannot execute, and what they do not
   * decode to is not kept (the page may be mapped executable later).
   */
  private attach(cr: CodeRegion, d: DInsn, whole = true): DInsn {
    const hooks = this.hooks.get(d.ip);
    if (hooks !== undefined) setHooks((d = copyInsn(d)), hooks);
    const slot = d.ip === this.stopRip ? STOP_INSN : d;
    if (whole || d.op !== 0) cr.slots[d.ip - cr.start] = slot;
    return slot;
  }

  /** Move the stop address, keeping STOP_INSN in the decode cache slot of the current one. */
  private placeStop(stop: number): void {
    const slotOf = (a: number) => this.code.find((r) => a >= r.start && a < r.end);
    const old = slotOf(this.stopRip);
    if (old && old.slots[this.stopRip - old.start] === STOP_INSN) old.slots[this.stopRip - old.start] = NOT_DECODED;
    this.stopRip = stop;
    const cr = slotOf(stop);
    if (cr) cr.slots[stop - cr.start] = STOP_INSN;
  }

  private decodeAt(ip: number): DInsn {
    if (ip === this.stopRip) return STOP_INSN;
    const bytes = this.memory.fetch(ip, 15); // faults if not executable
    // (a region mapped through `machine.memory` rather than `machine.map()` gets its decode cache now)
    const cr = this.code.find((r) => ip >= r.start && ip < r.end) ?? this.codeRegion(this.memory.regionAt(ip)!);
    // with its hooks; not kept when the fetch stopped at a page the machine cannot execute and
    // the bytes it had decode to no instruction (that page may be mapped executable later)
    const d = this.attach(cr, this.decoder.decodeOne(bytes, ip), !(bytes.length < 15));
    this.cLo = cr.start; this.cLen = cr.end - cr.start; this.cSlots = cr.slots;
    return d;
  }

  /** The slow path of instruction lookup: another code region, or not yet decoded. */
  private insnAt(ip: number): DInsn {
    if (ip === this.stopRip) return STOP_INSN;
    for (const cr of this.code) {
      if (ip >= cr.start && ip < cr.end) {
        this.cLo = cr.start; this.cLen = cr.end - cr.start; this.cSlots = cr.slots;
        const d = cr.slots[ip - cr.start]!;
        if (d !== NOT_DECODED) return d;
        break;
      }
    }
    return this.decodeAt(ip);
  }

  /** Intel-syntax text of the instruction at `addr`, or "(bad)". */
  disassembleAt(addr: bigint): string {
    const a = mustBeCanonical(addr, "disassemble");
    const bytes = this.memory.peek(a, 15) ?? this.memory.peek(a, 1);
    return bytes ? this.decoder.text(bytes, a) : "(unmapped)";
  }

  // ---- registers ----

  /** A register's value, unsigned 64-bit. */
  reg(name: RegName): bigint {
    const i = regIndex(name);
    return pairToBig(this.cpu.lo[i]!, this.cpu.hi[i]!);
  }

  setReg(name: RegName, v: bigint): void {
    setPair(this.cpu, regIndex(name), v);
  }

  /**
   * The live register file as 32-bit halves, in x86 encoding order (REG_NAMES): for checks run at
   * every call and return, which compare registers without making a bigint of each. Read only.
   */
  get regFile(): { readonly lo: Readonly<Uint32Array>; readonly hi: Readonly<Uint32Array> } {
    return this.cpu;
  }

  /** rsp as an internal address (addr.ts), NaN when it does not hold a canonical one: for checks run at every call and stack write. */
  get rspAt(): number {
    return pairToAddr(this.cpu.lo[RSP]!, this.cpu.hi[RSP]!);
  }

  /** All sixteen registers, unsigned 64-bit. */
  regs(): Record<RegName, bigint> {
    return Object.fromEntries(REG_NAMES.map((n, i) => [n, pairToBig(this.cpu.lo[i]!, this.cpu.hi[i]!)])) as Record<RegName, bigint>;
  }

  get rip(): bigint { return toCanonical(this.cpu.rip); }
  /**
   * Moving rip elsewhere (a hook redirecting, or a resume somewhere else after a stop) ends the
   * arrival whose hooks fired: the next arrival at that address fires them again.
   */
  set rip(v: bigint) {
    const to = mustBeCanonical(v, "rip");
    if (to !== this.cpu.rip) this.hookFired[this.cpu.shadow.depth] = NaN;
    this.cpu.rip = to;
  }
  get rflags(): number { return this.cpu.rflags(); }
  set rflags(v: number) { this.cpu.setRflags(v); }
  get gsBase(): bigint { return toCanonical(this.cpu.gsBase); }
  set gsBase(v: bigint) { this.cpu.gsBase = mustBeCanonical(v, "gs base"); }
  get cs(): bigint { return this.cpu.cs; }
  set cs(v: bigint) { this.cpu.cs = v & 0xffffn; }
  get ss(): bigint { return this.cpu.ss; }
  set ss(v: bigint) { this.cpu.ss = v & 0xffffn; }
  /** Instructions executed since the last `call()`. */
  get steps(): number { return this.cpu.steps; }
  set observer(o: Observer | null) { this.cpu.observer = o; }

  /**
   * Call `fn(addr, size, ip)` for every write into [start, end) before it lands, `ip` being the
   * instruction that writes (or, during interrupt delivery, the one last executed).
   */
  watchWrites(start: bigint, end: bigint, fn: (addr: bigint, size: number, ip: bigint) => void): void {
    this.watchWritesInternal(start, end, this.canonicalWatcher(fn));
  }

  /** The same for reads by instructions (not fetches, not peek64). */
  watchReads(start: bigint, end: bigint, fn: (addr: bigint, size: number, ip: bigint) => void): void {
    this.watchReadsInternal(start, end, this.canonicalWatcher(fn));
  }

  /**
   * watchWrites() and watchReads() with the addresses in their internal form (addr.ts: a canonical
   * address as a signed number): for checks that look at every stack write, which then make no
   * bigint of it.
   */
  watchWritesInternal(start: bigint, end: bigint, fn: InternalWatcher): void {
    this.memory.watchWrites(mustBeCanonical(start, "watch start"), mustBeCanonical(end - 1n, "watch end") + 1, this.memoryWatcher(fn));
  }

  watchReadsInternal(start: bigint, end: bigint, fn: InternalWatcher): void {
    this.memory.watchReads(mustBeCanonical(start, "watch start"), mustBeCanonical(end - 1n, "watch end") + 1, this.memoryWatcher(fn));
  }

  // One wrapper per watcher, so watching more ranges with it is not a second watcher. Maps a
  // reset replaces (a run's watchers go with the run), not WeakMaps: a WeakMap this long-lived
  // would keep every run's watchers, and their closures' checks, alive into V8's old generation
  // (jit/recent-cache.ts).
  private canonicalWatchers = new Map<(addr: bigint, size: number, ip: bigint) => void, InternalWatcher>();
  private canonicalWatcher(fn: (addr: bigint, size: number, ip: bigint) => void): InternalWatcher {
    let w = this.canonicalWatchers.get(fn);
    if (!w) { w = (a, size, ip) => fn(toCanonical(a), size, toCanonical(ip)); this.canonicalWatchers.set(fn, w); }
    return w;
  }
  private memoryWatchers = new Map<InternalWatcher, (a: number, size: number) => void>();
  private memoryWatcher(fn: InternalWatcher): (a: number, size: number) => void {
    let w = this.memoryWatchers.get(fn);
    if (!w) { w = (a, size) => fn(a, size, this.faultIp); this.memoryWatchers.set(fn, w); }
    return w;
  }

  /** Read a 64-bit word without permission checks (observers, unwinders); undefined if not mapped. */
  peek64(addr: bigint): bigint | undefined {
    const a = mustBeCanonical(addr, "peek");
    return this.memory.peek64(a);
  }

  // ---- interrupt configuration (IDT gates, TSS) ----

  setGate(vector: number, handler: bigint, ist = 0): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new RangeError(`vector ${vector} is not 0..255`);
    if (!Number.isInteger(ist) || ist < 0 || ist > 7) throw new RangeError(`IST index ${ist} is not 0..7`);
    this.cpu.idt.set(vector, { handler: mustBeCanonical(handler, `vector ${vector} handler`), ist });
  }

  /** Remove every IDT gate (a machine reused for an image with other vectors). */
  clearGates(): void {
    this.cpu.idt.clear();
  }

  /** TSS.IST[n] (1..7): the stack top loaded when a gate with that IST index is taken. */
  setIst(n: number, top: bigint): void {
    if (!Number.isInteger(n) || n < 1 || n > 7) throw new RangeError(`IST index ${n} is not 1..7`);
    this.cpu.ist[n] = mustBeCanonical(top, `IST ${n}`);
  }

  /** TSS.RSP0: the stack loaded on an interrupt from user mode. */
  setRsp0(top: bigint): void {
    this.cpu.rsp0 = mustBeCanonical(top, "rsp0");
  }

  /**
   * Raise an interrupt. Vector 2 is an NMI (ignores IF, blocked until the next iretq after an
   * NMI); any other vector is a maskable IRQ that stays pending while IF is clear.
   */
  raise(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new RangeError(`vector ${vector} is not 0..255`);
    const c = this.cpu;
    c.pendingAny = true;
    if (vector === X86_TRAP_NMI) { c.pendingNmi = true; return; }
    if (!c.pendingIrqs.includes(vector)) {
      c.pendingIrqs.push(vector);
      c.pendingIrqs.sort((a, b) => b - a);
    }
  }

  get pending(): { nmi: boolean; irqs: readonly number[] } {
    return { nmi: this.cpu.pendingNmi, irqs: [...this.cpu.pendingIrqs] };
  }

  /** Deliver what is deliverable at this boundary; true if something was delivered. */
  private deliverPending(): boolean {
    const c = this.cpu;
    let vector = -1;
    if (c.pendingNmi && !c.nmiBlocked) {
      c.pendingNmi = false;
      vector = X86_TRAP_NMI;
    } else if (c.pendingIrqs.length !== 0 && (c.flags & IF) !== 0 && c.stiShadow !== c.steps) {
      vector = c.pendingIrqs.shift()!;
    }
    c.pendingAny = c.pendingNmi || c.pendingIrqs.length !== 0;
    if (vector < 0) return false;
    c.deliver(vector, c.rip);
    return true;
  }

  // ---- hooks ----

  /**
   * Run `fn` each time the instruction at `addr` is about to execute (like a kprobe: once per
   * execution; an interrupt taken at that boundary does not make it fire again when it
   * returns). Returning "stop" ends the run with a `stopped` result; resuming continues at that
   * instruction without firing again. An interrupt `fn` raises is taken at this boundary. Hooks
   * run before an instruction the machine does not model (they may stop the run or move rip past
   * it); at the stop address they never run: arriving there completes the run.
   */
  addHook(addr: bigint, fn: (m: Machine) => "stop" | void, opts: { readonly first?: boolean } = {}): () => void {
    const a = mustBeCanonical(addr, "hook address");
    const h: HookFn = Object.assign(() => fn(this), { first: opts.first === true });
    const old = this.hooks.get(a) ?? [];
    this.setAddressHooks(a, h.first ? [h, ...old] : [...old, h]);
    /** Remove this hook (only this one; nothing if it is gone already, by clearHooks() too). */
    return () => {
      const now = this.hooks.get(a);
      if (now === undefined || !now.includes(h)) return;
      const rest = now.filter((x) => x !== h);
      if (rest.length === 0) this.clearHooks(addr);
      else this.setAddressHooks(a, rest);
    };
  }

  /**
   * The hooks of an address, a new list each time (never changed in place: the loop may be
   * running the old one, and a hook that adds or removes hooks there must not change that run).
   */
  private setAddressHooks(a: number, list: HookFn[]): void {
    this.hooks.set(a, list);
    for (const cr of this.code) {
      const d = a >= cr.start && a < cr.end ? cr.slots[a - cr.start]! : NOT_DECODED;
      if (d === NOT_DECODED || d === STOP_INSN) continue;
      // one without hooks may be shared with other machines: hooks go on a copy of this one's own
      const own = d.hooks === null ? (cr.slots[a - cr.start] = copyInsn(d)) : d;
      setHooks(own, list);
    }
  }

  clearHooks(addr: bigint): void {
    const a = mustBeCanonical(addr, "hook address");
    this.hooks.delete(a);
    this.unhook(a);
  }

  /** The instruction at `a` runs no hooks (its map entry aside). */
  private unhook(a: number): void {
    // an arrival whose hooks fired (an interrupt taken there) is over for hooks added later
    for (let i = 0; i < this.hookFired.length; i++) if (this.hookFired[i] === a) this.hookFired[i] = NaN;
    for (const cr of this.code) {
      const d = a >= cr.start && a < cr.end ? cr.slots[a - cr.start]! : NOT_DECODED;
      if (d !== NOT_DECODED && d !== STOP_INSN && d.hooks !== null) setHooks(d, null); // a copy of this machine's own
    }
  }

  /**
   * Remove every hook, the observer and the memory watchers, keeping the decode cache: with
   * restore() to a snapshot taken after loading, one machine serves many runs of one image
   * without decoding its code again (campaigns).
   *
   * The hooks go with their map, which a new one replaces, rather than entry by entry: a pooled
   * machine's map, emptied entry by entry, kept its last run's hooks, and through their closures
   * every sample and check of that run, alive into V8's old generation. With the map replaced,
   * 2,000 re-runs of prebuilt images promoted 47 MB instead of 89 (--trace-gc-nvp's
   * `promoted`). Our reading of why: a Map that outgrows or shrinks its table leaves the old
   * table linked to its successor (for live iterators), and the young generation's collector
   * takes an old-generation table's pointers for roots, dead or not.
   */
  resetInstrumentation(): void {
    for (const a of this.hooks.keys()) this.unhook(a);
    this.hooks = new Map();
    this.cpu.observer = null;
    this.memory.unwatch();
    this.canonicalWatchers = new Map();
    this.memoryWatchers = new Map();
  }

  // ---- running ----

  /**
   * Prepare a call of `entry`: push the stop address as its return address (recorded as the
   * root activation of the shadow stack), load arguments, reset the step counter.
   */
  call(entry: bigint, opts: CallOptions = {}): void {
    const c = this.cpu;
    const args = opts.args ?? [];
    if (args.length > 6) throw new RangeError(`call: ${args.length} arguments; at most 6 go in registers`);
    const argRegs = [7, 6, 2, 1, 8, 9];
    args.forEach((v, i) => setPair(c, argRegs[i]!, v));
    if (opts.rsp !== undefined) setPair(c, RSP, opts.rsp);
    const stop = opts.stopAt ?? DEFAULT_STOP_ADDRESS;
    this.placeStop(mustBeCanonical(stop, "stop address"));
    // The stop address may be real entry text (the return address of the outermost kernel frame
    // is entry code, as the unwinder expects): the loop meets it as STOP_INSN in the decode cache,
    // or on the slow lookup path when it lies outside code.
    const target = mustBeCanonical(entry, "entry");
    c.shadow.clear();
    c.steps = 0;
    // A fresh run: no STI shadow or NMI blocking left over from a run that ended mid-handler.
    c.stiShadow = -1;
    c.nmiBlocked = false;
    this.hookFired = [];
    this.parked = new Map();
    this.running = 0;
    const pushed = opts.returnTo === undefined ? this.stopRip : mustBeCanonical(opts.returnTo, "return address");
    try {
      const s = pushed;
      c.push64(s >>> 0, hiOf(s));
    } catch (e) {
      if (e instanceof MemFault) throw new RangeError(`call: cannot push the return address: ${e.describe()}`);
      throw e;
    }
    c.shadow.push(ACT_ROOT, target, pushed, c.rspInternal(), -1, -1);
    c.rip = target;
  }

  // ---- tasks ----

  /** The task whose activations the shadow stack holds now (an id the caller chose; 0 at call()). */
  running = 0;
  private parked = new Map<number, ParkedTask>();

  /**
   * A task that has not run yet: its first switch-in returns through `ret` from the word at
   * `slot` to `ret` (its fork frame's ret_addr), as if `entry` had been called from there.
   */
  seedTask(task: number, entry: bigint, ret: bigint, slot: bigint): void {
    this.parked.set(task, { shadow: ShadowStack.one(ACT_ROOT, mustBeCanonical(entry, "task entry"), mustBeCanonical(ret, "task return"), mustBeCanonical(slot, "task slot"), -1, -1), hookFired: [] });
  }

  /**
   * The context switch, as the ground truth sees it (call it where the code loads the next
   * task's rsp): the running task's activations are put aside and `next`'s come back.
   * Observers hear of it (onSwitch).
   */
  switchTask(next: number): void {
    const prev = this.running;
    if (next === prev) return;
    const c = this.cpu;
    const back = this.parked.get(next);
    if (back === undefined) throw new RangeError(`switchTask: task ${next} has no saved state (never seeded, or running)`);
    // prev stops at this instruction, which is about to execute: its hooks are spent
    const fired = this.hookFired.slice();
    fired[c.shadow.depth] = NaN;
    this.parked.set(prev, { shadow: c.shadow.snapshot(), hookFired: fired });
    this.parked.delete(next);
    c.shadow.restore(back.shadow);
    this.hookFired = back.hookFired.slice();
    this.running = next;
    this.cpu.observer?.onSwitch?.(prev, next);
  }

  /** Where parkedTruth() lays out a parked task's activations (one for the machine). */
  private parkedShadow: ShadowStack | undefined;

  /** The tasks that are switched out (their ids). */
  parkedTasks(): number[] {
    return [...this.parked.keys()];
  }

  /**
   * The true chain of a switched-out task, innermost first: its activations as truth() gives
   * them, the innermost executing at `ip` (where it stopped: in __switch_to_asm).
   */
  parkedTruth(task: number, ip: bigint): TruthEntry[] {
    const p = this.parked.get(task);
    if (p === undefined) throw new RangeError(`parkedTruth: task ${task} is not switched out`);
    const sh = (this.parkedShadow ??= new ShadowStack());
    sh.restore(p.shadow);
    return this.truthOf(sh, mustBeCanonical(ip, "ip"));
  }

  /** Run to the end: completion, a fault, a failure, a hang, or a hook's stop. */
  run(opts: RunOptions = {}): Exclude<RunResult, { kind: "paused" }> {
    return this.execute(opts.maxSteps ?? DEFAULT_MAX_STEPS, -1) as Exclude<RunResult, { kind: "paused" }>;
  }

  /** Run until `steps` instructions have executed since `call()` (then `paused`), or the run ends. */
  runUntil(steps: number, opts: RunOptions = {}): RunResult {
    if (!Number.isInteger(steps) || steps < this.cpu.steps) throw new RangeError(`runUntil(${steps}): the run is already at step ${this.cpu.steps}`);
    return this.execute(opts.maxSteps ?? DEFAULT_MAX_STEPS, steps);
  }

  /** Execute one instruction (after delivering whatever interrupt is deliverable first). */
  step(): RunResult {
    return this.execute(Number.MAX_SAFE_INTEGER, this.cpu.steps + 1);
  }

  private execute(limit: number, pauseAt: number): RunResult {
    try {
      return this.loop(limit, pauseAt);
    } catch (e) {
      if (e instanceof Stop) return e.result;
      if (e instanceof MemFault) return this.faultResult(e);
      if (e instanceof RunawayNesting) {
        const c = this.cpu, ip = this.faultIp;
        return { kind: "hang", steps: c.steps, rip: toCanonical(ip), symbol: c.symbolize(ip), message: `runaway nesting: ${e.message} (a recursion nothing stops, such as a program that runs itself on a path with no recursion counter) after ${c.steps} steps; at ${c.describe(ip)}` };
      }
      throw e;
    }
  }

  private loop(limit: number, pauseAt: number): RunResult {
    const c = this.cpu;
    const handlers = HANDLERS;
    const lo = c.lo, hi = c.hi, mem = this.memory;
    const until = pauseAt >= 0 && pauseAt < limit ? pauseAt : limit;
    // The next rip is carried in a local as well as in c.rip: reading it back from the CPU object
    // at the top of every step would put a store and a load on the loop's critical path (a third
    // of the time of a simple instruction, measured). Every path that lets other code move
    // c.rip (handlers through the table, memory watchers, observers, interrupt delivery, hooks)
    // reads it back. ip itself goes to no call (calls that took it made V8 box it on more paths:
    // 14 bytes allocated an instruction before, 8 to 14 after, by V8's GC trace; it still boxes
    // next at some back edges, for a reason not found): a call that needs the address gets the
    // instruction's own d.ip, or c.rip, which equals ip at the top of the loop, always.
    let next = c.rip;
    for (;;) {
      const ip = next;
      if (c.steps >= until) {
        if (ip === this.stopRip) return this.completed();
        return this.pausedOrHang(pauseAt);
      }
      if (c.pendingAny) {
        if (ip === this.stopRip) return this.completed();
        if (this.deliverPending()) { next = c.rip; continue; }
      }
      this.faultIp = ip;
      // Fast path: the region execution is in, already decoded. A stop address inside a code
      // region has STOP_INSN in its decode slot (placeStop()); one outside is met on the slow path.
      const off = ip - this.cLo;
      let d: DInsn;
      if (off >= 0 && off < this.cLen && (d = this.cSlots[off]!) !== NOT_DECODED) {
        // decoded (or STOP_INSN at the stop address)
      } else {
        if (ip === this.stopRip) return this.completed();
        d = this.insnAt(c.rip);
      }
      let op = d.exec;
      let depth = -1;
      if (op === 0) {
        // The slow path: the stop address, an instruction with hooks, or an unsupported one
        // (whose hooks still run first: they may stop the run or jump past it).
        if (d === STOP_INSN) return this.completed();
        if (d.hooks !== null) {
          depth = c.shadow.depth;
          if (this.hookFired[depth] !== d.ip) {
            this.hookFired[depth] = d.ip;
            let stop = false;
            for (const h of d.hooks) {
              if (h() !== "stop") continue;
              stop = true;
              if (h.first) break; // the address's other hooks do not run at this arrival (nor on a resume here)
            }
            if (stop) return { kind: "stopped", steps: c.steps, rip: toCanonical(d.ip), symbol: c.symbolize(d.ip) };
            if (c.rip !== d.ip) { next = c.rip; continue; } // a hook redirected execution
            // An interrupt a hook raised arrives at this same boundary, before the instruction runs.
            if (c.pendingAny && this.deliverPending()) { next = c.rip; continue; }
          }
        }
        if (d.op === 0) return this.unsupported(d);
        op = d.op;
      }
      next = d.next;
      c.rip = next;
      c.steps++;
      // The hottest ops inline (their handlers in exec.ts have the same semantics); the rest
      // through the table. A switch on small constants compiles to a jump table, where the
      // table's indirect call cannot be inlined. After any op that may run other code (a
      // handler, a memory watcher, an observer), c.rip says where to go: it may have moved it.
      switch (op) {
        case OP_MOV_RR64: { const r0 = d.r0, r1 = d.r1; lo[r0] = lo[r1]!; hi[r0] = hi[r1]!; break; }
        case OP_MOV_LOAD64: { const l = mem.read64(c.ea(d)); lo[d.r0] = l; hi[d.r0] = mem.hi; next = c.rip; break; }
        case OP_MOV_STORE64: mem.write64(c.ea(d, "write"), lo[d.r1]!, hi[d.r1]!); next = c.rip; break;
        case OP_PUSH_R: c.push64(lo[d.r0]!, hi[d.r0]!); next = c.rip; break;
        case OP_POP_R: { const l = c.pop64(); lo[d.r0] = l; hi[d.r0] = c.th; next = c.rip; break; }
        case OP_JMP: next = d.target; c.rip = next; break;
        case OP_JCC: if (c.test(d.cond)) { next = d.target; c.rip = next; } break;
        case OP_CALL: c.call(d.target, d.next, d.ip); next = c.rip; break;
        case OP_RET: c.ret(d.ip, d.immLo); next = c.rip; break;
        case OP_ADD_RI64: H_ADD_RI64(c, d); break;
        case OP_SUB_RI64: H_SUB_RI64(c, d); break;
        case OP_CMP_RI64: H_CMP_RI64(c, d); break;
        case OP_LEA: H_LEA(c, d); break;
        case OP_ADD_RR64: H_ADD_RR64(c, d); break;
        case OP_XOR_RR64: H_XOR_RR64(c, d); break;
        case OP_NOP: break;
        default: handlers[op]!(c, d); next = c.rip;
      }
      if (depth >= 0 && this.hookFired[depth] === d.ip) this.hookFired[depth] = NaN; // executed: the next arrival fires again
    }
  }

  /** The loop's end at its step limit, at rip: paused at `pauseAt`, else a hang. */
  private pausedOrHang(pauseAt: number): RunResult {
    const c = this.cpu, ip = c.rip;
    if (c.steps === pauseAt) return { kind: "paused", steps: c.steps, rip: toCanonical(ip) };
    return { kind: "hang", steps: c.steps, rip: toCanonical(ip), symbol: c.symbolize(ip), message: `no completion after ${c.steps} steps; at ${c.describe(ip)}` };
  }

  private completed(): FinalResult {
    const c = this.cpu;
    return { kind: "completed", rax: pairToBig(c.lo[0]!, c.hi[0]!), steps: c.steps };
  }

  /** RIP of the instruction being executed (or fetched) when a MemFault is thrown. */
  private faultIp = 0;

  private faultResult(e: MemFault): FinalResult {
    const c = this.cpu;
    const ip = this.faultIp;
    c.rip = ip; // the faulting instruction did not complete
    const address = e.raw ?? toCanonical(e.addr);
    return {
      kind: "fault", reason: e.reason, access: e.access, address,
      region: e.region?.name, regionKind: e.region?.kind,
      rip: toCanonical(ip), symbol: c.symbolize(ip),
      message: `${e.describe()} at rip ${c.describe(ip)}${e.access === "execute" && e.addr === ip ? "" : ` (${this.disassembleAt(toCanonical(ip))})`}`,
    };
  }

  private unsupported(d: DInsn): FinalResult {
    const bytes = this.memory.peek(d.ip, Math.max(1, d.len)) ?? new Uint8Array();
    const text = this.disassembleAt(toCanonical(d.ip));
    const why = unsupportedWhy.get(d);
    const listed = hexBytes(bytes);
    return {
      kind: "unsupported", rip: toCanonical(d.ip), symbol: this.cpu.symbolize(d.ip), text, bytes: listed,
      message: `unsupported instruction '${text}' (${listed}) at ${this.cpu.describe(d.ip)}${why ? `: ${why} not modelled` : ""}`,
    };
  }

  // ---- ground truth ----

  /** The true chain of activations, innermost first, with interrupt boundaries marked. */
  truth(): TruthEntry[] {
    return this.truthOf(this.cpu.shadow, this.cpu.rip);
  }

  private truthOf(shadow: ShadowStack, rip: number): TruthEntry[] {
    const c = this.cpu;
    const out: TruthEntry[] = [];
    let cursor = rip;
    if (shadow.depth === 0) {
      return [{ kind: "frame", ip: toCanonical(cursor), symbol: c.symbolize(cursor), function: "", entry: toCanonical(cursor), returnAddress: undefined, slot: undefined, entered: "unknown" }];
    }
    const cache = shadow === c.shadow ? this.truthCache : undefined;
    for (let i = shadow.depth - 1; i >= 0; i--) {
      const kept = cache?.[i];
      if (kept !== undefined && shadow.same(i, kept.act)) {
        // the same activation; where it executes may have moved (the innermost one's, at every
        // step): only its frame entry's ip and symbol then (an interrupt entry does not change)
        if (kept.cursor !== cursor) {
          const [frame, ...rest] = kept.entries;
          kept.entries = [{ ...frame!, ip: toCanonical(cursor), symbol: c.symbolize(cursor) } as TruthEntry, ...rest];
          kept.cursor = cursor;
        }
        for (const e of kept.entries) out.push(e);
      } else {
        const a = shadow.at(i), bp = shadow.bpAt(i);
        const entries: TruthEntry[] = [{
          kind: "frame", ip: toCanonical(cursor), symbol: c.symbolize(cursor), function: this.symbols.lookupInternal(a.entry)?.name ?? hex64(toCanonical(a.entry)),
          entry: toCanonical(a.entry), returnAddress: toCanonical(a.ret), slot: toCanonical(a.slot),
          entered: a.kind === ACT_CALL ? "call" : a.kind === ACT_INTERRUPT ? "interrupt" : "root", ...(bp === undefined ? {} : { entryBp: bp }),
        }];
        if (a.kind === ACT_INTERRUPT) {
          entries.push({ kind: "interrupt", vector: a.vector, name: interruptName(a.vector), ip: toCanonical(a.ret), symbol: c.symbolize(a.ret), rsp: a.rspRaw, frame: toCanonical(a.slot), bp: bp! });
        }
        if (cache !== undefined) cache[i] = { cursor, act: shadow.record(i), entries };
        for (const e of entries) out.push(e);
      }
      cursor = shadow.ret[i]!;
    }
    return out;
  }

  /**
   * The truth entries of each activation of the running task as last built, by shadow-stack
   * index, with what they were built from (the activation, and where it executes): samples,
   * and exhaustive mode's walk at every boundary, ask for the truth again and again while only
   * the innermost activation's ip moves. Entries are never changed, so they are shared.
   */
  private truthCache: ({ cursor: number; readonly act: ActivationRecord; entries: readonly TruthEntry[] } | undefined)[] = [];

  /**
   * The return address of every activation of the running task, innermost first: the frame
   * entries' returnAddress in truth(), which is the chain a correct walk gives past the
   * interrupted ip (classify.ts expectedChain()), without building the truth. Exhaustive mode
   * asks it at every boundary; the array is shared until an activation's return address or
   * the depth changes (callers do not change it).
   */
  returnAddresses(): readonly bigint[] {
    const s = this.cpu.shadow, kept = this.retKept;
    let same = kept.length === s.depth;
    for (let i = 0; same && i < s.depth; i++) same = kept[i] === s.ret[s.depth - 1 - i];
    if (!same) {
      kept.length = 0;
      const out: bigint[] = [];
      for (let i = s.depth - 1; i >= 0; i--) { kept.push(s.ret[i]!); out.push(toCanonical(s.ret[i]!)); }
      this.retChain = out;
    }
    return this.retChain;
  }
  private retKept: number[] = [];
  private retChain: readonly bigint[] = [];

  /** Depth of the shadow stack (activations live now). */
  get depth(): number {
    return this.cpu.shadow.depth;
  }

  // ---- snapshots ----

  /**
   * Is the machine in the state `s` recorded, as far as the rest of a run can tell? The
   * registers, rflags, rip, the interrupt state, the running task, the ground truth's depth and
   * parked tasks, and memory byte for byte except in `dead` (canonical [from, to) ranges whose
   * contents nothing reads before writing: stack below a stack pointer). Exhaustive mode asks it
   * when an injected interrupt has returned, to skip running a fork on that the unforked run
   * has already run.
   */
  sameStateAs(s: MachineSnapshot, dead: readonly (readonly [bigint, bigint])[]): boolean {
    const c = this.cpu;
    if (c.rip !== s.rip || c.rflags() !== s.flags || c.gsBase !== s.gsBase || c.cs !== s.cs || c.ss !== s.ss) return false;
    if (c.stiShadow !== s.stiShadow || c.nmiBlocked !== s.nmiBlocked || c.pendingNmi !== s.pendingNmi || c.pendingIrqs.length !== s.pendingIrqs.length) return false;
    for (let i = 0; i < s.lo.length; i++) if (c.lo[i] !== s.lo[i] || c.hi[i] !== s.hi[i]) return false;
    if (this.running !== s.running || c.shadow.depth !== s.shadow.depth || this.parked.size !== s.parked.size) return false;
    for (const [k, v] of this.parked) if (s.parked.get(k) !== v) return false;
    return this.memory.sameAs(s.mem, dead.map(([a, b]) => [Number(toInternalAddr(a)), Number(toInternalAddr(b))] as const));
  }

  snapshot(): MachineSnapshot {
    const c = this.cpu;
    return {
      lo: c.lo.slice(), hi: c.hi.slice(), rip: c.rip, flags: c.rflags(), gsBase: c.gsBase, cs: c.cs, ss: c.ss, steps: c.steps,
      stiShadow: c.stiShadow, nmiBlocked: c.nmiBlocked, pendingNmi: c.pendingNmi, pendingIrqs: c.pendingIrqs.slice(),
      shadow: c.shadow.snapshot(), stopRip: this.stopRip, hookFired: this.hookFired.slice(), codeEpoch: this.codeEpoch,
      mem: this.memory.snapshot(), parked: new Map(this.parked), running: this.running,
    };
  }

  restore(s: MachineSnapshot): void {
    const c = this.cpu;
    c.lo.set(s.lo);
    c.hi.set(s.hi);
    c.spValid = false;
    c.rip = s.rip;
    c.flags = s.flags;
    c.fKind = F_NONE;
    c.gsBase = s.gsBase; c.cs = s.cs; c.ss = s.ss; c.steps = s.steps;
    c.stiShadow = s.stiShadow; c.nmiBlocked = s.nmiBlocked; c.pendingNmi = s.pendingNmi; c.pendingIrqs = s.pendingIrqs.slice();
    c.pendingAny = c.pendingNmi || c.pendingIrqs.length !== 0;
    c.shadow.restore(s.shadow);
    this.placeStop(s.stopRip);
    this.hookFired = s.hookFired.slice();
    this.parked = new Map(s.parked);
    this.running = s.running;
    this.memory.restore(s.mem);
    // A region whose bytes changed since the snapshot (a load, or a restore to older bytes; or
    // the first bytes of the region right above it, which an instruction at its end may span)
    // may hold instructions the restored memory does not: its cache starts over, and its bytes
    // have changed now. A region that has not changed since keeps its cache (the kernel text a machine
    // reused across images keeps).
    let epoch = -1;
    for (const cr of this.code) {
      if (cr.changed <= s.codeEpoch) continue;
      if (epoch < 0) epoch = ++this.codeEpoch;
      cr.slots.fill(NOT_DECODED);
      cr.changed = epoch;
    }
    if (epoch >= 0) this.placeStop(this.stopRip);
  }
}

function setPair(c: Cpu, i: number, v: bigint): void {
  if (i === RSP) c.spValid = false;
  const u = BigInt.asUintN(64, v);
  c.lo[i] = Number(u & 0xffffffffn);
  c.hi[i] = Number(u >> 32n);
}

function regIndex(name: RegName): number {
  const i = REG_NAMES.indexOf(name);
  if (i < 0) throw new RangeError(`unknown register '${String(name)}'; expected one of ${REG_NAMES.join(", ")}`);
  return i;
}

