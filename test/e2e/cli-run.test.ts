// The CLI's run over batches, aimed interrupts and exhaustive mode, and matrix over chosen
// strategies (split from cli.test.ts so that vitest runs the two files side by side).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { cli } from "../helpers/cli.ts";
import { hostTimeout } from "../helpers/runs.ts";

describe("run over several files and directories, corpus files included", () => {
  test("one line per scenario, a summary, exit 1 if one fails; --json: one object per line", async () => {
    const r = await cli("run", "test/scenarios", "test/corpus/r9-private-uprobe-two-tasks-memory-1.json", "--strategy", "r9-private");
    expect(r.code).toBe(1);
    const lines = r.out.trim().split("\n");
    expect(lines).toContain("PASS test/scenarios/nested.json");
    expect(lines.find((l) => l.startsWith("FAIL test/corpus/r9-private-uprobe-two-tasks-memory-1.json: "))).toMatch(/through uprobe/);
    expect(lines.at(-1)).toMatch(/^\d+ scenario\(s\): \d+ passed, \d+ failed, 0 could not be read$/);
    const j = await cli("run", "test/corpus", "--strategy", "baseline", "--json");
    expect(j.code).toBe(0);
    const objs = j.out.trim().split("\n").map((l) => JSON.parse(l) as { schema: number; file: string; ok: boolean });
    expect(objs.length).toBeGreaterThanOrEqual(6);
    for (const o of objs) expect(o).toMatchObject({ schema: 1, ok: true, file: expect.stringMatching(/^test\/corpus\/.*\.json$/) });
  });
  test("a bad file among good ones is its own error line, the others still run; exit 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-batch-"));
    writeFileSync(join(dir, "bad.json"), "{");
    const r = await cli("run", dir, "test/scenarios/nested.json");
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/^ERROR .*bad\.json: 1 problem/m);
    expect(r.out).toContain("PASS test/scenarios/nested.json");
  });
  test("replay <corpus file> prints the table and the full report of the failure as found", async () => {
    const r = await cli("replay", "test/corpus/r9-private-uprobe-two-tasks-memory-1.json");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/r9-private\s+expected memory\s+got memory/);
    expect(r.out).toContain("counterexample: strategy r9-private, unwinder frame, policy strict");
    expect(r.out).toContain("replay: npx stackcheck replay test/corpus/r9-private-uprobe-two-tasks-memory-1.json");
  });
  test("strategies --json", async () => {
    const r = await cli("strategies", "--json");
    const j = JSON.parse(r.out) as { schema: number; strategies: { name: string }[] };
    expect(j.schema).toBe(1);
    expect(j.strategies.map((s) => s.name)).toContain("r9-private");
  });
});

test("matrix compares the strategies and unwinders asked for, a module among them", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-matrix-"));
  const mod = join(dir, "mine.ts");
  writeFileSync(mod, `import { splitStack } from ${JSON.stringify(join(fileURLToPath(new URL("../..", import.meta.url)), "jit/strategies/split-stack.ts"))};\nexport default { ...splitStack, name: "mine" };\n`);
  const r = await cli("matrix", "--strategy", "baseline", "--strategy", mod, "--unwinder", "frame", "--runs", "10", "--seed", "1", "--json");
  expect(r.code).toBe(0);
  const j = JSON.parse(r.out) as { schema: number; cells: { strategy: string; unwinder: string; verdict: string }[] };
  expect(j.cells.map((c) => [c.strategy, c.unwinder, c.verdict])).toEqual([["baseline", "frame", "pass"], ["mine", "frame", "TRUNCATED"]]);
  expect((await cli("matrix", "--unwinder", "gdb")).code).toBe(2);
}, hostTimeout(60_000));

describe("run: aimed interrupts, exhaustive mode, a trace", () => {
  test("--nmi-at takes prog/func:insn N and symbol+0xoff: the step where that instruction first runs, as --trace numbers it", async () => {
    const trace = await cli("run", "test/scenarios/nested.json", "--no-schedule", "--trace");
    const line = trace.out.split("\n").find((l) => / bpf_sc_rw\+0x4 /.test(l))!;
    const step = Number(line.trim().split(/\s+/)[0]);
    const bySymbol = await cli("run", "test/scenarios/nested.json", "--no-schedule", "--nmi-at", "bpf_sc_rw+0x4", "--json");
    const byStep = await cli("run", "test/scenarios/nested.json", "--no-schedule", "--nmi-at", String(step), "--json");
    const raised = (r: { out: string }) => (JSON.parse(r.out) as { raised: { atStep: number; symbol: string }[] }).raised;
    expect(raised(bySymbol)).toEqual(raised(byStep));
    expect(raised(bySymbol)[0]).toMatchObject({ atStep: step, symbol: "bpf_sc_rw+0x4" });
    const byInsn = await cli("run", "test/scenarios/nested.json", "--no-schedule", "--nmi-at", "outer/main:insn 6", "--json");
    expect(raised(byInsn)[0]!.symbol).toMatch(/^bpf_prog_\w+_main\+0x/);
    expect((await cli("run", "test/scenarios/nested.json", "--nmi-at", "outer/nope:insn 1")).out).toMatch(/has no function outer\/nope/);
  });
  test("--exhaustive: one run per boundary and kind, the first failing one's report", async () => {
    const ok = await cli("run", "test/scenarios/nested.json", "--no-schedule", "--exhaustive");
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^exhaustive: \d+ run\(s\); every one passes$/m);
    const bad = await cli("run", "test/scenarios/nested.json", "--no-schedule", "--exhaustive", "--strategy", "split-stack");
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/the run without interrupts already fails/);
  });
});
