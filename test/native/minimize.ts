// Shrinking a mismatch between the machine and the CPU down to the one instruction that differs.
// fast-check shrinks the raw encoding greedily, and two of its local minima keep a second unit:
// the differing unit inside a subroutine that a call unit reaches, and a unit whose operand an
// earlier unit computed (a setup movabs, an add). Neither is undone by shrinking values or
// dropping array items: the unit would have to move into main, or the earlier unit's effect into
// the initial registers. isolateUnit() makes those moves; shrinkMismatch() then has fast-check
// shrink the case's values again from scratch (a failing example is shrunk without context).
import fc from "fast-check";
import { stateAt } from "./emulate.ts";
import { rawCase, RSP, sequenceCase, type RawCase } from "./sequences.ts";

/**
 * A case on which the machine and the CPU differ: the report, and what differs, from the
 * leading word of each difference line (register names, "flags", "rip", "machine", a dump's
 * name, "case" for a case defect). Shrinking keeps cases that differ in the same things.
 */
export class Mismatch extends Error {
  override name = "Mismatch";
  readonly what: string;
  constructor(readonly report: string, differences: readonly string[]) {
    super(report);
    this.what = [...new Set(differences.map((d) => /^[A-Za-z0-9]+/.exec(d)?.[0] ?? d))].sort().join(",");
  }
}

/** The Mismatch `property` throws on `raw`, undefined when it passes; any other error is rethrown. */
async function mismatchOf(raw: RawCase, property: (raw: RawCase) => Promise<void>): Promise<Mismatch | undefined> {
  try {
    await property(raw);
    return undefined;
  } catch (e) {
    if (e instanceof Mismatch) return e;
    throw e;
  }
}

/**
 * Each unit of `raw` alone in main, in program order (main, then each subroutine): first with
 * the case's own registers and flags, then with those the machine had when the run reached the
 * unit (memory stays the seed's). The first candidate that `fails` is returned; undefined when
 * `raw` is one unit already, or no unit fails alone.
 */
export async function isolateUnit(raw: RawCase, fails: (raw: RawCase) => Promise<boolean>): Promise<RawCase | undefined> {
  if (raw.main.length <= 1 && raw.subs.length === 0) return undefined;
  const p = sequenceCase(raw);
  const sites = [
    ...raw.main.map((u, i) => ({ u, label: `u${i}` })),
    ...raw.subs.flatMap((s, j) => s.units.map((u, i) => ({ u, label: `sub${j}_u${i}` }))),
  ];
  for (const { u, label } of sites) {
    const alone: RawCase = { ...raw, main: [u], subs: [] };
    if (await fails(alone)) return alone;
    const addr = p.code.labels.get(label);
    const at = addr === undefined ? undefined : stateAt(p.case, addr);
    if (at === undefined) continue; // the run never reached it
    const entered: RawCase = { ...alone, regs: at.regs.map((v, i) => (i === RSP ? raw.regs[RSP]! : v)), flags: at.rflags };
    if (await fails(entered)) return entered;
  }
  return undefined;
}

/**
 * The smallest case isolateUnit() and fast-check reach from `found`, on which `property` throws
 * a Mismatch in the same things as on `found` (a candidate that differs in something else, or
 * throws anything but a Mismatch, is not kept), and that Mismatch. Deterministic: the same
 * case in, the same case out.
 */
export async function shrinkMismatch(found: RawCase, property: (raw: RawCase) => Promise<void>): Promise<{ raw: RawCase; mismatch: Mismatch }> {
  const first = await mismatchOf(found, property);
  if (first === undefined) throw new Error("shrinkMismatch: the machine and the CPU agree on the case it was given");
  const alike = async (r: RawCase) => {
    try {
      return (await mismatchOf(r, property))?.what === first.what;
    } catch {
      return false; // a candidate the harness cannot run is not this failure
    }
  };
  const one = (await isolateUnit(found, alike)) ?? found;
  // Even a case fast-check left at one unit: its values shrank inside the oneof arm that drew
  // them (value64's constants, its small-integer arm), and without that context a value shrinks
  // toward zero over the whole range, to the smallest that still fails (the sign bit alone, a
  // shift count of 1).
  const again = await fc.check(fc.asyncProperty(rawCase(), async (r) => {
    if (await alike(r)) throw new Error(`differs in ${first.what}`);
  }), { examples: [[one]], numRuns: 1, seed: 0 });
  const raw = again.failed ? again.counterexample![0]! : one;
  return { raw, mismatch: (await mismatchOf(raw, property))! };
}
