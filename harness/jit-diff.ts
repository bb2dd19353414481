// jit-diff: the TypeScript JIT held to a kernel tree's own, byte for byte. Random programs (the
// campaign generator's call graphs, and straight-line and subprog programs over every lowering
// the TypeScript JIT has: generators/programs.ts) are JITed by both backends at the same
// addresses with the tree's options; per function, the image address, the bytes, addrs[], the
// ksym's fp_start/fp_end and the frame window, and per program the private stacks, must agree.
// Where they differ the kernel is right. The first difference is shrunk (fast-check, from its seed
// and path) to the smallest program that still differs, and printed side by side.
import fc from "fast-check";
import { planArb, planToScenario } from "../generators/index.ts";
import { isaProgramArb, programArb, richArb } from "../generators/programs.ts";
import { TS_JIT, type JitBackend } from "../jit/backend.ts";
import { CALL_NAMES, HELPERS, KFUNCS } from "../jit/bpf/abi.ts";
import type { Program } from "../jit/bpf/program.ts";
import { printInsnAt, printProgram } from "../jit/bpf/print.ts";
import { validate } from "../jit/bpf/validate.ts";
import { miscFixups } from "../jit/bpf/fixups.ts";
import { disassemble, hexBytes, lineText, type Syntax } from "../jit/disasm.ts";
import { kernelSymbolsOf } from "../jit/image.ts";
import type { JitFunction, JitLayout, JitProgram } from "../jit/jit.ts";
import { KERNEL_LAYOUT, PCPU_THIS_CPU_OFF, PERCPU_DYNAMIC } from "../jit/kernel/layout.ts";
import { JitError } from "../jit/lower.ts";
import { DEFAULT_JIT_OPTIONS, StrategyError, type JitOptions, type Strategy } from "../jit/strategy.ts";
import { scenarioOf } from "./scenario.ts";
import { shrinkProgram } from "./shrink-program.ts";
import { DIFF_FIELDS, DIFF_SOURCES, type DiffField } from "./jit-diff-kinds.ts";

export { DIFF_FIELDS, DIFF_SOURCES, type DiffField };

/** One case: the programs of a generated plan, or one or two programs over the JIT's lowerings. */
export interface DiffCase {
  readonly source: (typeof DIFF_SOURCES)[number];
  readonly programs: readonly Program[];
}

const SOURCE_ARBS: Readonly<Record<DiffCase["source"], { weight: number; arbitrary: fc.Arbitrary<DiffCase> }>> = {
  // (a program's second attachment, Program.linkOf, is its code again: compared once)
  plan: { weight: 2, arbitrary: planArb().map((plan): DiffCase => ({ source: "plan", programs: scenarioOf(planToScenario(plan), "generated plan").programs.filter((p) => p.linkOf === undefined) })) },
  "straight-line": { weight: 1, arbitrary: programArb.map((p): DiffCase => ({ source: "straight-line", programs: [p] })) },
  subprog: { weight: 1, arbitrary: richArb.map((ps): DiffCase => ({ source: "subprog", programs: ps })) },
  isa: { weight: 2, arbitrary: isaProgramArb.map((p): DiffCase => ({ source: "isa", programs: [p] })) },
};
/** The cases of the sources named (default: all). */
export function diffCaseArb(sources: readonly DiffCase["source"][] = DIFF_SOURCES): fc.Arbitrary<DiffCase> {
  return fc.oneof(...sources.map((x) => SOURCE_ARBS[x]));
}

/** The addresses both JITs are given: the first program's place in the image buildImage() makes. */
export function diffLayout(): JitLayout {
  const dyn = KERNEL_LAYOUT.percpuOrigin + BigInt(PERCPU_DYNAMIC);
  return { base: KERNEL_LAYOUT.bpfText, percpuBase: dyn + 32n, thisCpuOff: PCPU_THIS_CPU_OFF, activePtr: dyn + 16n, kernelSymbols: kernelSymbolsOf(KERNEL_LAYOUT) };
}

/** What two JITs disagree on for one function (fi -1: the whole program, one JIT refused it). */
export interface FuncDiff {
  /** The program as written (what shrinking works on). */
  readonly program: Program;
  /** What both JITs received: the program after the verifier's fix-ups. */
  readonly xlated: Program;
  readonly strategy: string;
  readonly fi: number;
  /** The fields that differ: image, bytes, addrs, fp_start/fp_end, frame, private stack, or "refused". */
  readonly fields: readonly string[];
  readonly ts: JitProgram | Error;
  readonly kernel: JitProgram | Error;
}

const same = <T>(a: readonly T[], b: readonly T[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function funcFields(a: JitFunction, b: JitFunction): string[] {
  const f: string[] = [];
  if (a.image.base !== b.image.base) f.push("image address");
  if (!same([...a.image.bytes], [...b.image.bytes])) f.push("bytes");
  if (!same(a.addrs, b.addrs)) f.push("addrs[]");
  if (a.ksym.fpStart !== b.ksym.fpStart || a.ksym.fpEnd !== b.ksym.fpEnd) f.push("fp_start/fp_end");
  if (a.frame.ready !== b.frame.ready || a.frame.gone !== b.frame.gone) f.push("frame window");
  return f;
}

const privText = (j: JitProgram) => JSON.stringify(j.privates, (_, v) => (typeof v === "bigint" ? v.toString(16) : v));

/** JIT `p` under `strategy` with both backends and compare. `functions`: how many were compared. */

export function diffProgram(
  written: Program, strategy: Strategy, kernel: JitBackend, opts: JitOptions, layout: JitLayout = diffLayout(), ignore: ReadonlySet<DiffField> = new Set(),
): { functions: number; diffs: FuncDiff[]; bothRefused?: string } {
  const v = validate(written);
  const p = miscFixups(written, v); // what the JITs receive (bpf_do_misc_fixups())
  const jit = (b: JitBackend): JitProgram | Error => {
    try {
      return b.jitProgram(p, v, strategy, layout, opts);
    } catch (e) {
      if (e instanceof JitError || e instanceof StrategyError) return e;
      throw e;
    }
  };
  const ts = jit(TS_JIT), k = jit(kernel);
  const functions = p.funcs.length;
  if (ts instanceof Error || k instanceof Error) {
    // both refusing is agreement (the kernel's message is the one to trust)
    if (ts instanceof Error && k instanceof Error) return { functions, diffs: [], bothRefused: k.message };
    return { functions, diffs: ignore.has("refused") ? [] : [{ program: written, xlated: p, strategy: strategy.name, fi: -1, fields: ["refused"], ts, kernel: k }] };
  }
  const diffs: FuncDiff[] = [];
  ts.funcs.forEach((a, fi) => {
    const fields = funcFields(a, k.funcs[fi]!).filter((x) => !ignore.has(x as DiffField));
    if (fields.length) diffs.push({ program: written, xlated: p, strategy: strategy.name, fi, fields, ts, kernel: k });
  });
  if (privText(ts) !== privText(k) && diffs.length === 0 && !ignore.has("private stacks")) diffs.push({ program: written, xlated: p, strategy: strategy.name, fi: -1, fields: ["private stacks"], ts, kernel: k });
  return { functions, diffs };
}

export interface JitDiffOptions {
  readonly kernel: JitBackend;
  readonly strategies: readonly Strategy[];
  readonly runs: number;
  readonly seed: number;
  /** Fields not compared. */
  readonly ignore?: ReadonlySet<DiffField>;
  /** Where cases come from (default: every source). */
  readonly sources?: readonly DiffCase["source"][];
  /** Replay: the fast-check path of a difference (with its seed), shrunk again. */
  readonly path?: string;
  /** Called after each case with the number done. */
  readonly onCase?: (done: number) => void;
}

export interface JitDiffResult {
  readonly seed: number;
  readonly runs: number;
  /** Functions compared (a function JITed under two strategies counts twice). */
  readonly functions: number;
  /** Functions that differ (a refused program: each of its functions). */
  readonly differences: number;
  readonly bySource: Readonly<Record<DiffCase["source"], number>>;
  /** Functions of programs both JITs refused (counted in `functions`, agreeing), and the kernel's first reason. */
  readonly bothRefused: number;
  readonly refusedBecause?: string;
  /** Differing functions by what differs (one function can count under several). */
  readonly byField: Readonly<Record<string, number>>;
  /** The first difference, shrunk: its case's fast-check path (with the seed; a replay shrinks it the same way) and the shrunk diff. */
  readonly first?: { readonly path: string; readonly shrinks: number; readonly diff: FuncDiff };
  readonly elapsedMs: number;
}

/** Every strategy's differences of one case. */
function diffCase(c: DiffCase, o: JitDiffOptions, opts: JitOptions): { functions: number; diffs: FuncDiff[]; bothRefused: number; refusedBecause?: string } {
  let functions = 0, bothRefused = 0, refusedBecause: string | undefined;
  const diffs: FuncDiff[] = [];
  for (const s of o.strategies) {
    for (const p of c.programs) {
      const r = diffProgram(p, s, o.kernel, opts, undefined, o.ignore);
      functions += r.functions;
      diffs.push(...r.diffs);
      if (r.bothRefused !== undefined) { bothRefused += r.functions; refusedBecause ??= r.bothRefused; }
    }
  }
  return { functions, diffs, bothRefused, ...(refusedBecause !== undefined ? { refusedBecause } : {}) };
}

/** Run `runs` cases; count functions and differences; shrink the first difference. */
export function runJitDiff(o: JitDiffOptions): JitDiffResult {
  const started = performance.now();
  const opts = o.kernel.options ?? DEFAULT_JIT_OPTIONS;
  let functions = 0, differences = 0, done = 0, bothRefused = 0, firstAt: number | undefined, refusedBecause: string | undefined;
  const bySource = { plan: 0, "straight-line": 0, subprog: 0, isa: 0 };
  const byField: Record<string, number> = {};
  /** One case, counted. */
  const count = (c: DiffCase): number => {
    const r = diffCase(c, o, opts);
    functions += r.functions;
    bothRefused += r.bothRefused;
    refusedBecause ??= r.refusedBecause;
    bySource[c.source] += r.functions;
    let d = 0;
    for (const x of r.diffs) {
      const n = x.fi < 0 ? x.program.funcs.length : 1;
      d += n;
      for (const f of x.fields) byField[f] = (byField[f] ?? 0) + n;
    }
    differences += d;
    if (d > 0 && firstAt === undefined) firstAt = done;
    done++;
    o.onCase?.(done);
    return d;
  };
  const arb = diffCaseArb(o.sources);
  if (o.path === undefined) fc.assert(fc.property(arb, (c) => { count(c); }), { numRuns: o.runs, seed: o.seed });
  const result = () => ({
    seed: o.seed, runs: done, functions, differences, bySource, byField, bothRefused, ...(refusedBecause !== undefined ? { refusedBecause } : {}), elapsedMs: performance.now() - started,
  });
  if (firstAt === undefined && o.path === undefined) return result();
  // The first difference again from its seed and path (a replay: the case there, counted), shrunk
  // by fast-check to the smallest case that still differs.
  const path = o.path ?? String(firstAt);
  const d = fc.check(fc.property(arb, (c) => (done === 0 ? count(c) : diffCase(c, o, opts).diffs.length) === 0), { seed: o.seed, path, numRuns: 1 });
  if (!d.failed) {
    if (o.path !== undefined) return result(); // the case at that path agrees
    throw new Error(`jit-diff: the difference at seed ${o.seed}, path ${path} did not replay`);
  }
  // then the differing program alone, by instructions, under the strategy it differs under
  const found = diffCase(d.counterexample![0], o, opts).diffs[0]!;
  const strategy = o.strategies.find((s) => s.name === found.strategy)!;
  const differs = (p: Program) => diffProgram(p, strategy, o.kernel, opts, undefined, o.ignore).diffs.length > 0;
  const small = shrinkProgram(found.program, differs);
  const diff = diffProgram(small.program, strategy, o.kernel, opts, undefined, o.ignore).diffs[0]!;
  return { ...result(), first: { path, shrinks: d.numShrinks + small.steps, diff } };
}

// ---- the report ----

/**
 * One line of a listing: the offset, the instruction (bytes and text), and what the two sides
 * compare: the text, and the bytes too unless it is a relative jump or call (whose bytes differ
 * whenever code before it moved; its text names the absolute target).
 */
interface Line { readonly off: string; readonly insn: string; readonly key: string }
interface Row { readonly bpf?: string; readonly left?: Line; readonly right?: Line }

/** The lines of `f`'s code from byte `from` to `to`; calls name the synthetic kernel's function they reach. */
function lines(f: JitFunction, from: number, to: number, syntax: Syntax, symbolize: (a: bigint) => string | undefined): Line[] {
  const bytes = f.image.bytes.subarray(from, to);
  return disassemble(bytes, f.image.base + BigInt(from), { syntax, symbolize }).map((l) => {
    const hex = hexBytes(l.bytes);
    const text = lineText(l);
    const relative = /^(call|j)/.test(l.text) && l.bytes[0] !== 0xff;
    return { off: Number(l.address - f.image.base).toString(16).padStart(4), insn: `${hex}  ${text}`, key: relative ? text : `${hex}  ${text}` };
  });
}

/**
 * Pair two short listings line by line along their longest common subsequence of instructions,
 * so an instruction one side has and the other lacks stands alone on its row.
 */
function align(l: readonly Line[], r: readonly Line[]): [Line | undefined, Line | undefined][] {
  // lcs[i][j]: the longest common subsequence of l[i..] and r[j..]
  const lcs = Array.from({ length: l.length + 1 }, () => new Array<number>(r.length + 1).fill(0));
  for (let i = l.length - 1; i >= 0; i--) {
    for (let j = r.length - 1; j >= 0; j--) lcs[i]![j] = l[i]!.key === r[j]!.key ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  }
  const out: [Line | undefined, Line | undefined][] = [];
  let i = 0, j = 0;
  while (i < l.length || j < r.length) {
    if (i < l.length && j < r.length && l[i]!.key === r[j]!.key) out.push([l[i++], r[j++]]);
    else if (j >= r.length || (i < l.length && lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) out.push([l[i++], undefined]);
    else out.push([undefined, r[j++]]);
  }
  return out;
}

/** Names of the synthetic kernel's functions by address (call targets in listings). */
function kernelSymbolizer(layout: JitLayout): (a: bigint) => string | undefined {
  const names = new Map<bigint, string>();
  for (const c of [...HELPERS, ...KFUNCS]) {
    const at = layout.kernelSymbols(c.name);
    if (at !== undefined) names.set(at, c.name);
  }
  return (a) => names.get(a);
}

/**
 * Both listings of one function, grouped by BPF instruction (addrs[]), side by side; `≠` marks
 * a line whose bytes or text differ (offsets aside: one extra instruction shifts every offset).
 */
export function sideBySide(d: FuncDiff, syntax: Syntax = "gas", layout: JitLayout = diffLayout()): string {
  if (d.ts instanceof Error || d.kernel instanceof Error) {
    const say = (x: JitProgram | Error) => (x instanceof Error ? `refused: ${x.message}` : `JITed ${x.funcs.length} function(s), ${x.funcs.reduce((n, f) => n + f.image.bytes.length, 0)} bytes`);
    return `ts:     ${say(d.ts)}\nkernel: ${say(d.kernel)}\n`;
  }
  if (d.fi < 0) return `private stacks: ts ${privText(d.ts)}\n                kernel ${privText(d.kernel)}\n`;
  const a = d.ts.funcs[d.fi]!, b = d.kernel.funcs[d.fi]!;
  const func = d.xlated.funcs[d.fi]!;
  const symbolize = kernelSymbolizer(layout);
  const rows: Row[] = [];
  const group = (bpf: string | undefined, from: [number, number], to: [number, number]) => {
    const pairs = align(lines(a, from[0], to[0], syntax, symbolize), lines(b, from[1], to[1], syntax, symbolize));
    pairs.forEach(([left, right], i) => rows.push({ ...(i === 0 && bpf !== undefined ? { bpf } : {}), ...(left ? { left } : {}), ...(right ? { right } : {}) }));
  };
  group("prologue", [0, 0], [a.addrs[0]!, b.addrs[0]!]);
  for (let k = 0; k + 1 < a.addrs.length && k + 1 < b.addrs.length; k++) {
    const text = printInsnAt(d.xlated.insns, func.start + k, CALL_NAMES);
    group(text === undefined ? undefined : `${func.start + k}: ${text}`, [a.addrs[k]!, b.addrs[k]!], [a.addrs[k + 1]!, b.addrs[k + 1]!]);
  }
  group(undefined, [a.addrs.at(-1)!, b.addrs.at(-1)!], [a.image.bytes.length, b.image.bytes.length]);
  const text = (x: Line | undefined) => (x ? `${x.off}: ${x.insn}` : "");
  const w = Math.max(40, ...rows.map((r) => text(r.left).length));
  const out = [`  ${"TypeScript JIT".padEnd(w)}   kernel JIT`];
  for (const r of rows) {
    if (r.bpf !== undefined) out.push(`; ${r.bpf}`);
    out.push(`${r.left?.key === r.right?.key ? " " : "≠"} ${text(r.left).padEnd(w)} | ${text(r.right)}`);
  }
  const k = (f: JitFunction) => `fp_start 0x${f.ksym.fpStart.toString(16)} fp_end 0x${f.ksym.fpEnd.toString(16)}, frame +0x${(f.frame.ready - f.image.base).toString(16)}..+0x${(f.frame.gone - f.image.base).toString(16)}, at ${f.image.base.toString(16)}, addrs[] ${f.addrs.join(" ")}`;
  out.push(`  ts:     ${k(a)}`, `  kernel: ${k(b)}`);
  return `${out.join("\n")}\n`;
}

/** The whole report of a difference: what differs, the program, both listings. */
export function formatDiff(d: FuncDiff, syntax: Syntax = "gas"): string {
  const where = d.fi < 0 ? `program ${d.program.name} (${d.program.type})` : `program ${d.program.name} (${d.program.type}), function ${d.program.funcs[d.fi]!.name}`;
  const xlated = d.xlated === d.program ? [] : ["", "after the verifier's fix-ups (what both JITs received):", printProgram(d.xlated, CALL_NAMES).trimEnd()];
  return [`difference under ${d.strategy} in ${where}: ${d.fields.join(", ")}`, "", printProgram(d.program, CALL_NAMES).trimEnd(), ...xlated, "", sideBySide(d, syntax)].join("\n");
}
