// What was made for the last few objects of some kind, by identity: the memo of every layer (the
// generators, the validator, the harness) for objects that live about as long as one scenario
// (plans, programs, images, a JITed function's records). Here, the lowest layer, for all of them.
//
// Not a WeakMap. In Node 20 (V8 11.3), a WeakMap that has reached V8's old generation keeps its
// entries alive through every young-generation collection (the scavenger does not treat them as
// weak); only a full collection lets them go. A module-level WeakMap keyed by each scenario's
// plan, program or image so took every one of them, and all it reached (lowered programs, the
// validator's states, JIT records, symbol tables), into the old generation. A slot here is
// written over `size` insertions later: in a campaign of small scenarios, before the young
// generation has been collected twice (about 30 small scenarios apart on the 2-core machine).
// (What one long run keeps, such as an exhaustive scenario's image, lives as long as that run.)
// (README, "Tests, seeds and benchmarks": what V8 kept alive.)

/**
 * How many programs a memo by program keeps: a whole scenario's (the generators' MAX_PROGRAMS),
 * or a scenario's lookups in order would each evict the one needed next. (A scenario file with
 * more is checked again, only slower.)
 */
export const PROGRAMS_KEPT = 32;

export class RecentCache<K extends object, V> {
  private readonly keys: (K | undefined)[];
  private readonly values: (V | undefined)[];
  private next = 0;

  /** `size`: how many keys are kept (the last ones set). */
  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`RecentCache: size ${size} is not a positive integer`);
    this.keys = new Array<K | undefined>(size).fill(undefined);
    this.values = new Array<V | undefined>(size).fill(undefined);
  }

  /** The value kept for `key`, if it is one of the last `size` keys set. */
  get(key: K): V | undefined {
    const i = this.keys.indexOf(key);
    return i < 0 ? undefined : this.values[i];
  }

  /** Keep `value` for `key` (in its slot if it has one, else in the oldest). */
  set(key: K, value: V): V {
    let i = this.keys.indexOf(key);
    if (i < 0) {
      i = this.next;
      this.next = (this.next + 1) % this.size;
      this.keys[i] = key;
    }
    this.values[i] = value;
    return value;
  }

  /** The value for `key`, made by `make` if it is not kept. */
  getOrMake(key: K, make: () => V): V {
    const i = this.keys.indexOf(key);
    return i >= 0 ? this.values[i]! : this.set(key, make());
  }
}
