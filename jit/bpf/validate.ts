// The verifier rules that matter to stack discipline (kernel-model.md §2.2, kernel-model-7.2.md),
// applied to a Program in the order bpf_check() (verifier.c:20039, 7.2) applies them:
//   1. per function, check_subprogs() (:2849): jumps stay in the function, the last instruction
//      is exit or goto;
//   2. each instruction alone (fields.ts: check_and_resolve_insns(), check_insn_fields()), the
//      call targets, helpers and kfuncs;
//   3. control flow (cfg.c:565 bpf_check_cfg()): every instruction reachable, no jump into an
//      ld_imm64, and the loops this validator can bound (loops.ts);
//   4. the call graph: no recursion (sort_subprogs_topo(), :2915), at most MAX_CALL_FRAMES
//      frames, private-stack eligibility and the stack limits (check_max_stack_depth[_subprog](),
//      :5334, :5128);
//   5. an abstract interpretation of register types, known constants and stack initialisation
//      along every path (do_check(), :17568), to a fixpoint around loops, walking subprogs per
//      call site so that stack pointers passed as arguments are checked in the caller's frame.
// Each rejection names the function, the instruction index within it, and the rule, with the
// verifier's own message where it has one.
//
// Deliberately stricter than 7.2 for these privileged program types (CAP_PERFMON gives the
// verifier allow_ptr_leaks and allow_uninit_stack): pointers may not be compared, leaked into
// memory or returned, and uninitialised stack may not be read, because the reference
// interpreter could not predict what the JIT's real addresses and stack contents would give.
// Also stricter: only stack pointers (R10-derived) are memory; atomics work on the stack only.
import { PROGRAMS_KEPT, RecentCache } from "../recent-cache.ts";
import { helperById, kfuncById, type ArgKind, type CallSig } from "./abi.ts";
import { checkInsn, endsBlock, isCondJump, isMayGoto, jumpOffset } from "./fields.ts";
import type { BpfInsn } from "./instruction.ts";
import { ValidationError, type Finding, type Rule } from "./issues.ts";
import { ACCEPTED_LOOPS, counterRun, findLoops, writesReg, type Loop } from "./loops.ts";
import { aluResult, immU64, jumpTaken } from "./ops.ts";
import {
  BPF_ADD, BPF_ALU, BPF_ALU64, BPF_AND, BPF_ARSH, BPF_ATOMIC, BPF_CALL, BPF_CLASS, BPF_CMPXCHG, BPF_COMPLEXITY_LIMIT_INSNS,
  BPF_DIV, BPF_DW, BPF_END, BPF_EXIT, BPF_FETCH, BPF_HELPER_CALL, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JLE, BPF_JLT,
  BPF_JMP, BPF_JMP32, BPF_JNE, BPF_JSET, BPF_JSGE, BPF_JSGT, BPF_JSLE, BPF_JSLT, BPF_LD_IMM64, BPF_LDX, BPF_LOAD_ACQ,
  BPF_LSH, BPF_MEM, BPF_MOD, BPF_MODE, BPF_MOV, BPF_NEG, BPF_OP, BPF_OR, BPF_PRIV_STACK_MIN_SIZE, BPF_PSEUDO_CALL,
  BPF_PSEUDO_KFUNC_CALL, BPF_RSH, BPF_SIZE, BPF_SRC, BPF_ST, BPF_STORE_REL, BPF_STX, BPF_SUB, BPF_W, BPF_X, BPF_XCHG,
  BPF_XOR, MAX_BPF_STACK, MAX_CALL_FRAMES, sizeBytes,
} from "./opcodes.ts";
import { ATTACH_PATHS, attachOf, attachPathsOf, calleeOf, type Program, type ProgType } from "./program.ts";
import { PT_REGS_SIZE } from "../../arch/ptrace.ts";
import { CTX_SIZE } from "../kernel/layout.ts";

/** MAX_BPF_FUNC_ARGS (include/linux/bpf.h, 7.2): the u64 arguments a raw_tp program may read. */
const MAX_BPF_FUNC_ARGS = 12;

/**
 * The context bytes [from, to) a program of this type may read (validate.ts ctxAccess(); the
 * generators draw their reads from it), or undefined where reads are not modelled.
 */
export function ctxReadable(type: ProgType): { readonly from: number; readonly to: number } | undefined {
  if (type === "kprobe") return { from: 0, to: PT_REGS_SIZE }; //                kprobe_prog_is_valid_access()
  if (type === "tracepoint") return { from: 8, to: CTX_SIZE }; //                tp_prog_is_valid_access(), the synthetic record
  if (type === "raw_tp") return { from: 0, to: 8 * MAX_BPF_FUNC_ARGS }; //      bpf_tracing_ctx_access()
  return undefined;
}

export { ValidationError } from "./issues.ts";
export type { Rule, ValidationIssue } from "./issues.ts";

export interface Validated {
  /** Per function: does it run on a private stack (jits_use_priv_stack)? Decided on stackDepth, as 7.2 decides. */
  readonly privStack: readonly boolean[];
  /** Per function: the stack depth the limits use, stackDepth rounded as the verifier rounds it for JITed programs (16). */
  readonly verifierDepth: readonly number[];
  /**
   * Per function: the stack depth 7.2's verifier computes, its high-water mark of accessed stack
   * (verifier.c:1377 grow_stack_state(): round_up(deepest byte accessed below the frame pointer,
   * 8), through R10 or through a pointer a callee was given), before any fixup.
   */
  readonly stackDepth: readonly number[];
  /**
   * Per function: the bytes fixups.c adds below that depth, 16 if the function has a may_goto
   * (x86-64 has timed may_goto: a count and a timestamp, fixups.c:1788, :2366), else 0. The JIT's
   * depth (func[i]->aux->stack_depth) is stackDepth + stackExtra.
   */
  readonly stackExtra: readonly number[];
  /** The deepest chain of BPF frames (main = 1). */
  readonly callDepth: number;
  /** The largest sum of non-private depths along a call chain (the combined-stack rule). */
  readonly combinedDepth: number;
  /**
   * The 32-bit cmpxchgs whose R0 a path the verifier walks reads as 64 bits before R0 is
   * written again (insn_aux_data[].zext_dst, set by mark_insn_zext() in __check_reg_arg(),
   * verifier.c, 7.2; PathWalk):
   * bpf_opt_subreg_zext_lo32_rnd_hi32() (fixups.c) puts a zero-extension of R0 after each, as
   * x86's cmpxchg leaves rax's upper half alone when the comparison succeeds.
   */
  readonly zextCmpxchg: readonly number[];
  /**
   * The same over every path, pruned or not (what 6.12 to 6.18 mark: their
   * propagate_liveness() carried a pruned path's 64-bit reads to its defs). Where it has more
   * than zextCmpxchg, 7.2 leaves a zero-extension out (README finding 9).
   */
  readonly zextCmpxchgAllPaths: readonly number[];
}

/** round_up_stack_depth() for a JITed program (verifier.c:5106). */
export const roundUp16 = (d: number) => Math.ceil(d / 16) * 16;
const roundUp8 = (d: number) => Math.ceil(d / 8) * 8;
/** How many instructions PathWalk walks before it gives up (and every path's marks stand). */
const PATH_WALK_BUDGET = 200_000;

// ---- abstract state ----

/**
 * A register: not readable, a number (with its value when the verifier would know it), the ctx
 * pointer, a pointer into frame `frame`'s stack, or different types on different paths.
 */
/** A scalar's `x`: its known value is one the verifier would not know (an op it does not compute exactly: see EXACT, shiftOutOfReach()). */
type RegT = { t: "uninit" } | { t: "scalar"; v?: bigint; x?: true; tag?: string; lo?: bigint; hi?: bigint } | { t: "ctx" } | { t: "fp"; frame: number; off: number } | { t: "mixed" };
/**
 * An 8-byte stack slot of the main frame on a path PathWalk walks: a spilled value, or the
 * name (Names) of what last wrote bytes of it, made from the slot's old name. (`tag`, `lo` and
 * `hi` of a scalar are PathWalk's too: the data flow never sets them.)
 */
type SlotV = RegT | string;
interface State {
  regs: RegT[];
  /** Per live frame (0 = main): one flag per stack byte, index d + off for off in [-d, 0). */
  init: Uint8Array[];
  /**
   * The 32-bit cmpxchgs that may have written R0's value (its bpf_reg_state.subreg_def where that
   * names a cmpxchg), ascending: on every path the verifier walks, R0 has one def; over the paths
   * met here, the union. Only R0 needs it: a cmpxchg's def leaves R0 only through a 64-bit read
   * (which marks it) or a 32-bit move (a def of its own).
   */
  cx: readonly number[];
  /** PathWalk's stack slots of the main frame (the data flow has none). */
  slots?: Map<number, SlotV>;
}

const UNINIT: RegT = { t: "uninit" }, SCALAR: RegT = { t: "scalar" }, MIXED: RegT = { t: "mixed" };
const known = (v: bigint): RegT => ({ t: "scalar", v });
const inexactIf = (r: RegT, inexact: boolean): RegT => (inexact && r.t === "scalar" ? { ...r, x: true } : r);

function clone(s: State): State {
  const c: State = { regs: s.regs.slice(), init: s.init.map((a) => a.slice()), cx: s.cx };
  if (s.slots !== undefined) c.slots = new Map(s.slots);
  return c;
}

function union(a: readonly number[], b: readonly number[]): readonly number[] {
  if (b.length === 0 || a === b) return a;
  if (a.length === 0) return b;
  return [...new Set([...a, ...b])].sort((x, y) => x - y);
}

function sameReg(a: RegT, b: RegT): boolean {
  if (a.t !== b.t) return false;
  if (a.t === "fp") return b.t === "fp" && a.frame === b.frame && a.off === b.off;
  if (a.t === "scalar") return b.t === "scalar" && a.v === b.v && a.x === b.x;
  return true;
}

function meetReg(a: RegT, b: RegT): RegT {
  if (sameReg(a, b)) return a;
  // the same value, known exactly on one path only: known, and not to the verifier on both
  if (a.t === "scalar" && b.t === "scalar" && a.v !== undefined && a.v === b.v) return { t: "scalar", v: a.v, x: true };
  if (a.t === "uninit" || b.t === "uninit") return UNINIT;
  if (a.t === "scalar" && b.t === "scalar") return SCALAR;
  return MIXED;
}

/** The meet of two states at a join point: what holds on both paths. */
function meet(a: State, b: State): State {
  return { regs: a.regs.map((r, i) => meetReg(r, b.regs[i]!)), init: a.init.map((x, f) => x.map((v, i) => v & b.init[f]![i]!)), cx: union(a.cx, b.cx) };
}

/** The same initialised stack bytes in every frame. */
function sameInit(a: State, b: State): boolean {
  return a.init.every((x, f) => x.every((v, i) => v === b.init[f]![i]));
}

function sameState(a: State, b: State): boolean {
  return a.regs.every((r, i) => sameReg(r, b.regs[i]!)) && sameInit(a, b) && a.cx.length === b.cx.length && a.cx.every((v, i) => v === b.cx[i]);
}

/** What the structural passes learn about one function. */
interface FuncInfo {
  readonly callees: number[];
  /** Second halves of ld_imm64s (absolute indices). */
  readonly halves: ReadonlySet<number>;
  readonly loops: readonly Loop[];
  readonly loopsByHead: ReadonlyMap<number, readonly Loop[]>;
  readonly hasMayGoto: boolean;
}

const ALU_STRING = ["+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "endian"]; // disasm.c bpf_alu_string
const hex2 = (v: number) => (v >>> 0).toString(16).padStart(2, "0");

class Checker {
  private readonly depths: number[];
  private info: FuncInfo[] = [];
  /** Per function: the deepest stack byte accessed (grow_stack_state()'s high-water mark). */
  private readonly hw: number[];
  /** The 32-bit cmpxchgs marked zext_dst (Validated.zextCmpxchg). */
  readonly zext = new Set<number>();
  constructor(readonly p: Program) {
    this.depths = p.funcs.map((f) => f.stackDepth);
    this.hw = p.funcs.map(() => 0);
  }

  fail(rule: Rule, fi: number, i: number, message: string): never {
    const f = this.p.funcs[fi]!;
    throw new ValidationError(this.p.name, { rule, func: f.name, insn: i < 0 ? -1 : i - f.start, message });
  }

  private report(fi: number, i: number, f: Finding): never {
    return this.fail(f.rule, fi, i, f.message);
  }

  /** Passes 1-3 for one function. */
  structure(fi: number): FuncInfo {
    const p = this.p, f = p.funcs[fi]!;
    const rel = (i: number) => i - f.start;
    // 1. check_subprogs() (verifier.c:2849)
    for (let i = f.start; i < f.end; i++) {
      const off = jumpOffset(p.insns[i]!);
      if (off === undefined) continue;
      const target = i + 1 + off;
      if (target < f.start || target >= f.end) this.fail("jump-range", fi, i, `jump out of range from insn ${rel(i)} to ${rel(target)}`);
    }
    const last = p.insns[f.end - 1]!;
    if (!endsBlock(last) && last.code !== (BPF_JMP | BPF_JA | BPF_X)) this.fail("fall-through", fi, f.end - 1, "last insn is not an exit or jmp");
    // 2. check_and_resolve_insns() (verifier.c:18328), then the calls
    const halves = new Set<number>();
    const callees: number[] = [];
    let hasMayGoto = false;
    for (let i = f.start; i < f.end; i++) {
      const x = p.insns[i]!;
      const bad = checkInsn(p.insns, i, f.end, rel(i));
      if (bad) this.report(fi, i, bad);
      if (x.code === BPF_LD_IMM64) { halves.add(++i); continue; }
      hasMayGoto ||= isMayGoto(x);
      if (x.code !== (BPF_JMP | BPF_CALL)) continue;
      if (x.src === BPF_PSEUDO_CALL) {
        const target = i + 1 + x.imm;
        const ci = p.funcs.findIndex((g) => g.start === target);
        if (ci < 0) this.fail("call-target", fi, i, `call to insn ${target}, which does not start a function`);
        callees.push(ci);
      } else if (x.src === BPF_HELPER_CALL) {
        const h = helperById(x.imm);
        if (!h) this.fail("unknown-helper", fi, i, `invalid func unknown#${x.imm}`);
        // check_helper_call() (verifier.c:10373, 7.2)
        if (h.mightSleep && !p.sleepable) this.fail("sleepable", fi, i, `sleepable helper ${h.name}#${h.id} in non-sleepable prog`);
      } else if (x.src === BPF_PSEUDO_KFUNC_CALL) {
        if (!kfuncById(x.imm)) this.fail("unknown-kfunc", fi, i, `kernel function ${x.imm} is not a kfunc of the synthetic kernel`);
      }
    }
    // 3. bpf_check_cfg() (cfg.c): reachability within the function (calls return), ld_imm64 halves
    const seen = new Uint8Array(f.end - f.start);
    const todo = [f.start];
    seen[0] = 1;
    while (todo.length) {
      const i = todo.pop()!;
      const x = p.insns[i]!;
      const off = jumpOffset(x);
      const next: number[] = [];
      if (x.code === BPF_LD_IMM64) next.push(i + 2);
      else if (x.code === (BPF_JMP | BPF_JA) || x.code === (BPF_JMP32 | BPF_JA)) next.push(i + 1 + off!);
      else if (x.code !== (BPF_JMP | BPF_EXIT)) next.push(i + 1, ...(off === undefined ? [] : [i + 1 + off]));
      for (const t of next) {
        if (halves.has(t)) this.fail("ld-imm64", fi, i, `jump into the middle of ldimm64 insn ${rel(t - 1)}`); // cfg.c:635
        if (!seen[t - f.start]) { seen[t - f.start] = 1; todo.push(t); }
      }
    }
    for (let i = f.start; i < f.end; i++) if (!seen[i - f.start] && !halves.has(i)) this.fail("unreachable", fi, i, `unreachable insn ${rel(i)}`);
    const found = findLoops(p.insns, f.start, f.end, (i) => halves.has(i));
    if ("finding" in found) this.report(fi, found.at, found.finding);
    const loopsByHead = new Map<number, Loop[]>();
    for (const L of found.loops) loopsByHead.set(L.head, [...(loopsByHead.get(L.head) ?? []), L]);
    return { callees, halves, loops: found.loops, loopsByHead, hasMayGoto };
  }

  run(): Validated {
    const p = this.p;
    const path = attachOf(p);
    if (!(ATTACH_PATHS[path].types as readonly string[]).includes(p.type)) {
      this.fail("attach", 0, -1, `a ${p.type} program cannot be run through ${path} (that path runs ${ATTACH_PATHS[path].types.join(", ")} programs)`);
    }
    // check_attach_btf_id() (verifier.c:19601, can_be_sleepable()), and the attach-time checks of
    // the paths that refuse sleepable programs (kprobe_multi, perf kprobes/tracepoints)
    if (p.sleepable && !ATTACH_PATHS[path].sleepable) this.fail("sleepable", 0, -1, `Program of this type cannot be sleepable (${p.type} through ${path}; sleepable ${p.type} programs run through ${attachPathsOf(p.type).filter((a) => ATTACH_PATHS[a].sleepable).join(", ") || "no path"})`);
    this.info = p.funcs.map((_, fi) => this.structure(fi));
    // 4. The call graph: no recursion, at most MAX_CALL_FRAMES frames.
    let callDepth = 0;
    const graph = (fi: number, chain: number[]) => {
      // sort_subprogs_topo() (verifier.c:2966)
      if (chain.includes(fi)) this.fail("recursion", chain.at(-1)!, -1, `recursive call from ${p.funcs[chain.at(-1)!]!.name}() to ${p.funcs[fi]!.name}()`);
      const frames = chain.length + 1;
      // setup_func_entry() (verifier.c:9164): do_check() meets the deep call before check_max_stack_depth() would
      if (frames > MAX_CALL_FRAMES) this.fail("call-depth", fi, -1, `the call stack of ${frames} frames is too deep`);
      callDepth = Math.max(callDepth, frames);
      for (const c of new Set(this.info[fi]!.callees)) graph(c, [...chain, fi]);
    };
    graph(0, []);
    // A function no call reaches is unreachable code (check_cfg()).
    const reached = new Set<number>([0]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const f of reached) for (const c of this.info[f]!.callees) if (!reached.has(c)) { reached.add(c); grew = true; }
    }
    p.funcs.forEach((f, fi) => { if (!reached.has(fi)) this.fail("unreachable", fi, f.start, `unreachable insn ${f.start}: no call reaches function ${f.name}`); });
    // 5. Data flow from the main program's entry: R1 = ctx, R10 = its frame pointer (do_check()).
    const entry: State = { regs: Array.from({ length: 11 }, () => UNINIT), init: [new Uint8Array(this.depths[0]!)], cx: [] };
    entry.regs[1] = { t: "ctx" };
    entry.regs[10] = { t: "fp", frame: 0, off: 0 };
    const exit = new FuncWalk(this, 0, [0]).run(entry);
    const zext = this.walkedZext(entry);
    if (exit.regs[0]!.t !== "scalar") this.fail("return-value", 0, p.funcs[0]!.end - 1, "R0 leaks addr as return value");
    // 6. The stack limits on the depths do_check() found (check_max_stack_depth(), which runs
    // after it, verifier.c:20211): a private stack when the subprog's round_up_stack_depth() of
    // them is at least BPF_PRIV_STACK_MIN_SIZE; each private one alone against MAX_BPF_STACK, the
    // others summed along every call chain.
    const depth = this.hw.map((d) => roundUp16(roundUp8(d)));
    const mode = privStackMode(p);
    const priv = depth.map((d) => mode && d >= BPF_PRIV_STACK_MIN_SIZE);
    depth.forEach((d, fi) => { if (priv[fi] && d > MAX_BPF_STACK) this.fail("stack-size", fi, -1, `stack size of subprog ${fi} is ${d}. Too large`); });
    let combined = 0;
    const sums = (fi: number, frames: number, sum: number) => {
      const total = sum + (priv[fi] ? 0 : depth[fi]!);
      if (total > MAX_BPF_STACK) this.fail("combined-stack-size", fi, -1, `combined stack size of ${frames} calls is ${total}. Too large`);
      combined = Math.max(combined, total);
      for (const c of new Set(this.info[fi]!.callees)) sums(c, frames + 1, total);
    };
    sums(0, 1, 0);
    return {
      privStack: priv,
      verifierDepth: depth,
      stackDepth: this.hw.map(roundUp8),
      stackExtra: this.info.map((fi) => (fi.hasMayGoto ? 16 : 0)),
      callDepth,
      combinedDepth: combined,
      zextCmpxchg: zext.walked,
      zextCmpxchgAllPaths: zext.all,
    };
  }

  funcInfo(fi: number): FuncInfo {
    return this.info[fi]!;
  }

  /**
   * The zero-extension marks: every path's (the data flow's, in this.zext) and the walked
   * paths' (PathWalk: the main function's cmpxchgs as 7.2's walk marks them; the callees'
   * as the data flow does). Where PathWalk does not walk (a loop or may_goto in the main
   * function) or gives up past PATH_WALK_BUDGET instructions, every path's marks stand.
   */
  private walkedZext(entry: State): { walked: readonly number[]; all: readonly number[] } {
    const all = [...this.zext].sort((a, b) => a - b);
    const main = this.p.funcs[0]!;
    const inMain = (i: number) => i >= main.start && i < main.end;
    if (!this.p.insns.some((x, i) => inMain(i) && isCmpxchg32(x))) return { walked: all, all };
    const marks = new PathWalk(this, 0, [0]).walk(entry, PATH_WALK_BUDGET);
    return { walked: marks === undefined ? all : all.filter((i) => !inMain(i) || marks.has(i)), all };
  }

  depthOf(fi: number): number {
    return this.depths[fi]!;
  }

  /** grow_stack_state(): function fi's stack was accessed down to `at` below its frame pointer. */
  grow(fi: number, at: number): void {
    this.hw[fi] = Math.max(this.hw[fi]!, -at);
  }
}

/**
 * Does `x` read R0 as a 64-bit source (check_reg_arg(SRC_OP) with bpf_is_reg64() true,
 * verifier.c, 7.2)? ALU64 sources and operands but a 16- or 32-bit byte swap, ALU's 64-bit
 * byte swap, 64-bit compares, 64-bit stores and atomics of R0 (a cmpxchg's expected value
 * too), R0 as any pointer (a load's source, a store's destination), and the main program's exit
 * (check_return_code(); a struct_ops operator returning void would read nothing, but the model
 * has no attach prototypes); a static subprog's exit reads nothing (prepare_func_exit() copies
 * R0, its def with it, to the caller). ALU32, JMP32, helper arguments (R1-R5) and BPF calls do
 * not. The data flow makes these marks over every path; PathWalk over the paths 7.2's verifier
 * walks (a branch it knows is not taken, and a path it prunes at a state it has kept, get no
 * mark: 7.2 dropped propagate_liveness(), whose READ64 marks reached the pruned path's def in
 * 6.12; README finding 9).
 */
function readsR0As64(x: BpfInsn, main: boolean): boolean {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
  switch (cls) {
    case BPF_ALU64:
      if (op === BPF_END) return (x.imm === 64) && x.dst === 0;
      return (isX && x.src === 0) || (op !== BPF_MOV && x.dst === 0);
    case BPF_ALU:
      return op === BPF_END && x.imm === 64 && x.dst === 0;
    case BPF_JMP:
      if (op === BPF_EXIT) return main;
      return isCondJump(x) && (x.dst === 0 || (isX && x.src === 0));
    case BPF_LDX:
      return x.src === 0;
    case BPF_ST:
      return x.dst === 0;
    case BPF_STX: {
      const dw = BPF_SIZE(x.code) === BPF_DW;
      if (BPF_MODE(x.code) === BPF_ATOMIC && x.imm === BPF_LOAD_ACQ) return x.src === 0; // the pointer (dst is written)
      if (x.dst === 0) return true; // the pointer
      return dw && (x.src === 0 || (BPF_MODE(x.code) === BPF_ATOMIC && x.imm === BPF_CMPXCHG));
    }
    default:
      return false;
  }
}

/**
 * What `x` (at index i) leaves as R0's cmpxchg defs when it writes R0: itself for a 32-bit
 * cmpxchg (a 32-bit load into R0, subreg_def = i + 1), none for any other write; undefined
 * when it does not write R0 (a BPF call sets them from the callee's exit, in call()).
 */
function r0Def(x: BpfInsn, i: number): readonly number[] | undefined {
  if (!writesReg(x, 0) || (BPF_CLASS(x.code) === BPF_JMP && BPF_OP(x.code) === BPF_CALL && x.src === BPF_PSEUDO_CALL)) return undefined;
  return isCmpxchg32(x) ? [i] : NO_CX;
}
const NO_CX: readonly number[] = [];

/** A 32-bit BPF_CMPXCHG (the atomics is_cmpxchg_insn() names, fixups.c, at 4 bytes). */
const isCmpxchg32 = (x: BpfInsn): boolean =>
  BPF_CLASS(x.code) === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC && x.imm === BPF_CMPXCHG && BPF_SIZE(x.code) === BPF_W;

/** The abstract interpretation of one function from one entry state (one call site). */
class FuncWalk {
  protected readonly f: Program["funcs"][number];
  private readonly at: (State | undefined)[];
  private readonly dirty: Uint8Array;
  private readonly loopEntry = new Map<Loop, State>();
  private exit: State | undefined;
  /** The instruction and state at hand. */
  protected i = 0;
  protected s!: State;
  /** Where 64-bit reads of R0 mark the cmpxchgs that defined it (the Checker's set, unless a walk keeps its own). */
  protected marks: Set<number>;

  /** `chain[k]`: the function whose frame is frame k (this one is last). */
  constructor(protected readonly c: Checker, private readonly fi: number, private readonly chain: readonly number[]) {
    this.f = c.p.funcs[fi]!;
    this.marks = c.zext;
    this.at = new Array(this.f.end - this.f.start);
    this.dirty = new Uint8Array(this.f.end - this.f.start);
  }

  protected get p(): Program {
    return this.c.p;
  }

  private fail(rule: Rule, message: string): never {
    return this.c.fail(rule, this.fi, this.i, message);
  }

  /** Meet `s` into the state at `to`, coming from `from` (-1: the function's entry). */
  protected flow(from: number, to: number, s: State): void {
    for (const L of this.c.funcInfo(this.fi).loopsByHead.get(to) ?? []) {
      if (from < L.head || from > L.latch) this.loopEntry.set(L, this.loopEntry.has(L) ? meet(this.loopEntry.get(L)!, s) : s);
    }
    const k = to - this.f.start;
    const old = this.at[k];
    const nu = old === undefined ? s : meet(old, s);
    if (old === undefined || !sameState(old, nu)) {
      this.at[k] = nu;
      this.dirty[k] = 1;
    }
  }

  /** Sweep the function in order until no state changes (once, without backward jumps); the meet of its exit states. */
  run(entry: State): State {
    this.flow(-1, this.f.start, entry);
    for (let busy = true; busy; ) {
      busy = false;
      for (let k = 0; k < this.at.length; k++) {
        if (!this.dirty[k]) continue;
        this.dirty[k] = 0;
        busy = true;
        this.i = this.f.start + k;
        this.s = clone(this.at[k]!);
        this.step(this.p.insns[this.i]!);
      }
    }
    this.checkLoops();
    return this.exit!;
  }

  /** check_reg_arg(SRC_OP) (verifier.c:3121 in __check_reg_arg()): a readable register. */
  private reg(r: number): RegT {
    const v = this.s.regs[r]!;
    if (v.t === "uninit") this.fail("uninit-reg", `R${r} !read_ok`);
    if (v.t === "mixed") this.fail("uninit-reg", `R${r} has different types on different paths`);
    return v;
  }

  /** check_reg_arg(DST_OP) (verifier.c:3135 in __check_reg_arg()). */
  private writable(r: number): void {
    if (r === 10) this.fail("fp-read-only", "frame pointer is read only");
  }

  protected step(x: BpfInsn): void {
    const s = this.s, i = this.i;
    const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
    // R0's sub-register def (__check_reg_arg(), verifier.c, 7.2): a 64-bit read marks the
    // cmpxchgs that may have written it (mark_insn_zext()); a write replaces them.
    if (s.cx.length > 0 && readsR0As64(x, this.chain.length === 1)) {
      for (const c of s.cx) this.marks.add(c);
      s.cx = []; // "won't be sub-register anymore"
    }
    const def = r0Def(x, i);
    if (def !== undefined) s.cx = def;
    if (cls === BPF_ALU || cls === BPF_ALU64) {
      this.alu(x);
      this.flow(i, i + 1, s);
    } else if (x.code === BPF_LD_IMM64) { // check_ld_imm() (verifier.c:16387)
      this.writable(x.dst);
      const hi = this.p.insns[i + 1]!;
      s.regs[x.dst] = known((BigInt(hi.imm >>> 0) << 32n) | BigInt(x.imm >>> 0));
      this.flow(i, i + 2, s);
    } else if (cls === BPF_LDX) { // check_load_mem() (verifier.c:6418)
      const ptr = this.reg(x.src);
      this.writable(x.dst);
      this.access(ptr, x.src, x.off, sizeBytes(BPF_SIZE(x.code)), "read");
      s.regs[x.dst] = SCALAR;
      this.flow(i, i + 1, s);
    } else if (cls === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC) {
      this.atomic(x);
      this.flow(i, i + 1, s);
    } else if (cls === BPF_STX || cls === BPF_ST) { // check_store_reg() (verifier.c:6461), do_check_insn() BPF_ST
      if (cls === BPF_STX) this.reg(x.src);
      this.access(this.reg(x.dst), x.dst, x.off, sizeBytes(BPF_SIZE(x.code)), "write");
      this.flow(i, i + 1, s);
    } else if (op === BPF_CALL) {
      this.call(x);
      this.flow(i, i + 1, s);
    } else if (op === BPF_EXIT) {
      this.reg(0);
      this.exit = this.exit === undefined ? s : meet(this.exit, s);
    } else if (op === BPF_JA) {
      this.flow(i, i + 1 + (cls === BPF_JMP32 ? x.imm : x.off), s);
    } else if (isMayGoto(x)) { // check_cond_jmp_op() (verifier.c:16153): both ways, no register read
      this.flow(i, i + 1, s);
      this.flow(i, i + 1 + x.off, clone(s));
    } else { // check_cond_jmp_op() (verifier.c:16132)
      const a = this.reg(x.dst);
      if (BPF_SRC(x.code) === BPF_X && this.reg(x.src).t !== "scalar") this.fail("pointer-arithmetic", `R${x.src} pointer comparison prohibited`);
      if (a.t !== "scalar") this.fail("pointer-arithmetic", `R${x.dst} pointer comparison prohibited`);
      // A condition the values decide as the verifier's would (is_branch_taken(): constants it
      // knows exactly) goes one way only: the verifier never walks the other (no speculative
      // walk: these program types need CAP_PERFMON, so bypass_spec_v1), so what lies only there
      // neither grows the stack depth nor is checked. The state here is the meet of every path
      // followed, so it decides no more than each of the verifier's own paths does. Forward
      // jumps only: a loop's latch keeps both ways (the loop rules read the states around it).
      const d = x.off > 0 && exactlyKnown(s.regs[x.dst]) && (BPF_SRC(x.code) !== BPF_X || exactlyKnown(s.regs[x.src])) ? decide(x, s) : undefined;
      if (d !== true) this.flow(i, i + 1, s);
      if (d !== false) this.flow(i, i + 1 + x.off, clone(s));
    }
  }

  /** check_alu_op() (verifier.c:15097), with adjust_ptr_min_max_vals()'s pointer rules (:13866-14016). */
  private alu(x: BpfInsn): void {
    const s = this.s, op = BPF_OP(x.code), is64 = BPF_CLASS(x.code) === BPF_ALU64, isX = BPF_SRC(x.code) === BPF_X;
    // (a known result the verifier would not know too is marked: only decide() reads that)
    const fold = (d: RegT, v: RegT): RegT =>
      d.t === "scalar" && d.v !== undefined && v.t === "scalar" && v.v !== undefined
        ? inexactIf(known(aluResult(x, d.v, v.v)), d.x === true || v.x === true || !EXACT.has(op) || shiftOutOfReach(x, s)) : SCALAR;
    if (op === BPF_END || op === BPF_NEG) {
      const d = this.reg(x.dst);
      if (d.t !== "scalar") this.fail("pointer-arithmetic", `R${x.dst} pointer arithmetic prohibited`);
      this.writable(x.dst);
      s.regs[x.dst] = fold(d, d);
      return;
    }
    const v = isX ? this.reg(x.src) : known(immU64(x));
    if (op === BPF_MOV) {
      this.writable(x.dst);
      if (isX && v.t !== "scalar") {
        if (!is64) this.fail("pointer-arithmetic", `R${x.src} partial copy of pointer`);
        if (x.off !== 0) this.fail("pointer-arithmetic", `R${x.src} sign-extension part of pointer`);
      }
      s.regs[x.dst] = v.t !== "scalar" ? v : v.v === undefined ? SCALAR : inexactIf(known(aluResult(x, 0n, v.v)), v.x === true);
      return;
    }
    const d = this.reg(x.dst);
    if ((op === BPF_DIV || op === BPF_MOD) && !isX && x.imm === 0) this.fail("div-by-zero", "div by zero");
    if ((op === BPF_LSH || op === BPF_RSH || op === BPF_ARSH) && !isX && (x.imm < 0 || x.imm >= (is64 ? 64 : 32))) {
      this.fail("shift-range", `invalid shift ${x.imm}`);
    }
    this.writable(x.dst);
    if (d.t === "scalar" && v.t === "scalar") {
      s.regs[x.dst] = fold(d, v);
      return;
    }
    const opText = ALU_STRING[op >> 4]!;
    if (d.t !== "scalar" && v.t !== "scalar") this.fail("pointer-arithmetic", `R${x.dst} pointer ${opText} pointer prohibited`);
    const [ptr, off] = d.t !== "scalar" ? [d, v as { t: "scalar"; v?: bigint }] : [v, d as { t: "scalar"; v?: bigint }];
    if (!is64) this.fail("pointer-arithmetic", `R${x.dst} 32-bit pointer arithmetic prohibited`);
    if (op === BPF_AND || op === BPF_OR || op === BPF_XOR) this.fail("pointer-arithmetic", `R${x.dst} bitwise operator ${opText} on pointer prohibited`);
    if (op !== BPF_ADD && op !== BPF_SUB) this.fail("pointer-arithmetic", `R${x.dst} pointer arithmetic with ${opText} operator prohibited`);
    if (op === BPF_SUB && d.t === "scalar") this.fail("pointer-arithmetic", `R${x.dst} tried to subtract pointer from scalar`);
    if (ptr.t !== "fp") this.fail("pointer-arithmetic", `R${x.dst} pointer arithmetic on ${ptr.t} is not modelled (only stack pointers move)`);
    if (off.v === undefined) this.fail("pointer-arithmetic", `R${x.dst} variable stack offset is not modelled (add or subtract a known constant)`);
    const delta = Number(BigInt.asIntN(64, off.v));
    s.regs[x.dst] = { t: "fp", frame: ptr.frame, off: ptr.off + (op === BPF_ADD ? delta : -delta) };
  }

  /** check_atomic() (verifier.c:6618) and check_atomic_rmw/_load/_store() (:6499, :6580, :6599). */
  private atomic(x: BpfInsn): void {
    const s = this.s, size = sizeBytes(BPF_SIZE(x.code));
    const base = x.imm & ~BPF_FETCH;
    const rmw = ((base === BPF_ADD || base === BPF_AND || base === BPF_OR || base === BPF_XOR) && (x.imm === base || x.imm === (base | BPF_FETCH)))
      || x.imm === BPF_XCHG || x.imm === BPF_CMPXCHG;
    if (rmw) {
      if (BPF_SIZE(x.code) !== BPF_W && BPF_SIZE(x.code) !== BPF_DW) this.fail("atomic", "invalid atomic operand size");
      const v = this.reg(x.src);
      const d = this.reg(x.dst);
      if (x.imm === BPF_CMPXCHG && this.reg(0).t !== "scalar") this.fail("pointer-leak", "R0 leaks addr into mem");
      if (v.t !== "scalar") this.fail("pointer-leak", `R${x.src} leaks addr into mem`);
      if (d.t === "ctx") this.fail("atomic", `BPF_ATOMIC stores into R${x.dst} ctx is not allowed`);
      const load = x.imm === BPF_CMPXCHG ? 0 : x.imm & BPF_FETCH ? x.src : -1; // bpf_atomic_load_reg()
      if (load >= 0) this.writable(load);
      this.access(d, x.dst, x.off, size, "read");
      this.access(d, x.dst, x.off, size, "write");
      if (load >= 0) s.regs[load] = SCALAR;
    } else if (x.imm === BPF_LOAD_ACQ) {
      const ptr = this.reg(x.src);
      if (ptr.t === "ctx") this.fail("atomic", `BPF_ATOMIC loads from R${x.src} ctx is not allowed`);
      this.writable(x.dst);
      this.access(ptr, x.src, x.off, size, "read");
      s.regs[x.dst] = SCALAR;
    } else if (x.imm === BPF_STORE_REL) {
      this.reg(x.src);
      const d = this.reg(x.dst);
      this.access(d, x.dst, x.off, size, "write");
    } else {
      this.fail("atomic", `BPF_ATOMIC uses invalid atomic opcode ${hex2(x.imm)}`);
    }
  }

  /**
   * check_mem_access() on the stack (verifier.c:6143): strict alignment (check_ptr_alignment(),
   * :5021, always for the stack; not for helper memory), then the bounds (:6051; the declared
   * depth here), then initialisation for reads. Grows the owning function's high-water mark.
   */
  private access(ptr: RegT, r: number, off: number, size: number, kind: "read" | "write", aligned = true): void {
    if (ptr.t === "ctx") return this.ctxAccess(r, off, size, kind);
    if (ptr.t !== "fp") this.fail("invalid-mem-access", `R${r} invalid mem access '${ptr.t}'`);
    const at = ptr.off + off;
    if (aligned && size > 1 && at % size !== 0) this.fail("stack-alignment", `misaligned stack access off ${at} size ${size}`);
    const owner = this.chain[ptr.frame]!;
    const depth = this.c.depthOf(owner);
    if (at < -depth || at + size > 0) this.fail("stack-bounds", `invalid ${kind === "read" ? "read from" : "write to"} stack R${r} off=${at} size=${size} (stack depth ${depth})`);
    this.c.grow(owner, at);
    const flags = this.s.init[ptr.frame]!;
    for (let b = 0; b < size; b++) {
      if (kind === "write") flags[depth + at + b] = 1;
      else if (!flags[depth + at + b]) this.fail("uninit-stack", `invalid read from stack R${r} off ${at} size ${size}: byte ${at + b} is not initialised`);
    }
  }

  /**
   * check_ctx_access() (verifier.c, 7.2) with the program type's is_valid_access()
   * (kernel/trace/bpf_trace.c): kprobe reads struct pt_regs (kprobe_prog_is_valid_access():
   * within its 168 bytes, aligned to the size), tracepoint its record past the first 8 bytes
   * (tp_prog_is_valid_access(); the synthetic record is CTX_SIZE bytes), raw_tp the u64
   * arguments (bpf_tracing_ctx_access(): 12 of them). perf_event's accesses are rewritten by
   * pe_prog_convert_ctx_access() and tracing's and struct_ops' are typed by BTF: not modelled.
   * Writes are refused (7.2 lets kprobe programs write pt_regs: not modelled either).
   */
  private ctxAccess(r: number, off: number, size: number, kind: "read" | "write"): void {
    const type = this.p.type;
    if (kind === "write") this.fail("ctx-access", `writes to the context (R${r}) are not modelled`);
    const range = ctxReadable(type);
    if (range === undefined) this.fail("ctx-access", `reading a ${type} program's context is not modelled (${type === "perf_event" ? "pe_prog_convert_ctx_access() rewrites it" : "BTF types it"})`);
    // raw_tp checks only where a read starts (bpf_tracing_ctx_access()); the others where it ends too
    const past = type === "raw_tp" ? off >= range.to : off + size > range.to;
    if (off % size !== 0 || off < range.from || past) this.fail("ctx-access", `invalid bpf_context access off=${off} size=${size}`);
  }

  private call(x: BpfInsn): void {
    const s = this.s, p = this.p;
    if (x.src === BPF_PSEUDO_CALL) {
      const ci = calleeOf(p, this.i, x.imm);
      const entry: State = { regs: Array.from({ length: 11 }, () => UNINIT), init: [...s.init.map((a) => a.slice()), new Uint8Array(this.c.depthOf(ci))], cx: [] };
      for (let r = 1; r <= 5; r++) entry.regs[r] = s.regs[r]!;
      entry.regs[10] = { t: "fp", frame: entry.init.length - 1, off: 0 };
      const out = new FuncWalk(this.c, ci, [...this.chain, ci]).run(entry);
      const r0 = out.regs[0]!;
      // prepare_func_exit() (verifier.c:9868): no stack pointer at all goes back, not even one into a caller's frame.
      if (r0.t === "fp") this.c.fail("return-value", ci, p.funcs[ci]!.end - 1, "cannot return stack pointer to the caller");
      s.init = out.init.slice(0, -1); // what the callee initialised in its callers' frames stays initialised
      s.regs[0] = r0;
      s.cx = out.cx; // `caller->regs[BPF_REG_0] = *r0`, its subreg_def with it
    } else {
      const sig: CallSig = (x.src === BPF_HELPER_CALL ? helperById(x.imm) : kfuncById(x.imm))!;
      sig.args.forEach((kind, a) => this.arg(a + 1, kind, sig.name));
      s.regs[0] = SCALAR;
    }
    for (let r = 1; r <= 5; r++) s.regs[r] = UNINIT; // caller-saved registers are clobbered
  }

  private arg(r: number, kind: ArgKind, fn: string): void {
    const v = this.reg(r);
    if (kind === "scalar" && v.t !== "scalar") this.fail("helper-arg", `${fn}: R${r} type=${v.t} expected=scalar`);
    if (kind === "stack-ptr-8") {
      if (v.t !== "fp") this.fail("helper-arg", `${fn}: R${r} type=${v.t} expected=fp`);
      this.access(v, r, 0, 8, "read", false); // check_helper_mem_access(): bounds and initialisation, no alignment
    }
  }

  /**
   * The counted loops, once the states are final: the counter is a known constant on every way
   * into the loop, and its run ends. The verifier walks every iteration of such a loop (each has
   * a different counter), so the instructions it would process, iterations times the body (an
   * inner loop counted as what it costs), must stay within BPF_COMPLEXITY_LIMIT_INSNS
   * (verifier.c:17597 "BPF program is too large"). A may_goto loop costs its body once.
   */
  private checkLoops(): void {
    const f = this.f;
    const rel = (i: number) => i - f.start;
    const costs = new Map<Loop, number>();
    const cost = (L: Loop): number => {
      let c = costs.get(L);
      if (c !== undefined) return c;
      const body = L.latch - L.head + 1 + L.inner.reduce((n, inner) => n - (inner.latch - inner.head + 1) + cost(inner), 0);
      // (a loop the walk never reaches, behind a decided branch, is never walked: no iterations)
      c = L.counter === undefined || this.at[rel(L.head)] === undefined ? body : body * this.iterations(L, rel);
      if (c > BPF_COMPLEXITY_LIMIT_INSNS) {
        this.i = L.latch;
        this.fail("backward-jump", `back-edge from insn ${rel(L.latch)} to ${rel(L.head)}: the verifier would process about ${c} insns in this loop (${c / body} iterations of ${body}), more than ${BPF_COMPLEXITY_LIMIT_INSNS} (BPF program is too large)`);
      }
      costs.set(L, c);
      return c;
    };
    for (const L of this.c.funcInfo(this.fi).loops) cost(L);
  }

  /** How often a counted loop runs: its counter from the states that enter it, simulated (loops.ts). */
  private iterations(L: Loop, rel: (i: number) => number): number {
    this.i = L.latch;
    const reg = L.counter!.reg;
    const v = this.loopEntry.get(L)?.regs[reg];
    if (v?.t !== "scalar" || v.v === undefined) {
      this.fail("backward-jump", `back-edge from insn ${rel(L.latch)} to ${rel(L.head)}: the counter r${reg} is not a known constant on every way into the loop; ${ACCEPTED_LOOPS}`);
    }
    const n = counterRun(this.p.insns, L, v.v, BPF_COMPLEXITY_LIMIT_INSNS);
    if (n === undefined) {
      this.fail("backward-jump", `back-edge from insn ${rel(L.latch)} to ${rel(L.head)}: starting at ${BigInt.asIntN(64, v.v)}, r${reg} does not end the loop within ${BPF_COMPLEXITY_LIMIT_INSNS} iterations (BPF program is too large)`);
    }
    return n;
  }
}

/**
 * do_check()'s own walk of the main function (kernel/bpf/verifier.c, with is_state_visited(),
 * kernel/bpf/states.c, 7.2), for the one result only its order decides: which 32-bit cmpxchgs
 * a 64-bit read of R0 marks for their zero-extension. A path pruned at a state kept before is
 * not walked on, and 7.2 carries no marks over to it (README finding 9).
 *
 * It walks as the verifier walks, while it can be sure of doing so: the fall-through first and
 * the branch target pushed for later (check_cond_jmp_op()); a condition decided one way only
 * when the values decide it (is_branch_taken(): known constants, or the range of a context
 * value no branch has narrowed yet); prune points where kernel/bpf/cfg.c puts them; a state
 * kept only after 2 jumps and 8 instructions since the last kept. It prunes only at a state
 * identical to a kept one in everything it tracks (every register its own liveness, a superset
 * of the verifier's, calls live; every stack slot: a spilled value or the name of what wrote
 * it; a value that is not a known constant named by what made it from what, Names), where the
 * verifier's states are then equal too. Past the first point where it cannot be sure (a kept
 * state that differs only maybe for the verifier, a branch it cannot prove undecidable, a long
 * jump history that would force a new state), it prunes no more and walks every path on, which
 * marks at least what the verifier marks (a BPF call, whose callee the verifier walks and this
 * does not, is such a point, and so is an AND or OR of a constant that may fork the verifier's
 * walk, maybe_fork_scalars()). So it is to leave a mark out only where 7.2 leaves it out;
 * reviews have found thirteen programs where it did not (fixups.test.ts "no prune where the
 * verifier walks on"), and the verifier's state holds more than this tracks.
 * Not for a main function with a loop or a may_goto (their states carry what this does not
 * track): the data flow's marks stand there.
 */
class PathWalk extends FuncWalk {
  private out: [number, State][] = [];

  protected override flow(_from: number, to: number, s: State): void {
    this.out.push([to, s]);
  }

  /** The cmpxchgs marked on the walked paths; undefined when it cannot walk the function, or past `budget` instructions. */
  walk(entry: State, budget: number): Set<number> | undefined {
    const p = this.p, f = this.f;
    const cfg = mainCfg(p, f);
    if (cfg === undefined) return undefined;
    const marks = (this.marks = new Set<number>());
    const names = new Names();
    const kept = new Map<number, State[]>();
    let insns = 0, jmps = 0, prevInsns = 0, prevJmps = 0, sure = true;
    // each path's jump history since its last kept state (jmp_history_cnt: a pushed state keeps its own)
    const pending: [number, State, number][] = [[f.start, { ...entry, slots: new Map() }, 0]];
    while (pending.length > 0) {
      let [i, s, history] = pending.pop()!;
      for (;;) {
        if (++insns > budget) return undefined; // account_processed_insn()
        const x = p.insns[i]!;
        if (sure && cfg.prune.has(i)) { // is_state_visited()
          const here = kept.get(i) ?? [];
          if (here.some((k) => identical(k, s, cfg.live[i - f.start]!))) break; // "i: safe"
          if (here.length > 0 || history > 40) sure = false;
          else if (jmps - prevJmps >= 2 && insns - prevInsns >= 8) {
            kept.set(i, [s]);
            prevJmps = jmps;
            prevInsns = insns;
            history = 0;
          }
        }
        if (cfg.prune.has(i) || touchesStack(x)) history++; // push_jmp_history(): jump points and stack accesses
        const cls = BPF_CLASS(x.code);
        if (cls === BPF_JMP || cls === BPF_JMP32) jmps++;
        const decision = decide(x, s);
        if (decision === "unsure") sure = false;
        // the verifier walks into a BPF call, counting and keeping states there; this takes the data flow's summary
        if (cls === BPF_JMP && BPF_OP(x.code) === BPF_CALL && x.src === BPF_PSEUDO_CALL) sure = false;
        // an AND or OR of a constant on a value in [-1, 0] forks the walk (maybe_fork_scalars()), which this does not track
        if ((cls === BPF_ALU || cls === BPF_ALU64) && (BPF_OP(x.code) === BPF_AND || BPF_OP(x.code) === BPF_OR) && unknown(s.regs[x.dst])) sure = false;
        this.i = i;
        this.s = clone(s);
        this.out = [];
        this.step(x);
        for (const [, n] of this.out) values(x, i, s, n, names);
        const [fall, target] = this.out;
        if (fall === undefined) break; // an exit
        if (target === undefined) { [i, s] = fall; continue; }
        narrow(x, i, s, fall[1], target[1], names);
        if (typeof decision === "boolean") { [i, s] = decision ? target : fall; continue; }
        pending.push([target[0], target[1], history]);
        [i, s] = fall;
      }
    }
    return marks;
  }
}

/** The main function's prune points (visit_insn() and push_insn(), kernel/bpf/cfg.c, 7.2) and live registers; undefined with a loop or a may_goto. */
function mainCfg(p: Program, f: Program["funcs"][number]): { prune: Set<number>; live: Set<number>[] } | undefined {
  const prune = new Set<number>();
  const succ: number[][] = [];
  for (let t = f.start; t < f.end; t++) {
    const x = p.insns[t]!;
    const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
    if (isMayGoto(x)) return undefined;
    if (x.code === BPF_LD_IMM64) { succ[t - f.start] = [t + 2]; succ[t + 1 - f.start] = []; t++; continue; }
    if (cls !== BPF_JMP && cls !== BPF_JMP32) { succ[t - f.start] = [t + 1]; continue; }
    if (op === BPF_EXIT) { succ[t - f.start] = []; continue; }
    if (op === BPF_CALL) {
      prune.add(t + 1);
      if (x.src === BPF_PSEUDO_CALL) prune.add(t);
      succ[t - f.start] = [t + 1];
      continue;
    }
    const target = t + 1 + jumpOffset(x)!;
    if (target <= t) return undefined; // a loop
    prune.add(target);
    if (op === BPF_JA) { succ[t - f.start] = [target]; continue; }
    prune.add(t);
    succ[t - f.start] = [t + 1, target];
  }
  // live registers before each instruction (compute_live_registers()), with every call reading
  // R1-R5: a superset of the verifier's
  const live: Set<number>[] = [];
  for (let t = f.end - 1; t >= f.start; t--) {
    const x = p.insns[t]!;
    const out = new Set<number>();
    for (const n of succ[t - f.start] ?? []) for (const r of live[n - f.start] ?? []) out.add(r);
    for (let r = 0; r <= 10; r++) if (writesReg(x, r)) out.delete(r);
    for (const u of usesOf(x)) out.add(u);
    live[t - f.start] = out;
  }
  return { prune, live };
}

/** The registers an instruction reads (those it writes: loops.ts writesReg()). */
function usesOf(x: BpfInsn): number[] {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
  if (x.code === BPF_LD_IMM64) return [];
  if (cls === BPF_ALU || cls === BPF_ALU64) return [...(isX ? [x.src] : []), ...(op === BPF_MOV ? [] : [x.dst])];
  if (cls === BPF_LDX) return [x.src];
  if (cls === BPF_ST) return [x.dst];
  if (cls === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC) {
    if (x.imm === BPF_LOAD_ACQ) return [x.src];
    return x.imm === BPF_CMPXCHG ? [x.dst, x.src, 0] : [x.dst, x.src];
  }
  if (cls === BPF_STX) return [x.dst, x.src];
  if (op === BPF_CALL) return [1, 2, 3, 4, 5];
  if (op === BPF_EXIT) return [0];
  if (op === BPF_JA) return [];
  return [x.dst, ...(isX ? [x.src] : [])];
}

/** A scalar whose value the verifier knows too. */
const exactlyKnown = (r: RegT | undefined): boolean => r?.t === "scalar" && r.v !== undefined && r.x !== true;

const touchesStack = (x: BpfInsn): boolean => {
  const cls = BPF_CLASS(x.code);
  return cls === BPF_LDX || cls === BPF_ST || cls === BPF_STX;
};

/**
 * A shift by a register the verifier does not compute: is_safe_to_compute_dst_reg_range()
 * wants the amount's 64-bit umax below the width (ALU32 too), else the result is unknown.
 */
function shiftOutOfReach(x: BpfInsn, s: State): boolean {
  const op = BPF_OP(x.code);
  if ((op !== BPF_LSH && op !== BPF_RSH && op !== BPF_ARSH) || BPF_SRC(x.code) !== BPF_X) return false;
  const a = s.regs[x.src];
  return !(a?.t === "scalar" && a.v !== undefined && a.v < (BPF_CLASS(x.code) === BPF_ALU64 ? 64n : 32n));
}

/** Ops whose result on known constants the verifier knows exactly too (tnum arithmetic). */
const EXACT = new Set([BPF_ADD, BPF_SUB, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH, BPF_ARSH, BPF_MOV, BPF_NEG]);
const U64 = (1n << 64n) - 1n;
/**
 * Value numbering for PathWalk: a value that is not a known constant is named by what made it
 * and from what (the instruction and the names of its inputs), so two paths hold the same name
 * only for the same computation from the same inputs; names are interned to stay short.
 */
class Names {
  private readonly table = new Map<string, string>();
  private fresh = 0;
  /**
   * A value the verifier knows nothing more of than its type (a context load, a fill it does
   * not link, a helper's return): a name of its own each time it is made, so two of them are
   * never taken for one (the verifier links only copies: reg ids).
   */
  freshName(what: string): string {
    return `${what}!${this.fresh++}`;
  }
  of(v: RegT | SlotV | undefined): string {
    if (v === undefined) return "_";
    if (typeof v === "string") return v;
    if (v.t === "scalar") return v.v !== undefined ? `k${v.v}${v.tag !== undefined ? `~${v.tag}` : ""}` : `${v.tag ?? "?"}${v.lo !== undefined ? `[${v.lo},${v.hi}]` : ""}`;
    return v.t === "fp" ? `f${v.frame}:${v.off}` : v.t;
  }
  /** The name of a computation: `what` over its inputs. */
  made(what: string, ...inputs: (RegT | SlotV | undefined)[]): string {
    const key = `${what}(${inputs.map((v) => this.of(v)).join(",")})`;
    let n = this.table.get(key);
    if (n === undefined) this.table.set(key, (n = `#${this.table.size}`));
    return n;
  }
  unknown(what: string, ...inputs: (RegT | SlotV | undefined)[]): RegT {
    return { t: "scalar", tag: this.made(what, ...inputs) };
  }
}

/** A scalar whose value is not known. */
const unknown = (v: RegT | undefined): v is RegT & { t: "scalar" } => v?.t === "scalar" && v.v === undefined;

/** A value with a name: one the verifier may link to others by id (a constant a branch narrowed one to keeps its id). */
const linked = (v: RegT | undefined): boolean => v?.t === "scalar" && v.tag !== undefined;

/** The walked path's values for what `x` (at i, from state `s`) wrote into successor state `n`. */
function values(x: BpfInsn, i: number, s: State, n: State, names: Names): void {
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code), isX = BPF_SRC(x.code) === BPF_X;
  const slots = n.slots!;
  const slotOf = (ptr: RegT | undefined, off: number) => (ptr?.t === "fp" && ptr.frame === 0 ? ptr.off + off : undefined);
  const slotAt = (at: number) => Math.floor(at / 8) * 8;
  // bytes written into a slot: a name made of the write and the slot's old name (the rest of its bytes)
  const written = (at: number, size: number, what: string, v: RegT | undefined) => {
    for (let a = slotAt(at); a < at + size; a += 8) slots.set(a, names.made(`${what}@${at - a}:${size}`, v, slots.get(a)));
  };
  if (cls === BPF_ALU || cls === BPF_ALU64) {
    const r = n.regs[x.dst]!;
    if (op === BPF_MOV && isX && cls === BPF_ALU64 && x.off === 0) n.regs[x.dst] = s.regs[x.src]!; // the same value, name and all
    else if (r.t === "scalar") {
      const d0 = op === BPF_MOV ? undefined : s.regs[x.dst], s0 = isX ? s.regs[x.src] : known(BigInt(x.imm));
      if (r.v === undefined || !EXACT.has(op) || shiftOutOfReach(x, s)) n.regs[x.dst] = names.unknown(`a${i}`, d0, s0);
      // a constant made from a linked one may stay linked (ADD_CONST): it keeps a name too
      else if (linked(d0) || linked(s0)) n.regs[x.dst] = { t: "scalar", v: r.v, tag: names.made(`a${i}`, d0, s0) };
    }
  } else if (cls === BPF_LDX) {
    const ptr = s.regs[x.src], at = slotOf(ptr, x.off), size = sizeBytes(BPF_SIZE(x.code)), mem = BPF_MODE(x.code) === BPF_MEM;
    const v = at === undefined ? undefined : slots.get(slotAt(at));
    if (ptr?.t === "ctx") n.regs[x.dst] = mem ? { t: "scalar", tag: names.freshName(`ctx${x.off}:${size}`), lo: 0n, hi: (1n << BigInt(8 * size)) - 1n } : { t: "scalar", tag: names.freshName(`ctxsx${x.off}:${size}`) }; // a context value: all its width can hold
    else if (v !== undefined && typeof v !== "string" && v.t === "scalar" && v.v !== undefined && mem && at! % 8 === 0) n.regs[x.dst] = known(size === 8 ? v.v : v.v & ((1n << BigInt(8 * size)) - 1n));
    else if (v !== undefined && typeof v !== "string" && size === 8 && mem && at! % 8 === 0) n.regs[x.dst] = v; // a full fill: the spilled value itself (its id too)
    else n.regs[x.dst] = { t: "scalar", tag: names.freshName("ld") }; // a narrower fill: no id (check_stack_read_fixed_off())
  } else if (cls === BPF_ST || (cls === BPF_STX && BPF_MODE(x.code) === BPF_MEM)) {
    const at = slotOf(s.regs[x.dst], x.off), size = sizeBytes(BPF_SIZE(x.code));
    if (at !== undefined) {
      const v: RegT = cls === BPF_ST ? known(BigInt.asUintN(64, BigInt(x.imm))) : s.regs[x.src]!;
      if (size === 8 && at % 8 === 0) slots.set(at, v); // a spill
      else written(at, size, "w", v);
    }
  } else if (cls === BPF_STX && BPF_MODE(x.code) === BPF_ATOMIC) {
    const ptr = x.imm === BPF_LOAD_ACQ ? s.regs[x.src] : s.regs[x.dst];
    const at = slotOf(ptr, x.off), size = sizeBytes(BPF_SIZE(x.code));
    const old = at === undefined ? undefined : slots.get(slotAt(at));
    const load = x.imm === BPF_LOAD_ACQ ? x.dst : x.imm === BPF_CMPXCHG ? 0 : x.imm & BPF_FETCH ? x.src : -1;
    if (load >= 0) {
      const oldV = old !== undefined && typeof old !== "string" && old.t === "scalar" ? old.v : undefined;
      // the old value: a fill of a spilled constant, else named by the memory it came from
      n.regs[load] = oldV !== undefined && at! % 8 === 0 ? known(size === 8 ? oldV : oldV & 0xffffffffn) : { t: "scalar", tag: names.freshName("fetch") };
    }
    // STACK_MISC for the bytes written, whatever the operation: named by the slot's old name,
    // the operand (what a store-release writes) and the place
    if (at !== undefined && x.imm !== BPF_LOAD_ACQ) written(at, size, x.imm === BPF_STORE_REL ? "rel" : "atomic", x.imm === BPF_STORE_REL ? s.regs[x.src] : undefined);
  } else if (BPF_OP(x.code) === BPF_CALL && (cls === BPF_JMP)) {
    n.regs[0] = { t: "scalar", tag: names.freshName(`call${i}`) };
    // what a callee or helper may write through a stack pointer it was given
    if ([1, 2, 3, 4, 5].some((r) => s.regs[r]?.t === "fp")) for (const [k, old] of slots) slots.set(k, names.made(`call${i}`, old));
  }
}

/**
 * After a conditional jump on a value that is not a known constant: each side narrows it and
 * whatever the verifier links to it (reg_set_min_max(), sync_linked_regs(): copies, and values
 * a constant away), which this does not follow; so every value that is not a known constant
 * takes a name of its side, and the side where a 64-bit JEQ/JNE says it equals a constant
 * knows it (and its copies) as that constant.
 */
function narrow(x: BpfInsn, i: number, s: State, fall: State, target: State, names: Names): void {
  if (isMayGoto(x)) return;
  const a = s.regs[x.dst], b = BPF_SRC(x.code) === BPF_X ? s.regs[x.src] : known(immU64(x));
  if (!unknown(a) && !unknown(b)) return;
  const op = BPF_OP(x.code), eqOp = BPF_CLASS(x.code) === BPF_JMP && (op === BPF_JEQ || op === BPF_JNE);
  const v = (unknown(a) ? a : b) as RegT & { t: "scalar" }, c = unknown(a) ? b : a;
  const eq = eqOp && c?.t === "scalar" && c.v !== undefined && v.tag !== undefined ? c.v : undefined;
  for (const [st, side] of [[fall, "f"], [target, "t"]] as const) {
    const equalSide = eq !== undefined && (op === BPF_JEQ) === (side === "t");
    // the equal side's constant keeps the narrowed value's name: the verifier keeps its id
    // (sync_linked_regs()), and regsafe() compares ids of precise constants too
    const re = (r: RegT): RegT => (r.t !== "scalar" || r.v !== undefined ? r : equalSide && r.tag === v.tag ? { t: "scalar", v: eq!, tag: v.tag } : names.unknown(`j${i}${side}`, r));
    st.regs = st.regs.map(re);
    for (const [k, sv] of st.slots!) st.slots!.set(k, typeof sv === "string" ? names.made(`j${i}${side}`, sv) : re(sv));
  }
}

/**
 * How a conditional jump goes on the walked path: one way (true: taken) when the values decide
 * it, "both" when the verifier cannot decide it either, "unsure" when it might.
 */
function decide(x: BpfInsn, s: State): boolean | "both" | "unsure" | undefined {
  if (!isCondJump(x)) return undefined;
  const cls = BPF_CLASS(x.code), op = BPF_OP(x.code);
  const a = s.regs[x.dst];
  const b = BPF_SRC(x.code) === BPF_X ? s.regs[x.src] : known(immU64(x));
  if (a?.t !== "scalar" || b?.t !== "scalar") return "unsure";
  if (a.v !== undefined && b.v !== undefined) return jumpTaken(x, a.v, b.v);
  if (cls !== BPF_JMP || a.v !== undefined || a.lo === undefined || a.hi === undefined || b.v === undefined) return "unsure";
  return rangeDecides(op, a.lo, a.hi, b.v) ?? "both";
}

/** is_branch_taken() for `dst op c` with dst's unsigned range [lo, hi] (a fresh context value: no tnum bits known beyond the width). */
function rangeDecides(op: number, lo: bigint, hi: bigint, c: bigint): boolean | undefined {
  const signed = op === BPF_JSGT || op === BPF_JSGE || op === BPF_JSLT || op === BPF_JSLE;
  let l = lo, h = hi, k = c;
  if (signed) {
    k = BigInt.asIntN(64, c);
    if (hi > U64 >> 1n) { if (lo > U64 >> 1n) { l = lo - (1n << 64n); h = hi - (1n << 64n); } else { l = -(1n << 63n); h = (1n << 63n) - 1n; } }
  }
  switch (op) {
    case BPF_JEQ: return k < l || k > h ? false : l === h ? true : undefined;
    case BPF_JNE: return k < l || k > h ? true : l === h ? false : undefined;
    case BPF_JGT: case BPF_JSGT: return l > k ? true : h <= k ? false : undefined;
    case BPF_JGE: case BPF_JSGE: return l >= k ? true : h < k ? false : undefined;
    case BPF_JLT: case BPF_JSLT: return h < k ? true : l >= k ? false : undefined;
    case BPF_JLE: case BPF_JSLE: return h <= k ? true : l > k ? false : undefined;
    case BPF_JSET: return (c & hi) === 0n ? false : undefined;
  }
  return undefined;
}

/** The same value by identity: a known constant, or made by the same instruction (and narrowed alike). */
function sameValue(a: RegT | SlotV | undefined, b: RegT | SlotV | undefined): boolean {
  if (typeof a === "string" || typeof b === "string") return a === b;
  if (a === undefined || b === undefined) return a === b;
  if (a.t !== b.t) return false;
  if (a.t === "scalar" && b.t === "scalar") return a.v !== undefined ? a.v === b.v && a.tag === b.tag : b.v === undefined && a.tag !== undefined && a.tag === b.tag && a.lo === b.lo && a.hi === b.hi;
  return sameReg(a, b);
}

/** A kept state and the current one, identical in every live register and stack slot (regsafe() and stacksafe() are then true). */
function identical(k: State, s: State, live: Set<number>): boolean {
  for (const r of live) if (!sameValue(k.regs[r], s.regs[r])) return false;
  if (!sameInit(k, s)) return false;
  const a = k.slots!, b = s.slots!;
  if (a.size !== b.size) return false;
  for (const [at, v] of a) if (!sameValue(v, b.get(at))) return false;
  return true;
}

/** bpf_enable_priv_stack() (verifier.c:5078): may this program's subprogs use private stacks at all? */
export function privStackMode(p: Program): boolean {
  switch (p.type) {
    case "kprobe": case "tracepoint": case "perf_event": case "raw_tp": return true;
    case "tracing": return true; // bpf_prog_check_recur(): expected_attach_type != BPF_TRACE_ITER
    case "struct_ops": return p.privStackRequested; // check_recur is jits_use_priv_stack: false at this point
  }
}

const validated = new RecentCache<Program, Validated>(PROGRAMS_KEPT);

/**
 * Validate a program; throws ValidationError naming the function, instruction and rule. Once per
 * program object while it is one of the last PROGRAMS_KEPT validated: a scenario's programs are
 * checked when the file is read, again when the image is built, and by the reference
 * interpreter at every run of a program; programs are not changed after they are made.
 */
export function validate(p: Program): Validated {
  return validated.getOrMake(p, () => new Checker(p).run());
}
