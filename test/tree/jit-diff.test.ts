// `stackcheck jit-diff` on a prepared tree: the TypeScript JIT equals the tree's, byte for byte,
// under every strategy the tree implements; a patched copy's difference is found, shrunk to a few
// instructions and shown side by side; a second tree of another version (6.12 beside 7.2) shows
// the version difference (no ksym fp_start/fp_end before 6.19). CI's larger run: .ci/run.
import { describe, expect, test } from "vitest";
import { cli } from "../helpers/cli.ts";
import { treeHasPrivateStacks } from "../../jit/tree/backend.ts";
import { otherTree, patched, PATCHES, treeOrSkip } from "./helpers.ts";
import { hostTimeout } from "../helpers/runs.ts";

const tree = treeOrSkip();


const SUMMARY = /^jit-diff: (\d+) functions compared, (\d+) differences$/;
const summary = (out: string) => {
  const m = SUMMARY.exec(out.trimEnd().split("\n").at(-1)!);
  if (!m) throw new Error(`no summary line in:\n${out}`);
  return { functions: Number(m[1]), differences: Number(m[2]) };
};

if (tree !== undefined) describe(`jit-diff on ${tree.dir} (${tree.version})`, () => {
  const t = tree;

  test("the TypeScript JIT equals the tree's on every function: bytes, addrs[], fp_start/fp_end, frame windows, private stacks", async () => {
    const r = await cli("jit-diff", "--kernel-tree", t.dir, "--runs", "100", "--seed", "1");
    const s = summary(r.out);
    expect(s.differences, r.out).toBe(0);
    expect(s.functions).toBeGreaterThan(400);
    expect(r.out).toContain(`strategies ${treeHasPrivateStacks(t) ? "baseline, r9-private" : "baseline"}`);
    expect(r.code).toBe(0);
  }, hostTimeout(120_000));

  test.skipIf(!treeHasPrivateStacks(t))("a copy without push r9/pop r9 around calls: found, shrunk to a few instructions, the missing instructions marked", async () => {
    const nor9 = patched(t.dir, "r9-not-saved", PATCHES.r9NotSaved);
    const r = await cli("jit-diff", "--kernel-tree", t.dir, "--jit-source", nor9, "--runs", "100", "--seed", "3", "--json");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { differences: number; byField: Record<string, number>; first: { strategy: string; fields: string[]; report: string; replay: string } };
    expect(j.differences).toBeGreaterThan(0);
    expect(j.first.strategy).toBe("r9-private");
    expect(j.first.fields).toEqual(expect.arrayContaining(["bytes", "addrs[]"]));
    // the report: the headline, a blank line, the program, a blank line, the listings
    const block = j.first.report.split("\n\n")[1]!;
    const program = block.split("\n").filter((l) => /^\s+\d+: /.test(l));
    expect(program.length).toBeLessThanOrEqual(8);
    // the TypeScript JIT's push %r9 and pop %r9 around the call stand alone, the patched JIT has neither
    const marked = j.first.report.split("\n").filter((l) => l.startsWith("≠"));
    const left = marked.map((l) => l.split("|")[0]!), right = marked.map((l) => l.split("|")[1]!);
    expect(left.filter((l) => /push +%r9/.test(l))).toHaveLength(1);
    expect(left.filter((l) => /pop +%r9/.test(l))).toHaveLength(1);
    expect(right.some((l) => /%r9/.test(l) && /push|pop/.test(l))).toBe(false);
    // the replay line finds the same shrunk difference
    const again = await cli(...j.first.replay.replace(/^npx stackcheck /, "").split(" "));
    expect(again.code).toBe(1);
    expect(again.out).toContain(block);
  }, hostTimeout(120_000));

  const other = otherTree(t);
  test.skipIf(other === undefined || other.versionCode[0] >= 7)(`a second tree (${other?.version ?? "none"}): the version differences show, and only they`, async () => {
    const o = other!;
    // The straight-line and subprog programs (the instructions 6.12 already had): 6.12 keeps no
    // ksym fp_start/fp_end (0/0) where the model follows 7.2; bytes, addrs[] and windows agree.
    const common = ["--kernel-tree", o.dir, "--runs", "60", "--seed", "1", "--source", "straight-line", "--source", "subprog", "--json"];
    const r = await cli("jit-diff", ...common);
    expect(r.code).toBe(1);
    expect(Object.keys((JSON.parse(r.out) as { byField: Record<string, number> }).byField)).toEqual(["fp_start/fp_end"]);
    const same = await cli("jit-diff", ...common, "--ignore", "fp_start/fp_end");
    expect((JSON.parse(same.out) as { differences: number }).differences).toBe(0);
    expect(same.code).toBe(0);
    // The whole instruction set (and the campaign generator's plans, which use it): 6.12 has no 8-
    // and 16-bit atomics, load-acquire or store-release (unknown opcode), and its BPF_REG_AX is
    // register 11 (7.2 put BPF_REG_PARAMS there), so the 7.2 fix-ups' r12 means another register to it.
    const isa = await cli("jit-diff", "--kernel-tree", o.dir, "--runs", "100", "--seed", "1", "--source", "isa", "--source", "plan", "--ignore", "fp_start/fp_end", "--json");
    const j = JSON.parse(isa.out) as { byField: Record<string, number> };
    expect(j.byField.refused).toBeGreaterThan(0);
    expect(Object.keys(j.byField).every((k) => ["refused", "bytes", "addrs[]", "frame window", "image address"].includes(k))).toBe(true);
  }, hostTimeout(120_000));
});
