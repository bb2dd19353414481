// Addresses.
//
// The API and every message use canonical 64-bit addresses as bigints (`0xffffffffa0001a3cn`),
// printed as 16 hex digits, the way kernel traces print them. Inside the machine an address is
// a *signed* JS number: a canonical address sign-extends bit 47, so as a signed 64-bit value it
// lies in [-2^47, 2^47) and is exact as a double. Kernel text 0xffffffff81000000 is -0x7f000000.

const TWO_47 = 2 ** 47;
const TWO_32 = 4294967296;
const MASK64 = (1n << 64n) - 1n;

/** Internal (signed number) form of a canonical address; `undefined` if it is not canonical. */
export function toInternal(addr: bigint): number | undefined {
  const s = Number(BigInt.asIntN(64, addr));
  return s >= -TWO_47 && s < TWO_47 ? s : undefined;
}

/** Internal form of an address that must be canonical (API inputs). Throws a named error otherwise. */
export function mustBeCanonical(addr: bigint, what: string): number {
  const s = toInternal(addr);
  if (s === undefined) throw new RangeError(`${what}: ${hex64(addr)} is not a canonical address`);
  return s;
}

/** Canonical bigint form of an internal address. */
export function toCanonical(addr: number): bigint {
  return BigInt(addr) & MASK64;
}

/** 16 lower-case hex digits, no prefix: `ffffffffa0001a3c`. */
export function hex64(v: bigint | number): string {
  const b = typeof v === "number" ? toCanonical(v) : v & MASK64;
  return b.toString(16).padStart(16, "0");
}

/** `0x`-prefixed hex of a small unsigned value: `0x1a`. */
export function hex(v: bigint | number): string {
  return v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`;
}

/** Internal (signed number) address from halves, or NaN if not canonical. */
export function pairToAddr(lo: number, hi: number): number {
  const h = hi | 0;
  return h >= -0x8000 && h < 0x8000 ? h * TWO_32 + lo : NaN;
}

/** Halves of an internal address: low half returned, high half via `hiOf`. */
export function hiOf(a: number): number {
  return Math.floor(a / TWO_32) >>> 0;
}

export function pairToBig(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}
