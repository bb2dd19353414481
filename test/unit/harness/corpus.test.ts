// The regression corpus (design.md §8): every test/corpus/*.json replays under every strategy it
// lists with the verdict it records; bad files are refused with the file and field named.
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { runCampaign } from "../../../harness/campaign.ts";
import { loadCorpusFile, replayEntry, saveCounterexample, verdictName } from "../../../harness/corpus.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import { KernelJit, openTree } from "../../../jit/tree/index.ts";
import { kernelBackend } from "../../../jit/tree/backend.ts";
import { TS_JIT_BMI2 } from "../../../jit/backend.ts";
import { findTree } from "../../tree/helpers.ts";
import { hostTimeout } from "../../helpers/runs.ts";

const dir = fileURLToPath(new URL("../../corpus/", import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
const strategy = (n: string) => BUILTIN_STRATEGIES.find((s) => s.name === n);

describe("test/corpus replays", () => {
  test("holds entries for the broken designs and the harness's own regressions", () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });

  // A file found with the kernel's JIT (found.jit) replays on it: the tree it names (or the
  // default one) and the patched copy of bpf_jit_comp.c it names, when they are here; else it
  // is skipped, saying why.
  const entries = files.map((f) => ({ f, e: loadCorpusFile(join(dir, f)) }));
  const treeFor = (jit: NonNullable<(typeof entries)[number]["e"]["data"]["found"]["jit"]>) => {
    const tree = jit.kernelTree !== undefined && existsSync(jit.kernelTree) ? openTree(jit.kernelTree) : findTree();
    return tree !== undefined && (jit.jitSource === undefined || existsSync(jit.jitSource)) ? tree : undefined;
  };
  for (const { f, e } of entries) {
    const jit = e.data.found.jit;
    const tree = jit === undefined ? undefined : treeFor(jit);
    if (jit !== undefined && tree === undefined) {
      test.skip(`${f}: found with the kernel's JIT (${jit.describe}); skipped: no such tree${jit.jitSource !== undefined ? ` or no ${jit.jitSource}` : ""} here`, () => {});
      continue;
    }
    test(f, async () => {
      const kjit = tree === undefined ? undefined : new KernelJit({ tree, ...(jit?.jitSource !== undefined ? { jitSource: jit.jitSource } : {}) });
      try {
        const bmi2 = e.data.found.bmi2 ?? false;
        const backend = kjit === undefined ? (bmi2 ? TS_JIT_BMI2 : undefined) : kernelBackend(tree!, kjit, jit?.jitSource, { bmi2 });
        const got: Record<string, string> = {};
        for (const name of Object.keys(e.data.expect)) {
          const s = strategy(name);
          if (!s) throw new Error(`${f}: expect names '${name}', which is not a built-in strategy`);
          got[name] = verdictName(replayEntry(e, s, backend));
        }
        expect(got).toEqual(e.data.expect);
        // a counterexample a campaign saved still fails as found; a harness regression (no plan) now passes
        if (e.data.plan !== null) expect(got[e.data.found.strategy]).toBe(e.data.found.failure);
      } finally {
        await kjit?.close();
      }
    }, hostTimeout(120_000));
  }
});

describe("corpus files", () => {
  const tmp = mkdtempSync(join(tmpdir(), "stackcheck-corpus-"));
  const write = (name: string, text: string) => { const p = join(tmp, name); writeFileSync(p, text); return p; };

  test("a bad file is refused with its name and the field", () => {
    const good = JSON.parse(readFileSync(join(dir, files[0]!), "utf8")) as Record<string, unknown>;
    expect(() => loadCorpusFile(write("notjson.json", "{"))).toThrow(/notjson\.json/);
    expect(() => loadCorpusFile(write("v2.json", JSON.stringify({ ...good, version: 2 })))).toThrow(/v2\.json[\s\S]*version: 2 is not supported: this stackcheck reads corpus file version 1$/);
    // an empty expect: nothing to replay against, refused rather than a silent pass
    expect(() => loadCorpusFile(write("empty-expect.json", JSON.stringify({ ...good, expect: {} })))).toThrow(/empty-expect\.json[\s\S]*expect: lists no strategy, so a replay would check nothing/);
    // a scenario file given where a corpus file goes: said to be one, and what runs it
    expect(() => loadCorpusFile(write("plain-scenario.json", JSON.stringify(good.scenario)))).toThrow(/plain-scenario\.json[\s\S]*a scenario file, not a corpus file .*run it with `stackcheck run .*plain-scenario\.json`/);
    expect(() => loadCorpusFile(write("found.json", JSON.stringify({ ...good, found: { ...(good.found as object), unwinder: "dwarf" } })))).toThrow(/found\.unwinder/);
    expect(() => loadCorpusFile(write("scenario.json", JSON.stringify({ ...good, scenario: { version: 1 } })))).toThrow(/scenario\.json \(scenario\)/);
  });

  test("stackcheck check --save writes a file that replays to the same verdicts", () => {
    const s = strategy("split-double-frame")!;
    const r = runCampaign({ strategy: s, unwinder: "frame", policy: "strict", runs: 50, seed: 3 });
    expect(r.ok).toBe(false);
    const cx = r.counterexample!;
    const expectations = { baseline: "pass", [s.name]: verdictName(cx.verdict) };
    const file = saveCounterexample(tmp, cx, { strategy: s.name, unwinder: "frame", policy: "strict", exhaustive: false, seed: 3, path: r.path!, failure: verdictName(cx.verdict) }, expectations);
    const e = loadCorpusFile(file);
    expect(e.data.plan).toEqual(cx.plan);
    expect(verdictName(replayEntry(e, s))).toBe(expectations[s.name]);
    expect(verdictName(replayEntry(e, strategy("baseline")!))).toBe("pass");
  });
});
