// A user's strategy module written from the Strategy interface alone (no built-in spread in):
// it emits the upstream prologue itself and declares its frame window with e.frameReady() and
// e.frameGone(); campaigns under every unwinder give exactly what the built-in baseline gives.
// One that leaves out the frame window is refused with a StrategyError naming the function.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { main } from "../../harness/cli/main.ts";
import { UNWINDERS } from "../../unwinder/index.ts";
import { hostTimeout } from "../helpers/runs.ts";

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
  }, hostTimeout(60_000));

  test("without e.frameReady()/e.frameGone() it is refused, naming the strategy, the function and the missing call", async () => {
    const r = await cli("disasm", "test/scenarios/nested.json", "--strategy", userModule(false));
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/^stackcheck: strategy 'own-design', \w+\/\w+: the prologue must call e\.frameReady\(\) once/);
  });
});

// A mistake in the user's own module is an input error (exit 2) naming the module, the hook and
// the function, with at most a few lines of the user's own stack; never a trace of ours, never
// exit 3 (stackcheck's own bugs only).
describe("a strategy module behind a boundary", () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-bad-"));
  /** A module spreading the built-in baseline with `fields` (TypeScript source) over it. */
  const variant = (name: string, fields: string): string => {
    const file = join(dir, `${name}.ts`);
    writeFileSync(file, `import { baseline } from ${JSON.stringify(join(root, "jit/strategies/baseline.ts"))};
const strategy = { ...baseline, name: "variant", ${fields} };
export default strategy;
`);
    return file;
  };
  test.each([
    ["throws", `prologue: () => { throw new Error("my bug"); }`, /: prologue\(\) for outer\/main threw Error: my bug$/m],
    ["throws-string", `epilogue: () => { throw "a string"; }`, /: epilogue\(\) for \w+\/\w+ threw "a string"$/m],
    ["bad-register", `frameRegister: () => "r99"`, /: frameRegister\(\) for outer\/main returned "r99"; it must name a register other than rsp/],
    ["null-memory", `privateMemory: () => null`, /: privateMemory\(\) for program outer returned null; it must return an array of requests/],
    ["bigint", `prologue: (e: { aluRI: (...a: unknown[]) => void }) => { e.aluRI("add", true, "rax", 5n); }`, /: prologue\(\) for outer\/main threw EmitterError: e\.aluRI\(\): operand 'imm' is 5n; it must be an integer/],
    // an operand the emitter cannot encode as asked: refused, not encoded as something else (sub rsp,0; push rax; mov rax,rax)
    ["sub-rsp-nan", `prologue: (e: { subRsp: (v: number) => void }) => { e.subRsp(NaN); }`, /: prologue\(\) for outer\/main threw EmitterError: e\.subRsp\(\): operand 'v' is NaN; it must be an integer in -0x80000000\.\.0x7fffffff/],
    ["sub-rsp-huge", `prologue: (e: { subRsp: (v: number) => void }) => { e.subRsp(2 ** 40); }`, /: prologue\(\) for outer\/main threw EmitterError: e\.subRsp\(\): operand 'v' is 1099511627776 \(0x10000000000\)/],
    ["push-xyz", `epilogue: (e: { push: (r: string) => void }) => { e.push("xyz"); }`, /: epilogue\(\) for \w+\/\w+ threw EmitterError: e\.push\(\): operand 'r' is "xyz"; it must be a register name/],
    ["lea-nan", `prologue: (e: { lea: (d: string, b: string, o: number) => void }) => { e.lea("rax", "rbp", NaN); }`, /: prologue\(\) for outer\/main threw EmitterError: e\.lea\(\): operand 'off' is NaN/],
    ["reclimit-2pow64", `recursionLimit: 2 ** 64`, /: 'recursionLimit' 18446744073709552000 must be an integer in 1\.\.2147483647/],
    ["priv-huge", `privateMemory: () => [{ fi: 0, size: 8 * 2 ** 40, framePtrOffset: 8, guards: [] }]`, /: the per-CPU allocations \(\d+ bytes; the largest private memory request, for outer\/main, 8796093022208 bytes\) do not fit the per-CPU area/],
    ["nops-huge", `prologue: (e: { nops: (n: number) => void }, f: never) => { baseline.prologue(e as never, f); e.nops(0x100000); }`, /: the JITed programs \(\d+ bytes in whole pages; the largest function, \w+\/\w+, \d+ bytes\) do not fit the 1048576-byte BPF text area/],
    ["two-calls", `call: (_e: unknown, _f: unknown, emit: () => void) => { emit(); emit(); }`, /: call\(\) for outer\/main emitted the call 2 times; it must call emitCall\(\) exactly once/],
    ["async", `prologue: () => Promise.reject(new Error("async"))`, /: prologue\(\) for outer\/main returned a Promise: the hooks are synchronous/],
    ["getter", `get prologue() { throw new Error("getter"); }`, /: reading its strategy threw Error: getter/],
  ])("%s: exit 2, the module and what was wrong", async (name, fields, message) => {
    const file = variant(name, fields);
    for (const cmd of [["run", "test/scenarios/nested.json"], ["disasm", "test/scenarios/nested.json"]]) {
      const r = await cli(...cmd, "--strategy", file);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toContain(`stackcheck: strategy module ${file}`);
      expect(r.out).toMatch(message);
      expect(r.out).not.toMatch(/data:text|node:internal|harness error|internal error/);
    }
  });
  // (the JIT's checks of what the hooks answered name the strategy by its name, as the frame-window checks do)
  test.each([
    ["priv-stacks-str", `privateMemory: () => [{ fi: 0, size: 64, framePtrOffset: 64, guards: [0], stacks: "abc" }]`, /^stackcheck: strategy 'variant', private memory of outer\/main: 'stacks' "abc" must be an array of \{ begin, end \} offsets \(or absent: one stack, the whole allocation\)$/m],
    ["priv-dupfi", `privateMemory: () => [{ fi: 0, size: 64, framePtrOffset: 64, guards: [0] }, { fi: 0, size: 64, framePtrOffset: 64, guards: [0] }]`, /^stackcheck: strategy 'variant', private memory of outer\/main: requested twice \(requests 0 and 1 of privateMemory\(\)'s answer\); a function has at most one private allocation$/m],
  ])("%s: exit 2, the strategy and the request's field", async (name, fields, message) => {
    const file = variant(name, fields);
    for (const cmd of [["run", "test/scenarios/nested.json"], ["disasm", "test/scenarios/nested.json"]]) {
      const r = await cli(...cmd, "--strategy", file);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toMatch(message);
      expect(r.out).not.toMatch(/cannot be assembled|TypeError|data:text|node:internal|harness error|internal error/);
    }
  });
  test("a syntax error names the file and the parser's complaint (the CLI's loader: the line too)", async () => {
    const file = join(dir, "syntax.ts");
    writeFileSync(file, "export default { name: \n");
    const r = await cli("run", "test/scenarios/nested.json", "--strategy", file);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(new RegExp(`^stackcheck: strategy module ${file} failed to load: .*(Unexpected|Transform failed)`));
    expect(r.out).not.toMatch(/in a cycle/);
  });
  test("under check, the failure is shrunk and still exit 2, with the seed and path", async () => {
    const r = await cli("check", "--strategy", variant("check-throws", `prologue: () => { throw new Error("my bug"); }`), "--runs", "5", "--seed", "1");
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/prologue\(\) for p0\/main threw Error: my bug[\s\S]*\(at seed 1, path \d+; the smallest plan that shows it: \{/);
  });
});

test("a hook that never returns is stopped by the watchdog: exit 2, naming the module, the hook and the function", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-loop-"));
  const file = join(dir, "loops.ts");
  // modules of their own, importing nothing, in an ES module package: loading them takes no
  // time the watchdog could see (one importing this project's sources loads them again through
  // tsx, over a second on a cold cache, which a 1 s --timeout would take for a hang; and the
  // first CommonJS-scoped .ts file takes tsx 100-300 ms to set up for, which under `npm test`'s
  // load with the tree tests took the pool threads' load past 1 s)
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  const standalone = (name: string, prologue: string) => `export default {
  name: "${name}", summary: "a test", recursionLimit: 1, privateMemory: () => [], frameRegister: () => "rbp",
  prologue: () => { ${prologue} }, epilogue: () => {}, call: (_e: unknown, _f: unknown, emit: () => void) => emit(),
};
`;
  writeFileSync(file, standalone("loops", "for (;;) {}"));
  const top = join(dir, "top.ts");
  writeFileSync(top, `for (;;) {}\nexport default {};\n`);
  const exits = join(dir, "exits.ts");
  writeFileSync(exits, standalone("exits", "process.exit(0);"));
  const command = (...args: string[]) => new Promise<{ status: number | null; stderr: string }>((done) => {
    execFile(process.execPath, ["bin/stackcheck.js", ...args], { cwd: root, encoding: "utf8", timeout: 60_000 }, (e, _out, stderr) => done({ status: e ? (e as { code?: number }).code ?? null : 0, stderr }));
  });
  const bin = (...args: string[]) => command("run", "test/scenarios/nested.json", ...args);
  // in parallel: the --name=value forms and the last --timeout; a module whose top level never
  // returns; one that exits the process; a --timeout that is not a number; and the same hooks on
  // check --workers' pool threads, which report to the same watchdog
  const [eq, t, x, bad, pooled, pooledExit] = await Promise.all([
    bin(`--strategy=${file}`, "--timeout", "9", "--timeout=1"), bin("--strategy", top, "--timeout", "1"), bin("--strategy", exits), bin("--strategy", file, "--timeout", "zero"),
    command("check", "--strategy", file, "--workers", "2", "--runs", "10", "--seed", "1", "--timeout", "1"), command("check", "--strategy", exits, "--workers", "2", "--runs", "10", "--seed", "1"),
  ]);
  expect([pooled.status, pooled.stderr]).toEqual([2, `stackcheck: strategy module ${file}: prologue() for p0/main did not return within 1 s (--timeout); stopped\n`]);
  expect(pooledExit.status).toBe(2);
  // whichever thread (seed 1 or 2) ends first
  expect(pooledExit.stderr).toBe(`stackcheck: strategy module ${exits}: a worker thread running it ended (exit code 0) at seed ${/at seed ([12]):/.exec(pooledExit.stderr)?.[1]}: a hook called process.exit()?\n`);
  expect([eq.status, eq.stderr]).toEqual([2, `stackcheck: strategy module ${file}: prologue() for outer/main did not return within 1 s (--timeout); stopped\n`]);
  expect([t.status, t.stderr]).toEqual([2, `stackcheck: strategy module ${top}: loading it did not return within 1 s (--timeout); stopped\n`]);
  expect(x.status).toBe(2);
  expect(x.stderr).toMatch(/^stackcheck: the command ended without a result \(exit code 0\): a strategy module called process\.exit\(\)\?/);
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/^stackcheck: --timeout 'zero': expected a number of seconds above 0/);
}, hostTimeout(60_000));

test("a module whose top-level await never settles: exit 2, naming the module and saying so (not only 'called process.exit()?')", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-tla-"));
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  const file = join(dir, "tla.mjs");
  writeFileSync(file, "await new Promise(() => {});\nexport default {};\n");
  const r = await new Promise<{ status: number | null; stderr: string }>((done) => {
    execFile(process.execPath, ["bin/stackcheck.js", "run", "test/scenarios/nested.json", "--strategy", file], { cwd: root, encoding: "utf8", timeout: 60_000 }, (e, _out, stderr) => done({ status: e ? (e as { code?: number }).code ?? null : 0, stderr }));
  });
  expect([r.status, r.stderr]).toEqual([2, `stackcheck: strategy module ${file}: loading it: its top-level await never settled (nothing was left to run that could settle it; exit code 13)\n`]);
}, hostTimeout(60_000));

test("a module named in a corpus file (expect, found.strategy) runs under the same watchdog: exit 2, naming the module and the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-corpus-loop-"));
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  const file = join(dir, "loops.mjs");
  writeFileSync(file, `export default {
  name: "loops", summary: "a test", recursionLimit: 1, privateMemory: () => [], frameRegister: () => "rbp",
  prologue: () => { for (;;) {} }, epilogue: () => {}, call: (_e, _f, emit) => emit(),
};
`);
  const entry = JSON.parse(readFileSync(join(root, "test/corpus/r9-no-save-fault-20261124.json"), "utf8")) as { found: { strategy: string }; expect: Record<string, string> };
  const inExpect = join(dir, "expect.json");
  writeFileSync(inExpect, JSON.stringify({ ...entry, expect: { [file]: "pass" } }));
  const inFound = join(dir, "found.json");
  writeFileSync(inFound, JSON.stringify({ ...entry, found: { ...entry.found, strategy: file } }));
  const command = (...args: string[]) => new Promise<{ status: number | null; stderr: string }>((done) => {
    execFile(process.execPath, ["bin/stackcheck.js", ...args], { cwd: root, encoding: "utf8", timeout: 60_000 }, (e, _out, stderr) => done({ status: e ? (e as { code?: number }).code ?? null : 0, stderr }));
  });
  const [replayed, exported] = await Promise.all([command("replay", inExpect, "--timeout", "1"), command("export", "--selftest", inFound, "--timeout", "1")]);
  expect([replayed.status, replayed.stderr]).toEqual([2, `stackcheck: strategy module ${file}: prologue() for p0/main did not return within 1 s (--timeout); stopped (named in ${inExpect})\n`]);
  expect([exported.status, exported.stderr]).toEqual([2, `stackcheck: strategy module ${file}: prologue() for p0/main did not return within 1 s (--timeout); stopped (named in ${inFound})\n`]);
}, hostTimeout(60_000));

test("an error escaping a module named `./m.mjs` (relative, as typed) is the module's: exit 2 naming it, not an internal error", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-escape-"));
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  writeFileSync(join(dir, "boom.mjs"), `import { baseline } from ${JSON.stringify(join(root, "jit/strategies/baseline.ts"))};
queueMicrotask(() => { throw new Error("boom"); });
export default { ...baseline, name: "boom" };
`);
  const r = await new Promise<{ status: number | null; stderr: string }>((done) => {
    execFile(process.execPath, [join(root, "bin/stackcheck.js"), "run", join(root, "test/scenarios/nested.json"), "--strategy", "./boom.mjs"], { cwd: dir, encoding: "utf8", timeout: 60_000 }, (e, _out, stderr) => done({ status: e ? (e as { code?: number }).code ?? null : 0, stderr }));
  });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^stackcheck: strategy module \.\/boom\.mjs: an error escaped it( after the command ended)?: boom\n$/);
}, hostTimeout(60_000));

test("a counterexample a module found, saved with check --save, exports with export --selftest (found.strategy is the module's name, its path an expect key)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-saved-"));
  // (an ES module package: the module's imports of this project resolve to the compiled copies, bin/dist-redirect.js)
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  const mod = join(dir, "my-split.ts");
  writeFileSync(mod, `import { splitStack } from ${JSON.stringify(join(root, "jit/strategies/split-stack.ts"))};
export default { ...splitStack, name: "my-split" };
`);
  const command = (...args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, ["bin/stackcheck.js", ...args], { cwd: root, encoding: "utf8", timeout: 60_000 }, (e, stdout, stderr) => done({ status: e ? (e as { code?: number }).code ?? null : 0, stdout, stderr }));
  });
  const found = await command("check", "--strategy", mod, "--runs", "20", "--seed", "1", "--save", dir);
  expect(found.status).toBe(1);
  const saved = /saved: (\S+\.json)/.exec(found.stdout)?.[1];
  expect(saved).toBeDefined();
  expect(JSON.parse(readFileSync(saved!, "utf8")).found.strategy).toBe("my-split");
  const exported = await command("export", "--selftest", saved!);
  expect([exported.status, exported.stderr]).toEqual([0, ""]);
  expect(exported.stdout).toContain("__jited(");
}, hostTimeout(60_000));
