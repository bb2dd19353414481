// The regression corpus (design.md §8): every test/corpus/*.json replays under every strategy it
// lists with the verdict it records; bad files are refused with the file and field named.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { runCampaign } from "../../../harness/campaign.ts";
import { loadCorpusFile, replayEntry, saveCounterexample, verdictName } from "../../../harness/corpus.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";

const dir = fileURLToPath(new URL("../../corpus/", import.meta.url));
const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
const strategy = (n: string) => BUILTIN_STRATEGIES.find((s) => s.name === n);

describe("test/corpus replays", () => {
  test("holds entries for the broken designs and the harness's own regressions", () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });

  test.each(files)("%s", (f) => {
    const e = loadCorpusFile(join(dir, f));
    const got: Record<string, string> = {};
    for (const name of Object.keys(e.data.expect)) {
      const s = strategy(name);
      if (!s) throw new Error(`${f}: expect names '${name}', which is not a built-in strategy`);
      got[name] = verdictName(replayEntry(e, s));
    }
    expect(got).toEqual(e.data.expect);
    // a counterexample a campaign saved still fails as found; a harness regression (no plan) now passes
    if (e.data.plan !== null) expect(got[e.data.found.strategy]).toBe(e.data.found.failure);
  });
});

describe("corpus files", () => {
  const tmp = mkdtempSync(join(tmpdir(), "stackcheck-corpus-"));
  const write = (name: string, text: string) => { const p = join(tmp, name); writeFileSync(p, text); return p; };

  test("a bad file is refused with its name and the field", () => {
    const good = JSON.parse(readFileSync(join(dir, files[0]!), "utf8")) as Record<string, unknown>;
    expect(() => loadCorpusFile(write("notjson.json", "{"))).toThrow(/notjson\.json/);
    expect(() => loadCorpusFile(write("v2.json", JSON.stringify({ ...good, version: 2 })))).toThrow(/v2\.json[\s\S]*version/);
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
