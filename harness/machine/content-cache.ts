// What was worked out from a block of code, kept by the block's address and bytes: the kernel
// text every image loads, and the BPF functions the images of one shrink share, are read once.
// The machine's decoder caches this way (the frame-window oracle keeps the kernel's facts per
// kernel instead: oracles/window.ts).
//
// Bounded in two generations: entries go into the young one, which, once the bytes it keys pass
// the bound, becomes the old one (the old old one is dropped). An entry asked for again from the
// old generation moves back to the young one, so what every image uses stays, and what one
// random scenario made is gone two generations later. A campaign's images almost never repeat
// (random immediates): with one generation of 1 MB that was only cleared when full, the cache
// held some 5,700 blocks of records after 3,000 small scenarios, for a hit rate of 13%, while
// the live heap after each full collection grew from 30 to 67 MB (all of it promoted to V8's
// old generation, which every full collection marks). The bound is about twice `maxBytes` of
// code (the old generation keeps what moved back); a block larger than `maxBytes` turns the
// young generation over each time one is added (the synthetic kernel's whole text is under
// 2 KB; a BPF function that large would take tens of thousands of BPF instructions).
export class ContentCache<T> {
  private young = new Map<string, T>();
  private old = new Map<string, T>();
  private bytes = 0;

  /** `maxBytes`: the code bytes the young generation keys before it becomes the old one. */
  constructor(private readonly maxBytes: number) {}

  /** The value for `bytes` at `at`, from `make` the first time (or once it has aged out). */
  get(at: bigint | number, bytes: Uint8Array, make: () => T): T {
    const key = keyOf(at, bytes);
    return this.kept(key, bytes.length) ?? this.put(key, bytes.length, make());
  }

  /** The value kept for `bytes` at `at`, if any (kept young again, as get() does). */
  find(at: bigint | number, bytes: Uint8Array): T | undefined {
    return this.kept(keyOf(at, bytes), bytes.length);
  }

  /** The value kept for `key` (of `size` bytes of code): young, or old and moved back to the young generation. */
  private kept(key: string, size: number): T | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    return o === undefined ? undefined : this.put(key, size, o);
  }

  private put(key: string, size: number, value: T): T {
    if (this.bytes + size > this.maxBytes) {
      this.old = this.young;
      this.young = new Map();
      this.bytes = 0;
    }
    this.young.set(key, value);
    this.bytes += size;
    return value;
  }

  /** How many entries each generation holds (tests). */
  get sizes(): { young: number; old: number } {
    return { young: this.young.size, old: this.old.size };
  }
}

const keyOf = (at: bigint | number, bytes: Uint8Array) => `${at}:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")}`;
