// Results of a run. Always a value, never an exception: the machine catches faults, unsupported
// instructions and control-flow violations at instruction granularity and returns them typed.
import type { FaultReason, RegionKind, Access } from "./memory.ts";

export interface Completed {
  readonly kind: "completed";
  /** rax when control reached the stop address. */
  readonly rax: bigint;
  readonly steps: number;
}

export interface Fault {
  readonly kind: "fault";
  readonly reason: FaultReason;
  readonly access: Access;
  /** Canonical faulting address (or the raw non-canonical value). */
  readonly address: bigint;
  /** Region name, or undefined when the address is unmapped. */
  readonly region: string | undefined;
  readonly regionKind: RegionKind | undefined;
  readonly rip: bigint;
  /** `symbol+0xoff` of rip, or "" if no symbol contains it. */
  readonly symbol: string;
  /** The vector being delivered when the fault happened (a double fault), if any. */
  readonly duringInterrupt?: number;
  readonly message: string;
}

export interface Unsupported {
  readonly kind: "unsupported";
  readonly rip: bigint;
  readonly symbol: string;
  /** Intel-syntax text, or "(bad)" for undecodable bytes. */
  readonly text: string;
  readonly bytes: string;
  readonly message: string;
}

export interface Hang {
  readonly kind: "hang";
  readonly steps: number;
  readonly rip: bigint;
  readonly symbol: string;
  readonly message: string;
}

export interface ControlFlowFailure {
  readonly kind: "control-flow";
  readonly reason: "ret-mismatch" | "iret-mismatch";
  readonly rip: bigint;
  readonly symbol: string;
  /** The address the matching call (or interrupt) recorded, if there was one. */
  readonly expected: bigint | undefined;
  /** The address actually popped. */
  readonly actual: bigint;
  readonly message: string;
}

/**
 * A CPU exception the machine has no IDT gate for: int3, ud2, a divide error (#DE: div/idiv by
 * zero, or a quotient too large for its register), an interrupt with no handler. `rip` is the
 * instruction that raised it (int3: the next one, as the trap it is).
 */
export interface UnhandledException {
  readonly kind: "exception";
  readonly vector: number;
  readonly rip: bigint;
  readonly symbol: string;
  readonly message: string;
}

/** `runUntil(step)` reached its step: the machine can be inspected, snapshotted or resumed. */
export interface Paused {
  readonly kind: "paused";
  readonly steps: number;
  readonly rip: bigint;
}

/** An address hook asked to stop. Resuming continues at the same instruction without re-firing it. */
export interface Stopped {
  readonly kind: "stopped";
  readonly steps: number;
  readonly rip: bigint;
  readonly symbol: string;
}

export type RunResult = Completed | Fault | Unsupported | Hang | ControlFlowFailure | UnhandledException | Paused | Stopped;
/** The results that end a run for good. */
export type FinalResult = Exclude<RunResult, Paused | Stopped>;
