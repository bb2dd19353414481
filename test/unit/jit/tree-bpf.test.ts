// Which trees take the programs the model makes (jit/tree/backend.ts modelBpfDiffers()): read from
// the tree's headers, as 7.2 and 6.12 write them (include/linux/filter.h's BPF_REG_AX,
// include/uapi/linux/bpf.h's BPF_LOAD_ACQ). No tree needed: the headers are written here.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { modelBpfDiffers, treeRegAx } from "../../../jit/tree/backend.ts";
import type { KernelTree } from "../../../jit/tree/index.ts";

/** A tree of two headers: filter.h's BPF_REG_AX line (or none) and whether uapi bpf.h has BPF_LOAD_ACQ. */
function fakeTree(regAx: string | undefined, loadAcq: boolean): KernelTree {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-headers-"));
  mkdirSync(join(dir, "include/linux"), { recursive: true });
  mkdirSync(join(dir, "include/uapi/linux"), { recursive: true });
  if (regAx !== undefined) writeFileSync(join(dir, "include/linux/filter.h"), `#define BPF_REG_FP\tBPF_REG_10\n${regAx}\n#define MAX_BPF_EXT_REG\t\t(MAX_BPF_REG + 2)\n`);
  writeFileSync(join(dir, "include/uapi/linux/bpf.h"), `#define BPF_XCHG\t(0xe0 | BPF_FETCH)\n${loadAcq ? "#define BPF_LOAD_ACQ\t0x100\t/* load-acquire */\n" : ""}`);
  return { dir, version: "test", versionCode: [7, 2, 0], jitSource: "", jitSourceHash: "", config: {} } as unknown as KernelTree;
}

const SEVEN = "#define BPF_REG_AX\t\t(MAX_BPF_REG + 1)", SIX = "#define BPF_REG_AX\t\tMAX_BPF_REG";

test("7.2's headers: BPF_REG_AX is register 12 and load-acquire is there, so the tree takes the model's programs", () => {
  const t = fakeTree(SEVEN, true);
  expect(treeRegAx(t)).toBe(12);
  expect(modelBpfDiffers(t)).toEqual([]);
});

test("6.12's headers: both differences, each saying what the tree's JIT makes of the model's programs", () => {
  const t = fakeTree(SIX, false);
  expect(treeRegAx(t)).toBe(11);
  expect(modelBpfDiffers(t)).toEqual([
    "its BPF_REG_AX is register 11 (include/linux/filter.h), where the model's fix-ups put register 12, another register to its JIT (its reg2hex[] has no entry 12: rax, BPF's R0)",
    "it has no load-acquire or store-release (no BPF_LOAD_ACQ in include/uapi/linux/bpf.h): its JIT takes the model's load-acquire for an atomic add",
  ]);
});

test("each difference alone is enough (a tree with load-acquire before BPF_REG_PARAMS; one without load-acquire)", () => {
  expect(modelBpfDiffers(fakeTree(SIX, true))).toHaveLength(1);
  expect(modelBpfDiffers(fakeTree(SEVEN, false))).toEqual([expect.stringContaining("no load-acquire")]);
});

test("a BPF_REG_AX the harness cannot read, or no filter.h, is a difference, not a guess", () => {
  for (const t of [fakeTree("#define BPF_REG_AX\t\tSOMETHING_ELSE", true), fakeTree(undefined, true)]) {
    expect(treeRegAx(t)).toBeUndefined();
    expect(modelBpfDiffers(t)).toEqual(["its include/linux/filter.h defines BPF_REG_AX in no form the harness reads"]);
  }
});
