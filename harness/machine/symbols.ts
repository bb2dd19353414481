// Symbol table of an image: name, [start, end), kind. Used to symbolise every address the
// machine reports (`bpf_prog_main+0x1c`), and by the unwinders' kernel-text checks.
import { RecentCache } from "../../jit/recent-cache.ts";
import { hex as hex__, hex64 as hex64__, toCanonical as toCanonical__, mustBeCanonical as mustBeCanonical__ } from "./addr.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const hex = hex__, hex64 = hex64__, toCanonical = toCanonical__, mustBeCanonical = mustBeCanonical__;

export type SymbolKind = "kernel" | "bpf" | "entry" | "trampoline" | "data";

export interface SymbolDef {
  readonly name: string;
  readonly start: bigint;
  /** Exclusive end. */
  readonly end: bigint;
  readonly kind: SymbolKind;
}

/** A symbol as the table keeps it: start and end as internal addresses. One object per symbol, for as long as the table lives. */
export interface SymbolEntry { readonly name: string; readonly start: number; readonly end: number; readonly kind: SymbolKind }
type Entry = SymbolEntry;

export class SymbolTable {
  private readonly entries: Entry[];

  constructor(defs: readonly SymbolDef[] = []) {
    this.entries = defs.map((d) => {
      const start = mustBeCanonical(d.start, `symbol ${d.name} start`);
      const end = mustBeCanonical(d.end, `symbol ${d.name} end`);
      if (end <= start) throw new RangeError(`symbol ${d.name}: end must be above start`);
      return { name: d.name, start, end, kind: d.kind };
    });
    this.entries.sort((a, b) => a.start - b.start);
    for (let i = 1; i < this.entries.length; i++) {
      const prev = this.entries[i - 1]!, cur = this.entries[i]!;
      if (cur.start < prev.end) throw new RangeError(`symbols ${prev.name} and ${cur.name} overlap`);
    }
  }

  get all(): SymbolDef[] {
    return this.entries.map((e) => ({ name: e.name, start: toCanonical(e.start), end: toCanonical(e.end), kind: e.kind }));
  }

  /** The symbol containing an internal address, by binary search. */
  lookupInternal(addr: number): Entry | undefined {
    const es = this.entries;
    let lo = 0, hi = es.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = es[mid]!;
      if (addr < e.start) hi = mid - 1;
      else if (addr >= e.end) lo = mid + 1;
      else return e;
    }
    return undefined;
  }

  /** The table's own entry of the symbol containing `addr` (no object made), or undefined. */
  entryOf(addr: bigint): SymbolEntry | undefined {
    return addr >= 0n ? this.lookupInternal(Number(BigInt.asIntN(64, addr))) : undefined;
  }

  /** The kind of the symbol containing `addr`, or undefined (lookup()'s kind, with no object made: unwinders ask it at every frame). */
  kindOf(addr: bigint): SymbolDef["kind"] | undefined {
    return this.entryOf(addr)?.kind;
  }

  lookup(addr: bigint): SymbolDef | undefined {
    const s = this.entryOf(addr);
    return s && { name: s.name, start: toCanonical(s.start), end: toCanonical(s.end), kind: s.kind };
  }

  /** `name+0x1c`, or undefined when no symbol contains the address. */
  symbolizeInternal(addr: number): string | undefined {
    const e = this.lookupInternal(addr);
    return e && (addr === e.start ? e.name : `${e.name}+${hex(addr - e.start)}`);
  }

  symbolize(addr: bigint): string | undefined {
    return this.symbolizeInternal(Number(BigInt.asIntN(64, addr)));
  }

  /** `name+0x1c`, or the address as 16 hex digits when no symbol contains it (for messages). */
  describe(addr: bigint): string {
    return this.symbolize(addr) ?? hex64(addr);
  }

  byName(name: string): SymbolDef | undefined {
    const e = this.entries.find((x) => x.name === name);
    return e && { name: e.name, start: toCanonical(e.start), end: toCanonical(e.end), kind: e.kind };
  }
}

const tables = new RecentCache<readonly SymbolDef[], SymbolTable>(4);

/** The table of a list of symbols, made once per list while it is recent (tables never change: an image's machine and its coverage share one). */
export function symbolTableOf(defs: readonly SymbolDef[]): SymbolTable {
  return tables.getOrMake(defs, () => new SymbolTable(defs));
}
