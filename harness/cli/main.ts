// The `stackcheck` command line. Subcommands grow with the harness: today the instruction table
// the machine implements and a disassembler; the campaign commands (run, check, matrix, replay)
// come with the JIT, unwinder and property-harness work.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { supportedCodes } from "../machine/isa.ts";
import { disassemble, formatListing } from "../../jit/disasm.ts";

const VERSION = "0.1.0";

function parseAddress(v: string): bigint {
  if (!/^(0x)?[0-9a-fA-F]{1,16}$/.test(v)) throw new InvalidArgumentError(`'${v}' is not a hex address (up to 16 hex digits)`);
  return BigInt(v.startsWith("0x") ? v : `0x${v}`);
}

/** A usage error found while a command runs (commander's own errors are reported by commander). */
class UsageError extends Error {}

function parseHexBytes(words: string[]): Uint8Array {
  const text = words.join(" ").replace(/0x/gi, "").replace(/[\s,]+/g, "");
  if (text.length === 0 || text.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(text)) {
    throw new UsageError(`disasm: expected bytes in hex, e.g. '55 48 89 e5'; got '${words.join(" ")}'`);
  }
  return Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));
}

export function buildProgram(out: (s: string) => void): Command {
  const program = new Command("stackcheck")
    .description("Conformance harness for the stack discipline of the Linux BPF x86-64 JIT")
    .version(VERSION)
    .showHelpAfterError()
    .configureOutput({ writeOut: out, writeErr: out });

  program
    .command("isa")
    .description("list the x86-64 instruction forms the machine emulates (what the JIT may emit)")
    .option("--json", "machine-readable output")
    .option("--user-mode", "only the forms that can run in user space (differential tests)")
    .action((o: { json?: boolean; userMode?: boolean }) => {
      const rows = supportedCodes().filter((r) => !o.userMode || r.userMode);
      if (o.json) { out(`${JSON.stringify(rows, null, 2)}\n`); return; }
      const byOp = new Map<string, string[]>();
      for (const r of rows) byOp.set(r.op, [...(byOp.get(r.op) ?? []), r.code]);
      for (const [op, codes] of byOp) out(`${op.padEnd(9)} ${codes.join(" ")}\n`);
      out(`${rows.length} instruction forms\n`);
    });

  program
    .command("disasm")
    .description("disassemble x86-64 bytes, e.g. to compare with `bpftool prog dump jited`")
    .argument("<bytes...>", "instruction bytes in hex ('55 48 89 e5' or '554889e5')")
    .addOption(new Option("--base <addr>", "address of the first byte").default(0xffffffffa0000000n, "ffffffffa0000000").argParser(parseAddress))
    .addOption(new Option("--syntax <syntax>", "assembler syntax").choices(["gas", "intel"]).default("gas"))
    .action((words: string[], o: { base: bigint; syntax: "gas" | "intel" }) => {
      const bytes = parseHexBytes(words);
      out(`${formatListing(disassemble(bytes, o.base, { syntax: o.syntax }))}\n`);
    });

  return program;
}

/** Run the CLI; returns the process exit code. */
export async function main(argv: readonly string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const program = buildProgram(out).exitOverride();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    out(`stackcheck: ${(e as Error).message}\n`);
    return 1;
  }
}
