// The generators' public surface (design.md §7): the Plan type, its arbitrary, its lowering.
export { planArb, scheduleArb } from "./planArb.ts";
export type { PlanConstraints } from "./planArb.ts";
export { planToScenario } from "./planToScenario.ts";
export { IRQ_VECTORS, MAX_FUNCS, MAX_INTERRUPTS, MAX_ITEMS, MAX_NEST_LIMIT, MAX_PARAMS, MAX_PROGRAMS, MAX_SLOTS, NMI_NEST_LIMIT, RUN_BUDGET } from "./plan.ts";
export type {
  Plan, PlanAnchor, PlanCall, PlanCallItem, PlanFollowUp, PlanFunc, PlanInterrupt, PlanItem, PlanMix, PlanNested, PlanProgram,
  PlanRw, PlanSample, PlanStore,
} from "./plan.ts";
