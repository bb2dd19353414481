// The `stackcheck` command: the real bin (as `npx stackcheck` runs it) and the subcommands.
import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { main } from "../../harness/cli/main.ts";
import { cli } from "../helpers/cli.ts";
import { hostTimeout } from "../helpers/runs.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));


describe("stackcheck", () => {
  test("the bin runs as npm install left it (compiled) and from the TypeScript sources alike, and loads a user's strategy module from a directory that is not an ES module package", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-user-"));
    const mod = join(dir, "my-design.ts");
    writeFileSync(mod, `import { r9Private } from ${JSON.stringify(join(root, "jit/strategies/r9-private.ts"))};\nexport default { ...r9Private, name: "my-design", summary: "r9-private under another name" };\n`);
    const bin = (env: Record<string, string>, ...args: string[]) => new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, ["bin/stackcheck.js", ...args], { cwd: root, encoding: "utf8", env: { ...process.env, ...env } }, (e, stdout, stderr) => done({ status: e ? Number((e as { code?: number }).code) : 0, stdout, stderr }));
    });
    // in parallel: the module; --help and a listing compiled (dist/, when `npm install` built it
    // and no source is newer) and from the sources (one command from them: each transpiles the
    // harness through tsx, about 2 s of CPU)
    const fromSource = { STACKCHECK_FROM_SOURCE: "1" };
    const [r, help, listing, listingSrc] = await Promise.all([
      bin({}, "disasm", "test/scenarios/nested.json", "--strategy", mod), bin({}, "--help"),
      bin({}, "disasm", "test/scenarios/nested.json", "--strategy", "r9-private"), bin(fromSource, "disasm", "test/scenarios/nested.json", "--strategy", "r9-private"),
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("; strategy my-design: r9-private under another name");
    expect(r.stdout).toContain("push %r9");
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: stackcheck [options] [command]");
    expect(help.stdout).toContain("jit-diff");
    expect(listing.stdout).toContain("push %r9");
    expect(listingSrc.stdout).toBe(listing.stdout);
  });

  test("disasm prints a GAS listing with addresses", async () => {
    const r = await cli("disasm", "f3 0f 1e fa 0f 1f 44 00 00 55 48 89 e5");
    expect(r.code).toBe(0);
    expect(r.out.split("\n").filter(Boolean).map((l) => l.trim().replace(/\s+/g, " "))).toEqual([
      "ffffffffa0000000 f3 0f 1e fa endbr64",
      "ffffffffa0000004 0f 1f 44 00 00 nopl (%rax,%rax)",
      "ffffffffa0000009 55 push %rbp",
      "ffffffffa000000a 48 89 e5 mov %rsp,%rbp",
    ]);
  });

  test("disasm takes a base address and Intel syntax", async () => {
    const r = await cli("disasm", "--base", "0x400000", "--syntax", "intel", "e8fb0f0000");
    expect(r.out).toContain("0000000000400000");
    expect(r.out).toContain("call 0x401000");
  });

  test("bad bytes are a usage error that says what was expected, exit code 2", async () => {
    const r = await cli("disasm", "zz");
    expect(r.code).toBe(2);
    expect(r.out).toBe("stackcheck: disasm: 'zz' is not instruction bytes in hex (two digits a byte: '55 48 89 e5', or '554889e5'); a scenario file must end in .json\n(see --help)\n");
    // never silently re-paired or skipped: an odd word, an empty one between commas
    expect(await cli("disasm", "5", "48", "8")).toMatchObject({ code: 2, out: expect.stringContaining("'5' is not instruction bytes in hex") });
    expect(await cli("disasm", "55,,48")).toMatchObject({ code: 2, out: "stackcheck: disasm: '55,,48' has an empty byte between commas\n(see --help)\n" });
    // C's way of writing bytes is fine: `0x55, 0x48`
    expect(await cli("disasm", "0x55,", "0x48,")).toMatchObject({ code: 0 });
    // upper-case .JSON is a scenario file name, not hex
    expect(await cli("disasm", "missing.JSON")).toMatchObject({ code: 2, out: expect.stringContaining("missing.JSON: 1 problem") });
  });

  test("errors go to stderr and results to stdout; a usage error is one line and a pointer to --help; a closed pipe ends quietly", async () => {
    const run = (file: string, args: string[]) => new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
      execFile(file, args, { cwd: root, encoding: "utf8" }, (e, stdout, stderr) => done({ status: e ? Number((e as { code?: number }).code) : 0, stdout, stderr }));
    });
    const [bad, missing, piped] = await Promise.all([
      run(process.execPath, ["bin/stackcheck.js", "check", "--strategy", "baseline", "--bogus"]),
      run(process.execPath, ["bin/stackcheck.js", "run", "/nonexistent/s.json", "--strategy", "baseline"]),
      run("sh", ["-c", `"${process.execPath}" bin/stackcheck.js isa --json | head -c 10 >/dev/null`]),
    ]);
    expect([bad.status, bad.stdout, bad.stderr]).toEqual([2, "", "error: unknown option '--bogus'\n(see --help)\n"]);
    expect([missing.status, missing.stdout]).toEqual([2, ""]);
    expect(missing.stderr).toMatch(/^stackcheck: \/nonexistent\/s\.json: 1 problem/);
    expect(piped.stderr).toBe("");
  });

  test("a bad option value is named", async () => {
    const r = await cli("disasm", "--syntax", "att", "90");
    expect(r.code).toBe(2);
    expect(r.out).toContain("option '--syntax <syntax>' argument 'att' is invalid");
  });

  test("an unknown command fails", async () => {
    const r = await cli("frobnicate");
    expect(r.code).toBe(2);
    expect(r.out).toContain("unknown command 'frobnicate'");
  });

  test("disasm <scenario> prints each function like bpftool prog dump jited, with the BPF as comments and symbols", async () => {
    const r = await cli("disasm", "test/scenarios/nested.json", "--strategy", "r9-private");
    expect(r.code).toBe(0);
    expect(r.out).toContain("; strategy r9-private: (b) r9 private frame pointer");
    expect(r.out).toMatch(/^bpf_prog_[0-9a-f]{16}_main:$/m);
    expect(r.out).toMatch(/^   0:\tf3 0f 1e fa +\tendbr64$/m);
    expect(r.out).toContain("; 1: *(u64 *)(r10 -8) = r6");
    expect(r.out).toContain("; 9: call scx_sc_run_nested#1000");
    expect(r.out).toMatch(/movabs \$0x[0-9a-f]+,%r9/);
    expect(r.out).toContain("push %r9");
    expect(r.out).toMatch(/call 0xffffffff810000[0-9a-f]+ <bpf_sc_rw>/);
    expect(r.out).toContain("; program leaf (kprobe), function main, stack 64, private stack 80 bytes per CPU;");
    // the JIT's depth beside the file's when the fix-ups add to it (a timed may_goto's 16 bytes)
    const mg = await cli("disasm", "test/scenarios/may-goto-private-stack.json", "--strategy", "r9-private");
    expect(mg.out).toContain("; program loop (raw_tp), function main, stack 64 (JIT stack 80), private stack 96 bytes per CPU;");
  });

  test("disasm --syntax llvm prints exactly test_progs' listing: func #i, offset, padded bytes, TAB mnemonic TAB operands, local labels", async () => {
    const r = await cli("disasm", "test/scenarios/nested.json", "--strategy", "r9-private", "--syntax", "llvm");
    expect(r.code).toBe(0);
    expect(r.out).toContain("; program outer (struct_ops): main, fold\nfunc #0:\n0:\tf3 0f 1e fa                         \tendbr64\n");
    // a __jited() line of verifier_private_stack.c (7.2) is a substring of a line, verbatim
    for (const line of ["\tmovabsq\t$0x", "\taddq\t%gs:0x10, %r9", "\tpushq\t%r9", "\tpopq\t%r9", "\tcallq\t0x"]) expect(r.out).toContain(line);
    expect(r.out).toMatch(/^func #1:$/m);
    expect(r.out).toMatch(/\taddq\t\$-0x8, %rdi$/m); // signed immediates, as PrintImmHex prints them
  });

  test("disasm reports a bad scenario and an unknown strategy, exit code 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sc-"));
    const bad = `${dir}/bad.json`;
    writeFileSync(bad, JSON.stringify({ version: 1, programs: [], task: "x" }));
    const r = await cli("disasm", bad);
    expect(r.code).toBe(2);
    expect(r.out).toBe(`stackcheck: ${bad}: 1 problem\n  programs: Too small: expected array to have >=1 items\n`);
    const u = await cli("disasm", "test/scenarios/nested.json", "--strategy", "nope");
    expect(u.code).toBe(2);
    expect(u.out).toContain("stackcheck: unknown strategy 'nope'; built in: baseline, r9-private");
  });

  test("strategies lists every built-in design, one line each", async () => {
    const r = await cli("strategies");
    const lines = r.out.trim().split("\n");
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(["baseline", "r9-private", "split-stack", "full-private", "rbp-private", "split-double-frame", "limited-recursion", "r9-no-save"]);
    expect(lines[1]).toContain("merged v6.13");
  });

  test("isa lists every instruction form the machine emulates", async () => {
    const r = await cli("isa", "--json");
    const { schema, forms: rows } = JSON.parse(r.out) as { schema: number; forms: { code: string; op: string; userMode: boolean }[] };
    expect(schema).toBe(1);
    expect(rows.length).toBe(391);
    expect(rows).toContainEqual({ code: "Push_r64", op: "push", userMode: true });
    expect(rows).toContainEqual({ code: "Iretq", op: "iretq", userMode: false });
  });
  describe("run", () => {
    const scenario = join(root, "test/scenarios/nested.json");

    test("the baseline prologue passes: every sample EXACT or WINDOW, every check ok, exit 0", async () => {
      const r = await cli("run", scenario);
      expect(r.code).toBe(0);
      expect(r.out).toContain("strategy baseline, unwinder frame, policy strict");
      expect(r.out).toContain("result: completed, rax 0x436");
      const classes = [...r.out.matchAll(/^sample \d+: .*: (\w+)/gm)].map((x) => x[1]);
      expect(classes).toHaveLength(3);
      for (const c of classes) expect(["EXACT", "WINDOW"]).toContain(c);
      expect(r.out).toContain("semantics, ABI, interrupt stacks and guards: ok");
      expect(r.out).toMatch(/^ {2}sampler: rip [0-9a-f]{16} rsp [0-9a-f]{16} rbp [0-9a-f]{16}$/m);
      expect(r.out).toMatch(/^ {2}regs: {4}ip {2}ffffffff[0-9a-f]{8} sp {2}[0-9a-f]{16} bp {2}[0-9a-f]{16}$/m);
      expect(r.out.trimEnd().endsWith("verdict: PASS")).toBe(true);
    });

    test("split-stack fails, exit 1: every sample loses the frames below the private stack, and the interrupts land on an unknown stack", async () => {
      const r = await cli("run", scenario, "--strategy", "split-stack", "--json");
      expect(r.code).toBe(1);
      const j = JSON.parse(r.out) as { ok: boolean; result: { kind: string; rax: string }; samples: { class: string; failed: boolean; truth: { symbol: string }[]; unwound: { symbol: string }[] }[]; checks: { failures: { check: string; message: string }[] } };
      expect(j.ok).toBe(false);
      expect(j.result).toMatchObject({ kind: "completed", rax: "0x436" });
      expect(j.samples.map((s) => s.failed)).toEqual([true, true, true]);
      for (const s of j.samples) {
        expect(["TRUNCATED", "FLAGGED"]).toContain(s.class);
        expect(s.unwound.length).toBeLessThan(s.truth.length);
        expect(s.unwound.map((u) => u.symbol)).not.toContain("bpf_sc_run+0x43");
      }
      expect(j.checks.failures.map((f) => f.check)).toEqual(["unknown-stack", "unknown-stack"]);
      expect(j.checks.failures[0]!.message).toContain("(a private BPF stack)");
      // the NMI's pt_regs say why: the interrupted sp is on the private stack the check names
      const nmi = (j.samples[0] as unknown as { interrupted: { sp: string } }).interrupted;
      expect(j.checks.failures[1]!.message).toContain(nmi.sp.slice(2));
    });

    test("teaching get_stack_info() the private stacks clears the unknown-stack checks, but split-stack keeps no back-link in the top word, so frame walks still stop there", async () => {
      const r = await cli("run", scenario, "--strategy", "split-stack", "--private-stacks", "per-instance");
      expect(r.code).toBe(1);
      expect(r.out).not.toContain("FAIL unknown-stack");
      expect(r.out.match(/: FLAGGED \(fails\) \[unwinder error\]/g)).toHaveLength(3);
      expect(r.out).toContain("has bad value");
    });

    test("the same scenario under ORC v6.19 with r9-private: every sample FLAGGED (7.2's fp_end is never above fp_start); the reliable policy passes it", async () => {
      const strict = await cli("run", scenario, "--strategy", "r9-private", "--unwinder", "orc-6.19");
      expect(strict.code).toBe(1);
      expect(strict.out.match(/: FLAGGED \(fails\) \[unwinder error\]/g)?.length).toBe(3);
      const reliable = await cli("run", scenario, "--strategy", "r9-private", "--unwinder", "orc-6.19", "--policy", "reliable");
      expect(reliable.code).toBe(0);
      expect(reliable.out).toContain("verdict: PASS");
    });

    test("--stack-budget compares each stack's high-water mark: r9-private keeps the task stack under a budget the baseline exceeds", async () => {
      const base = await cli("run", scenario, "--stack-budget", "task=512", "--json");
      expect(base.code).toBe(1);
      const bj = JSON.parse(base.out) as { checks: { failures: { check: string; message: string }[]; highWater: { stack: string; bytes: number }[] } };
      const task = bj.checks.highWater.find((h) => h.stack === "TASK")!.bytes;
      expect(task).toBeGreaterThan(512);
      expect(bj.checks.failures).toEqual([{ check: "high-water", message: `TASK stack used ${task} bytes, over its budget of 512 (--stack-budget task=512)` }]);
      const r9 = await cli("run", scenario, "--strategy", "r9-private", "--stack-budget", "task=512", "--stack-budget", "private=4096");
      expect(r9.code).toBe(0);
      // r9-private never puts rsp on its private stacks: they are measured by the bytes written there
      const tight = await cli("run", scenario, "--strategy", "r9-private", "--stack-budget", "private=64");
      expect(tight.code).toBe(1);
      expect(tight.out).toMatch(/FAIL high-water: private outer\/main stack used \d+ bytes, over its budget of 64/);
      const bad = await cli("run", scenario, "--stack-budget", "heap=1");
      expect(bad.code).toBe(2);
      expect(bad.out).toContain("--stack-budget 'heap=1': expected <stack>=<bytes>");
    });

    test("an interrupt the run never reaches is reported, not silently dropped", async () => {
      const r = await cli("run", scenario, "--nmi-at", "99999");
      expect(r.out).toMatch(/note: the NMI at step 99999 was never raised: the run ended first \(step \d+\)/);
    });

    test("with --json, input errors are JSON too, exit 2 (a failure found is 1)", async () => {
      const bad = await cli("run", scenario, "--irq-at", "bogus", "--json");
      expect(bad.code).toBe(2);
      expect(JSON.parse(bad.out)).toEqual({ schema: 1, error: { kind: "usage", message: "run: --irq-at 'bogus': expected a step number, symbol+0xoff (a symbol of the image) or prog/func:insn N" } });
      const opt = await cli("run", scenario, "--unwinder", "gdb", "--json");
      expect(opt.code).toBe(2);
      expect((JSON.parse(opt.out) as { error: { kind: string; message: string } }).error).toMatchObject({ kind: "usage", message: expect.stringContaining("option '--unwinder <name>' argument 'gdb' is invalid") });
      const missing = await cli("run", "nope.json", "--json");
      expect((JSON.parse(missing.out) as { error: { kind: string } }).error.kind).toBe("scenario");
    });

    test("bad --irq-at and a missing file are errors that name the problem, exit 2", async () => {
      const bad = await cli("run", scenario, "--irq-at", "bogus");
      expect(bad.code).toBe(2);
      expect(bad.out).toBe("stackcheck: run: --irq-at 'bogus': expected a step number, symbol+0xoff (a symbol of the image) or prog/func:insn N\n(see --help)\n");
      const missing = await cli("run", "nope.json");
      expect(missing.code).toBe(2);
      expect(missing.out).toContain("nope.json");
      expect(missing.out).toContain("cannot read the file");
    });
  });
});

describe("stackcheck check, replay, matrix", () => {
  test("check finds and shrinks split-stack (exit 1); its replay line reproduces the same counterexample", async () => {
    const r = await cli("check", "--strategy", "split-stack", "--seed", "1", "--json");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { ok: boolean; seed: number; path: string; failure: { what: string }; replay: string; report: string };
    expect(j.ok).toBe(false);
    expect(j.failure.what).toBe("TRUNCATED");
    expect(j.report).toContain("truth");
    const args = j.replay.replace(/^npx stackcheck /, "").split(" ");
    const again = await cli(...args, "--json");
    expect(again.code).toBe(1);
    expect((JSON.parse(again.out) as { failure: { what: string } }).failure).toEqual(j.failure);
  });

  test("--no-bpf-prog-active: the generated programs have no kprobe, tracepoint or perf_event type, and the replay line keeps the flag", async () => {
    const r = await cli("check", "--strategy", "split-stack", "--seed", "1", "--no-bpf-prog-active", "--json");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { replay: string; failure: { what: string }; report: string };
    expect(j.replay).toContain("--no-bpf-prog-active");
    expect(j.report).toMatch(/program p\d+ \((raw_tp|tracing|struct_ops)\)/);
    expect(j.report).not.toMatch(/program p\d+ \((kprobe|tracepoint|perf_event)\)/);
    const again = await cli(...j.replay.replace(/^npx stackcheck /, "").split(" "), "--json");
    expect(again.code).toBe(1);
    expect((JSON.parse(again.out) as { failure: { what: string } }).failure).toEqual(j.failure);
  });

  test("--format email: a report for a mailing list, within 80 columns, from check, replay and run; --format json is --json; --json with another format is a usage error", async () => {
    const fits = (text: string) => expect(text.split("\n").filter((l) => l.length > 80), text).toEqual([]);
    const r = await cli("check", "--strategy", "split-stack", "--seed", "1", "--format", "email");
    expect(r.code).toBe(1);
    fits(r.out);
    // (the perf walk from the NMI's regs: first_frame, the interrupted rsp, is on the private stack, which no skip reaches)
    expect(r.out.replace(/\n\s+/g, " ")).toMatch(/the walk stopped: unwind_start\(\) skipped every frame looking for first_frame [0-9a-f]{16} and never reached it \(then: the task's user-mode pt_regs\) \(it is in the private p0\/main stack\)/);
    expect(r.out).toMatch(/^P {2}\+0x00c {2}55 +push %rbp$/m); // the strategy's prologue, marked
    expect(r.out).toMatch(/^E {2}\+0x[0-9a-f]{3} {2}c9 +leave$/m); // and its epilogue
    // the replay command, cut with continuations, still runs as printed
    const replay = /^replay:\n((?:.*\n)*)/m.exec(r.out)![1]!.replace(/ \\\n\s+/g, " ").trim();
    const again = await cli(...replay.replace(/^npx stackcheck /, "").split(" "), "--format", "email");
    expect(again.code).toBe(1);
    fits(again.out);
    const run = await cli("run", "test/scenarios/uprobe-sleep-two-tasks.json", "--strategy", "r9-private", "--format", "email");
    expect(run.code).toBe(1);
    fits(run.out);
    expect(run.out.replace(/\n\s+/g, " ")).toContain("the function check memory names (P: r9-private's prologue, E: its epilogue)");
    expect(run.out).toMatch(/^=> \+0x[0-9a-f]{3} {2}49 89 59 c0 +mov %rbx,-0x40\(%r9\)$/m); // the write the memory check names
    const json = await cli("check", "--strategy", "split-stack", "--seed", "1", "--format", "json");
    expect((JSON.parse(json.out) as { failure: { what: string } }).failure.what).toBe("TRUNCATED");
    const both = await cli("run", "test/scenarios/nested.json", "--json", "--format", "email");
    expect(both.code).toBe(2);
    expect(both.out).toContain("--json and --format email ask for two layouts");
  });

  test("export --selftest: a corpus file, a scenario file or a campaign's seed and path as a progs/verifier_*.c test; bad input is exit 2", async () => {
    const r = await cli("export", "--selftest", "test/corpus/split-stack-truncated-20261124.json");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\/\/ SPDX-License-Identifier: GPL-2.0\n/);
    expect(r.out).toContain('#include "bpf_misc.h"');
    expect(r.out).toMatch(/^SEC\("[a-z_.]+(\/\w+)?"\)\n__description\("stackcheck split_stack_truncated_20261124: \w+"\)\n__success\n__arch_x86_64\n__jited\("func #0:"\)$/m);
    expect(r.out).toContain('__jited("\\tmovq\\t%r11, %rsp")'); // split-stack's own switch of rsp
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-export-"));
    const file = join(dir, "verifier_x.c");
    const w = await cli("export", "--selftest", "--strategy", "split-stack", "--seed", "1", "--path", "0", "-o", file, "--name", "split_stack_quick_start");
    expect(w.code).toBe(0);
    expect(w.out).toBe(`wrote ${file}: selftest split_stack_quick_start (split-stack's listing)\n`);
    expect(readFileSync(file, "utf8")).toContain("__naked void split_stack_quick_start_p0(void)");
    const scenario = await cli("export", "--selftest", "test/scenarios/nested.json", "--strategy", "r9-private");
    expect(scenario.code).toBe(0);
    expect(scenario.out).toContain('__jited("\\tpushq\\t%r9")');
    for (const args of [["export", "test/scenarios/nested.json"], ["export", "--selftest"], ["export", "--selftest", "x.json", "--seed", "1"], ["export", "--selftest", "test/scenarios/nested.json", "--name", "9lives"], ["export", "--selftest", "--strategy", "baseline", "--seed", "1", "--path", "0"]]) {
      const bad = await cli(...args);
      expect(bad.code, args.join(" ")).toBe(2);
    }
  });

  test("check passes the baseline (exit 0) and prints the coverage of interrupt points", async () => {
    const r = await cli("check", "--strategy", "baseline", "--runs", "20", "--seed", "5");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/PASS: 20 scenarios/);
    expect(r.out).toMatch(/interrupt points hit: .*helper \d+/);
  });

  test("colour follows the writer, not the environment: plain text for a caller's writer (CI sets CI=1), escapes when asked", async () => {
    const args = ["node", "stackcheck", "check", "--strategy", "baseline", "--runs", "2", "--seed", "5"];
    let plain = "";
    expect(await main(args, (s) => { plain += s; })).toBe(0);
    expect(plain).not.toContain("\x1b[");
    let colored = "";
    expect(await main(args, (s) => { colored += s; }, { color: true })).toBe(0);
    expect(colored).toContain("\x1b[32mPASS\x1b[39m: 2 scenarios");
    const ci = spawnSync(process.execPath, ["bin/stackcheck.js", ...args.slice(2), "--json"], { cwd: root, encoding: "utf8", env: { ...process.env, CI: "1", FORCE_COLOR: "1" } });
    expect(ci.status).toBe(0);
    expect(ci.stdout).not.toContain("\x1b[");
    expect(JSON.parse(ci.stdout)).toMatchObject({ ok: true, runs: 2 });
  });

  test("matrix prints every strategy × unwinder", async () => {
    const r = await cli("matrix", "--runs", "1", "--seed", "3");
    expect(r.code).toBe(0);
    const rows = r.out.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| strategy"));
    expect(rows).toHaveLength(8);
    for (const row of rows) expect(row.split("|").filter((c) => c.trim() !== "")).toHaveLength(4);
    expect(r.out).toContain("| strategy | frame | orc-6.13 | orc-6.19 |");
  });

  test("bad campaign options are errors that name the problem, exit 2", async () => {
    expect(await cli("check", "--strategy", "nope")).toMatchObject({ code: 2, out: expect.stringContaining("unknown strategy 'nope'") });
    expect(await cli("check", "--strategy", "baseline", "--shard", "3/2")).toMatchObject({ code: 2, out: expect.stringContaining("--shard '3/2'") });
    expect(await cli("replay", "--strategy", "baseline", "--seed", "1", "--path", "x:y")).toMatchObject({ code: 2, out: expect.stringContaining("--path 'x:y'") });
    expect(await cli("replay", "/nonexistent/corpus.json")).toMatchObject({ code: 2, out: expect.stringContaining("/nonexistent/corpus.json") });
  });

  test("replay of a corpus file naming an unknown strategy (expect, found.strategy) names the file and the key; of a scenario file, says to run it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-corpus-names-"));
    const entry = JSON.parse(readFileSync(join(root, "test/corpus/r9-no-save-fault-20261124.json"), "utf8")) as { found: object; expect: object };
    const inExpect = join(dir, "expect.json"), inFound = join(dir, "found.json");
    writeFileSync(inExpect, JSON.stringify({ ...entry, expect: { nosuch: "pass" } }));
    writeFileSync(inFound, JSON.stringify({ ...entry, found: { ...entry.found, strategy: "nosuch" }, expect: { baseline: "pass" } }));
    expect(await cli("replay", inExpect)).toMatchObject({ code: 2, out: expect.stringMatching(new RegExp(`^stackcheck: ${inExpect}: expect key 'nosuch': unknown strategy 'nosuch'`)) });
    for (const args of [["replay", inFound], ["export", "--selftest", inFound]]) {
      expect(await cli(...args), args.join(" ")).toMatchObject({ code: 2, out: expect.stringMatching(new RegExp(`^stackcheck: ${inFound}: found.strategy: unknown strategy 'nosuch'`)) });
    }
    // a seed or path beside a file is refused, as export refuses it (not silently ignored)
    for (const extra of [["--seed", "5"], ["--path", "0"]]) {
      expect(await cli("replay", "test/corpus/r9-no-save-fault-20261124.json", ...extra)).toMatchObject({ code: 2, out: expect.stringContaining("replay: give a corpus file, or --strategy, --seed and --path, not both") });
    }
    expect(await cli("replay", "test/scenarios/nested.json")).toMatchObject({ code: 2, out: expect.stringContaining("a scenario file, not a corpus file (found, plan, scenario, expect): run it with `stackcheck run test/scenarios/nested.json`") });
  });

  test("a --path number no campaign prints (run index or shrink step above 10,000,000) is refused at once, exit 2 naming --path, never a run that does not end", async () => {
    for (const [args, what] of [
      [["replay", "--strategy", "baseline", "--seed", "1", "--path", "99999999999999999999:5"], "the run index 99999999999999999999"],
      [["export", "--selftest", "--strategy", "baseline", "--seed", "1", "--path", "99999999999999999999"], "the run index 99999999999999999999"],
      [["replay", "--strategy", "baseline", "--seed", "1", "--path", "3:10000001"], "shrink step 1 10000001"],
    ] as const) {
      const r = await cli(...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.out).toContain(`--path '${args.at(-1)}': ${what} is above 10000000`);
    }
    // leading zeros are not a larger number; more shrink steps than the case has name no case (exit 2, not a harness error)
    expect((await cli("replay", "--strategy", "baseline", "--seed", "1", "--path", "00000000000", "--json")).code).toBe(0);
    const long = await cli("replay", "--strategy", "baseline", "--seed", "1", "--path", `0${":0".repeat(60)}`);
    expect(long.code).toBe(2);
    expect(long.out).toContain("no case of this campaign is there (expected the path a campaign printed");
  });
});

test("check --workers 2 runs the campaign on two worker threads (seeds S and S+1) and reports a failure with the seed that failed", async () => {
  const pass = await cli("check", "--strategy", "baseline", "--runs", "6", "--seed", "10", "--workers", "2", "--json");
  expect(pass.code).toBe(0);
  expect(JSON.parse(pass.out)).toMatchObject({ ok: true, runs: 6 });
  const fail = await cli("check", "--strategy", "split-stack", "--runs", "6", "--seed", "10", "--workers", "2", "--json");
  expect(fail.code).toBe(1);
  const j = JSON.parse(fail.out) as { seed: number; failure: { what: string } };
  expect([10, 11]).toContain(j.seed);
  expect(j.failure.what).toBe("TRUNCATED");
}, hostTimeout(60_000));

test("check --save --bmi2 records BMI2 code in the file; its replay without --bmi2 says how to replay it as found", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-save-bmi2-"));
  const found = await cli("check", "--strategy", "split-stack", "--bmi2", "--seed", "2", "--save", dir);
  expect(found.code).toBe(1);
  const saved = /saved: (.*\.json)/.exec(found.out)![1]!;
  expect((JSON.parse(readFileSync(saved, "utf8")) as { found: { bmi2?: boolean } }).found.bmi2).toBe(true);
  const plain = await cli("replay", saved);
  expect(plain.out).toContain("found with code for a CPU with BMI2, replayed here without: give --bmi2 to replay it as found");
  const as = await cli("replay", saved, "--bmi2");
  expect(as.out).not.toContain("BMI2, replayed here");
  expect(as.code).toBe(0);
}, hostTimeout(60_000));

test("check --save with a strategy module writes a file that replay reproduces, the module included", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-save-"));
  const mod = join(dir, "my-split.ts");
  writeFileSync(mod, `import { splitStack } from ${JSON.stringify(join(root, "jit/strategies/split-stack.ts"))};\nexport default { ...splitStack, name: "my-split" };\n`);
  const found = await cli("check", "--strategy", mod, "--seed", "2", "--save", dir);
  expect(found.code).toBe(1);
  const saved = /saved: (.*\.json)/.exec(found.out)![1]!;
  const replayed = await cli("replay", saved);
  expect(replayed.out).not.toContain("MISMATCH");
  expect(replayed.out).toMatch(/my-split\s+expected TRUNCATED\s+got TRUNCATED/);
  expect(replayed.code).toBe(0);
}, hostTimeout(60_000));

test("export -o and check --save where nothing can be written: exit 2 naming the path; check's report is printed all the same", async () => {
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-unwritable-"));
  const file = join(dir, "file");
  writeFileSync(file, "x");
  for (const [output, why] of [[dir, "it is a directory"], [join(dir, "no-such-dir", "x.c"), "its directory does not exist"]] as const) {
    const r = await cli("export", "--selftest", "test/corpus/split-stack-truncated-20261124.json", "-o", output);
    expect(r, output).toMatchObject({ code: 2, out: expect.stringContaining(`export: -o ${output}: cannot write the test there: ${why}`) });
  }
  // a regular file as the corpus directory: refused before the campaign runs
  expect(await cli("check", "--strategy", "split-stack", "--seed", "2", "--save", file)).toMatchObject({ code: 2, out: expect.stringMatching(new RegExp(`^stackcheck: check: --save ${file}: not a directory`)) });
  // and one under a regular file
  expect(await cli("check", "--strategy", "split-stack", "--seed", "2", "--save", join(file, "sub"))).toMatchObject({ code: 2, out: expect.stringMatching(new RegExp(`^stackcheck: check: --save ${join(file, "sub")}: a part of the path is not a directory`)) });
  // a file that cannot be written there (a directory in the way): the counterexample's report, then the error
  const blocked = mkdtempSync(join(tmpdir(), "stackcheck-blocked-"));
  mkdirSync(join(blocked, "split-stack-truncated-2.json"));
  const under = await cli("check", "--strategy", "split-stack", "--seed", "2", "--save", blocked);
  expect(under.code).toBe(2);
  expect(under.out).toMatch(/FAIL\n[\s\S]*TRUNCATED[\s\S]*stackcheck: check: --save .*: cannot save the counterexample there: it is a directory/);
}, hostTimeout(60_000));

describe("stackcheck kernel and --jit kernel without a tree", () => {
  const empty = () => mkdtempSync(join(tmpdir(), "stackcheck-nokernel-"));

  /** Run the CLI in this process with some environment variables set (restored after). */
  async function withEnv(env: Record<string, string>, ...args: string[]): Promise<{ code: number; out: string }> {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      return await cli(...args);
    } finally {
      for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
    }
  }

  test("kernel fetch: an unknown version is a usage error; a missing build tool is named with its apt package, before anything slow", async () => {
    const bad = await cli("kernel", "fetch", "--version", "5.4");
    expect(bad.code).toBe(2);
    expect(bad.out).toContain("Allowed choices are 7.2, 6.12");
    // a PATH with no tools at all: the first check names every missing one
    const noTools = await withEnv({ PATH: empty() }, "kernel", "fetch", "--dir", join(empty(), "t"));
    expect(noTools.code).toBe(2);
    expect(noTools.out).toMatch(/flex \(package flex\)/);
    expect(noTools.out).toMatch(/fix: apt-get install -y .*bison/);
  });

  test("--jit kernel with no tree anywhere says how to get one (exit 2); --kernel-tree without --jit kernel is a usage error", async () => {
    const home = empty();
    const r = await withEnv({ HOME: home, XDG_CACHE_HOME: "", STACKCHECK_KERNEL_TREE: "" }, "check", "--strategy", "baseline", "--jit", "kernel", "--runs", "1");
    expect(r.code).toBe(2);
    expect(r.out).toContain("--jit kernel needs a kernel tree");
    expect(r.out).toContain("fix: npx stackcheck kernel fetch");
    const mixed = await cli("run", "test/scenarios/nested.json", "--kernel-tree", home);
    expect(mixed.code).toBe(2);
    expect(mixed.out).toContain("--kernel-tree and --jit-source go with --jit kernel");
  });

  test("a tree whose bpf_jit_comp.c or .config is a directory, and a --jit-source that is one: exit 2 naming the path, not EISDIR", async () => {
    const tree = (jitDir: boolean) => {
      const dir = empty();
      writeFileSync(join(dir, "Makefile"), "VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 0\n");
      writeFileSync(join(dir, "Kconfig"), "");
      mkdirSync(join(dir, "arch/x86/net"), { recursive: true });
      if (jitDir) mkdirSync(join(dir, "arch/x86/net/bpf_jit_comp.c"));
      else writeFileSync(join(dir, "arch/x86/net/bpf_jit_comp.c"), "");
      mkdirSync(join(dir, ".config"));
      return dir;
    };
    const jitDir = tree(true), cfgDir = tree(false), source = empty();
    expect(await cli("kernel", "info", "--kernel-tree", jitDir)).toMatchObject({ code: 2, out: `stackcheck: ${jitDir}: arch/x86/net/bpf_jit_comp.c is not a regular file (a directory?)\n` });
    expect(await cli("kernel", "info", "--kernel-tree", cfgDir)).toMatchObject({ code: 2, out: `stackcheck: ${cfgDir}: .config is not a regular file (a directory?)\n` });
    for (const args of [["kernel", "info", "--jit-source", source], ["run", "test/scenarios/nested.json", "--jit", "kernel", "--kernel-tree", jitDir, "--jit-source", source]]) {
      expect(await cli(...args), args.join(" ")).toMatchObject({ code: 2, out: expect.stringContaining(`--jit-source ${source}: not a regular file (a directory?)`) });
    }
  });

  test.runIf(spawnSync("make", ["--version"]).status === 0)("a tree whose Makefile is not kbuild's: make succeeds but records no compile command, and the message says so (not 'failed (exit code 0)')", async () => {
    const dir = empty();
    const put = (f: string, text = "") => {
      mkdirSync(join(dir, f, ".."), { recursive: true });
      writeFileSync(join(dir, f), text);
    };
    put("Makefile", "VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 0\n");
    put("Kconfig");
    put(".config", "CONFIG_X86_64=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\n");
    for (const f of ["include/generated/autoconf.h", "include/config/auto.conf", "include/generated/asm-offsets.h", "include/generated/bounds.h", "arch/x86/include/generated/asm/orc_hash.h", "scripts/basic/fixdep"]) put(f);
    put("include/config/kernel.release", "7.2.0\n");
    put("arch/x86/net/bpf_jit_comp.c", "int x;\n");
    put("arch/x86/net/bpf_jit_comp.o"); // up to date: make's built-in rule has nothing to do, and exits 0
    const r = await cli("kernel", "info", "--kernel-tree", dir);
    expect(r.code).toBe(2);
    expect(r.out).toContain(`${dir}: make arch/x86/net/bpf_jit_comp.o succeeded but recorded no compile command (no arch/x86/net/.bpf_jit_comp.o.cmd): the top Makefile is not kbuild's`);
  });

  test("jit-diff and kernel info on a directory that is not a tree: exit 2 naming it", async () => {
    const dir = empty();
    for (const args of [["jit-diff", "--kernel-tree", dir, "--runs", "1"], ["kernel", "info", "--kernel-tree", dir]]) {
      const r = await cli(...args);
      expect(r.code).toBe(2);
      expect(r.out).toContain(`${dir} is not a Linux source tree`);
    }
  });
});
