// The plans the bench's figures are of (design §9), shared by `npm run bench` (campaign.ts) and
// the instruction counts (instructions.ts). Constraints only: each takes planArb() from the
// code it measures.
import type { PlanConstraints } from "../../generators/index.ts";

/** The budget's "small graphs": two programs of up to two functions. */
export const SMALL: PlanConstraints = { maxPrograms: 2, maxFuncs: 2, maxItems: 4 };

/**
 * Exhaustive mode's rate, per kind of interrupt: small graphs, one task, no random interrupts
 * (exhaustive mode injects its own), sampled with seed 5; for the NMI walk checks, no program on
 * the NMI (an NMI that runs one is a nested run, not a walk).
 */
export const EXHAUSTIVE_SEED = 5;
export const exhaustiveConstraints = (kind: "irq" | "nmi"): PlanConstraints => ({ ...SMALL, interrupts: false, tasks: 1, ...(kind === "nmi" ? { nmi: false } : {}) });
