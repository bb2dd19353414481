// Turning any number a plan holds into something in range: the lowering wraps and clamps, it never
// rejects (a hand-edited or shrunk plan must still lower). NaN and ±Infinity count as 0.

/** ToInt32: the s32 an immediate field holds (wraps modulo 2^32). */
export const s32 = (v: number): number => v | 0;

/** An integer in [lo, hi] (non-integers truncate, NaN is lo). */
export function clamp(v: number, lo: number, hi: number): number {
  const x = Math.trunc(v);
  return Number.isNaN(x) ? lo : Math.min(hi, Math.max(lo, x));
}

/** An index into n things (n ≥ 1): v mod n, non-negative. */
export function wrap(v: number, n: number): number {
  const x = Math.trunc(v);
  if (!Number.isFinite(x)) return 0;
  return ((x % n) + n) % n;
}

/** The first `max` elements of a list that may be missing in a hand-edited plan. */
export const upTo = <T>(xs: readonly T[] | undefined, max: number): readonly T[] => (Array.isArray(xs) ? xs.slice(0, max) : []);
