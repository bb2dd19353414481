// The prologue-strategy interface: one module per design (design.md §3.3). A strategy decides
// the prologue and epilogue of main programs and subprogs, which register holds BPF R10, what
// wraps a call, and what private per-CPU memory each function needs.
import type { Func, Program } from "./bpf/program.ts";
import type { Validated } from "./bpf/validate.ts";
import type { Emitter, X86Reg } from "./x86/emit.ts";

export interface JitOptions {
  /** CONFIG_X86_KERNEL_IBT: endbr64 at the entry and at X86_TAIL_CALL_OFFSET (default on). */
  readonly ibt: boolean;
  /** CONFIG_MITIGATION_SLS: int3 after every ret (default off). */
  readonly sls: boolean;
  /**
   * X86_FEATURE_BMI2: shifts by a register as shlx/shrx/sarx instead of through cl (do_jit(),
   * 7.2; what a modern CPU gets). Default off: the model's default CPU lacks it.
   */
  readonly bmi2?: boolean;
}

export const DEFAULT_JIT_OPTIONS: JitOptions = { ibt: true, sls: false };

/** A function being JITed, with everything a strategy may look at. */
export interface FuncJit {
  readonly prog: Program;
  readonly validated: Validated;
  readonly fi: number;
  readonly func: Func;
  /**
   * The stack depth the JIT uses (func[i]->aux->stack_depth): the verifier's, i.e. the deepest
   * byte the function's accesses reach, rounded to 8, plus what fixups add (jitStackDepths()).
   * `func.stackDepth` is the scenario's declared bound, which accesses may not exceed.
   */
  readonly stackDepth: number;
  readonly isMain: boolean;
  /** Used callee-saved registers among rbx, r13, r14, r15, in push order (detect_reg_usage()). */
  readonly calleeSaved: readonly X86Reg[];
  readonly opts: JitOptions;
  /** The private memory the strategy asked for this function, placed (undefined if none). */
  readonly priv: PlacedPrivate | undefined;
  /** Address of the per-CPU variable this_cpu_off (a gs:-relative displacement). */
  readonly thisCpuOff: number;
  /** __percpu pointer of this program's recursion counter prog->active (kernel-model §2.3). */
  readonly activePtr: bigint;
}

/** What a strategy needs allocated per CPU for one function. */
export interface PrivateRequest {
  readonly fi: number;
  /** Bytes to allocate, guards included. */
  readonly size: number;
  /** Offset from the start of the allocation that the function's frame pointer gets. */
  readonly framePtrOffset: number;
  /** Offsets of guard words (0xEB9F12345678eb9f) to write at allocation and check at teardown. */
  readonly guards: readonly number[];
  /**
   * Offset of the word where the design keeps the previous stack's rsp, if it keeps one (a
   * back-link, as the IRQ stack's top word holds the interrupted rsp). An unwinder that knows
   * private stacks takes next_sp from it; without one it has nowhere to go next.
   */
  readonly backLink?: number;
  /**
   * The separate stacks the allocation holds, as [begin, end) offsets (one per recursion level
   * for a per-level slot design); by default one stack, the whole allocation.
   */
  readonly stacks?: readonly { readonly begin: number; readonly end: number }[];
}

/** A private request once placed: its __percpu pointer (add this_cpu_off to get the CPU's copy). */
export interface PlacedPrivate extends PrivateRequest {
  readonly percpuPtr: bigint;
  /** priv_frame_ptr: percpuPtr + framePtrOffset. */
  readonly framePtr: bigint;
}

export interface Strategy {
  readonly name: string;
  /** One line: the design it models and the kernel-model section. */
  readonly summary: string;
  /** Private per-CPU memory per function (empty for designs on the kernel stack only). */
  privateMemory(prog: Program, v: Validated): PrivateRequest[];
  /** The x86 register that holds BPF R10 in this function. */
  frameRegister(f: FuncJit): X86Reg;
  prologue(e: Emitter, f: FuncJit): void;
  epilogue(e: Emitter, f: FuncJit): void;
  /** Emit a call; `emitCall` emits the `call rel32` itself. */
  call(e: Emitter, f: FuncJit, emitCall: () => void): void;
  /**
   * How many activations of one program a CPU may run at once: 1 is the kernel's exactly-1 rule
   * (__bpf_prog_enter_recur refuses the rest); design (g) allows up to 4 with a slot per level.
   */
  readonly recursionLimit: number;
  /** Where a user's strategy came from (its module file); absent for the built-in ones. */
  readonly origin?: string;
}

/** Each function's JIT stack depth (FuncJit.stackDepth): Validated.stackDepth + stackExtra (kernel/bpf/fixups.c jit_subprogs(), 7.2). */
export function jitStackDepths(v: Validated): number[] {
  return v.stackDepth.map((d, fi) => d + (v.stackExtra[fi] ?? 0));
}

export class StrategyError extends Error {
  override name = "StrategyError";
}

/**
 * The largest recursionLimit: the runner compares it with prog->active, an `int` per CPU
 * (__bpf_prog_enter_recur()'s this_cpu_inc_return()), which never counts past INT_MAX.
 */
export const MAX_RECURSION_LIMIT = 0x7fffffff;

/** Whether `v` is a recursionLimit the runner can compare with prog->active: an integer in 1..MAX_RECURSION_LIMIT. */
export const isRecursionLimit = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= MAX_RECURSION_LIMIT;

/** What is wrong with a recursionLimit `v` that is not one (isRecursionLimit()). */
export function recursionLimitProblem(v: unknown): string {
  const shown = typeof v === "number" ? String(v) : typeof v === "string" ? JSON.stringify(v) : typeof v === "bigint" ? `${v}n` : typeof v;
  return `'recursionLimit' ${shown} must be an integer in 1..${MAX_RECURSION_LIMIT} (1 is the kernel's exactly-1 rule; the limit is compared with prog->active, an int)`;
}

/** A request the JIT can place: whole 8-byte words inside the allocation, stacks that do not overlap. */
export function checkPrivateRequest(strategy: string, prog: Program, r: PrivateRequest): void {
  if (typeof r !== "object" || r === null) throw new StrategyError(`strategy '${strategy}', private memory of ${prog.name}: a request is ${r === null ? "null" : typeof r}; it must be an object { fi, size, framePtrOffset, guards }`);
  const where = privateWhere(strategy, prog, r.fi);
  const fail = (what: string) => { throw new StrategyError(`${where}: ${what}`); };
  const word = (off: number, name: string) => {
    if (!Number.isInteger(off) || off < 0 || off + 8 > r.size || off % 8 !== 0) fail(`${name} ${shownField(off)} is not an 8-byte-aligned word inside the ${r.size}-byte allocation`);
  };
  if (!Number.isInteger(r.fi) || r.fi < 0 || r.fi >= prog.funcs.length) fail(`'fi' ${r.fi} names no function (0..${prog.funcs.length - 1})`);
  if (!Number.isInteger(r.size) || r.size <= 0 || r.size % 8 !== 0) fail(`'size' ${r.size} must be a positive multiple of 8`);
  if (!Number.isInteger(r.framePtrOffset) || r.framePtrOffset < 0 || r.framePtrOffset > r.size) fail(`'framePtrOffset' ${r.framePtrOffset} is outside the ${r.size}-byte allocation`);
  if (!Array.isArray(r.guards)) fail(`'guards' ${shownField(r.guards)} must be an array of word offsets (empty for none)`);
  r.guards.forEach((g, i) => word(g, `guards[${i}]`));
  if (r.backLink !== undefined) word(r.backLink, "'backLink'");
  if (r.stacks !== undefined && !Array.isArray(r.stacks)) fail(`'stacks' ${shownField(r.stacks)} must be an array of { begin, end } offsets (or absent: one stack, the whole allocation)`);
  let last = 0;
  for (const [i, s] of (r.stacks ?? []).entries()) {
    if (typeof s !== "object" || s === null) fail(`stacks[${i}] ${shownField(s)} must be an object { begin, end }`);
    if (!Number.isInteger(s.begin) || !Number.isInteger(s.end) || s.begin < last || s.end <= s.begin || s.end > r.size) {
      fail(`stacks[${i}] [${s.begin}, ${s.end}) must lie inside the allocation, above the previous stack, and not be empty`);
    }
    last = s.end;
  }
}

/** How an error names a request's function: the strategy, the program and the function. */
const privateWhere = (strategy: string, prog: Program, fi: unknown) =>
  `strategy '${strategy}', private memory of ${prog.name}/${(typeof fi === "number" ? prog.funcs[fi]?.name : undefined) ?? `function ${shownField(fi)}`}`;

/** A field's value as an error shows it. */
function shownField(v: unknown): string {
  try {
    return typeof v === "number" ? String(v) : typeof v === "bigint" ? `${v}n` : typeof v === "function" ? "a function" : JSON.stringify(v) ?? String(v);
  } catch {
    return typeof v;
  }
}

/**
 * One private allocation per function: a second request for a function the strategy already
 * asked for would be placed and guarded, but the function would only ever get the first
 * (FuncJit.priv), so it is refused instead of the first silently winning.
 */
export function checkPrivateFuncs(strategy: string, prog: Program, rs: readonly PrivateRequest[]): void {
  for (let j = 1; j < rs.length; j++) {
    const i = rs.findIndex((r) => r.fi === rs[j]!.fi);
    if (i < j) throw new StrategyError(`${privateWhere(strategy, prog, rs[j]!.fi)}: requested twice (requests ${i} and ${j} of privateMemory()'s answer); a function has at most one private allocation`);
  }
}
