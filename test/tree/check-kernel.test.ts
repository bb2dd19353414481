// `--jit kernel`: campaigns, runs and listings on the tree's own JIT, and the proof that such a
// campaign can fail: copies of the tree's bpf_jit_comp.c patched the two ways a JIT developer
// might break it (issue 12: the stack reservation 8 bytes short; r9 not saved around a call)
// must fail `check --jit kernel` with a small shrunk counterexample naming the effect. Needs a
// prepared tree; without one the file prints one line and skips.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { cli } from "../helpers/cli.ts";
import { modelBpfDiffers, treeHasPrivateStacks } from "../../jit/tree/backend.ts";
import { defaultTreeDir, TREE_VERSIONS } from "../../jit/tree/index.ts";
import { otherTree, patched, PATCHES, treeOrSkip } from "./helpers.ts";
import { hostTimeout } from "../helpers/runs.ts";

const tree = treeOrSkip();


/** A campaign's JSON result (a failure's report included). */
interface CheckJson {
  ok: boolean;
  jit: string;
  runs: number;
  failure?: { what: string; message: string };
  plan?: { programs: { funcs: { body: unknown[] }[] }[] };
  replay?: string;
  saved?: string;
  report?: string;
}

// A tree whose BPF is not the model's (6.12) runs none of the model's programs: the refusal is
// tested below on it, the campaigns on the main tree when it does take them.
const takes = (t: typeof tree) => t !== undefined && modelBpfDiffers(t).length === 0;
const refusing = [tree, tree === undefined ? undefined : otherTree(tree)].find((t) => t !== undefined && !takes(t));

if (refusing !== undefined) describe(`--jit kernel on ${refusing.dir} (${refusing.version}), which does not take the model's programs`, () => {
  const tf = ["--jit", "kernel", "--kernel-tree", refusing.dir];
  test("check, run, disasm, replay and matrix are an input error naming each difference and jit-diff; kernel info lists no strategy", async () => {
    const lines = (out: string) => out.split("\n").filter((l) => l.startsWith("  - "));
    const said = [
      `  - its BPF_REG_AX is register 11 (include/linux/filter.h), where the model's fix-ups put register 12, another register to its JIT (its reg2hex[] has no entry 12: rax, BPF's R0)`,
      `  - it has no load-acquire or store-release (no BPF_LOAD_ACQ in include/uapi/linux/bpf.h): its JIT takes the model's load-acquire for an atomic add`,
    ];
    for (const args of [["check", "--strategy", "baseline", "--runs", "5", "--seed", "1"], ["run", "test/scenarios/nested.json"], ["disasm", "test/scenarios/nested.json"],
      ["replay", "test/corpus/split-stack-truncated-20261124.json"], ["matrix", "--runs", "1"]]) {
      const r = await cli(...args, ...tf);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.out).toContain(`--jit kernel: the kernel tree ${refusing.dir} (${refusing.version}) does not take the programs the model makes`);
      expect(lines(r.out)).toEqual(said);
      expect(r.out).toContain(`npx stackcheck jit-diff --kernel-tree ${refusing.dir}`);
    }
    const info = await cli("kernel", "info", "--kernel-tree", refusing.dir);
    expect(info.code).toBe(0);
    expect(info.out).toContain("strategies (--jit kernel): none; the tree does not take the programs the model makes (7.2's), only jit-diff runs on it:");
    expect(lines(info.out)).toEqual(said);
  }, hostTimeout(120_000));
});

if (tree !== undefined && takes(tree)) describe(`--jit kernel on ${tree.dir} (${tree.version})`, () => {
  const t = tree;
  const tf = ["--jit", "kernel", "--kernel-tree", t.dir];
  const strategies = treeHasPrivateStacks(t) ? ["r9-private", "baseline"] : ["baseline"];

  test.each(strategies)("check --strategy %s passes on the tree's own JIT, and the report names the tree and its JIT's hash", async (s) => {
    const r = await cli("check", "--strategy", s, ...tf, "--runs", "40", "--seed", "11");
    expect(r.out).toContain("PASS: 40 scenarios");
    expect(r.out).toContain(`jit: kernel ${t.version} at ${t.dir} (bpf_jit_comp.c sha256 ${t.jitSourceHash.slice(0, 12)})`);
    expect(r.code).toBe(0);
  }, hostTimeout(120_000));

  test("kernel info names the tree, its JIT's hash, the strategies it implements and its shim; kernel fetch of a fetched tree prints its path last", async () => {
    const info = await cli("kernel", "info", "--kernel-tree", t.dir);
    expect(info.code).toBe(0);
    expect(info.out).toContain(`kernel ${t.version} at ${t.dir} (bpf_jit_comp.c sha256 ${t.jitSourceHash.slice(0, 12)})`);
    expect(info.out).toContain(`strategies (--jit kernel): ${strategies.join(", ")}`);
    const fetched = TREE_VERSIONS.find((v) => defaultTreeDir(v) === t.dir);
    if (fetched === undefined) return; // a developer's own tree: nothing to fetch
    const r = await cli("kernel", "fetch", "--version", fetched);
    expect(r.code).toBe(0);
    expect(r.out.trimEnd().split("\n").at(-1)).toBe(t.dir);
  }, hostTimeout(120_000));

  test("a design the tree does not implement is an input error naming what it does implement", async () => {
    const r = await cli("check", "--strategy", "split-stack", ...tf, "--runs", "5", "--seed", "1");
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/strategy 'split-stack' is not what the kernel tree .* implements; with --jit kernel use (r9-private or )?baseline/);
  });

  test("run and disasm of a scenario file: the same listing as the TypeScript JIT's, but for the header naming the tree", async () => {
    for (const s of strategies) {
      const ts = await cli("disasm", "test/scenarios/nested.json", "--strategy", s);
      const k = await cli("disasm", "test/scenarios/nested.json", "--strategy", s, ...tf);
      expect(k.code).toBe(0);
      const body = (x: string) => x.split("\n").filter((l) => !l.startsWith("; jit: ")).join("\n");
      expect(k.out).toContain(`; jit: kernel ${t.version}`);
      expect(body(k.out)).toBe(body(ts.out));
      const run = await cli("run", "test/scenarios/nested.json", "--strategy", s, ...tf);
      expect(run.out).toContain(`jit kernel ${t.version}`);
      expect(run.out).toContain("verdict: PASS");
      expect(run.code).toBe(0);
    }
  }, hostTimeout(120_000));

  test.skipIf(!treeHasPrivateStacks(t))("README finding 6 with the tree's own JIT: may_goto under its private stack looks for its budget through rbp; R4 comes back as the clock", async () => {
    // (the budget cut short, may-goto-private-stack.json, is checked with the TypeScript JIT in
    // test/unit/harness/may-goto-private-stack.test.ts; the same code is lowered byte for byte)
    const clobber = await cli("run", "test/scenarios/may-goto-clobber.json", "--strategy", "r9-private", ...tf);
    expect(clobber.out).toMatch(/FAIL semantics: loop returned 0000000e072e0a80; the reference interpreter gives 0000000000000000/);
    expect(clobber.code).toBe(1);
    const sound = await cli("run", "test/scenarios/may-goto-clobber.json", "--strategy", "baseline", ...tf);
    expect(sound.out).toContain("verdict: PASS");
  }, hostTimeout(120_000));

  test("README finding 9 with the tree's own JIT: a 32-bit cmpxchg on a path the verifier prunes keeps rax's upper half (the JIT adds no zero-extension of its own)", async () => {
    const r = await cli("run", "test/scenarios/cmpxchg-zext-prune.json", ...tf);
    expect(r.out).toContain("FAIL semantics: zext returned 00000000ffffffff; the reference interpreter gives 0000000000000000");
    expect(r.code).toBe(1);
  }, hostTimeout(120_000));

  test.skipIf(!treeHasPrivateStacks(t))("README finding 8 with the tree's own JIT: a uprobe program's private stack, written by a second task's run of it", async () => {
    const r = await cli("run", "test/scenarios/uprobe-sleep-two-tasks.json", "--strategy", "r9-private", ...tf);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL memory: .* task 1 \(inside probe through uprobe\) writes into the private probe\/main stack .* live data of task 0/);
    expect(r.out).toContain("FAIL semantics: probe returned 0000000000000009; the reference interpreter gives 0000000000000008");
    expect((await cli("run", "test/scenarios/uprobe-sleep-two-tasks.json", "--strategy", "baseline", ...tf)).out).toContain("verdict: PASS");
  }, hostTimeout(120_000));

  test.skipIf(!treeHasPrivateStacks(t))("README finding 12 with the tree's own JIT: one program attached through two paths, run again by an IRQ over its own private stack", async () => {
    for (const [f, task, irq] of [["uprobe-kprobe-link", "uprobe", "kprobe"], ["syscall-tp-link", "tp_faultable", "tracepoint"]] as const) {
      const r = await cli("run", `test/scenarios/${f}.json`, "--strategy", "r9-private", ...tf);
      expect(r.code, f).toBe(1);
      expect(r.out).toMatch(new RegExp(`FAIL memory: .*\\(probe through ${irq}, called from .* lands in the private probe/main stack .* written by .*\\(probe through ${task}, called from .*which is still live`));
      expect(r.out).toContain("FAIL semantics: probe returned 0000000000000009; the reference interpreter gives 0000000000000008");
      expect((await cli("run", `test/scenarios/${f}.json`, "--strategy", "baseline", ...tf)).out, f).toContain("verdict: PASS");
    }
  }, hostTimeout(120_000));

  test.skipIf(!treeHasPrivateStacks(t))("README finding 11 with the tree's own JIT: a struct_ops program under 64 bytes of stack has no recursion counter, one of 64 is refused", async () => {
    const small = await cli("run", "test/scenarios/struct-ops-self-nest-small-stack.json", "--strategy", "r9-private", ...tf);
    expect(small.code).toBe(1);
    expect(small.out).toMatch(/result: fault: write of guard page .* in region 'task stack guard \(low\)'/);
    expect(small.out).toMatch(/checks \((\d{3}) BPF invocations\)/);
    const priv = await cli("run", "test/scenarios/struct-ops-self-nest-private-stack.json", "--strategy", "r9-private", ...tf);
    expect(priv.out).toContain("result: completed, rax 0xfffffffffffffff1");
    expect(priv.out).toContain("verdict: PASS");
  }, hostTimeout(120_000));

  test("matrix on the tree's JIT: its replay line for a failing cell keeps --jit kernel and the tree", async () => {
    const r = await cli("matrix", "--runs", "1", "--seed", "3", "--unwinder", "frame", ...tf);
    expect(r.out).toContain(`A failing cell replays with: npx stackcheck replay --strategy <s> --unwinder <u> --jit kernel --kernel-tree ${t.dir} --seed 3 --path <path>`);
  }, hostTimeout(120_000));

  test.skipIf(!treeHasPrivateStacks(t))("replay of a corpus file: the designs it lists that the tree implements, the others said to be left out; none of them is an input error", async () => {
    const r = await cli("replay", "test/corpus/r9-private-uprobe-two-tasks-memory-1.json", ...tf);
    expect(r.out).toMatch(/r9-private +expected memory +got memory/);
    expect(r.out).toMatch(/baseline +expected pass +got pass/);
    expect(r.out).toContain("left out: split-stack, full-private, rbp-private, split-double-frame, limited-recursion, r9-no-save (not designs the tree's JIT implements)");
    expect(r.code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-replay-"));
    const only = join(dir, "split-only.json");
    const e = JSON.parse(readFileSync("test/corpus/split-stack-truncated-20261124.json", "utf8")) as { expect: Record<string, string> };
    writeFileSync(only, JSON.stringify({ ...e, expect: { "split-stack": e.expect["split-stack"] } }));
    const none = await cli("replay", only, ...tf);
    expect(none.code).toBe(2);
    expect(none.out).toContain(`replay: ${only} lists split-stack, none of them a design the tree's JIT implements (baseline, r9-private); replay it without --jit kernel`);
  }, hostTimeout(120_000));

  test("the stack reservation 8 bytes short (sub rsp, round_up(depth, 8) - 8): a one-function counterexample, the callee-saved register the BPF stack overwrote", async () => {
    const short = patched(t.dir, "short-reservation", PATCHES.shortReservation);
    const saveTo = mkdtempSync(join(tmpdir(), "stackcheck-kernel-save-"));
    const r = await cli("check", "--strategy", "baseline", "--jit", "kernel", "--kernel-tree", t.dir, "--jit-source", short, "--runs", "200", "--seed", "1", "--json", "--save", saveTo);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as CheckJson;
    expect(j.ok).toBe(false);
    expect(j.jit).toContain(`with ${short} for its bpf_jit_comp.c`);
    // The shrunk plan: one program of one function. Its lowest stack slot is where the reservation
    // ends; push rbx (the JIT saves callee-saved registers below the reservation) lands on it,
    // so a store there overwrites the caller's rbx, which the program's return hands back changed.
    expect(j.plan!.programs).toHaveLength(1);
    expect(j.plan!.programs[0]!.funcs).toHaveLength(1);
    expect(j.report).toMatch(/FAIL abi-return: rbx not restored by bpf_prog_\w+_main/);
    expect(j.replay).toContain(`--jit kernel --kernel-tree ${t.dir} --jit-source ${short}`);
    // the replay line reproduces it
    const again = await cli(...j.replay!.replace(/^npx stackcheck /, "").split(" "));
    expect(again.code).toBe(1);
    expect(again.out).toContain("FAIL abi-return: rbx not restored");
    expect(again.out).toContain(`jit: kernel ${t.version} at ${t.dir} with ${short} for its bpf_jit_comp.c`);
    // Saved, it says which JIT found it, and expects each design the tree implements to fail
    // or pass as it does under that JIT (under the TypeScript JIT, baseline passes: the saved
    // file used to expect that, and its replay said the counterexample passed).
    const saved = JSON.parse(readFileSync(j.saved!, "utf8")) as { found: { failure: string; jit?: { backend: string; jitSource?: string } }; expect: Record<string, string> };
    expect(saved.found.jit).toMatchObject({ backend: "kernel", jitSource: short });
    const failure = saved.found.failure;
    expect(failure).not.toBe("pass");
    expect(saved.expect).toEqual({ baseline: failure, ...(treeHasPrivateStacks(t) ? { "r9-private": saved.expect["r9-private"] } : {}) });
    const there = await cli("replay", j.saved!, "--jit", "kernel", "--kernel-tree", t.dir, "--jit-source", short);
    expect(there.out).toMatch(new RegExp(`baseline +expected ${failure} +got ${failure}\n`));
    expect(there.code).toBe(0);
    const here = await cli("replay", j.saved!);
    expect(here.out).toMatch(new RegExp(`baseline +expected ${failure} +got pass +MISMATCH`));
    expect(here.out).toContain(`found with the kernel's JIT (kernel ${t.version} at ${t.dir} with ${short}`);
    expect(here.out).toContain(`give --jit kernel --kernel-tree ${t.dir} --jit-source ${short} to replay it there`);
    expect(here.code).toBe(1);
    // and a selftest exported from it on the TypeScript JIT says whose listing it holds
    const exported = await cli("export", "--selftest", j.saved!);
    expect(exported.code).toBe(0);
    expect(exported.out.replace(/\n \* {0,3}/g, " ")).toContain(`found with the kernel's JIT: kernel ${t.version} at ${t.dir} with ${short}`);
  }, hostTimeout(240_000));

  test.skipIf(!treeHasPrivateStacks(t))("r9 not saved around calls (push_r9/pop_r9 skipped): a counterexample of a few instructions whose private-stack load after a helper call reads through the clobbered r9", async () => {
    const nor9 = patched(t.dir, "r9-not-saved", PATCHES.r9NotSaved);
    const r = await cli("check", "--strategy", "r9-private", "--jit", "kernel", "--kernel-tree", t.dir, "--jit-source", nor9, "--runs", "200", "--seed", "1", "--json");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as CheckJson;
    // small: one or two programs (a helper, or a nested program's helper, leaves r9 changed)
    expect(j.plan!.programs.length).toBeLessThanOrEqual(2);
    const body = j.report!.split("\n").filter((l) => /^\s+\d+: /.test(l));
    expect(body.length).toBeLessThanOrEqual(20);
    expect(body.some((l) => /call /.test(l))).toBe(true);
    // the effect: a private-stack access through the clobbered r9 faults, or reads the wrong value
    expect(j.report).toMatch(/\[r9[-+]0x[0-9a-f]+\]|FAIL semantics/);
  }, hostTimeout(240_000));
});
