// iced-x86 for this project's modules, and the one place that walks a byte block with its
// decoder: one Decoder and one reused Instruction per walk, both freed however the walk ends
// (toolchain-notes §1, pitfall 3).
import { createRequire } from "node:module";
import type * as Iced from "iced-x86";

// The package is CommonJS: 0.9 MB of wasm-bindgen glue. An ES import of it makes Node scan the
// whole file for its export names (cjs-module-lexer) before loading it: about 130 ms at every
// start of a command and of each worker thread, against about 40 ms for require() alone.
const iced = createRequire(import.meta.url)("iced-x86") as typeof Iced;
export const { BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, FlowControl, Formatter, FormatterSyntax, Instruction, MemoryOperand, MemorySize, OpKind, Register } = iced;
export type BlockEncoder = Iced.BlockEncoder;
export type Code = Iced.Code;
export type Decoder = Iced.Decoder;
export type FlowControl = Iced.FlowControl;
export type Formatter = Iced.Formatter;
export type Instruction = Iced.Instruction;
export type MemoryOperand = Iced.MemoryOperand;
export type MemorySize = Iced.MemorySize;
export type OpKind = Iced.OpKind;
export type Register = Iced.Register;

/**
 * Decode `bytes` placed at `base`, calling `fn` with each instruction (a reused object: copy what
 * you need). `fn` returning false stops the walk. Invalid bytes are passed to `fn` too
 * (`ins.isInvalid`).
 */
export function forEachInstruction(bytes: Uint8Array, base: bigint, fn: (ins: Instruction) => boolean | void): void {
  const dec = new Decoder(64, bytes, DecoderOptions.None);
  const ins = new Instruction();
  try {
    dec.ip = BigInt.asUintN(64, base);
    while (dec.canDecode) {
      dec.decodeOut(ins);
      if (fn(ins) === false) break;
    }
  } finally {
    ins.free();
    dec.free();
  }
}
