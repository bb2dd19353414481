// The code cache's two generations: a value is made once while it is asked for, an entry asked
// for again comes back from the old generation instead of being made again, an entry nobody asks
// for is gone two generations later, and the bytes it keys stay bounded.
import { describe, expect, it } from "vitest";
import { ContentCache } from "../../../harness/machine/content-cache.ts";

const block = (fill: number, n = 100) => new Uint8Array(n).fill(fill);

describe("ContentCache", () => {
  it("keys by address and bytes: the same bytes elsewhere, or other bytes at the same address, are made anew", () => {
    const c = new ContentCache<number>(1000);
    let made = 0;
    const get = (at: number, b: Uint8Array) => c.get(at, b, () => ++made);
    expect(get(0x1000, block(1))).toBe(1);
    expect(get(0x1000, block(1))).toBe(1);
    expect(get(0x2000, block(1))).toBe(2);
    expect(get(0x1000, block(2))).toBe(3);
    // the young generation turns over only once its bytes would pass the bound (two blocks of 100 fit 200)
    const exact = new ContentCache<number>(200);
    exact.get(1, block(1), () => 1);
    exact.get(2, block(2), () => 2);
    expect(exact.sizes).toEqual({ young: 2, old: 0 });
    exact.get(3, block(3), () => 3);
    expect(exact.sizes).toEqual({ young: 1, old: 2 });
    // a view into a larger buffer keys by its own bytes
    const big = new Uint8Array(300).fill(7);
    big.set(block(1), 100);
    expect(get(0x1000, big.subarray(100, 200))).toBe(1);
  });

  it("an entry asked for in every generation is made once; one asked for once is gone two generations later", () => {
    const c = new ContentCache<string>(250); // the young generation turns over past 250 bytes
    const made: string[] = [];
    const get = (name: string, at: number) => c.get(at, block(at & 0xff), () => (made.push(name), name));
    get("hot", 1);
    get("once", 2);
    for (let g = 0; g < 6; g++) {
      // another block: the young generation (two blocks) is full and turns over
      get(`filler ${g}`, 0x100 * (g + 1) + 10);
      expect(get("hot", 1)).toBe("hot");
    }
    expect(made.filter((m) => m === "hot")).toHaveLength(1);
    get("once", 2);
    expect(made.filter((m) => m === "once")).toHaveLength(2);
    // bounded: the young generation keys at most 250 bytes (two blocks), the old one no more
    const { young, old } = c.sizes;
    expect(young).toBeLessThanOrEqual(2);
    expect(old).toBeLessThanOrEqual(2);
  });

  it("find() gives what is kept, without making anything, and keeps an old entry young again", () => {
    const c = new ContentCache<string>(250);
    expect(c.find(1, block(1))).toBeUndefined();
    expect(c.sizes).toEqual({ young: 0, old: 0 });
    c.get(1, block(1), () => "one");
    c.get(2, block(2), () => "two");
    c.get(3, block(3), () => "three"); // turns over: one and two are old
    expect(c.find(1, block(1))).toBe("one"); // back to the young generation
    c.get(4, block(4), () => "four"); // turns over again: two is gone, one stays (old)
    expect(c.find(2, block(2))).toBeUndefined();
    expect(c.find(1, block(1))).toBe("one");
    expect(c.find(1, block(9))).toBeUndefined(); // other bytes at that address
  });
});
