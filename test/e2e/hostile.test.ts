// Hostile input (issue 15's "done when", the part that holds today): malformed and huge scenario
// files and bad command lines end with exit 0, 1 or 2 and a message that names the problem,
// never a JavaScript stack trace of stackcheck's own, never exit 3 (our bugs only). Mutations of
// the shipped example: fields dropped, retyped, swapped for huge or odd values, at any depth.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { cli } from "../helpers/cli.ts";
import { hostTimeout } from "../helpers/runs.ts";

const example = JSON.parse(readFileSync(new URL("../scenarios/tick-preempts-bpf.json", import.meta.url), "utf8")) as unknown;
const dir = mkdtempSync(join(tmpdir(), "stackcheck-hostile-"));

/** Every path to a value inside `v`. */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}
const odd = fc.constantFrom<unknown>(null, -1, 2 ** 53, 1e300, "", "x".repeat(10_000), [], {}, true, -0x80000001, Array.from({ length: 5000 }, () => [183, 0, 0, 0, 0]), "__proto__");

function mutate(v: unknown, path: readonly (string | number)[], value: unknown, drop: boolean): unknown {
  if (path.length === 0) return drop ? undefined : value;
  const [k, ...rest] = path;
  const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
  const next = mutate(copy[k!], rest, value, drop);
  if (next === undefined) delete copy[k!];
  else copy[k!] = next;
  return copy;
}

/** What a clean ending looks like: a known exit code, some message, no stack trace, not "internal error". */
function clean(r: { code: number; out: string }): void {
  expect([0, 1, 2]).toContain(r.code);
  expect(r.out.length).toBeGreaterThan(0);
  expect(r.out).not.toMatch(/^\s+at .*\(.*:\d+:\d+\)$/m);
  expect(r.out).not.toMatch(/internal error|harness error/);
}

describe("hostile input ends cleanly", () => {
  const all = paths(example);
  test("mutated scenario files: run and disasm", async () => {
    await fc.assert(fc.asyncProperty(fc.nat(all.length - 1), odd, fc.boolean(), fc.constantFrom("run", "disasm"), async (i, value, drop, cmd) => {
      const file = join(dir, "s.json");
      writeFileSync(file, JSON.stringify(mutate(example, all[i]!, value, drop)) ?? "");
      clean(await cli(cmd, file, "--strategy", "r9-private"));
    }), { numRuns: Number(process.env.HOSTILE_RUNS ?? 40), seed: Number(process.env.HOSTILE_SEED ?? 7) });
  }, hostTimeout(60_000));
  test("files that are not scenarios", async () => {
    for (const text of ["", "{", "[]", "null", "\u0000\u0001", JSON.stringify({ version: 2 }), "1".repeat(100_000)]) {
      const file = join(dir, "t.json");
      writeFileSync(file, text);
      const r = await cli("run", file);
      clean(r);
      expect(r.code).toBe(2);
    }
  });
  test("bad command lines", async () => {
    for (const args of [
      ["run"], ["run", "test/scenarios/nested.json", "--unwinder", "gdb"], ["run", "test/scenarios/nested.json", "--irq-at", "x:y"],
      ["run", "test/scenarios/nested.json", "--nmi-at", "bpf_sc_rw+0xfffff"], ["check", "--strategy", "nope"], ["check", "--strategy", "baseline", "--runs", "-1"],
      ["check", "--strategy", "baseline", "--tasks", "9"], ["replay", "--strategy", "baseline", "--seed", "1", "--path", "a:b"], ["disasm", "0x"], ["disasm", "5"], ["check", "--strategy", "baseline", "--format", "xml"], ["run", "test/scenarios/nested.json", "--json", "--format=text"], ["export", "--selftest", "no-such.json"], ["check", "--strategy", "baseline", "--schedules", "0"], ["check", "--strategy", "baseline", "--exhaustive", "--schedules", "3"], ["export", "--selftest", "package.json"], ["export", "--selftest", "--strategy", "baseline", "--seed", "1", "--path", "x"],
      ["matrix", "--unwinder", "x"], ["bogus-command"], ["jit-diff", "--source", "nope"], ["run", "test/scenarios/nested.json", "--stack-budget", "task=-5"],
    ]) {
      const r = await cli(...args);
      clean(r);
      expect(r.code, args.join(" ")).toBe(2);
    }
  });
});
