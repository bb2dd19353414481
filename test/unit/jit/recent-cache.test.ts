// The memo every layer keeps for a scenario's objects (jit/recent-cache.ts): by identity, the
// last `size` keys set, a value made once while its key is kept, the oldest slot written over.
import { describe, expect, test } from "vitest";
import { PROGRAMS_KEPT, RecentCache } from "../../../jit/recent-cache.ts";
import { MAX_PROGRAMS } from "../../../generators/plan.ts";

describe("RecentCache", () => {
  test("keeps the last `size` keys, by identity, and writes over the oldest", () => {
    const c = new RecentCache<object, string>(3);
    const [a, b, d, e] = [{}, {}, {}, {}];
    c.set(a, "a"); c.set(b, "b"); c.set(d, "d");
    expect([c.get(a), c.get(b), c.get(d)]).toEqual(["a", "b", "d"]);
    expect(c.get({})).toBeUndefined(); // an equal object is another key
    c.set(e, "e"); // a's slot, the oldest
    expect([c.get(a), c.get(b), c.get(d), c.get(e)]).toEqual([undefined, "b", "d", "e"]);
    c.set(b, "b2"); // a key kept keeps its slot (and its age)
    c.set(a, "a2"); // the next slot after e's: b's
    expect([c.get(a), c.get(b), c.get(d), c.get(e)]).toEqual(["a2", undefined, "d", "e"]);
  });

  test("getOrMake() makes a value once while its key is kept, and again after", () => {
    const c = new RecentCache<object, number>(2);
    let made = 0;
    const [a, b, d] = [{}, {}, {}];
    expect(c.getOrMake(a, () => ++made)).toBe(1);
    expect(c.getOrMake(a, () => ++made)).toBe(1);
    c.getOrMake(b, () => ++made);
    c.getOrMake(d, () => ++made); // a goes
    expect(c.getOrMake(a, () => ++made)).toBe(4);
  });

  test("a memo by program keeps a whole generated scenario's programs", () => {
    expect(PROGRAMS_KEPT).toBeGreaterThanOrEqual(MAX_PROGRAMS);
  });

  test("a size that is not a positive integer is refused", () => {
    for (const n of [0, -1, 1.5, Number.NaN]) expect(() => new RecentCache(n)).toThrow(/size .* is not a positive integer/);
  });
});
