// What was worked out from a block of code, kept by the block's address and bytes: the kernel
// text every image loads, and the BPF functions the images of one shrink share, are read once.
// Whoever reads code caches this way (the machine's decoder, the frame-window oracle); the cache
// is bounded by the bytes it keys and starts over when full.
export class ContentCache<T> {
  private readonly entries = new Map<string, T>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** The value for `bytes` at `at`, from `make` the first time. */
  get(at: bigint | number, bytes: Uint8Array, make: () => T): T {
    const key = `${at}:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")}`;
    let v = this.entries.get(key);
    if (v === undefined) {
      v = make();
      if (this.bytes + bytes.length > this.maxBytes) { this.entries.clear(); this.bytes = 0; }
      this.entries.set(key, v);
      this.bytes += bytes.length;
    }
    return v;
  }
}
