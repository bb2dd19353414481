// Assembler facade over iced-x86: instructions, labels, symbols; encode a block at a base address
// with the exact forms asked for (rel32 branches, `DontFixBranches`), then decode the bytes back
// to recover every instruction's and label's address.
//
// iced pitfalls handled here (toolchain-notes §1b): a branch to a label that does not exist is
// silently encoded as an absolute address, so every branch target is resolved by us first and
// checked again after decoding; BlockEncoder.add copies, so every created Instruction is freed.
import { BlockEncoder, BlockEncoderOptions, Code, forEachInstruction, Instruction } from "./iced.ts";

/** Where a branch goes: a label in this block, a named symbol resolved at assembly, or an address. */
export type Target = { readonly label: string } | { readonly symbol: string } | { readonly address: bigint };

/** Branch forms the facade emits (rel32 calls and jumps, rel8/rel32 jcc; DontFixBranches keeps them). */
export type BranchCode = number;

type Item =
  | { readonly kind: "insn"; readonly make: () => Instruction; readonly note: string | undefined }
  | { readonly kind: "branch"; readonly code: BranchCode; readonly target: Target; readonly note: string | undefined };

export interface AssembledInsn {
  readonly index: number;
  readonly address: bigint;
  readonly length: number;
  /** The emitter's own assembly comment, if it gave one. */
  readonly note: string | undefined;
}

export interface Assembled {
  readonly base: bigint;
  readonly bytes: Uint8Array;
  /** Address one past the last byte. */
  readonly end: bigint;
  readonly insns: readonly AssembledInsn[];
  readonly labels: ReadonlyMap<string, bigint>;
}

export class AsmError extends Error {
  constructor(readonly code: "unknown-label" | "duplicate-label" | "unknown-symbol" | "end-label-target" | "encode" | "target-address" | "verify", message: string) {
    super(message);
    this.name = "AsmError";
  }
}

/** An address as 16 hex digits, the way kernel traces print it. */
const hex64 = (v: bigint): string => BigInt.asUintN(64, v).toString(16).padStart(16, "0");

/** Label ids are the fake IPs iced uses for branch targets; real targets must stay above them. */
const MIN_ABSOLUTE_TARGET = 0x10000n;

export interface AssembleOptions {
  /** Resolves `{ symbol }` targets. */
  readonly symbols?: (name: string) => bigint | undefined;
  /**
   * A layout pass's sizes, not final bytes: every rel8 branch to a label is encoded to the next
   * instruction (always in range), so a form the previous pass's guesses chose encodes even when
   * its target is out of rel8 range. do_jit() writes such a pass's offsets and throws them away
   * the same way; only the sizes count. The result must not be used as code.
   */
  readonly provisional?: boolean;
}

/** The rel8 branch forms (their target must be within -128..127 bytes of the next instruction). */
const REL8: ReadonlySet<number> = new Set(Object.entries(Code as unknown as Record<string, number>).filter(([k]) => k.endsWith("_rel8_64")).map(([, v]) => v));

export class Assembler {
  private readonly items: Item[] = [];
  /** label name → index of the item it precedes (items.length = the end of the block). */
  private readonly labelAt = new Map<string, number>();

  constructor(readonly name = "block") {}

  get length(): number {
    return this.items.length;
  }

  /** Define `name` at the current position (the next instruction emitted). */
  label(name: string): this {
    if (this.labelAt.has(name)) throw new AsmError("duplicate-label", `${this.name}: label '${name}' defined twice`);
    this.labelAt.set(name, this.items.length);
    return this;
  }

  /** Append an instruction; `make` creates it with iced (it is called at assembly and then freed). */
  emit(make: () => Instruction, note?: string): this {
    this.items.push({ kind: "insn", make, note });
    return this;
  }

  /** Append a near branch (`Code.Call_rel32_64`, `Code.Jmp_rel32_64`, `Code.Je_rel32_64`, ...). */
  branch(code: BranchCode, target: Target, note?: string): this {
    this.items.push({ kind: "branch", code, target, note });
    return this;
  }

  call(target: Target, note?: string): this {
    return this.branch(Code.Call_rel32_64, target, note);
  }

  jmp(target: Target, note?: string): this {
    return this.branch(Code.Jmp_rel32_64, target, note);
  }

  /** Encode at `base`. Throws AsmError naming the block, instruction index and label or symbol. */
  assemble(base: bigint, opts: AssembleOptions = {}): Assembled {
    // 1. Resolve targets before iced sees them: label ids for labels, addresses for the rest.
    const labelIds = new Map<number, bigint>(); // item index → label id
    let nextId = 1n;
    for (const at of new Set(this.labelAt.values())) labelIds.set(at, nextId++);
    const placeholders = new Set<number>(); // provisional: rel8 branches sent to the next item
    const targets: (bigint | undefined)[] = this.items.map((it, i) => {
      if (it.kind !== "branch") return undefined;
      const t = it.target;
      if ("label" in t) {
        const at = this.labelAt.get(t.label);
        if (at === undefined) throw new AsmError("unknown-label", `${this.name}: instruction ${i} branches to unknown label '${t.label}'`);
        if (at === this.items.length) throw new AsmError("end-label-target", `${this.name}: instruction ${i} branches to label '${t.label}', which marks the end of the block`);
        if (opts.provisional && REL8.has(it.code)) {
          const to = i + 1 < this.items.length ? i + 1 : i; // the next item, or itself when last
          if (!labelIds.has(to)) labelIds.set(to, nextId++);
          placeholders.add(i);
          return labelIds.get(to)!;
        }
        return labelIds.get(at)!;
      }
      const addr = "symbol" in t ? opts.symbols?.(t.symbol) : t.address;
      if (addr === undefined) throw new AsmError("unknown-symbol", `${this.name}: instruction ${i} branches to unknown symbol '${(t as { symbol: string }).symbol}'`);
      if (BigInt.asUintN(64, addr) < MIN_ABSOLUTE_TARGET) throw new AsmError("target-address", `${this.name}: instruction ${i} branches to ${hex64(addr)}, below 64 KiB (reserved for label ids)`);
      return BigInt.asUintN(64, addr);
    });

    // 2. Encode with iced.
    const be = new BlockEncoder(64, BlockEncoderOptions.DontFixBranches);
    let bytes: Uint8Array;
    try {
      this.items.forEach((it, i) => {
        let ins: Instruction;
        try {
          ins = it.kind === "insn" ? it.make() : Instruction.createBranch(it.code, targets[i]!);
        } catch (e) {
          throw new AsmError("encode", `${this.name}: instruction ${i}${it.note ? ` (${it.note})` : ""}: ${(e as Error).message}`);
        }
        try {
          const id = labelIds.get(i);
          if (id !== undefined) ins.ip = id;
          be.add(ins);
        } finally {
          ins.free();
        }
      });
      try {
        bytes = be.encode(BigInt.asUintN(64, base));
      } catch (e) {
        throw new AsmError("encode", `${this.name}: encoding at ${hex64(base)} failed: ${(e as Error).message}`);
      }
    } finally {
      be.free();
    }

    // 3. Decode back: with DontFixBranches there is exactly one instruction per item.
    const insns: AssembledInsn[] = [];
    forEachInstruction(bytes, base, (ins) => {
      const i = insns.length;
      const item = this.items[i];
      if (item === undefined || ins.isInvalid) throw new AsmError("verify", `${this.name}: decoding the encoded block did not give one instruction per item (at ${hex64(ins.ip)})`);
      insns.push({ index: i, address: ins.ip, length: ins.length, note: item.note });
      if (item.kind === "branch") targets[i] = ins.nearBranch64; // checked below, once labels have addresses
    });
    if (insns.length !== this.items.length) throw new AsmError("verify", `${this.name}: ${this.items.length} items encoded to ${insns.length} instructions`);

    const end = BigInt.asUintN(64, base) + BigInt(bytes.length);
    const labels = new Map<string, bigint>();
    for (const [name, at] of this.labelAt) labels.set(name, at === insns.length ? end : insns[at]!.address);
    // 4. Every branch must land where we meant it to.
    this.items.forEach((it, i) => {
      if (it.kind !== "branch" || placeholders.has(i)) return;
      const t = it.target;
      const want = "label" in t ? labels.get(t.label)! : "symbol" in t ? BigInt.asUintN(64, opts.symbols!(t.symbol)!) : BigInt.asUintN(64, t.address);
      if (targets[i] !== want) throw new AsmError("verify", `${this.name}: instruction ${i} at ${hex64(insns[i]!.address)} branches to ${hex64(targets[i]!)}, expected ${hex64(want)}`);
    });
    return { base: BigInt.asUintN(64, base), bytes, end, insns, labels };
  }
}
