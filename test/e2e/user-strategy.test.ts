// A user's strategy module written from the Strategy interface alone (no built-in spread in):
// it emits the upstream prologue itself and declares its frame window with e.frameReady() and
// e.frameGone(); campaigns under every unwinder give exactly what the built-in baseline gives.
// One that leaves out the frame window is refused with a StrategyError naming the function.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { main } from "../../harness/cli/main.ts";
import { UNWINDERS } from "../../unwinder/index.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await main(["node", "stackcheck", ...args], (s) => { out += s; });
  return { code, out };
}

/** A strategy module from the interface alone; `window: false` leaves out frameReady/frameGone. */
function userModule(window: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-user-"));
  const file = join(dir, "own-design.ts");
  writeFileSync(file, `import type { Strategy } from ${JSON.stringify(join(root, "jit/strategy.ts"))};
const strategy: Strategy = {
  name: "own-design",
  summary: "the upstream prologue, written out by hand",
  privateMemory: () => [],
  frameRegister: () => "rbp",
  prologue(e, f) {
    if (f.opts.ibt) e.endbr64();
    e.nop5(); e.nop3(); e.push("rbp"); e.movRR("rbp", "rsp");
    if (f.opts.ibt) e.endbr64();
    if (f.stackDepth > 0) e.subRspImm32(Math.ceil(f.stackDepth / 8) * 8);
    ${window ? "e.frameReady();" : ""}
    for (const r of f.calleeSaved) e.push(r);
  },
  epilogue(e, f) {
    for (const r of [...f.calleeSaved].reverse()) e.pop(r);
    e.leave();
    ${window ? "e.frameGone();" : ""}
    e.ret();
  },
  call: (_e, _f, emitCall) => emitCall(),
  recursionLimit: 1,
};
export default strategy;
`);
  return file;
}

/** The report without the strategy's name. */
const verdict = (out: string) => out.replace(/\S*own-design(\.ts)?|baseline/g, "S").replace(/\(found after.*\)|in [\d.]+ ?m?s\b/g, "");

describe("a strategy module built from the interface alone", () => {
  test.each([...UNWINDERS])("%s: its campaign is the built-in baseline's, verdict for verdict", async (unwinder) => {
    const mine = await cli("check", "--strategy", userModule(true), "--runs", "40", "--seed", "1", "--unwinder", unwinder);
    const theirs = await cli("check", "--strategy", "baseline", "--runs", "40", "--seed", "1", "--unwinder", unwinder);
    expect(mine.code).toBe(theirs.code);
    expect(verdict(mine.out)).toBe(verdict(theirs.out));
  }, 60_000);

  test("without e.frameReady()/e.frameGone() it is refused, naming the strategy, the function and the missing call", async () => {
    const r = await cli("disasm", "test/scenarios/nested.json", "--strategy", userModule(false));
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/^stackcheck: strategy 'own-design', \w+\/\w+: the prologue must call e\.frameReady\(\) once/);
  });
});
