// Disassembly in GAS (AT&T, as objdump and the kernel selftests' __jited() print it) or Intel
// syntax, with `symbol+offset` annotations on every address and branch target.
//
// iced-x86 1.21's formatter prints an imm64 whose low 32 bits are <= 9 as that small decimal
// (`movabs $0x100000001,%rax` as `movabs $1,%rax`) unless smallHexNumbersInDecimal is false.
import { FlowControl, forEachInstruction, Formatter, FormatterSyntax, OpKind, Register } from "./iced.ts";

/** gas: AT&T as objdump prints it; llvm: AT&T with size suffixes and ", " as llvm-objdump prints
 * it (the form the kernel selftests' __jited() lines match); intel. */
export type Syntax = "gas" | "llvm" | "intel";
export type Symbolizer = (addr: bigint) => string | undefined;

export interface DisasmLine {
  readonly address: bigint;
  readonly bytes: Uint8Array;
  /** The instruction text, without annotations. */
  readonly text: string;
  /** `symbol+0xoff` of the instruction address, if a symbol contains it. */
  readonly symbol: string | undefined;
  /** `symbol+0xoff` of the branch target or absolute memory address the instruction names. */
  readonly refers: string | undefined;
}

export interface DisasmOptions {
  readonly syntax?: Syntax;
  readonly symbolize?: Symbolizer;
}

function makeFormatter(syntax: Syntax): Formatter {
  const f = new Formatter(syntax === "intel" ? FormatterSyntax.Intel : FormatterSyntax.Gas);
  if (syntax === "llvm") {
    f.gasShowMnemonicSizeSuffix = true;
    f.spaceAfterOperandSeparator = true;
    f.signedImmediateOperands = true; // LLVM's PrintImmHex prints `$-0x8`
  }
  f.smallHexNumbersInDecimal = false;
  f.hexPrefix = "0x";
  f.hexSuffix = "";
  f.uppercaseHex = false;
  f.branchLeadingZeros = false;
  f.displacementLeadingZeros = false;
  f.leadingZeros = false;
  return f;
}

const NEAR64 = OpKind.NearBranch64, MEMORY = OpKind.Memory, REG_NONE = Register.None, REG_RIP = Register.RIP;
const FC_NEXT = FlowControl.Next;

/** Decode and format every instruction in `bytes`, placed at `base`. */
export function disassemble(bytes: Uint8Array, base: bigint, opts: DisasmOptions = {}): DisasmLine[] {
  const sym = opts.symbolize ?? (() => undefined);
  const out: DisasmLine[] = [];
  const f = makeFormatter(opts.syntax ?? "gas");
  try {
    forEachInstruction(bytes, base, (ins) => {
      const off = Number(ins.ip - BigInt.asUintN(64, base));
      let refers: string | undefined;
      if (!ins.isInvalid) {
        for (let i = 0; i < ins.opCount; i++) {
          const k = ins.opKind(i);
          if (k === NEAR64 && ins.flowControl !== FC_NEXT) refers = sym(ins.nearBranch64);
          else if (k === MEMORY && ins.memoryIndex === REG_NONE && (ins.memoryBase === REG_NONE || ins.memoryBase === REG_RIP)) {
            refers = sym(ins.memoryDisplacement & 0xffffffffffffffffn);
          }
        }
      }
      out.push({
        address: ins.ip,
        bytes: bytes.slice(off, off + ins.length),
        text: ins.isInvalid ? "(bad)" : f.format(ins),
        symbol: sym(ins.ip),
        refers,
      });
    });
  } finally {
    f.free();
  }
  return out;
}

/** Bytes as objdump lists them: `0f 1f 44 00 00`. */
export const hexBytes = (bytes: Uint8Array): string => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");

/** The instruction text with the symbol it refers to: `call 0xffffffff81000120 <bpf_sc_helper>`. */
export const lineText = (l: DisasmLine): string => `${l.text}${l.refers ? ` <${l.refers}>` : ""}`;

/** One listing line: `ffffffffa0000004 <prog+0x4>   0f 1f 44 00 00   nopl 0x0(%rax,%rax,1)`. */
export function formatLine(l: DisasmLine, marker = false): string {
  const addr = l.address.toString(16).padStart(16, "0");
  const where = l.symbol ? ` <${l.symbol}>` : "";
  const bytes = hexBytes(l.bytes);
  const note = l.refers ? `  <${l.refers}>` : "";
  return `${marker ? "=>" : "  "} ${addr}${where}  ${bytes.padEnd(30)} ${l.text}${note}`;
}

/** A whole listing; `mark` puts `=>` in front of the instruction at that address. */
export function formatListing(lines: readonly DisasmLine[], mark?: bigint): string {
  return lines.map((l) => formatLine(l, mark !== undefined && l.address === BigInt.asUintN(64, mark))).join("\n");
}

/** One line of test_progs' listing: the offset and bytes columns, and the text after them. */
export interface TestProgsLine {
  readonly pc: number;
  /** `%x:\t` and the bytes, as test_progs pads them. */
  readonly prefix: string;
  /** What follows: a local label (`L0:`), then LLVM's `\tmnemonic\toperands`; a `__jited("...")` line matches it. */
  readonly text: string;
}

/**
 * One function as the kernel selftests' test_progs prints it (disasm_one_func() in
 * tools/testing/selftests/bpf/jit_disasm_helpers.c, 7.2): per instruction `%x:\t`, its bytes as
 * `%02x ` padded to 36 columns, a local label (`L0:`) where a jump inside the function lands, and
 * LLVM's text, `\tmnemonic\toperands` (a `lock` prefix as `\tlock\t` before it, as LLVM's
 * printInstFlags() writes it), with branches inside the function as their labels and offsets
 * counted from the function's start, as LLVM is given them.
 */
export function testProgsLines(bytes: Uint8Array): TestProgsLine[] {
  const f = makeFormatter("llvm");
  const insns: { pc: number; len: number; text: string; target?: number }[] = [];
  try {
    forEachInstruction(bytes, 0n, (ins) => {
      let target: number | undefined;
      if (!ins.isInvalid && ins.flowControl !== FC_NEXT) {
        for (let i = 0; i < ins.opCount; i++) {
          if (ins.opKind(i) !== NEAR64) continue;
          const t = BigInt.asIntN(64, ins.nearBranch64);
          if (t >= 0n && t < BigInt(bytes.length)) target = Number(t);
        }
      }
      insns.push({ pc: Number(ins.ip), len: ins.length, text: ins.isInvalid ? "(bad)" : f.format(ins), ...(target !== undefined ? { target } : {}) });
    });
  } finally {
    f.free();
  }
  const labels = [...new Set(insns.flatMap((x) => (x.target === undefined ? [] : [x.target])))].sort((a, b) => a - b);
  const name = (pc: number) => `L${labels.indexOf(pc)}`;
  return insns.map((x) => {
    let text = x.text, lock = "";
    if (text.startsWith("lock ")) { lock = "\tlock\t"; text = text.slice(5); }
    const sp = text.indexOf(" ");
    const mnemonic = sp < 0 ? text : text.slice(0, sp);
    const operands = x.target !== undefined ? name(x.target) : sp < 0 ? "" : text.slice(sp + 1);
    const hex = [...bytes.subarray(x.pc, x.pc + x.len)].map((b) => `${b.toString(16).padStart(2, "0")} `).join("").padEnd(36);
    return { pc: x.pc, prefix: `${x.pc.toString(16)}:\t${hex}`, text: `${labels.includes(x.pc) ? `${name(x.pc)}:` : ""}${lock}\t${mnemonic}${operands ? `\t${operands}` : ""}` };
  });
}

/** A program's functions as test_progs prints them: `func #i:`, the lines, a blank line after each. */
export function testProgsListing(funcs: readonly Uint8Array[]): string {
  return funcs.map((b, fi) => [`func #${fi}:`, ...testProgsLines(b).map((l) => l.prefix + l.text), ""].join("\n")).join("\n") + "\n";
}
