// `export --selftest`: the __jited() lines of the exported test match stackcheck's own listing
// under the kernel's matching rules (test_loader.c validate_msgs(), modelled by matchJited()),
// and fail against another design's listing; the matcher itself has test_loader.c's rules.
// (Compiling the test with clang, and comparing what clang assembles with the program, needs
// clang and a tree: test/tree/selftest.test.ts.)
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { loadCorpusFile } from "../../../harness/corpus.ts";
import { exportSelftest, insnWord, jitedPattern, libbpfOrder, matchJited } from "../../../harness/selftest.ts";
import { scenarioOf } from "../../../harness/scenario.ts";
import { planArb, planToScenario } from "../../../generators/index.ts";
import { testProgsListing } from "../../../jit/disasm.ts";
import { buildImage, type Image } from "../../../jit/image.ts";
import { strategy } from "../../helpers/strategies.ts";

const corpusDir = fileURLToPath(new URL("../../corpus/", import.meta.url));

/** The __jited() strings of each exported program, in order (C string escapes undone). */
function jitedOf(c: string): string[][] {
  return c.split(/\n(?=SEC\()/).slice(1).map((block) =>
    [...block.matchAll(/^__jited\("((?:[^"\\]|\\.)*)"\)$/gm)].map((m) => m[1]!.replace(/\\(.)/g, (_, ch: string) => (ch === "t" ? "\t" : ch))));
}

/** A program's listing as test_progs prints it: its functions in the order libbpf loads them. */
const listingOf = (img: Image, p: number) => testProgsListing(libbpfOrder(img.programs[p]!.program).map((fi) => img.programs[p]!.jit.funcs[fi]!.image.bytes));

describe("matchJited: test_loader.c's rules", () => {
  const log = "func #0:\n0:\t55 \tpushq\t%rbp\n1:\t48 89 e5 \tmovq\t%rsp, %rbp\n4:\tc3 \tretq\n";
  test("consecutive lines match; a gap needs `...`; a `{{regex}}` part is a regular expression, the rest literal", () => {
    expect(matchJited(log, ["func #0:", "\tpushq\t%rbp", "\tmovq\t%rsp, %rbp", "\tretq"])).toBeUndefined();
    expect(matchJited(log, ["func #0:", "\tpushq\t%rbp", "\tretq"])).toEqual({ index: 2, pattern: "\tretq", why: "wrong line" });
    expect(matchJited(log, ["func #0:", "\tpushq\t%rbp", "...", "\tretq"])).toBeUndefined();
    expect(matchJited(log, ["\tmovq\t%{{r[a-z]+}}, %rbp"])).toBeUndefined();
    expect(matchJited(log, ["\tmovq\t%r.p, %rbp"])).toEqual({ index: 0, pattern: "\tmovq\t%r.p, %rbp", why: "no match" }); // `.` outside {{}} is literal
    expect(matchJited(log, ["\tretq", "\tpushq\t%rbp"])?.why).toBe("no match"); // in order only
  });

  test("the patterns leave to a regular expression only what a kernel decides: call targets, 64-bit immediates, %gs offsets", () => {
    expect(jitedPattern("\tcallq\t0xffffffffe10000bb")).toBe("\tcallq\t0x{{[0-9a-f]+}}");
    expect(jitedPattern("\tmovabsq\t$0x6000000010b8, %r9")).toBe("\tmovabsq\t$0x{{[0-9a-f]+}}, %r9");
    expect(jitedPattern("\taddq\t%gs:0x10, %r9")).toBe("\taddq\t%gs:0x{{[0-9a-f]+}}, %r9");
    expect(jitedPattern("\tmovl\t$0x7, %ebx")).toBe("\tmovl\t$0x7, %ebx");
    expect(jitedPattern("L0:\tjmp\tL1")).toBe("L0:\tjmp\tL1");
  });
});

describe("exported tests match the listing they were made from, and only that", () => {
  const corpus = readdirSync(corpusDir).filter((f) => f.endsWith(".json"));
  let differing = 0;
  test.each(corpus)("%s: under r9-private and under baseline", (file) => {
    const e = loadCorpusFile(`${corpusDir}${file}`);
    const images = Object.fromEntries(["r9-private", "baseline"].map((n) => [n, buildImage(e.scenario.spec, strategy(n))]));
    for (const [name, img] of Object.entries(images)) {
      const c = exportSelftest(img, { name: "t", failure: "x", strategy: name, source: file });
      const jited = jitedOf(c);
      // one test per program: a second attachment (links) is the same program, exported once
      expect(jited.length).toBe(img.programs.filter((x) => x.linkOf === undefined).length);
      jited.forEach((patterns, p) => {
        expect(matchJited(listingOf(img, p), patterns), `${file} ${name} program ${p}`).toBeUndefined();
        // against the other design's listing of the same program they fail wherever the two differ
        // (a program with a private stack); where the designs emit the same code, they match it
        const other = listingOf(images[name === "baseline" ? "r9-private" : "baseline"]!, p);
        expect(matchJited(other, patterns) === undefined, `${file} ${name} program ${p} against the other design`).toBe(other === listingOf(img, p));
        if (other !== listingOf(img, p)) differing++;
      });
    }
  });

  test("the corpus has programs on which the two designs differ (the mismatch above is checked)", () => expect(differing).toBeGreaterThan(2));

  test("generated scenarios: every program's patterns match its listing; each asm line is an instruction or its bytes", () => {
    fc.assert(fc.property(planArb({ maxPrograms: 3, maxFuncs: 3 }), (plan) => {
      const img = buildImage(scenarioOf(planToScenario(plan), "generated").spec, strategy("r9-private"));
      const c = exportSelftest(img, { name: "g", failure: "x", strategy: "r9-private", source: "generated" });
      jitedOf(c).forEach((patterns, p) => expect(matchJited(listingOf(img, p), patterns)).toBeUndefined());
      // every line of every asm string ends in `;\` (one instruction each)
      for (const m of c.matchAll(/asm volatile \("\t+\\\n((?:.*\\\n)*?)"/g)) {
        for (const l of m[1]!.split("\n").filter(Boolean)) expect(l).toMatch(/^(l\d+_%=:)?\t.+;\t\\$/);
      }
    }), { numRuns: 25 });
  });

  test("functions in the order libbpf loads them (depth first by call site), not the scenario's", () => {
    // the first few programs of generated plans whose subprogs are called out of their order
    const reordered: { img: Image; p: number }[] = [];
    for (const plan of fc.sample(planArb({ maxPrograms: 3, maxFuncs: 4 }), { numRuns: 300, seed: 3 })) {
      const sc = scenarioOf(planToScenario(plan), "generated");
      const ps = sc.programs.flatMap((q, p) => (libbpfOrder(q).some((fi, i) => fi !== i) ? [p] : []));
      if (ps.length === 0) continue;
      const img = buildImage(sc.spec, strategy("baseline"));
      reordered.push(...ps.map((p) => ({ img, p })));
      if (reordered.length >= 3) break;
    }
    expect(reordered.length).toBeGreaterThan(0);
    for (const { img, p } of reordered) {
      const patterns = jitedOf(exportSelftest(img, { name: "o", failure: "x", strategy: "baseline", source: "generated" }))[p]!;
      expect(matchJited(listingOf(img, p), patterns)).toBeUndefined();
      // the scenario's own order is not what the kernel prints
      const own = testProgsListing(img.programs[p]!.jit.funcs.map((f) => f.image.bytes));
      if (own !== listingOf(img, p)) expect(matchJited(own, patterns)).toBeDefined();
    }
  });

  test(".8byte is struct bpf_insn little-endian: code, dst | src << 4, off, imm", () => {
    expect(insnWord({ code: 0x7a, dst: 10, src: 0, off: -128, imm: 3 }).toString(16).padStart(16, "0")).toBe("00000003ff800a7a");
    expect(insnWord({ code: 0x85, dst: 0, src: 1, off: 0, imm: -1 }).toString(16)).toBe("ffffffff00001085");
  });
});
