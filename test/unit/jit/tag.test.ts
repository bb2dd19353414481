// The program tag in BPF symbol names (bpf_prog_<tag>_<func>): 64-bit FNV-1a over each
// instruction's fields, computed in 32-bit halves; held to the same hash in bigints.
import { expect, test } from "vitest";
import { tag } from "../../../jit/jit.ts";
import type { BpfInsn } from "../../../jit/bpf/instruction.ts";

const reference = (insns: readonly BpfInsn[]) => {
  let h = 0xcbf29ce484222325n;
  for (const x of insns) for (const v of [x.code, x.dst, x.src, x.off & 0xffff, x.imm >>> 0]) h = BigInt.asUintN(64, (h ^ BigInt(v)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
};

test("the tag is 64-bit FNV-1a of code, dst, src, off and imm, instruction by instruction", () => {
  expect(tag([])).toBe("cbf29ce484222325"); // the offset basis
  let seed = 1;
  const r = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let n = 0; n < 500; n++) {
    const insns = Array.from({ length: r() % 20 }, () => ({ code: r() & 0xff, dst: r() & 15, src: r() & 15, off: (r() & 0xffff) - 0x8000, imm: r() | 0 }) as BpfInsn);
    expect(tag(insns)).toBe(reference(insns));
  }
});
