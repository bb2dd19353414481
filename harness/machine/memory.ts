// Byte-addressable paged memory with named regions and permissions.
//
// Pages are 4 KiB. Every mapped page belongs to one region (text, data, stack, per-CPU, guard).
// An access to an unmapped page, a guard page, a write to text, or a fetch from
// non-executable memory throws a MemFault, which the machine turns into a typed fault result.
//
// Snapshots are copy-on-write: a snapshot freezes the current pages; the live memory copies a
// page the first time it writes to it afterwards. That makes forking a run at every instruction
// boundary cost O(pages mapped) for the page table plus one page copy per page written.
import { hex64 as hex64__, mustBeCanonical as mustBeCanonical__, pairToAddr as pairToAddr__, toCanonical as toCanonical__, toInternal as toInternal__ } from "./addr.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const hex64 = hex64__, mustBeCanonical = mustBeCanonical__, pairToAddr = pairToAddr__, toCanonical = toCanonical__, toInternal = toInternal__;

export const PAGE_SIZE = 4096;
/** 32-bit words in a page (Page.u32). */
const WORDS = PAGE_SIZE / 4;

export type RegionKind = "text" | "data" | "stack" | "percpu" | "guard";
export type Access = "read" | "write" | "execute";

export interface RegionDef {
  readonly name: string;
  readonly kind: RegionKind;
  /** Canonical start address; page aligned. */
  readonly start: bigint;
  /** Size in bytes; a multiple of the page size. */
  readonly size: number;
  /** `r`, `w`, `x` or `-` in that order, e.g. `r-x`. Guard regions must be `---`. */
  readonly perms: string;
}

export interface Region {
  readonly name: string;
  readonly kind: RegionKind;
  readonly start: number;
  readonly end: number;
  readonly r: boolean;
  readonly w: boolean;
  readonly x: boolean;
}

export type FaultReason = "unmapped" | "guard-page" | "write-to-text" | "no-write" | "no-read" | "no-execute" | "non-canonical";

/** Thrown by memory accessors; caught by the machine at instruction granularity. */
export class MemFault {
  constructor(
    readonly reason: FaultReason,
    readonly access: Access,
    /** Internal address, or NaN for a non-canonical one (then `raw` holds it). */
    readonly addr: number,
    readonly region: Region | undefined,
    readonly raw?: bigint,
  ) {}

  describe(): string {
    const where = this.raw !== undefined ? hex64(this.raw) : hex64(this.addr);
    const region = this.region ? `region '${this.region.name}' (${this.region.kind})` : "unmapped memory";
    const what: Record<FaultReason, string> = {
      "unmapped": `${this.access} of unmapped address ${where}`,
      "guard-page": `${this.access} of guard page at ${where} in ${region}`,
      "write-to-text": `write to kernel text at ${where} in ${region}`,
      "no-write": `write to read-only ${where} in ${region}`,
      "no-read": `read of unreadable ${where} in ${region}`,
      "no-execute": `instruction fetch from non-executable ${where} in ${region}`,
      "non-canonical": `${this.access} of non-canonical address ${where}`,
    };
    return what[this.reason];
  }
}

class Page {
  readonly dv: DataView<ArrayBuffer>;
  readonly u32: Uint32Array<ArrayBuffer>;
  /** The bytes as a Buffer, for sameAs()'s native compares. */
  readonly buf: Buffer;
  constructor(readonly data: Uint8Array<ArrayBuffer>, public region: Region, public epoch: number) {
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.u32 = new Uint32Array(data.buffer, data.byteOffset, WORDS);
    this.buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }
}

export interface MemorySnapshot {
  readonly pages: PageTable;
}

/** The slots of a page table and of every table copied from it: a page's slot, and a slot's page number. */
class Slots {
  readonly of = new Map<number, number>();
  readonly no: number[] = [];
}

/**
 * Page number -> page. Each page number mapped gets a slot, never reused, shared by every copy
 * of the table; a table is its array of pages by slot, so a snapshot or a restore copies an
 * array of pointers instead of rebuilding a hash map (exhaustive mode does both at every fork).
 * A copy made before a page was mapped has no page in that slot: unmapped, as it was then.
 */
class PageTable {
  constructor(readonly slots: Slots = new Slots(), readonly pages: (Page | undefined)[] = []) {}

  // The page last looked up: the unwinders' reads and the stack's watched writes (slow paths)
  // mostly ask for the page they asked for before, whose number, for a kernel address, is no
  // small integer, so the hash map's lookup is the costly part. Only set() changes a table.
  private lastNo = NaN;
  private lastPage: Page | undefined;

  get(no: number): Page | undefined {
    if (no === this.lastNo) return this.lastPage;
    const i = this.slots.of.get(no);
    if (i === undefined) return undefined;
    this.lastNo = no;
    return (this.lastPage = this.pages[i]);
  }

  set(no: number, p: Page): void {
    if (no === this.lastNo) this.lastPage = p;
    let i = this.slots.of.get(no);
    if (i === undefined) {
      i = this.slots.no.length;
      this.slots.of.set(no, i);
      this.slots.no.push(no);
    }
    this.pages[i] = p;
  }

  copy(): PageTable {
    return new PageTable(this.slots, this.pages.slice());
  }
}

/**
 * A mapped page nobody has written yet: one per region, sharing ZERO_DATA, with an epoch no
 * memory ever has, so the first write (or load) copies it as copy-on-write does for snapshots.
 * Mapping a region costs no allocation per page; reads of untouched memory see zeros.
 */
const ZERO_DATA = new Uint8Array(PAGE_SIZE);
/** Spare pages a memory keeps for reuse, at most (restore()). */
const MAX_SPARE = 64;
const UNWRITTEN = -1;

/** Are bytes [from, from + n) all zero? */
function isZero(bytes: Uint8Array, from: number, n: number): boolean {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset + from, n);
  return b.equals(ZERO_DATA.subarray(0, n));
}

function pageNo(a: number): number {
  return Math.floor(a / PAGE_SIZE);
}

export class Memory {
  private pages = new PageTable();
  private readonly regionList: Region[] = [];
  private epoch = 0;
  // One-entry caches for the page last read and last written, keyed by the page's base address
  // so that a hit costs a subtraction and a compare (no division). The write cache only ever
  // holds a page owned by the current epoch, so a cached write never needs a copy-on-write check.
  private rBase = NaN;
  private rPage: Page | undefined;
  private wBase = NaN;
  private wPage: Page | undefined;
  /** Pages whose writes are reported to `watcher` (never held in the write cache). */
  private watched = new Set<number>();
  private watcher: ((a: number, size: number) => void) | null = null;
  private rWatched = new Set<number>();
  private rWatcher: ((a: number, size: number) => void) | null = null;
  // Whether the page last asked about is watched, for writes and for reads: a watched page's
  // accesses all take the slow path, mostly on the page asked about before, and a kernel page
  // number is no small integer, so a Set lookup hashes a heap number (the stacks are watched for
  // reads too: harness/oracles/dead-stack.ts). dropCaches() forgets them.
  private wWatchNo = NaN;
  private wWatchIs = false;
  private rWatchNo = NaN;
  private rWatchIs = false;

  /**
   * Report every write into [start, end) to `fn` (internal addresses), before it lands. Watched
   * pages stay out of the write cache, so only runs that watch pay for it (the memory oracle).
   */
  watchWrites(start: number, end: number, fn: (a: number, size: number) => void): void {
    if (this.watcher !== null && this.watcher !== fn) throw new Error("watchWrites: another watcher is installed (one write watcher per machine)");
    for (let p = pageNo(start); p < pageNo(end - 1) + 1; p++) this.watched.add(p);
    this.watcher = fn;
    this.dropCaches();
  }

  /**
   * Stop reporting writes and reads (a machine reused for another run). New sets rather than
   * cleared ones, as Machine.resetInstrumentation() replaces its hook map: a long-lived Set
   * emptied in place is what kept a run's objects alive into V8's old generation there.
   */
  unwatch(): void {
    this.watched = new Set();
    this.rWatched = new Set();
    this.watcher = this.rWatcher = null;
    this.dropCaches();
  }

  /** The same for reads (instruction fetches are not reads). */
  watchReads(start: number, end: number, fn: (a: number, size: number) => void): void {
    if (this.rWatcher !== null && this.rWatcher !== fn) throw new Error("watchReads: another watcher is installed (one read watcher per machine)");
    for (let p = pageNo(start); p < pageNo(end - 1) + 1; p++) this.rWatched.add(p);
    this.rWatcher = fn;
    this.dropCaches();
  }

  get regions(): readonly Region[] {
    return this.regionList;
  }

  map(def: RegionDef): Region {
    const start = mustBeCanonical(def.start, `region '${def.name}' start`);
    if (start % PAGE_SIZE !== 0) throw new RangeError(`region '${def.name}': start ${hex64(def.start)} is not page aligned`);
    if (!Number.isInteger(def.size) || def.size <= 0 || def.size % PAGE_SIZE !== 0) {
      throw new RangeError(`region '${def.name}': size ${def.size} is not a positive multiple of ${PAGE_SIZE}`);
    }
    if (!/^[r-][w-][x-]$/.test(def.perms)) throw new RangeError(`region '${def.name}': perms '${def.perms}' must look like 'r-x'`);
    if (def.kind === "guard" && def.perms !== "---") throw new RangeError(`region '${def.name}': a guard region must be '---'`);
    // W^X, as the kernel maps text and BPF images: code never changes under the decode cache
    // except through load(), which the machine tracks.
    if (def.perms === "rwx" || def.perms === "-wx") throw new RangeError(`region '${def.name}': perms '${def.perms}' are writable and executable; kernel text is read-only (W^X)`);
    const region: Region = {
      name: def.name, kind: def.kind, start, end: start + def.size,
      r: def.perms[0] === "r", w: def.perms[1] === "w", x: def.perms[2] === "x",
    };
    for (const other of this.regionList) {
      if (region.start < other.end && other.start < region.end) {
        throw new RangeError(`region '${def.name}' overlaps region '${other.name}'`);
      }
    }
    this.regionList.push(region);
    const zero = new Page(ZERO_DATA, region, UNWRITTEN);
    for (let p = pageNo(start); p < pageNo(region.end); p++) this.pages.set(p, zero);
    this.dropCaches();
    return region;
  }

  regionAt(addr: number): Region | undefined {
    return this.pages.get(pageNo(addr))?.region;
  }

  regionByName(name: string): Region | undefined {
    return this.regionList.find((r) => r.name === name);
  }

  // ---- checked accessors used by instructions (internal addresses) ----

  private fault(access: Access, addr: number): never {
    const page = this.pages.get(pageNo(addr));
    if (!page) throw new MemFault("unmapped", access, addr, undefined);
    const r = page.region;
    if (r.kind === "guard") throw new MemFault("guard-page", access, addr, r);
    if (access === "write") throw new MemFault(r.kind === "text" ? "write-to-text" : "no-write", access, addr, r);
    throw new MemFault(access === "read" ? "no-read" : "no-execute", access, addr, r);
  }

  /** Pages no table holds any more, whose buffers copyOf() reuses (restore()). */
  private readonly spare: Page[] = [];

  /** A page of this epoch with `p`'s bytes (copy-on-write), reusing a spare page when there is one. */
  private copyOf(p: Page): Page {
    const q = this.spare.pop();
    if (q === undefined) return new Page(p.data.slice(), p.region, this.epoch);
    q.data.set(p.data);
    q.region = p.region;
    q.epoch = this.epoch;
    return q;
  }

  private dropCaches(): void {
    this.rBase = this.wBase = NaN;
    this.wWatchNo = this.rWatchNo = NaN;
    this.rPage = this.wPage = undefined;
  }

  private readPage(no: number, addr: number): Page {
    const p = this.pages.get(no);
    if (p === undefined || !p.region.r) this.fault("read", addr);
    this.rBase = no * PAGE_SIZE;
    this.rPage = p;
    return p;
  }

  private writePage(no: number, addr: number): Page {
    if (no * PAGE_SIZE === this.wBase) return this.wPage!;
    let p = this.pages.get(no);
    if (p === undefined || !p.region.w) this.fault("write", addr);
    if (p.epoch !== this.epoch) {
      p = this.copyOf(p);
      this.pages.set(no, p);
      if (no * PAGE_SIZE === this.rBase) this.rPage = p;
    }
    this.wBase = no * PAGE_SIZE;
    this.wPage = p;
    return p;
  }

  /** Make the read cache hold the page of `a`: the offset in it, or -1 if `size` bytes cross pages. */
  private readSlow(a: number, size: number): number {
    const no = pageNo(a), off = a - no * PAGE_SIZE;
    if (off > PAGE_SIZE - size) return -1;
    this.readPage(no, a);
    if (no !== this.rWatchNo) { this.rWatchNo = no; this.rWatchIs = this.rWatched.has(no); }
    if (this.rWatchIs && this.rWatcher !== null) {
      this.rBase = NaN; // keep the next read of this page on the slow path too
      this.rWatcher(a, size);
    }
    return off;
  }

  private writeSlow(a: number, size: number): number {
    const no = pageNo(a), off = a - no * PAGE_SIZE;
    if (off > PAGE_SIZE - size) {
      this.writePage(no, a);
      this.writePage(no + 1, (no + 1) * PAGE_SIZE); // check both pages before writing either; the fault names the first byte it cannot write
      return -1;
    }
    this.writePage(no, a);
    if (no !== this.wWatchNo) { this.wWatchNo = no; this.wWatchIs = this.watched.has(no); }
    if (this.wWatchIs && this.watcher !== null) {
      this.wBase = NaN; // keep the next write to this page on the slow path too
      this.watcher(a, size);
    }
    return off;
  }

  read8(a: number): number {
    let off = a - this.rBase;
    if (!(off >= 0 && off < PAGE_SIZE)) off = this.readSlow(a, 1);
    return this.rPage!.data[off]!;
  }

  read16(a: number): number {
    let off = a - this.rBase;
    if (!(off >= 0 && off <= PAGE_SIZE - 2)) {
      off = this.readSlow(a, 2);
      if (off < 0) return this.read8(a) | (this.read8(a + 1) << 8);
    }
    return this.rPage!.dv.getUint16(off, true);
  }

  read32(a: number): number {
    let off = a - this.rBase;
    if (!(off >= 0 && off <= PAGE_SIZE - 4)) {
      off = this.readSlow(a, 4);
      if (off < 0) return (this.read16(a) | (this.read16(a + 2) << 16)) >>> 0;
    }
    return this.rPage!.dv.getUint32(off, true);
  }

  /**
   * The qword at `a`: returns its low 32 bits and leaves the high 32 bits in `hi` (64-bit values
   * travel as two uint32 halves; see cpu.ts).
   */
  read64(a: number): number {
    // (the aligned hit inline, the rest in read64Slow(): a small body V8 inlines into its callers,
    // where an address passed or returned across a call would be a heap-allocated number; and the
    // slow path's result comes back through a field: a call's result merged with the hit's made
    // V8 box the value read, a heap number a read, seen in its code)
    const off = a - this.rBase;
    if (off >= 0 && off <= PAGE_SIZE - 8 && (off & 7) === 0) {
      const u = this.rPage!.u32, i = off >> 2;
      this.hi = u[i + 1]!;
      return u[i]!;
    }
    this.read64Slow(a);
    return this.lo;
  }

  /** read64()'s other cases (all but an aligned qword in the cached page): the qword's halves into lo and hi. */
  private read64Slow(a: number): void {
    let off = a - this.rBase;
    if (!(off >= 0 && off <= PAGE_SIZE - 8)) {
      off = this.readSlow(a, 8);
      if (off < 0) {
        const lo = this.read32(a), hi = this.read32(a + 4); // (each may run a read watcher: set both after)
        this.lo = lo;
        this.hi = hi;
        return;
      }
    }
    const p = this.rPage!;
    if ((off & 7) === 0) {
      this.hi = p.u32[(off >> 2) + 1]!;
      this.lo = p.u32[off >> 2]!;
      return;
    }
    this.hi = p.dv.getUint32(off + 4, true);
    this.lo = p.dv.getUint32(off, true);
  }

  /** Low half of the last read64 that took its slow path (read64() returns it). */
  private lo = 0;
  /** High half of the last read64. */
  hi = 0;

  write8(a: number, v: number): void {
    let off = a - this.wBase;
    if (!(off >= 0 && off < PAGE_SIZE)) off = this.writeSlow(a, 1);
    this.wPage!.data[off] = v;
  }

  write16(a: number, v: number): void {
    let off = a - this.wBase;
    if (!(off >= 0 && off <= PAGE_SIZE - 2)) {
      off = this.writeSlow(a, 2);
      if (off < 0) { this.write8(a, v & 0xff); this.write8(a + 1, (v >>> 8) & 0xff); return; }
    }
    this.wPage!.dv.setUint16(off, v, true);
  }

  write32(a: number, v: number): void {
    let off = a - this.wBase;
    if (!(off >= 0 && off <= PAGE_SIZE - 4)) {
      off = this.writeSlow(a, 4);
      if (off < 0) { for (let i = 0; i < 4; i++) this.write8(a + i, (v >>> (8 * i)) & 0xff); return; }
    }
    this.wPage!.dv.setUint32(off, v >>> 0, true);
  }

  write64(a: number, lo: number, hi: number): void {
    // (as read64(): the aligned hit inline, the rest in write64Slow())
    const off = a - this.wBase;
    if (off >= 0 && off <= PAGE_SIZE - 8 && (off & 7) === 0) {
      const u = this.wPage!.u32, i = off >> 2;
      u[i] = lo;
      u[i + 1] = hi;
      return;
    }
    this.write64Slow(a, lo, hi);
  }

  private write64Slow(a: number, lo: number, hi: number): void {
    let off = a - this.wBase;
    if (!(off >= 0 && off <= PAGE_SIZE - 8)) {
      off = this.writeSlow(a, 8);
      if (off < 0) { this.write32(a, lo); this.write32(a + 4, hi); return; }
    }
    const p = this.wPage!;
    if ((off & 7) === 0) {
      p.u32[off >> 2] = lo;
      p.u32[(off >> 2) + 1] = hi;
    } else {
      p.dv.setUint32(off, lo, true);
      p.dv.setUint32(off + 4, hi, true);
    }
  }

  /** Fetch check for instruction decoding: returns up to `max` bytes readable from an executable page. */
  fetch(a: number, max: number): Uint8Array {
    const no = pageNo(a);
    const p = this.pages.get(no);
    if (p === undefined || !p.region.x) this.fault("execute", a);
    const off = a - no * PAGE_SIZE;
    const first = p.data.subarray(off, Math.min(PAGE_SIZE, off + max));
    if (first.length === max) return first;
    const next = this.pages.get(no + 1);
    if (next === undefined || !next.region.x) return first; // the decoder reports the truncation
    const out = new Uint8Array(max);
    out.set(first);
    out.set(next.data.subarray(0, max - first.length), first.length);
    return out;
  }

  // ---- privileged access for the harness and the unwinders (no permission checks) ----

  /** Copy bytes into mapped memory regardless of permissions (image loading). */
  load(addr: bigint, bytes: Uint8Array): void {
    this.loadAt(mustBeCanonical(addr, "load address"), bytes);
  }

  /**
   * The same at an internal address (for observers that put words in data memory and take them
   * back at every boundary: exhaustive mode's virtual NMI). Code loaded this way is not seen by
   * the machine's decode cache: Machine.load() is the way for code.
   */
  loadAt(a: number, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; ) {
      const no = pageNo(a + i), off = a + i - no * PAGE_SIZE;
      let p = this.pages.get(no);
      if (!p) throw new RangeError(`load of ${bytes.length} bytes at ${hex64(toCanonical(a))}: ${hex64(toCanonical(a + i))} is unmapped`);
      if (p.region.kind === "guard") throw new RangeError(`load at ${hex64(toCanonical(a))}: ${hex64(toCanonical(a + i))} is in guard region '${p.region.name}'`);
      const n = Math.min(PAGE_SIZE - off, bytes.length - i);
      // zeros onto a page nobody has written: nothing to do (an image's kernel data is mostly zeros)
      if (p.data === ZERO_DATA && isZero(bytes, i, n)) { i += n; continue; }
      if (p.epoch !== this.epoch) {
        // (a whole page is taken from the bytes: no copy of the old one first)
        p = n === PAGE_SIZE ? new Page(new Uint8Array(bytes.subarray(i, i + n)), p.region, this.epoch) : this.copyOf(p);
        this.pages.set(no, p);
        if (n === PAGE_SIZE) { i += n; continue; }
      }
      p.data.set(bytes.subarray(i, i + n), off);
      i += n;
    }
    this.dropCaches();
  }

  /** Read bytes without permission checks; undefined if any byte is unmapped or in a guard page. */
  peek(a: number, len: number): Uint8Array | undefined {
    const out = new Uint8Array(len);
    return this.peekInto(a, out) ? out : undefined;
  }

  /** The same into `out` (all of it): false if any byte is unmapped or in a guard page. */
  peekInto(a: number, out: Uint8Array): boolean {
    const len = out.length;
    for (let i = 0; i < len; ) {
      const no = pageNo(a + i), off = a + i - no * PAGE_SIZE;
      const p = this.pages.get(no);
      if (!p || p.region.kind === "guard") return false;
      const n = Math.min(PAGE_SIZE - off, len - i);
      out.set(p.data.subarray(off, off + n), i);
      i += n;
    }
    return true;
  }

  /** An unchecked 64-bit read (unsigned) for observers (unwinders, oracles); undefined if not mapped. */
  peek64(a: number): bigint | undefined {
    const no = pageNo(a), off = a - no * PAGE_SIZE;
    if (off <= PAGE_SIZE - 8) { // within one page (unwinders read aligned words): no copy
      const p = this.pages.get(no);
      return !p || p.region.kind === "guard" ? undefined : p.dv.getBigUint64(off, true);
    }
    const b = this.peek(a, 8);
    return b && new DataView(b.buffer).getBigUint64(0, true);
  }

  /**
   * An unchecked read of a 64-bit word holding an address, in the internal form: NaN if the word
   * is not a canonical address, or not mapped (observers comparing addresses, with no bigint).
   */
  peekAddr(a: number): number {
    const no = pageNo(a), off = a - no * PAGE_SIZE;
    if (off > PAGE_SIZE - 8 || (off & 3) !== 0) {
      const v = this.peek64(a);
      return v === undefined ? NaN : toInternal(v) ?? NaN;
    }
    const p = this.pages.get(no);
    if (!p || p.region.kind === "guard") return NaN;
    return pairToAddr(p.u32[off >> 2]!, p.u32[(off >> 2) + 1]!);
  }

  snapshot(): MemorySnapshot {
    const snap = { pages: this.pages.copy() };
    this.epoch++; // every page is now shared with the snapshot: the next write copies it
    this.dropCaches();
    return snap;
  }

  /**
   * The same bytes as `snap`, except in the `dead` [from, to) ranges (internal addresses)? Only
   * pages written since (copy-on-write gave them a new Page) are compared.
   */
  sameAs(snap: MemorySnapshot, dead: readonly (readonly [number, number])[]): boolean {
    // (a range with a bound that is not a number, a non-canonical address, covers nothing)
    const sorted = dead.filter(([lo, hi]) => lo < hi).sort((x, y) => x[0] - y[0]);
    const now = this.pages.pages, then = snap.pages.pages, nos = this.pages.slots.no;
    for (let k = 0; k < Math.max(now.length, then.length); k++) {
      const p = now[k], q = then[k];
      if (q === p) continue;
      if (p === undefined || q === undefined) return false; // mapped in one of them only
      const no = nos[k]!;
      // the page's live words: [0, WORDS) less each dead range's whole words in it, compared
      // run by run (an interrupt's return leaves most of a stack page written and dead), each
      // run's bytes by one native compare
      const base = no * PAGE_SIZE, a = p.buf, b = q.buf;
      let from = 0;
      for (const [lo, hi] of sorted) {
        const dlo = Math.max(0, Math.ceil((lo - base) / 4)), dhi = Math.min(WORDS, Math.floor((hi - base) / 4));
        if (!(dlo < dhi)) continue; // not a whole word of this page
        if (from < dlo && a.compare(b, 4 * from, 4 * dlo, 4 * from, 4 * dlo) !== 0) return false;
        from = Math.max(from, dhi);
      }
      if (from < WORDS && a.compare(b, 4 * from, PAGE_SIZE, 4 * from, PAGE_SIZE) !== 0) return false;
    }
    return true;
  }

  restore(snap: MemorySnapshot): void {
    // the pages of this epoch were made since the last snapshot or restore, so no snapshot has
    // them: once the table is replaced nothing does, and copies-on-write reuse them (exhaustive
    // mode's forks each write a few pages, then restore). Not code pages: the decoder reads
    // views of those (fetch()).
    for (const p of this.pages.pages) if (p !== undefined && p.epoch === this.epoch && !p.region.x && this.spare.length < MAX_SPARE) this.spare.push(p);
    this.pages = snap.pages.copy();
    this.epoch++;
    this.dropCaches();
  }
}
