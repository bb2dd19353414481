// `stackcheck jit-diff` on a prepared tree: the TypeScript JIT equals the tree's, byte for byte,
// under every strategy the tree implements; a patched copy's difference is found, shrunk to a few
// instructions and shown side by side; a second tree of another version (6.12 beside 7.2) shows
// the version difference (no ksym fp_start/fp_end before 6.19). CI's larger run: .ci/run.
import { writeSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { main } from "../../harness/cli/main.ts";
import { treeHasPrivateStacks } from "../../jit/tree/backend.ts";
import { findTree, otherTree, patched, PATCHES, SKIP_LINE } from "./helpers.ts";

const tree = findTree();
if (tree === undefined) {
  writeSync(2, `${SKIP_LINE}\n`);
  test.skip(SKIP_LINE, () => {});
}

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await main(["node", "stackcheck", ...args], (s) => { out += s; });
  return { code, out };
}

const SUMMARY = /^jit-diff: (\d+) functions compared, (\d+) differences$/;
const summary = (out: string) => {
  const m = SUMMARY.exec(out.trimEnd().split("\n").at(-1)!);
  if (!m) throw new Error(`no summary line in:\n${out}`);
  return { functions: Number(m[1]), differences: Number(m[2]) };
};

if (tree !== undefined) describe(`jit-diff on ${tree.dir} (${tree.version})`, () => {
  const t = tree;

  test("the TypeScript JIT equals the tree's on every function: bytes, addrs[], fp_start/fp_end, frame windows, private stacks", async () => {
    const r = await cli("jit-diff", "--kernel-tree", t.dir, "--runs", "150", "--seed", "1");
    const s = summary(r.out);
    expect(s.differences, r.out).toBe(0);
    expect(s.functions).toBeGreaterThan(700);
    expect(r.out).toContain(`strategies ${treeHasPrivateStacks(t) ? "baseline, r9-private" : "baseline"}`);
    expect(r.code).toBe(0);
  }, 120_000);

  test.skipIf(!treeHasPrivateStacks(t))("a copy without push r9/pop r9 around calls: found, shrunk to a few instructions, the missing instructions marked", async () => {
    const nor9 = patched(t.dir, "r9-not-saved", PATCHES.r9NotSaved);
    const r = await cli("jit-diff", "--kernel-tree", t.dir, "--jit-source", nor9, "--runs", "100", "--seed", "3", "--json");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { differences: number; byField: Record<string, number>; first: { strategy: string; fields: string[]; report: string; replay: string } };
    expect(j.differences).toBeGreaterThan(0);
    expect(j.first.strategy).toBe("r9-private");
    expect(j.first.fields).toEqual(expect.arrayContaining(["bytes", "addrs[]"]));
    // the report: the headline, a blank line, the program, a blank line, the listings
    const program = j.first.report.split("\n\n")[1]!.split("\n").filter((l) => /^\s+\d+: /.test(l));
    expect(program.length).toBeLessThanOrEqual(8);
    const marked = j.first.report.split("\n").filter((l) => l.startsWith("≠"));
    expect(marked.map((l) => /push +%r9|pop +%r9/.test(l.split("|")[0]!))).toEqual([true, true]);
    expect(marked.every((l) => l.split("|")[1]!.trim() === "")).toBe(true);
    // the replay line finds the same shrunk difference
    const again = await cli(...j.first.replay.replace(/^npx stackcheck /, "").split(" "));
    expect(again.code).toBe(1);
    expect(again.out).toContain(program.join("\n"));
  }, 120_000);

  const other = otherTree(t);
  test.skipIf(other === undefined)(`a second tree (${other?.version ?? "none"}): the version difference shows, and only it`, async () => {
    const o = other!;
    const r = await cli("jit-diff", "--kernel-tree", o.dir, "--runs", "60", "--seed", "1", "--json");
    const j = JSON.parse(r.out) as { differences: number; byField: Record<string, number>; functions: number };
    const old = o.versionCode[0] < 7;
    if (old) {
      // 6.12 keeps no ksym fp_start/fp_end (0/0); the TypeScript JIT models 7.2's. Bytes, addrs[] and windows agree.
      expect(Object.keys(j.byField)).toEqual(["fp_start/fp_end"]);
      expect(r.code).toBe(1);
    } else {
      expect(j.differences).toBe(0);
    }
  }, 120_000);
});
