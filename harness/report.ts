// Counterexample reports (design.md §8): the minimal scenario in BPF syntax, the strategy and
// unwinder, where each interrupt hit (symbol+offset, a disassembly window with a marker), truth
// and unwound chain side by side, a picture of the stacks at the failing sample, the failing
// check or class, and one line that replays it.
import { hex64, toInternal, type Machine } from "./machine/index.ts";
import { CALL_NAMES } from "../jit/bpf/abi.ts";
import { BPF_EXIT, BPF_JMP } from "../jit/bpf/opcodes.ts";
import { printProgram } from "../jit/bpf/print.ts";
import { disassemble, formatLine, hexBytes, lineText, type DisasmLine } from "../jit/disasm.ts";
import { bpfTextAt } from "../jit/jit.ts";
import type { Image } from "../jit/image.ts";
import { pointClassifier, type FirstFailure, type Verdict } from "./property.ts";
import type { Raised, RunOutcome, Sample } from "./run.ts";
import type { Scenario } from "./scenario.ts";
import { loadImage } from "./load.ts";
import { renderPicture } from "./picture.ts";

const WINDOW_BEFORE = 4, WINDOW_AFTER = 3;

/** Each program in kernel syntax (bpftool / verifier log style), with what runs what. */
export function formatScenario(sc: Scenario): string {
  const cbs = CALL_NAMES;
  const f = sc.file;
  const lines = [
    `${f.tasks ? `tasks run ${f.tasks.map((t, i) => `${i}: ${t}`).join(", ")}` : `task runs ${f.task}`}${f.nested?.length ? `; scx_sc_run_nested(i) runs ${f.nested.map((n, i) => `${i}: ${n}`).join(", ")}` : ""}${f.irq?.length ? `; IRQ ${f.irq.map((a) => `vector ${a.vector}: ${a.program}`).join(", ")}` : ""}${f.nmi ? `; NMI: ${f.nmi}` : ""}`,
  ];
  if (f.links?.length) lines.push(`links: ${f.links.map((l) => `${l.name} runs ${l.program} through ${l.attach}`).join(", ")}`);
  if (f.interrupts?.length) lines.push(`schedule: ${f.interrupts.map((x) => (x.kind === "nmi" ? `NMI at step ${x.atStep}` : x.kind === "tick" ? `tick at step ${x.atStep}` : `IRQ ${x.vector} at step ${x.atStep}`)).join(", ")}`);
  for (const p of sc.programs) {
    if (p.linkOf !== undefined) continue; // (on the links line)
    lines.push(`program ${p.name} (${p.type}${p.attach ? ` through ${p.attach}` : ""}${p.sleepable ? ", sleepable" : ""}${p.privStackRequested ? ", private stack requested" : ""}):`);
    lines.push(...printProgram(p, cbs).split("\n").map((l) => `  ${l}`));
  }
  return lines.join("\n");
}

/** The function that holds `ip`, disassembled, or why it cannot be (a line for the report). */
function functionCode(m: Machine, ip: bigint): { sym: { name: string; start: bigint }; lines: DisasmLine[] } | string {
  const f = m.symbols.lookup(ip);
  if (!f) return `  (no symbol holds ${hex64(ip)})`;
  const bytes = m.memory.peek(toInternal(f.start)!, Number(f.end - f.start));
  if (!bytes) return `  (${f.name} is not mapped)`;
  return { sym: f, lines: disassemble(bytes, f.start, { symbolize: (a) => m.symbols.symbolize(a) }) };
}

/** The instructions of a function around `ip` (WINDOW_BEFORE before, WINDOW_AFTER after). */
function around(lines: readonly DisasmLine[], ip: bigint): readonly DisasmLine[] {
  const at = Math.max(0, lines.findIndex((l) => l.address === ip));
  return lines.slice(Math.max(0, at - WINDOW_BEFORE), at + WINDOW_AFTER + 1);
}

/** The instructions around `ip` in the function that holds it, `=>` at ip. */
export function disasmWindow(m: Machine, ip: bigint): string {
  const code = functionCode(m, ip);
  return typeof code === "string" ? code : around(code.lines, ip).map((l) => formatLine(l, l.address === ip)).join("\n");
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
  return [...lines, ...walkNotes(s)];
}

/** Below a chain: the warnings the walk printed, and why it stopped (unless it was exact). */
function walkNotes(s: Sample): string[] {
  return [...s.warnings.map((x) => `  ${x}`), ...(s.stopped && s.class !== "EXACT" ? [`  the walk stopped: ${s.stopped}`] : [])];
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
export function formatCounterexample(sc: Scenario, img: Image, verdict: Verdict, ctx: ReportContext, format: ReportFormat = "text"): string {
  const m = loadImage(img);
  try {
    return counterexampleText(sc, img, m, verdict, ctx, format === "email" ? EMAIL : TEXT);
  } finally {
    m.dispose(); // its decoder holds WASM objects
  }
}

/** How the two report formats differ; the parts they share are counterexampleText()'s. */
interface Layout {
  /** The first lines: strategy, unwinder, policy, and how it was found. */
  head(ctx: ReportContext): string[];
  /** The line above an interrupt's disassembly window. */
  hit(h: Raised, where: string): string;
  window(m: Machine, ip: bigint): string[];
  chains(s: Sample): string[];
  /** Email: the whole function the failure names, its prologue and epilogue marked. */
  listing: boolean;
  picture: "wide" | "narrow";
  /** The lines, and the replay command, as the finished text. */
  finish(lines: string[], replay: string): string;
}

const TEXT: Layout = {
  head: (ctx) => [`counterexample: strategy ${ctx.strategy}, unwinder ${ctx.unwinder}, policy ${ctx.policy}${ctx.found ? ` (${ctx.found})` : ""}`],
  hit: (h, where) => `${h.kind === "nmi" ? "NMI" : `IRQ ${h.vector}`} delivered at step ${h.atStep}, interrupting ${h.symbol} (${where}):`,
  window: (m, ip) => [disasmWindow(m, ip)],
  chains: formatChains,
  listing: false,
  picture: "wide",
  finish: (lines, replay) => `${[...lines, "", `replay: ${replay}`].join("\n")}\n`,
};

/** For a mailing list: every line within 80 columns, symbols before addresses. */
const EMAIL: Layout = {
  head: (ctx) => [`counterexample: strategy ${ctx.strategy}, unwinder ${ctx.unwinder}, policy ${ctx.policy}`, ...(ctx.found ? [`(${ctx.found})`] : [])],
  hit: (h, where) => `${h.kind === "nmi" ? "NMI" : `IRQ ${h.vector}`} at step ${h.atStep} interrupted ${h.symbol} (${where}):`,
  window: disasmWindowNarrow,
  chains: formatChainsNarrow,
  listing: true,
  picture: "narrow",
  // the command as wrapCommand() cut it, not cut again: it must paste as it is (a word longer
  // than a line, a long path, stays whole on a line of its own)
  finish: (lines, replay) => `${[...[...lines, "", "replay:"].flatMap((l) => wrapLine(l.trimEnd())), ...wrapCommand(replay).map((l) => `  ${l}`)].join("\n")}\n`,
};

function counterexampleText(sc: Scenario, img: Image, m: Machine, verdict: Verdict, ctx: ReportContext, layout: Layout): string {
  const o: RunOutcome = verdict.outcome;
  const where = pointClassifier(img);
  const f = verdict.failure;
  const lines = [
    ...layout.head(ctx),
    `failure: ${f ? describeFailure(f) : "none"}`,
    ...(layout === EMAIL ? [""] : []),
    `scenario: ${sc.file.programs.length} program(s), ${sc.file.programs.reduce((n, p) => n + p.funcs.length, 0)} function(s)${sc.file.links?.length ? `, ${sc.file.links.length} link(s)` : ""}`,
    ...formatScenario(sc).split("\n").map((l) => `  ${l}`),
  ];
  if (verdict.injection) lines.push(`injected: ${verdict.injection.kind === "nmi" ? "an NMI" : `IRQ ${verdict.injection.vector}`} at step ${verdict.injection.atStep} (exhaustive mode)`);
  for (const h of o.delivered) lines.push("", layout.hit(h, where(h.ip)), ...layout.window(m, h.ip));
  if (o.delivered.length === 0) lines.push("", "no interrupt was delivered");
  const s = f?.sample !== undefined ? o.samples[f.sample] : undefined;
  if (s) {
    lines.push("", `sample ${f!.sample! + 1}: ${s.kind} at ${s.where}, step ${s.step}: ${s.class}${s.error ? " [unwinder error]" : ""}`);
    lines.push(...layout.chains(s));
    if (s.picture && layout.picture === "wide") lines.push("", "stacks at the sample:", ...renderPicture(s.picture).map((l) => `  ${l}`));
  }
  if (o.checks.failures.length) {
    lines.push("", "checks:");
    for (const c of o.checks.failures) lines.push(`  FAIL ${c.check}: ${c.message}`);
  }
  const code = layout.listing ? failingCode(img, m, o, f) : undefined;
  if (code) {
    lines.push("", `${m.symbols.lookup(code.ip)?.name ?? hex64(code.ip)}, ${code.why}${bpfFunctionAt(img, code.ip) ? ` (P: ${ctx.strategy}'s prologue, E: its epilogue)` : ""}:`);
    lines.push(...functionListing(img, m, code.ip));
  }
  // the mail draws the stacks after the listing: the picture is the longest part
  if (s?.picture && layout.picture === "narrow") lines.push("", "stacks at the sample:", ...renderPicture(s.picture, "narrow").map((l) => `  ${l}`));
  return layout.finish(lines, ctx.replay);
}

/** How a report is laid out: `text` for a terminal, `email` for a mailing list (80 columns). */
export type ReportFormat = "text" | "email";
export const REPORT_FORMATS: readonly ReportFormat[] = ["text", "email"];

const WIDTH = 80;

/**
 * A line cut to `width` columns at spaces (or, for a run without one, anywhere), each
 * continuation indented four columns more than the line itself.
 */
export function wrapLine(line: string, width = WIDTH): string[] {
  if (line.length <= width) return [line];
  const indent = " ".repeat(Math.min(line.length - line.trimStart().length + 4, width >> 1));
  const out: string[] = [];
  let rest = line;
  let first = true;
  while (rest.length > width) {
    let cut = rest.lastIndexOf(" ", width);
    if (cut <= (first ? 0 : indent.length)) cut = width; // no space to break at
    out.push(rest.slice(0, cut).trimEnd());
    rest = indent + rest.slice(cut).trimStart();
    first = false;
  }
  out.push(rest);
  return out;
}

/** Text of several lines, each cut to `width` columns (wrapLine()). */
export function wrapText(text: string, width = WIDTH): string {
  return text.split("\n").flatMap((l) => wrapLine(l, width)).join("\n");
}

/**
 * A shell command cut at its options, with ` \\` continuations, to paste as is. Words are never
 * split: one longer than a line (a long path) has a line of its own.
 */
export function wrapCommand(cmd: string, width = WIDTH): string[] {
  const words = cmd.split(" ");
  const out: string[] = [];
  let line = "";
  for (let i = 0; i < words.length; i++) {
    // keep an option with its value
    const word = words[i]!.startsWith("--") && i + 1 < words.length && !words[i + 1]!.startsWith("--") ? `${words[i]} ${words[++i]}` : words[i]!;
    if (line && line.length + 1 + word.length + 2 > width) { out.push(`${line} \\`); line = `    ${word}`; }
    else line = line ? `${line} ${word}` : word;
  }
  out.push(line);
  return out;
}

/** `s` in at most `n` columns: the middle elided, so the symbol's start and offset stay. */
const fit = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 15)}..${s.slice(-13)}`);

/** Truth and unwound chain side by side in 80 columns: symbols (addresses only where none holds them). */
export function formatChainsNarrow(s: Sample): string[] {
  const col = 36;
  const cell = (e: { ip: bigint; symbol: string } | undefined) => (e ? fit(e.symbol && !/^0x|^[0-9a-f]{16}$/.test(e.symbol) ? e.symbol : hex64(e.ip), col) : "");
  const lines = [`  ${"#".padEnd(3)}${"truth".padEnd(col + 1)}unwound`];
  for (let k = 0; k < Math.max(s.truth.length, s.unwound.length); k++) {
    const t = s.truth[k], u = s.unwound[k];
    lines.push(`${t && u && t.ip === u.ip ? " " : "!"} ${String(k).padEnd(3)}${cell(t).padEnd(col + 1)}${cell(u)}`);
  }
  return [...lines, ...walkNotes(s)];
}

/** The BPF function holding `ip`, with its program and its BPF instructions. */
function bpfFunctionAt(img: Image, ip: bigint) {
  for (const p of img.programs) {
    for (const f of p.jit.funcs) {
      if (ip >= f.image.base && ip < f.image.end) {
        const func = p.xlated.funcs[f.fi]!;
        return { program: p.xlated, jf: f, insns: p.xlated.insns.slice(func.start, func.end) };
      }
    }
  }
  return undefined;
}

/**
 * The whole function that holds `ip`, for a mail: `P` on the strategy's prologue (before BPF
 * instruction 0), `E` on the epilogue (the first exit's code), `=>` at `ip`, and each BPF
 * instruction above the x86 code it became. Kernel functions are listed plain.
 */
export function functionListing(img: Image, m: Machine, ip: bigint): string[] {
  const code = functionCode(m, ip);
  if (typeof code === "string") return [code];
  const { sym, lines } = code;
  const bpf = bpfFunctionAt(img, ip);
  const firstExit = bpf ? bpf.insns.findIndex((x) => x.code === (BPF_JMP | BPF_EXIT)) : -1;
  const epilogue = bpf && firstExit >= 0 ? { from: bpf.jf.insnAddrs[firstExit]!, to: bpf.jf.insnAddrs[firstExit + 1] ?? bpf.jf.image.end } : undefined;
  const texts = bpf ? bpfTextAt(bpf.program, bpf.jf) : undefined;
  const out: string[] = [];
  for (const l of lines) {
    for (const text of texts?.get(l.address) ?? []) out.push(...wrapLine(`        ; ${text}`));
    const mark = l.address === ip ? "=>" : bpf && l.address < bpf.jf.insnAddrs[0]! ? "P " : epilogue && l.address >= epilogue.from && l.address < epilogue.to ? "E " : "  ";
    const shown = `${hexBytes(l.bytes.length > 7 ? l.bytes.subarray(0, 6) : l.bytes)}${l.bytes.length > 7 ? " .." : ""}`;
    out.push(...wrapLine(`${mark} +0x${(l.address - sym.start).toString(16).padStart(3, "0")}  ${shown.padEnd(20)}  ${lineText(l)}`));
  }
  return out;
}

/** The code a failure points at: a check's function, a failing walk's innermost BPF frame, or where the run stopped. */
function failingCode(img: Image, m: Machine, o: RunOutcome, f: FirstFailure | undefined): { ip: bigint; why: string } | undefined {
  if (!f) return undefined;
  if (f.kind === "check") {
    const c = o.checks.failures.find((x) => x.check === f.what && x.at !== undefined);
    return c ? { ip: c.at!, why: `the function check ${c.check} names` } : undefined;
  }
  if (f.kind === "sample") {
    const s = o.samples[f.sample!]!;
    const inBpf = [...(s.interrupted ? [{ ip: s.interrupted.ip }] : []), ...s.truth].find((t) => m.symbols.lookup(t.ip)?.kind === "bpf");
    return inBpf ? { ip: inBpf.ip, why: "the innermost BPF function of the failing walk" } : undefined;
  }
  return "rip" in o.result ? { ip: o.result.rip, why: `where the run ended (${o.result.kind})` } : undefined;
}


/** disasmWindow() in 80 columns: offsets into the function, instruction text, no bytes. */
function disasmWindowNarrow(m: Machine, ip: bigint): string[] {
  const code = functionCode(m, ip);
  if (typeof code === "string") return [code];
  const f = code.sym;
  return around(code.lines, ip).map((l) => `${l.address === ip ? "=>" : "  "} ${f.name.length > 40 ? "" : f.name}+0x${(l.address - f.start).toString(16)}  ${lineText(l)}`);
}
