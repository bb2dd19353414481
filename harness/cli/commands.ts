// The implementations behind the light command definitions of main.ts: `run`, `disasm`, `isa`
// and `strategies`, loaded only when one of them runs (so that `--help` and `strategies` start
// without the machine, the JIT and their dependencies).
import { readdirSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { supportedCodes } from "../machine/isa.ts";
import { hex64 as h16, SymbolTable, type Machine, type RunResult } from "../machine/index.ts";
import { disassemble, formatListing, hexBytes, lineText, testProgsListing } from "../../jit/disasm.ts";
import { bpfProgs, buildImage, ImageError, type Image } from "../../jit/image.ts";
import { loadStrategy } from "../../jit/strategies/index.ts";
import { bpfTextAt } from "../../jit/jit.ts";
import { loadScenario, ScenarioError, type Scenario } from "../scenario.ts";
import { loadScenarioOrCorpus } from "../corpus.ts";
import { checkExhaustive, firstFailure, type Verdict } from "../property.ts";
import { jitStackDepths, type Strategy } from "../../jit/strategy.ts";
import { runScenario, scheduleOf, startRun, stepBudget, type Injection, type RunOutcome, type SchedCounts } from "../run.ts";
import { loadImage, startTask } from "../load.ts";
import { RunFailed, UsageError } from "./errors.ts";
import { formatChains, formatCounterexample, wrapText } from "../report.ts";
import { bigintHex, JSON_SCHEMA } from "./json.ts";
import { exhaustiveProgress, type OutputFormat } from "./options.ts";
import { openJit, type JitFlags } from "./jit-option.ts";
import { TS_JIT, type JitBackend } from "../../jit/backend.ts";
import type { UnwinderName } from "../../unwinder/index.ts";

/** What the scheduler did in a run (or a campaign): ticks, preemptions, sleeps, blocked-task walks. */
export const schedText = (c: SchedCounts): string =>
  `${c.ticks} tick(s), ${c.preemptedInBpf} preemption(s) in BPF code and ${c.preemptedInKernel} in kernel code at IRQ return, ${c.preemptedAtEnable} at preempt_enable(), ` +
  `${c.sleeps} sleep(s), ${c.blockedWalks} blocked-task walk(s) (${c.blockedUnreliable} -EINVAL)`;

/** The text report of one run: the result, each sample with truth and unwound chain side by side, the checks. */
export function formatOutcome(file: string, o: RunOutcome, jit: JitBackend = TS_JIT): string {
  const lines = [`stackcheck run ${file}: strategy ${o.strategy}, unwinder ${o.unwinder}, policy ${o.policy}${jit.name === "ts" ? "" : `, jit ${jit.describe}`}`];
  const r = o.result;
  // with tasks the run ends in the scheduler, not with a program's result in rax
  lines.push(r.kind === "completed" ? `result: completed${o.tasks > 1 ? "" : `, rax 0x${r.rax.toString(16)}`} after ${r.steps} steps` : `result: ${r.kind}${"message" in r ? `: ${r.message}` : ""}`);
  o.samples.forEach((s, i) => {
    lines.push("", `sample ${i + 1}: ${s.kind} at ${s.where}, step ${s.step}: ${s.class}${s.failed ? " (fails)" : ""}${s.error ? " [unwinder error]" : ""}`);
    lines.push(`  sampler: rip ${h16(s.regs.rip)} rsp ${h16(s.regs.rsp)} rbp ${h16(s.regs.rbp)}`);
    if (s.interrupted) lines.push(`  regs:    ip  ${h16(s.interrupted.ip)} sp  ${h16(s.interrupted.sp)} bp  ${h16(s.interrupted.bp)}`);
    lines.push(...formatChains(s));
  });
  lines.push("", `checks (${o.checks.invocations} BPF invocations):`);
  if (o.checks.failures.length === 0) lines.push("  semantics, ABI, interrupt stacks and guards: ok");
  for (const f of o.checks.failures) lines.push(`  FAIL ${f.check}: ${f.message}`);
  lines.push(`  stack high-water: ${o.checks.highWater.map((x) => `${x.stack} ${x.bytes} bytes`).join(", ")}`);
  if (o.sched.ticks + o.sched.sleeps + o.sched.blockedWalks > 0) lines.push(`  scheduler: ${schedText(o.sched)}`);
  for (const x of o.unraised) lines.push(`  note: the ${x.kind === "nmi" ? "NMI" : x.kind === "tick" ? "tick" : `IRQ (vector ${x.vector})`} at step ${x.atStep} was never raised: the run ended first${"steps" in r ? ` (step ${r.steps})` : ""}`);
  const failedSamples = o.samples.filter((s) => s.failed).length;
  lines.push("", o.ok ? "verdict: PASS" : `verdict: FAIL (${[r.kind !== "completed" ? `run ${r.kind}` : "", failedSamples ? `${failedSamples} sample(s) ${o.policy === "strict" ? "not EXACT/WINDOW" : "TRUNCATED/WRONG"}` : "", o.checks.failures.length ? `${o.checks.failures.length} check failure(s)` : ""].filter(Boolean).join(", ")})`);
  return `${lines.join("\n")}\n`;
}


/**
 * Instruction bytes: words of two hex digits each (`55 48 89 e5`), or whole runs of them
 * (`554889e5`, `0x55,0x48`); a word of odd length, an empty one (`55,,48`) or anything not hex
 * is an error naming it, never silently re-paired.
 */
function parseHexBytes(words: string[]): Uint8Array {
  const parts = words.flatMap((arg) => arg.trim().split(/\s+/)).flatMap((w) => {
    const p = w.replace(/,$/, "").split(",").map((x) => x.trim()); // `0x55, 0x48` as C writes it
    if (p.length > 1 && p.some((x) => x === "")) throw new UsageError(`disasm: '${w}' has an empty byte between commas`);
    return p;
  });
  const out: number[] = [];
  for (const w of parts) {
    const hex = w.replace(/^0x/i, "");
    if (hex === "" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
      throw new UsageError(`disasm: '${w}' is not instruction bytes in hex (two digits a byte: '55 48 89 e5', or '554889e5'); a scenario file must end in .json`);
    }
    for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
  }
  if (out.length === 0) throw new UsageError("disasm: no bytes given");
  return Uint8Array.from(out);
}


export interface RunFlags {
  strategy: string; unwinder: UnwinderName; policy: "strict" | "reliable"; privateStacks: "none" | "per-type" | "per-instance";
  irqAt: string[]; nmiAt: string[]; stackBudget: string[]; schedule: boolean; json?: boolean; format?: OutputFormat; exhaustive?: boolean; trace?: boolean; earlyEnd?: boolean;
}

/** The scenario files `paths` name: files as given, directories' *.json files (recursively, sorted). */
function scenarioFiles(paths: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    let st;
    try {
      st = statSync(p);
    } catch {
      out.push(p); // reported as that file's own error
      return;
    }
    if (!st.isDirectory()) { out.push(p); return; }
    let real: string;
    try { real = realpathSync(p); } catch { out.push(p); return; }
    if (seenDirs.has(real)) return; // a symlink loop
    seenDirs.add(real);
    for (const name of readdirSync(p).sort()) {
      const q = join(p, name);
      let dir = false;
      try { dir = statSync(q).isDirectory(); } catch { /* a dangling link: reported as that file's own error */ }
      if (dir) walk(q);
      else if (name.toLowerCase().endsWith(".json")) out.push(q);
    }
  };
  const seenDirs = new Set<string>();
  for (const p of paths) walk(p);
  if (out.length === 0) throw new UsageError(`run: no scenario files (*.json) in ${paths.join(", ")}`);
  return out;
}


/**
 * Where an interrupt goes, as a step: a number is one; `symbol+0xoff` (or a bare symbol) and
 * `prog/func:insn N` name an instruction, and the step is the one at which it first executes in
 * a run without the injections (a dry run of the image).
 */
function stepOf(where: string, flag: string, file: string, img: Image, firstRun: () => Map<bigint, number>): number {
  if (/^\d+$/.test(where)) return Number(where);
  let addr: bigint | undefined;
  const bpf = /^([A-Za-z_]\w*)\/([A-Za-z_]\w*):insn[ :=]?(\d+)$/.exec(where);
  if (bpf) {
    const p = img.programs.find((x) => x.program.name === bpf[1]);
    const f = p?.jit.funcs.find((x) => x.name === bpf[2]);
    if (!p || !f) throw new UsageError(`run: ${flag} '${where}': ${file} has no function ${bpf[1]}/${bpf[2]} (programs: ${img.programs.map((x) => `${x.program.name}/{${x.jit.funcs.map((g) => g.name).join(",")}}`).join(" ")})`);
    addr = f.insnAddrs[Number(bpf[3])];
    if (addr === undefined) throw new UsageError(`run: ${flag} '${where}': ${bpf[1]}/${bpf[2]} has ${f.insnAddrs.length} BPF instructions (after the verifier's fix-ups)`);
  } else {
    const m = /^([A-Za-z_][\w.]*)(?:\+0x([0-9a-fA-F]+))?$/.exec(where);
    const sym = m ? img.symbols.find((x) => x.name === m[1]) : undefined;
    if (!m || !sym) throw new UsageError(`run: ${flag} '${where}': expected a step number, symbol+0xoff (a symbol of the image) or prog/func:insn N`);
    addr = sym.start + BigInt(`0x${m[2] ?? "0"}`);
    if (addr >= sym.end) throw new UsageError(`run: ${flag} '${where}': past the end of ${sym.name} (${sym.end - sym.start} bytes)`);
  }
  const step = firstRun().get(addr);
  if (step === undefined) throw new UsageError(`run: ${flag} '${where}': that instruction (0x${addr.toString(16)}) never executes in ${file} without interrupts`);
  return step;
}

/** A scenario file's run: its outcome, and what a report needs to draw it again. */
interface FileRun {
  readonly outcome: RunOutcome;
  readonly scenario: Scenario;
  readonly image: Image;
  /** The injections of the run the outcome is (exhaustive mode: the failing fork's). */
  readonly injections: readonly Injection[];
  readonly verdict?: Verdict;
}

/** One scenario file run under the command's options. */
function runFile(file: string, strategy: Strategy, o: RunFlags, budgets: Record<string, number>, jit: JitBackend, log?: (s: string) => void): FileRun {
  const scenario = loadScenarioOrCorpus(file).scenario;
  const img = buildImage(scenario.spec, strategy, undefined, undefined, jit);
  const opts = { unwinder: o.unwinder, policy: o.policy, privateStacks: o.privateStacks, budgets, image: img };
  // the step at which each instruction first executes, from one run without injections (only if asked for)
  const vectors = (scenario.file.irq ?? []).map((a) => a.vector);
  const injections: Injection[] = o.schedule ? scheduleOf(scenario) : [];
  // ... in a run with the scenario's own schedule (if kept), so the step is where the instruction runs then
  let first: Map<bigint, number> | undefined;
  const schedule = injections.slice();
  const firstRun = () => first ??= firstExecutions(img, schedule, stepBudget(scenario, schedule.length));
  for (const x of o.irqAt) {
    const m = /^(.*?)(?::(\d+))?$/.exec(x)!;
    const vector = m[2] === undefined ? vectors[0] : Number(m[2]);
    if (m[1] === "") throw new UsageError(`run: --irq-at '${x}': expected <where>[:<vector>]`);
    if (vector === undefined || !vectors.includes(vector)) throw new UsageError(`run: --irq-at '${x}': ${file} has no IRQ handler for ${vector === undefined ? "any vector" : `vector ${vector}`} (its 'irq' list: ${vectors.join(", ") || "empty"})`);
    injections.push({ kind: "irq", atStep: stepOf(m[1]!, "--irq-at", file, img, firstRun), vector });
  }
  for (const x of o.nmiAt) injections.push({ kind: "nmi", atStep: stepOf(x, "--nmi-at", file, img, firstRun), vector: 2 });
  if (o.exhaustive) {
    if (injections.length) throw new UsageError("run: --exhaustive injects at every boundary itself: not with --irq-at, --nmi-at or the scenario's schedule (add --no-schedule)");
    const progress = exhaustiveProgress(!o.json);
    let v: Verdict;
    try {
      v = checkExhaustive(scenario, strategy, { unwinder: o.unwinder, policy: o.policy, privateStacks: o.privateStacks, budgets, jit, onBoundary: progress.onBoundary, ...(o.earlyEnd !== undefined ? { shortcut: o.earlyEnd } : {}) }, img);
    } finally {
      progress.stop();
    }
    log?.(`exhaustive: ${v.runs} run(s)${v.injection ? `; the first that fails: ${v.injection.kind} at step ${v.injection.atStep}` : v.ok ? "; every one passes" : "; the run without interrupts already fails"}\n`);
    return { outcome: v.outcome, scenario, image: img, injections: v.injection ? [v.injection] : [], verdict: v };
  }
  if (o.trace) log?.(traceRun(scenario, strategy, opts, injections));
  return { outcome: runScenario(scenario, strategy, { ...opts, injections }), scenario, image: img, injections };
}

/**
 * `run --format email`: a failing run as a counterexample report (the run again, drawing the
 * stacks at the failing sample), with the command that repeats it.
 */
function emailReport(file: string, r: FileRun, strategy: Strategy, o: RunFlags & JitFlags, budgets: Record<string, number>): string {
  const failure = firstFailure(r.outcome);
  const outcome = failure?.sample === undefined ? r.outcome : runScenario(r.scenario, strategy, {
    unwinder: o.unwinder, policy: o.policy, privateStacks: o.privateStacks, budgets, image: r.image, injections: r.injections, picture: failure.sample,
  });
  const verdict: Verdict = { ok: false, outcome, failure, runs: r.verdict?.runs ?? 1, coverage: new Map(), ...(r.verdict?.injection ? { injection: r.verdict.injection } : {}) };
  const replay = [
    "npx stackcheck run", file, `--strategy ${o.strategy}`, `--unwinder ${o.unwinder}`, ...(o.policy !== "strict" ? [`--policy ${o.policy}`] : []),
    ...(o.privateStacks !== "none" ? [`--private-stacks ${o.privateStacks}`] : []), ...o.irqAt.map((x) => `--irq-at ${x}`), ...o.nmiAt.map((x) => `--nmi-at ${x}`),
    ...o.stackBudget.map((x) => `--stack-budget ${x}`), ...(o.schedule ? [] : ["--no-schedule"]), ...(o.exhaustive ? ["--exhaustive"] : []),
    ...(o.jit === "kernel" ? ["--jit kernel", ...(o.kernelTree !== undefined ? [`--kernel-tree ${o.kernelTree}`] : [])] : []), "--format email",
  ].join(" ");
  return formatCounterexample(r.scenario, r.image, verdict, { strategy: strategy.name, unwinder: o.unwinder, policy: o.policy, replay }, "email");
}

/**
 * One instruction of a traced run: the injections due by now raised (each told to `raised`), then
 * one step. Its step number, the instruction that executed (when one did: with an interrupt
 * delivered at this boundary, its handler's first), and the result.
 */
function tracedStep(m: Machine, pending: Injection[], raised?: (x: Injection) => void): { step: number; rip: bigint | undefined; result: RunResult } {
  while (pending.length && pending[0]!.atStep <= m.steps) {
    const x = pending.shift()!;
    raised?.(x);
    m.raise(x.vector);
  }
  const step = m.steps, depth = m.depth;
  let rip = m.rip;
  const result = m.step();
  if (m.depth > depth) {
    const top = m.truth()[0];
    if (top?.kind === "frame" && top.entered === "interrupt") rip = top.entry;
  }
  return { step, rip: m.steps > step ? rip : undefined, result };
}

/** Each executed address's first step, in a run with only `schedule`'s interrupts, up to `budget` steps. */
function firstExecutions(img: Image, schedule: readonly Injection[], budget: number): Map<bigint, number> {
  const m = loadImage(img);
  try {
    startTask(img, m);
    const seen = new Map<bigint, number>();
    const pending = [...schedule].sort((a, b) => a.atStep - b.atStep);
    for (let n = 0; n < budget; n++) {
      const { step, rip, result } = tracedStep(m, pending);
      if (rip !== undefined && !seen.has(rip)) seen.set(rip, step);
      if (result.kind !== "paused") break;
    }
    return seen;
  } finally {
    m.dispose();
  }
}

/** `run --trace`: every instruction as it executes (interrupts included), with its step number; at most TRACE_LIMIT lines. */
const TRACE_LIMIT = 200_000;
function traceRun(scenario: Scenario, strategy: Strategy, opts: Parameters<typeof startRun>[2], injections: readonly Injection[]): string {
  const s = startRun(scenario, strategy, opts);
  const lines: string[] = [];
  const pending = [...injections].sort((a, b) => a.atStep - b.atStep);
  try {
    for (let n = 0; n < TRACE_LIMIT; n++) {
      const { step, rip, result } = tracedStep(s.m, pending, (x) => lines.push(`        ${x.kind === "nmi" ? "NMI" : x.kind === "tick" ? "tick" : `IRQ ${x.vector}`} raised`));
      if (rip !== undefined) lines.push(`${String(step).padStart(7)} ${h16(rip)} ${s.sym(rip).padEnd(40)} ${s.m.disassembleAt(rip)}`);
      if (result.kind !== "paused") { lines.push(`        ${result.kind}`); break; }
      if (n === TRACE_LIMIT - 1) lines.push(`        (trace stopped after ${TRACE_LIMIT} lines)`);
    }
  } finally {
    s.end();
  }
  return `${lines.join("\n")}\n\n`;
}

/**
 * Each JITed function as `bpftool prog dump jited opcodes` prints it: the symbol, then
 * `offset: bytes  instruction`, with each BPF instruction as a `;` line above its x86 code.
 */
async function disasmScenario(file: string, o: { strategy: string; syntax: "gas" | "llvm" | "intel"; ibt: boolean; sls?: boolean }, jit: JitBackend): Promise<string> {
  const scenario = loadScenario(file);
  const strategy = await loadStrategy(o.strategy);
  const img = buildImage(scenario.spec, strategy, { ibt: o.ibt, sls: o.sls ?? false }, undefined, jit);
  const symbols = new SymbolTable(img.symbols);
  const lines = [`; strategy ${strategy.name}: ${strategy.summary}`, ...(jit.name === "ts" ? [] : [`; jit: ${jit.describe}`])];
  if (o.syntax === "llvm") {
    // exactly what the selftests' test_progs prints, per program, so lines paste into __jited("...")
    for (const p of bpfProgs(img)) lines.push("", `; program ${p.program.name} (${p.program.type}): ${p.jit.funcs.map((f) => f.name).join(", ")}`, testProgsListing(p.jit.funcs.map((f) => f.image.bytes)).trimEnd());
    return `${lines.join("\n")}\n`;
  }
  for (const p of bpfProgs(img)) {
    // the file's stack depths, and the ones the JIT uses where they differ (the verifier's, with
    // what the fix-ups add: jitStackDepths(); e.g. 16 for a timed may_goto)
    const depths = jitStackDepths(p.validated);
    for (const f of p.jit.funcs) {
      const func = p.xlated.funcs[f.fi]!;
      const priv = p.jit.privates.find((x) => x.fi === f.fi);
      const used = depths[f.fi]!;
      lines.push("", `; program ${p.program.name} (${p.program.type}), function ${f.name}, stack ${func.stackDepth}${used !== func.stackDepth ? ` (JIT stack ${used})` : ""}${priv ? `, private stack ${priv.size} bytes per CPU` : ""}; frame +0x${(f.frame.ready - f.image.base).toString(16)}..+0x${(f.frame.gone - f.image.base).toString(16)}, ksym fp_start 0x${f.ksym.fpStart.toString(16)} fp_end 0x${f.ksym.fpEnd.toString(16)}`);
      lines.push(`${f.symbol}:`);
      const bpf = bpfTextAt(p.xlated, f);
      for (const l of disassemble(f.image.bytes, f.image.base, { syntax: o.syntax, symbolize: (a) => symbols.symbolize(a) })) {
        for (const text of bpf.get(l.address) ?? []) lines.push(`; ${text}`);
        const off = (l.address - f.image.base).toString(16).padStart(4);
        lines.push(`${off}:\t${hexBytes(l.bytes).padEnd(30)}\t${lineText(l)}`);
      }
    }
  }
  return `${lines.join("\n")}\n`;
}


/** `isa`. */
export function isaAction(o: { json?: boolean; userMode?: boolean }, out: (s: string) => void): void {
    const rows = supportedCodes().filter((r) => !o.userMode || r.userMode);
    if (o.json) { out(`${JSON.stringify({ schema: JSON_SCHEMA, forms: rows }, null, 2)}\n`); return; }
    const byOp = new Map<string, string[]>();
    for (const r of rows) byOp.set(r.op, [...(byOp.get(r.op) ?? []), r.code]);
    for (const [op, codes] of byOp) out(`${op.padEnd(9)} ${codes.join(" ")}\n`);
    out(`${rows.length} instruction forms\n`);
}

/** `disasm`: a scenario's functions, or raw bytes. */
export async function disasmAction(args: string[], o: { strategy: string; syntax: "gas" | "llvm" | "intel"; base: bigint; ibt: boolean; sls?: boolean } & JitFlags, out: (s: string) => void): Promise<void> {
    if (args.length === 1 && args[0]!.toLowerCase().endsWith(".json")) {
      const jit = openJit(o);
      try {
        out(await disasmScenario(args[0]!, o, jit.backend));
      } finally {
        await jit.close();
      }
      return;
    }
    const bytes = parseHexBytes(args);
    out(`${formatListing(disassemble(bytes, o.base, { syntax: o.syntax }))}\n`);
}

/** `run`: one scenario's full report, or a batch of them, one line (or JSON line) each. */
export async function runAction(paths: string[], o: RunFlags & JitFlags, out: (s: string) => void, writeErr: (s: string) => void): Promise<void> {
    const budgets: Record<string, number> = {};
    for (const x of o.stackBudget) {
      const m = /^(task|irq|nmi|private)=(\d+)$/.exec(x);
      if (!m) throw new UsageError(`run: --stack-budget '${x}': expected <stack>=<bytes> with stack one of task, irq, nmi, private`);
      budgets[m[1]!] = Number(m[2]);
    }
    const files = scenarioFiles(paths);
    const strategy = await loadStrategy(o.strategy);
    const jit = openJit(o);
    const json = (v: unknown, indent?: number) => JSON.stringify(v, bigintHex, indent);
    try {
      if (files.length === 1 && paths.length === 1 && files[0] === paths[0]) {
        // one file: its full report (an input error is the command's)
        const r = runFile(files[0]!, strategy, o, budgets, jit.backend, o.json ? undefined : out);
        const outcome = r.outcome;
        if (o.json) out(`${json({ schema: JSON_SCHEMA, ...outcome, jit: jit.backend.describe }, 2)}\n`);
        else if (o.format === "email") out(outcome.ok ? wrapText(formatOutcome(files[0]!, outcome, jit.backend)) : emailReport(files[0]!, r, strategy, o, budgets));
        else out(formatOutcome(files[0]!, outcome, jit.backend));
        if (!outcome.ok) throw new RunFailed();
        return;
      }
      // a batch: one result per scenario, input errors among them; exit 2 if any file was bad, else 1 if any failed
      let bad = 0, failed = 0;
      for (const file of files) {
        let outcome: RunOutcome;
        try {
          outcome = runFile(file, strategy, o, budgets, jit.backend).outcome;
        } catch (e) {
          if (!(e instanceof ScenarioError || e instanceof UsageError || e instanceof ImageError)) throw e;
          bad++;
          if (o.json) out(`${json({ schema: JSON_SCHEMA, file, error: { kind: e instanceof UsageError ? "usage" : "scenario", message: e.message } })}\n`);
          else writeErr(`ERROR ${e.message.split("\n").join("\n  ")}\n`);
          continue;
        }
        if (!outcome.ok) failed++;
        const first = firstFailure(outcome);
        const line = `${outcome.ok ? "PASS" : "FAIL"} ${file}${first ? `: ${first.message.split("\n")[0]}` : ""}\n`;
        out(o.json ? `${json({ schema: JSON_SCHEMA, file, ...outcome, jit: jit.backend.describe })}\n` : o.format === "email" ? wrapText(line) : line);
      }
      if (!o.json) out(`${files.length} scenario(s): ${files.length - bad - failed} passed, ${failed} failed, ${bad} could not be read\n`);
      if (bad) throw new UsageError(`run: ${bad} of ${files.length} scenario file(s) could not be run (above)`);
      if (failed) throw new RunFailed();
    } finally {
      await jit.close();
    }
}
