// The one place that walks a byte block with iced-x86's decoder: one Decoder and one reused
// Instruction per walk, both freed however the walk ends (toolchain-notes §1, pitfall 3).
import { Decoder, DecoderOptions, Instruction } from "iced-x86";

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
