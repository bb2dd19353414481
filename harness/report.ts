// Counterexample reports (design.md §8): the minimal scenario in BPF syntax, the strategy and
// unwinder, where each interrupt hit (symbol+offset, a disassembly window with a marker), truth
// and unwound chain side by side, a picture of the stacks at the failing sample, the failing
// check or class, and one line that replays it.
import { hex64, toInternal, type Machine } from "./machine/index.ts";
import { CALL_NAMES } from "../jit/bpf/abi.ts";
import { printProgram } from "../jit/bpf/print.ts";
import { disassemble, formatLine } from "../jit/disasm.ts";
import type { Image } from "../jit/image.ts";
import { pointClassifier, type FirstFailure, type Verdict } from "./property.ts";
import type { Raised, RunOutcome, Sample } from "./run.ts";
import type { Scenario } from "./scenario.ts";
import { loadImage } from "./load.ts";

const WINDOW_BEFORE = 4, WINDOW_AFTER = 3;

/** Each program in kernel syntax (bpftool / verifier log style), with what runs what. */
export function formatScenario(sc: Scenario): string {
  const cbs = CALL_NAMES;
  const f = sc.file;
  const lines = [
    `${f.tasks ? `tasks run ${f.tasks.map((t, i) => `${i}: ${t}`).join(", ")}` : `task runs ${f.task}`}${f.nested?.length ? `; scx_sc_run_nested(i) runs ${f.nested.map((n, i) => `${i}: ${n}`).join(", ")}` : ""}${f.irq?.length ? `; IRQ ${f.irq.map((a) => `vector ${a.vector}: ${a.program}`).join(", ")}` : ""}${f.nmi ? `; NMI: ${f.nmi}` : ""}`,
  ];
  if (f.interrupts?.length) lines.push(`schedule: ${f.interrupts.map((x) => (x.kind === "nmi" ? `NMI at step ${x.atStep}` : x.kind === "tick" ? `tick at step ${x.atStep}` : `IRQ ${x.vector} at step ${x.atStep}`)).join(", ")}`);
  for (const p of sc.programs) {
    lines.push(`program ${p.name} (${p.type}${p.attach ? ` through ${p.attach}` : ""}${p.sleepable ? ", sleepable" : ""}${p.privStackRequested ? ", private stack requested" : ""}):`);
    lines.push(...printProgram(p, cbs).split("\n").map((l) => `  ${l}`));
  }
  return lines.join("\n");
}

/** The instructions around `ip` in the function that holds it, `=>` at ip. */
export function disasmWindow(m: Machine, ip: bigint): string {
  const f = m.symbols.lookup(ip);
  if (!f) return `  (no symbol holds ${hex64(ip)})`;
  const bytes = m.memory.peek(toInternal(f.start)!, Number(f.end - f.start));
  if (!bytes) return `  (${f.name} is not mapped)`;
  const lines = disassemble(bytes, f.start, { symbolize: (a) => m.symbols.symbolize(a) });
  const at = lines.findIndex((l) => l.address === ip);
  const from = Math.max(0, (at < 0 ? 0 : at) - WINDOW_BEFORE);
  return lines.slice(from, (at < 0 ? 0 : at) + WINDOW_AFTER + 1).map((l) => formatLine(l, l.address === ip)).join("\n");
}

/** Truth and unwound chain side by side, `!` where they differ. */
export function formatChains(s: Sample): string[] {
  const w = Math.max(20, ...s.truth.map((t) => t.symbol.length + 18));
  const lines = [`  ${"#".padEnd(3)}${"truth".padEnd(w)}unwound`];
  for (let k = 0; k < Math.max(s.truth.length, s.unwound.length); k++) {
    const t = s.truth[k], u = s.unwound[k];
    const mark = t && u && t.ip === u.ip ? " " : "!";
    lines.push(`${mark} ${String(k).padEnd(3)}${(t ? `${hex64(t.ip)} ${t.symbol}` : "").padEnd(w)}${u ? `${hex64(u.ip)} ${u.symbol}` : ""}`);
  }
  for (const x of s.warnings) lines.push(`  ${x}`);
  return lines;
}

export interface ReportContext {
  readonly strategy: string;
  readonly unwinder: string;
  readonly policy: string;
  /** How to replay it, one line (a command). */
  readonly replay: string;
  /** e.g. "after 12 runs and 31 shrinks". */
  readonly found?: string;
}

const describeFailure = (f: FirstFailure) => (f.kind === "sample" ? `class ${f.what}: ${f.message}` : f.kind === "check" ? `check ${f.what}: ${f.message}` : `run: ${f.message}`);

/** The whole report of one failing scenario. `verdict.outcome` should carry the failing sample's picture. */
export function formatCounterexample(sc: Scenario, img: Image, verdict: Verdict, ctx: ReportContext): string {
  const m = loadImage(img);
  try {
    return counterexampleText(sc, img, m, verdict, ctx);
  } finally {
    m.dispose(); // its decoder holds WASM objects
  }
}

function counterexampleText(sc: Scenario, img: Image, m: Machine, verdict: Verdict, ctx: ReportContext): string {
  const o: RunOutcome = verdict.outcome;
  const where = pointClassifier(img);
  const lines = [
    `counterexample: strategy ${ctx.strategy}, unwinder ${ctx.unwinder}, policy ${ctx.policy}${ctx.found ? ` (${ctx.found})` : ""}`,
    `failure: ${verdict.failure ? describeFailure(verdict.failure) : "none"}`,
    `scenario: ${sc.programs.length} program(s), ${sc.programs.reduce((n, p) => n + p.funcs.length, 0)} function(s)`,
    ...formatScenario(sc).split("\n").map((l) => `  ${l}`),
  ];
  const hits: readonly Raised[] = o.delivered;
  if (verdict.injection) lines.push(`injected: ${verdict.injection.kind === "nmi" ? "an NMI" : `IRQ ${verdict.injection.vector}`} at step ${verdict.injection.atStep} (exhaustive mode)`);
  for (const h of hits) {
    lines.push("", `${h.kind === "nmi" ? "NMI" : `IRQ ${h.vector}`} delivered at step ${h.atStep}, interrupting ${h.symbol} (${where(h.ip)}):`);
    lines.push(disasmWindow(m, h.ip));
  }
  if (hits.length === 0) lines.push("", "no interrupt was delivered");
  const f = verdict.failure;
  const s = f?.sample !== undefined ? o.samples[f.sample] : undefined;
  if (s) {
    lines.push("", `sample ${f!.sample! + 1}: ${s.kind} at ${s.where}, step ${s.step}: ${s.class}${s.error ? " [unwinder error]" : ""}`);
    lines.push(...formatChains(s));
    if (s.picture) lines.push("", "stacks at the sample:", ...s.picture.split("\n").map((l) => `  ${l}`));
  }
  if (o.checks.failures.length) {
    lines.push("", "checks:");
    for (const c of o.checks.failures) lines.push(`  FAIL ${c.check}: ${c.message}`);
  }
  lines.push("", `replay: ${ctx.replay}`);
  return `${lines.join("\n")}\n`;
}
