// The machine against the processor it models. Random instruction sequences drawn from every
// user-mode form of the ISA table (test/native/sequences.ts), with random registers, flags and
// memory, run on the machine and natively on this x86-64 CPU (test/native/runner.c, compiled with
// the system `cc`); the final registers, the arithmetic flags the SDM defines, and the data and
// stack memory must match bit for bit; a case may also end in a divide error (#DE, SIGFPE
// natively), which must happen at the same instruction with the same registers. Privileged forms
// (cli, sti, iretq, and int3/ud2, which trap) cannot run in a user process and stay covered by the
// unit tests, as do the BMI2 forms on a CPU without BMI2.
// The properties call fc.check themselves, to shrink a mismatch past fast-check's own minimum
// (shrinkMismatch) before reporting it.
import fc from "fast-check";
import { Code, OpKind, Register } from "iced-x86";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { disassemble } from "../../../jit/disasm.ts";
import { forEachInstruction } from "../../../jit/iced.ts";
import { CF, hex64, REG_NAMES, ZF, type Machine, type RegName } from "../../../harness/machine/index.ts";
import { differences, emulate, flagNames, machineFor, type Emulated } from "../../native/emulate.ts";
import { DRAWN_FORMS, FORMS, formsFor, HOST_SKIPPED_FORMS, USER_FORMS } from "../../native/forms.ts";
import { compileRunner, NativeRunner, NativeToolchainError, type NativeCase, type NativeOutcome } from "../../native/runner.ts";
import { codeCase, rawCase, rawUnit, sequenceCase, SEQ, SEQ_DUMP_NAMES, type RawCase, type SeqProgram } from "../../native/sequences.ts";
import { runs, runsTimeout, hostTimeout } from "../../helpers/runs.ts";
import { Mismatch, shrinkMismatch } from "../../native/minimize.ts";

let runner: NativeRunner;
beforeAll(() => { runner = NativeRunner.start(); }); // no cc: fails every test here with what to install
afterAll(async () => { await runner?.close(); });

/**
 * Run a case both ways; a readable report of every difference, or undefined when they agree.
 * `emulateCase` is the machine's side (a test can plant a bug there; see "a planted bug").
 */
async function compare(raw: RawCase, emulateCase: (c: NativeCase) => Emulated = emulate): Promise<Compared> {
  const p = sequenceCase(raw);
  return judge(raw, p, await runner.run(p.case), emulateCase);
}

type Compared = { p: SeqProgram; native: NativeOutcome; report: string | undefined; diffs: readonly string[] };

/** compare()'s verdict on a case the CPU has run. */
function judge(raw: RawCase, p: SeqProgram, native: NativeOutcome, emulateCase: (c: NativeCase) => Emulated = emulate): Compared {
  const emu = emulateCase(p.case);
  const diffs = differences(emu, native, p.case, SEQ_DUMP_NAMES);
  // A divide error is an outcome the generator means to draw (sequences.ts emitDividend); any
  // other way of not reaching the stop is a defect of the generated case.
  const divideError = native.kind === "signal" && native.signal === "SIGFPE";
  if (native.kind !== "stopped" && !divideError && diffs.length === 0) diffs.push(`case defect: the generated program did not reach the stop natively (${native.kind})`);
  if (diffs.length === 0) return { p, native, report: undefined, diffs };
  const c = p.case;
  const report = [
    "the machine and the CPU differ:",
    ...diffs.map((d) => `  ${d}`),
    "program (Intel syntax; units u0.., subroutines sub<j>; => where the CPU faulted):",
    p.listing(native.kind === "signal" ? native.rip : undefined),
    `initial: ${REG_NAMES.map((r, i) => `${r}=${hex64(c.regs[i]!)}`).join(" ")}`,
    `         flags ${flagNames(c.rflags)}, gs base ${hex64(c.gsBase)}, data/stack from memory seed ${raw.memSeed}`,
  ].join("\n");
  return { p, native, report, diffs };
}

/** The differential property: a Mismatch (what differs, and the report) when they differ. */
const agree = (emulateCase: (c: NativeCase) => Emulated = emulate) => async (raw: RawCase): Promise<void> => {
  const { report, diffs } = await compare(raw, emulateCase);
  if (report !== undefined) throw new Mismatch(report, diffs);
};

const unitOf = (form: number, base: fc.Arbitrary<RawCase["main"][number]> = rawUnit) => base.map((u) => ({ ...u, form }));

// The BMI2 forms run natively only on a CPU with BMI2; elsewhere they are left out, said once.
if (HOST_SKIPPED_FORMS.length > 0) {
  console.warn(`differential: this CPU lacks ${[...new Set(HOST_SKIPPED_FORMS.map((f) => f.requires))].join(", ")} (/proc/cpuinfo flags), so ${HOST_SKIPPED_FORMS.map((f) => f.name).join(", ")} are not drawn; the machine still emulates them (unit tests)`);
}

describe("the machine against the real CPU: instruction sequences", () => {
  test("the generator covers every user-mode form of the ISA table the CPU runs, and only those are left out", () => {
    expect(FORMS.length).toBe(391); // `stackcheck isa`
    expect(FORMS.filter((f) => !f.userMode).map((f) => f.name).sort()).toEqual(["Cli", "Int3", "Iretq", "Sti", "Ud2"]);
    expect(USER_FORMS).toHaveLength(386);
    // Without BMI2, exactly the six VEX shifts are left out.
    expect(USER_FORMS.filter((f) => !formsFor(new Set()).includes(f)).map((f) => f.name)).toEqual([
      "VEX_Shlx_r32_rm32_r32", "VEX_Shlx_r64_rm64_r64", "VEX_Shrx_r32_rm32_r32", "VEX_Shrx_r64_rm64_r64", "VEX_Sarx_r32_rm32_r32", "VEX_Sarx_r64_rm64_r64",
    ]);
    expect(DRAWN_FORMS.length + HOST_SKIPPED_FORMS.length).toBe(USER_FORMS.length);
    const drawn = new Set<number>();
    for (const [i, f] of DRAWN_FORMS.entries()) {
      const [raw] = fc.sample(rawCase(1).chain((c) => unitOf(i).map((u) => ({ ...c, main: [u] }))), { numRuns: 1, seed: i });
      const codes = sequenceCase(raw!).codes;
      expect(codes, f.name).toContain(f.code);
      if (codes.includes(f.code)) drawn.add(f.code);
    }
    console.info(`differential: forms drawn: ${drawn.size} of the ISA table's ${FORMS.length} (${FORMS.length - USER_FORMS.length} privileged${HOST_SKIPPED_FORMS.length ? `, ${HOST_SKIPPED_FORMS.length} need a CPU feature this host lacks` : ""})`);
  });

  // Every form, each with register operands and, where it has an r/m operand, memory under
  // several addressing modes (all of them for the forms that move rsp or rip): a sweep that
  // does not depend on the random draw.
  test("every form, one unit at a time, with register operands and memory under each addressing mode", async () => {
    const cases: { name: string; raw: RawCase; p: SeqProgram }[] = [];
    for (const [i, f] of DRAWN_FORMS.entries()) {
      const hasRm = f.operands.some((o) => o.kind === "rm" || o.kind === "mem");
      const modes = !hasRm ? [] : f.kind === "plain" ? [i % 7, (i + 3) % 7] : [0, 1, 2, 3, 4, 5];
      const variants = [null, ...modes.flatMap((mode) => f.kind === "plain" ? [mode] : [mode, mode + 8])];
      for (const [k, v] of variants.entries()) {
        const arb = rawCase(1).chain((c) => unitOf(i).map((u) => {
          const mem = v === null ? null : { ...(u.mem ?? { base: 3, index: 6, scale: i & 3, disp: -i, target: 8 * i, xval: BigInt(i) }), mode: v & 7, gs: v >= 8 || (i & 2) === 2 };
          return { ...c, main: [{ ...u, mem }] };
        }));
        const [raw] = fc.sample(arb, { numRuns: 1, seed: 16 * i + k });
        cases.push({ name: f.name, raw: raw!, p: sequenceCase(raw!) });
      }
    }
    // every case to the runner at once (it answers in order): a round trip each, on a busy
    // host, waited for a time slice of the runner every time (1.7 s alone, 6.3 s in npm test)
    const natives = await Promise.all(cases.map((c) => runner.run(c.p.case)));
    const failures = cases.flatMap((c, k) => {
      const { report } = judge(c.raw, c.p, natives[k]!);
      return report === undefined ? [] : [`${c.name}:\n${report}`];
    });
    expect(failures, failures.slice(0, 3).join("\n\n")).toEqual([]);
    expect(cases.length).toBeGreaterThan(DRAWN_FORMS.length);
  }, hostTimeout(60_000));

  test("final registers, defined flags and memory match bit for bit", async () => {
    const property = agree();
    const details = await fc.check(fc.asyncProperty(rawCase(), property), { ...runs(500), includeErrorInReport: true });
    expect(details.numRuns).toBeGreaterThan(0);
    if (!details.failed) return;
    // Anything but a mismatch (the runner failed, fast-check gave up): fast-check's own report,
    // the error included.
    if (!(details.errorInstance instanceof Mismatch)) throw new Error(fc.defaultReportMessage(details), { cause: details.errorInstance });
    // A mismatch, shrunk to one instruction, with the seed and path fast-check found it at.
    const { mismatch } = await shrinkMismatch(details.counterexample![0], property);
    throw new Error(`${mismatch.report}\nfound at seed ${details.seed}, path ${details.counterexamplePath}, then shrunk to one instruction (test/native/minimize.ts)`);
  }, runsTimeout(500, 60_000));
});

// The claim that a mismatch shrinks to the single instruction and operand values that differ,
// checked with a bug planted on the emulated side for these tests only: right after the machine
// executes one instruction form, a wrapper corrupts one result. The differential property over
// the same rawCase() arbitrary must fail, and shrink to one unit of that form, no subroutines,
// the operand values the bug needs and zeros elsewhere, with a report of one line naming the
// register or flag. fast-check's shrink alone is greedy and stops at local minima of the raw
// encoding at some seeds; the property shrinks further with shrinkMismatch() (native/minimize.ts:
// each unit alone, with the registers the run reached it with, then the values shrunk again
// without fast-check's context), and these tests run at seeds where fast-check alone stops short.

/** A site of the planted form in the case's code: its first operand's register index (0..15, or -1 for memory) and imm8. */
interface Site { readonly reg: number; readonly imm: number }

/**
 * The machine's side with a bug: after each executed instruction of `code`, `patch` corrupts
 * the machine's state. harness/machine is unchanged; only this case's Machine instance has its
 * step() wrapped (emulate() steps through it).
 */
function plant(code: number, patch: (m: Machine, site: Site, before: Record<RegName, bigint>) => void): (c: NativeCase) => Emulated {
  return (c) => {
    const sites = new Map<bigint, Site>();
    forEachInstruction(c.loads[0]!.bytes, c.loads[0]!.addr, (ins) => {
      if (ins.code !== code) return;
      const reg = ins.opKind(0) === OpKind.Register ? ins.op0Register - Register.RAX : -1;
      const imm = ins.opCount > 1 && ins.opKind(1) === OpKind.Immediate8 ? ins.immediate8 : 0;
      sites.set(ins.ip, { reg, imm });
    });
    const m = machineFor(c);
    const step = m.step.bind(m);
    m.step = () => {
      const site = sites.get(m.rip);
      const steps = m.steps;
      const regs = site === undefined ? undefined : m.regs();
      const r = step();
      if (site !== undefined && m.steps > steps && (r.kind === "paused" || r.kind === "completed")) patch(m, site, regs!);
      return r;
    };
    try {
      return emulate(c, m);
    } finally {
      m.dispose();
    }
  };
}

const U64 = (1n << 64n) - 1n;
const SIGN = 1n << 63n;
/** The report's difference lines (between its heading and the program listing). */
const diffLines = (report: string) => {
  const lines = report.split("\n");
  return lines.slice(1, lines.findIndex((l) => l.startsWith("program ")));
};

interface Planted {
  readonly name: string;
  readonly form: string;
  /**
   * Seeds at which fast-check's own shrink stops short of one instruction and the smallest values
   * (found by running each of seeds 1-30 without shrinkMismatch), so that shrinkMismatch's stage
   * is what the test checks.
   */
  readonly seeds: readonly number[];
  readonly bug: (c: NativeCase) => Emulated;
  /** Checks of the shrunk case and its one difference line. */
  readonly check: (raw: RawCase, line: string) => void;
}

const PLANTED: Planted[] = [
  {
    name: "add r64, r/m64 sets CF inverted",
    form: "Add_r64_rm64",
    // fast-check alone: at 24 a memory operand, at 37 the add in a subroutine behind a call unit.
    seeds: [24],
    bug: plant(Code.Add_r64_rm64, (m) => { m.rflags ^= CF; }),
    check: (raw, line) => {
      // Any operands show this bug: every value shrinks to zero, down to `add rax, rax`.
      expect(raw.main[0]!.mem).toBeNull();
      expect(raw.regs.every((r) => r === 0n) && raw.flags === 0 && raw.memSeed === 0).toBe(true);
      const [, machine, cpu] = /^ {2}flags \(defined: [^)]*\): machine (.*) \| cpu (.*)$/.exec(line) ?? [];
      expect(machine, line).toBeDefined();
      const set = (s: string) => new Set(s.split(" ").filter((x) => x !== "none"));
      const a = set(machine!), b = set(cpu!);
      expect([...a].filter((f) => !b.has(f)).concat([...b].filter((f) => !a.has(f))), "the one flag that differs").toEqual(["CF"]);
    },
  },
  {
    name: "sar r64, imm8 fills with zeros (register destination)",
    form: "Sar_rm64_imm8",
    // fast-check alone: at 9 after a store unit, with a count of 63; at 30 after a unit that
    // computes its operand (add rax, imm).
    seeds: [9],
    bug: plant(Code.Sar_rm64_imm8, (m, site) => {
      const n = BigInt(site.imm & 63);
      if (site.reg < 0 || site.reg > 15 || n === 0n) return;
      const r = REG_NAMES[site.reg]!;
      m.setReg(r, m.reg(r) & (U64 >> n));
    }),
    check: (raw, line) => {
      // Only a negative destination and a nonzero count show it: the shrunk operands are the
      // sign bit alone and a count of 1; every other register is zero.
      const u = raw.main[0]!;
      expect(u.mem, "a register destination").toBeNull();
      expect(u.imm & 63n).toBe(1n);
      const [, reg, machine, cpu] = /^ {2}(\w+): machine ([0-9a-f]{16}) \| cpu ([0-9a-f]{16})$/.exec(line) ?? [];
      expect(reg, line).toBeDefined();
      const i = REG_NAMES.indexOf(reg as (typeof REG_NAMES)[number]);
      expect(raw.regs[i], `${reg} before`).toBe(SIGN);
      expect(raw.regs.filter((_, k) => k !== i && k !== 4).every((r) => r === 0n)).toBe(true);
      expect(BigInt(`0x${machine!}`)).toBe(SIGN >> 1n);
      expect(BigInt(`0x${cpu!}`)).toBe(SIGN | (SIGN >> 1n));
    },
  },
  {
    name: "cmpxchg r/m64, r64 leaves rax alone when the comparison fails",
    form: "Cmpxchg_rm64_r64",
    // fast-check alone: r13 left at 0x1fffffff00000001 (at 2 and 14 it stops at two units, as
    // the add and the sar above do: left out to keep the suite's time).
    seeds: [3],
    bug: plant(Code.Cmpxchg_rm64_r64, (m, _site, before) => { if ((m.rflags & ZF) === 0) m.setReg("rax", before.rax); }),
    check: (raw, line) => {
      // Any unequal pair shows it. The report names rax: the machine keeps its value, the CPU
      // loads the destination's. A register destination shrinks with rax to 0 and 1 (in some
      // order); a memory one holds what the memory seed put there (zeros at seed 0), and rax is
      // 0 or 1.
      const [, reg, machine, cpu] = /^ {2}(\w+): machine ([0-9a-f]{16}) \| cpu ([0-9a-f]{16})$/.exec(line) ?? [];
      expect(reg, line).toBe("rax");
      expect(BigInt(`0x${machine!}`)).toBe(raw.regs[0]);
      if (raw.main[0]!.mem === null) expect([BigInt(`0x${machine!}`), BigInt(`0x${cpu!}`)].sort()).toEqual([0n, 1n]);
      else expect(raw.regs[0]! <= 1n).toBe(true);
    },
  },
];

describe("the machine against the real CPU: a planted bug shrinks to the single instruction that differs", () => {
  test.each(PLANTED.flatMap((p) => p.seeds.map((seed) => ({ ...p, seed }))))("$name (seed $seed)", async ({ form, bug, check, seed }) => {
    const property = agree(bug);
    const details = await fc.check(fc.asyncProperty(rawCase(), property), { seed, numRuns: 1000 });
    expect(details.failed, `the planted bug in ${form} must be caught`).toBe(true);
    expect(details.errorInstance).toBeInstanceOf(Mismatch);
    const found = details.counterexample![0];
    const { raw } = await shrinkMismatch(found, property);
    // One unit, of the planted form; no subroutines; one instruction of that form in the code.
    expect(raw.subs).toEqual([]);
    expect(raw.main.map((u) => DRAWN_FORMS[u.form % DRAWN_FORMS.length]!.name)).toEqual([form]);
    const { p, report } = await compare(raw, bug);
    expect(p.codes.filter((c) => c === (Code as unknown as Record<string, number>)[form])).toHaveLength(1);
    // The report has one difference line.
    const lines = diffLines(report!);
    expect(lines, report).toHaveLength(1);
    check(raw, lines[0]!);
    // Without the bug the machine agrees with the CPU on the same case: the bug is the difference.
    expect((await compare(raw)).report).toBeUndefined();
  }, hostTimeout(20_000));
});

// The x86 forms the Linux 7.2 JIT emits for BPF_DIV/MOD, BPF_END, BPF_MOVSX, BMI2 shifts, the
// atomics and the arena cast, run at their edges (zero, -1, INT_MIN, the largest unsigned value,
// divisors that fault, the paths of cmpxchg) on the machine and on the CPU: the machine must agree
// with the CPU, never refuse. `asm` is what the bytes encode (checked against iced).
const I64_MIN = 0x8000000000000000n, U64_MAX = 0xffffffffffffffffn, HI = 0xdead_beef_0000_0000n;
const D = SEQ.data;
interface Edge { asm: string; hex: string; regs: Partial<Record<(typeof REG_NAMES)[number], bigint>>; outcome: "stopped" | "SIGFPE" | "SIGSEGV"; bmi2?: true }
const JIT_EDGES: Edge[] = [
  // BPF_DIV/BPF_MOD, unsigned and signed (off = 1), as do_jit() emits them
  { asm: "push rax; push rdx; mov r11,0x7; mov rax,rdi; xor edx,edx; div r11; mov rdi,rax; pop rdx; pop rax", hex: "50 52 49 c7 c3 07 00 00 00 48 89 f8 31 d2 49 f7 f3 48 89 c7 5a 58", regs: { rdi: 100n, rax: 1n, rdx: 2n }, outcome: "stopped" },
  { asm: "push rax; push rdx; mov rax,rdi; cqo; idiv rsi; mov rdi,rdx; pop rdx; pop rax", hex: "50 52 48 89 f8 48 99 48 f7 fe 48 89 d7 5a 58", regs: { rdi: BigInt.asUintN(64, -7n), rsi: 2n }, outcome: "stopped" },
  { asm: "push rax; push rdx; mov eax,edi; cdq; idiv esi; mov edi,eax; pop rdx; pop rax", hex: "50 52 89 f8 99 f7 fe 89 c7 5a 58", regs: { rdi: HI | 0x80000000n, rsi: 1n }, outcome: "stopped" },
  { asm: "div rbx", hex: "48 f7 f3", regs: { rax: U64_MAX, rdx: 0n, rbx: U64_MAX }, outcome: "stopped" },
  { asm: "div rbx", hex: "48 f7 f3", regs: { rax: 100n, rdx: 0n, rbx: 0n }, outcome: "SIGFPE" },
  { asm: "div rbx", hex: "48 f7 f3", regs: { rax: 0n, rdx: 1n, rbx: 1n }, outcome: "SIGFPE" },
  { asm: "div ebx", hex: "f7 f3", regs: { rax: HI | 0xffffffffn, rdx: HI | 0xfffffffen, rbx: 0xffffffffn }, outcome: "stopped" },
  { asm: "div ebx", hex: "f7 f3", regs: { rax: 0n, rdx: 5n, rbx: 5n }, outcome: "SIGFPE" },
  { asm: "div bx", hex: "66 f7 f3", regs: { rax: HI | 0x1234n, rdx: HI | 0x12n, rbx: 0x100n }, outcome: "stopped" },
  { asm: "div bl", hex: "f6 f3", regs: { rax: HI | 0x1ffn, rbx: 2n }, outcome: "stopped" },
  { asm: "div bl", hex: "f6 f3", regs: { rax: 0x200n, rbx: 2n }, outcome: "SIGFPE" },
  { asm: "cqo; idiv rbx", hex: "48 99 48 f7 fb", regs: { rax: I64_MIN, rbx: U64_MAX }, outcome: "SIGFPE" },
  { asm: "cqo; idiv rbx", hex: "48 99 48 f7 fb", regs: { rax: I64_MIN, rbx: 1n }, outcome: "stopped" },
  { asm: "cqo; idiv rbx", hex: "48 99 48 f7 fb", regs: { rax: I64_MIN + 1n, rbx: U64_MAX }, outcome: "stopped" },
  { asm: "cdq; idiv ebx", hex: "99 f7 fb", regs: { rax: HI | 0x80000000n, rbx: 0xffffffffn }, outcome: "SIGFPE" },
  { asm: "cdq; idiv ebx", hex: "99 f7 fb", regs: { rax: 0xfffffff9n, rbx: 2n }, outcome: "stopped" },
  { asm: "cwd; idiv bx", hex: "66 99 66 f7 fb", regs: { rax: HI | 0x8000n, rbx: 0xffffn }, outcome: "SIGFPE" },
  { asm: "cbw; idiv bl", hex: "66 98 f6 fb", regs: { rax: 0x81n, rbx: 0xffn }, outcome: "stopped" },
  { asm: "idiv qword ptr [rsp-0x8]", hex: "48 f7 7c 24 f8", regs: { rax: 5n, rdx: 0n }, outcome: "stopped" },
  { asm: "cdqe; cwde; cbw", hex: "48 98 98 66 98", regs: { rax: HI | 0x80n }, outcome: "stopped" },
  // BPF_END and BPF_MOVSX
  { asm: "ror ax,0x8; movzx eax,ax", hex: "66 c1 c8 08 0f b7 c0", regs: { rax: 0x1122334455667788n }, outcome: "stopped" },
  { asm: "bswap eax; bswap r8; bswap r9d", hex: "0f c8 49 0f c8 41 0f c9", regs: { rax: 0x1122334455667788n, r8: 0x0102030405060708n, r9: U64_MAX }, outcome: "stopped" },
  { asm: "movsx eax,sil; movsx rbx,sil; movsx ecx,si; movsxd rdx,esi", hex: "40 0f be c6 48 0f be de 0f bf ce 48 63 d6", regs: { rsi: 0x8080_8080_8080_8080n, rax: U64_MAX }, outcome: "stopped" },
  // rotates at counts 0, the size and beyond
  { asm: "rol eax,0x0; rol ebx,cl; rol rdx,0x20", hex: "c1 c0 00 d3 c3 48 c1 c2 20", regs: { rax: U64_MAX, rbx: U64_MAX, rcx: 0x20n, rdx: 0x1_00000002n }, outcome: "stopped" },
  { asm: "ror ax,0x10; rol al,0x9; ror r8b,cl", hex: "66 c1 c8 10 c0 c0 09 41 d2 c8", regs: { rax: 0x8001n, r8: 0x81n, rcx: 0x1fn }, outcome: "stopped" },
  // BMI2 shifts (masked counts, no flags)
  { asm: "shlx rax,rax,rbx; shrx ecx,ecx,ebx; sarx rdx,rdx,rbx", hex: "c4 e2 e1 f7 c0 c4 e2 63 f7 c9 c4 e2 e2 f7 d2", regs: { rax: 1n, rbx: 65n, rcx: HI | 0x80000000n, rdx: I64_MIN }, outcome: "stopped", bmi2: true },
  { asm: "sarx r11d,[rsp-0x8],r9d", hex: "c4 62 32 f7 5c 24 f8", regs: { r9: 31n, r11: U64_MAX }, outcome: "stopped", bmi2: true },
  // atomics: lock xadd, xchg, lock cmpxchg on both paths, and the fetch-and-op loop
  { asm: "lock xadd [rsp-0x8],rbx; lock xadd [rsp-0x10],ecx", hex: "f0 48 0f c1 5c 24 f8 f0 0f c1 4c 24 f0", regs: { rbx: U64_MAX, rcx: HI | 1n }, outcome: "stopped" },
  { asm: "xchg [rsp-0x8],rbx; xchg ebx,eax; xchg r8d,eax; xchg ecx,ecx", hex: "48 87 5c 24 f8 87 c3 41 90 87 c9", regs: { rax: HI | 1n, r8: HI | 2n, rcx: U64_MAX }, outcome: "stopped" },
  { asm: "mov [rsp-0x8],rax; lock cmpxchg [rsp-0x8],rbx", hex: "48 89 44 24 f8 f0 48 0f b1 5c 24 f8", regs: { rax: I64_MIN, rbx: 7n }, outcome: "stopped" },
  { asm: "mov [rsp-0x8],rcx; lock cmpxchg [rsp-0x8],ebx", hex: "48 89 4c 24 f8 f0 0f b1 5c 24 f8", regs: { rax: HI | 5n, rcx: 6n, rbx: 7n }, outcome: "stopped" },
  { asm: "mov [rsp-0x8],eax; lock cmpxchg [rsp-0x8],ebx", hex: "89 44 24 f8 f0 0f b1 5c 24 f8", regs: { rax: HI | 5n, rbx: HI | 7n }, outcome: "stopped" },
  { asm: "cmpxchg ecx,edx", hex: "0f b1 d1", regs: { rax: HI | 5n, rcx: HI | 6n, rdx: HI | 7n }, outcome: "stopped" },
  { asm: "cmpxchg ecx,edx", hex: "0f b1 d1", regs: { rax: HI | 6n, rcx: HI | 6n, rdx: HI | 7n }, outcome: "stopped" },
  { asm: "cmpxchg rax,rdx; cmpxchg bl,ah", hex: "48 0f b1 d0 0f b0 e3", regs: { rax: 0x1234n, rdx: 9n, rbx: 0x12n }, outcome: "stopped" },
  { asm: "mov r10,rax; mov eax,[rdi]; mov r11d,eax; and r11d,esi; lock cmpxchg [rdi],r11d; jne short 0x10000003; mov esi,eax; mov rax,r10", hex: "49 89 c2 8b 47 00 41 89 c3 41 21 f3 f0 44 0f b1 5f 00 75 ef 89 c6 4c 89 d0", regs: { rdi: D + 8n, rsi: HI | 0x0ff0f00fn, rax: U64_MAX }, outcome: "stopped" },
  { asm: "lock cmpxchg [rdi],rbx", hex: "f0 48 0f b1 1f", regs: { rdi: SEQ.code }, outcome: "SIGSEGV" },
  // the arena's cast to a user address (shl, or, rol, xor, test, cmove)
  { asm: "shl rdi,0x20; or rdi,0x7fff0000; rol rdi,0x20; xor r11,r11; test edi,edi; cmove rdi,r11", hex: "48 c1 e7 20 48 81 cf 00 00 ff 7f 48 c1 c7 20 4d 31 db 85 ff 49 0f 44 fb", regs: { rdi: 0x12345678n }, outcome: "stopped" },
  { asm: "shl rdi,0x20; or rdi,0x7fff0000; rol rdi,0x20; xor r11,r11; test edi,edi; cmove rdi,r11", hex: "48 c1 e7 20 48 81 cf 00 00 ff 7f 48 c1 c7 20 4d 31 db 85 ff 49 0f 44 fb", regs: { rdi: HI }, outcome: "stopped" },
  { asm: "test eax,eax; cmove ebx,ecx; cmovne rdx,rcx", hex: "85 c0 0f 44 d9 48 0f 45 d1", regs: { rax: 1n, rbx: U64_MAX, rcx: 3n, rdx: 4n }, outcome: "stopped" },
  { asm: "test eax,eax; cmove rax,[rbx]", hex: "85 c0 48 0f 44 03", regs: { rax: 1n, rbx: 0x12345000n }, outcome: "SIGSEGV" },
  // ibhf (classic BPF's branch-history fence): a hint NOP
  { asm: "nop rax,rdi", hex: "f3 48 0f 1e f8", regs: { rax: 1n }, outcome: "stopped" },
];

const HOST_BMI2 = !HOST_SKIPPED_FORMS.some((f) => f.requires === "bmi2");

describe("the machine against the real CPU: the 7.2 JIT's forms at their edges", () => {
  const rows = (bmi2: boolean) => JIT_EDGES.filter((e) => (e.bmi2 === true) === bmi2).map((e) => ({ ...e, name: e.asm.length > 70 ? `${e.asm.slice(0, 67)}...` : e.asm }));
  const run = async (e: Edge) => {
    const code = Uint8Array.from(e.hex.split(" "), (b) => parseInt(b, 16));
    expect(disassemble(code, SEQ.code, { syntax: "intel" }).map((l) => l.text).join("; "), "the bytes encode the instructions the row names").toBe(e.asm);
    const regs = REG_NAMES.map((r, i) => (i === 4 ? 0n : e.regs[r] ?? BigInt(i) * 0x1111n));
    const c = codeCase(code, { regs, memSeed: 7 });
    const native = await runner.run(c);
    expect(native.kind === "signal" ? native.signal : native.kind, "how the CPU ends the case").toBe(e.outcome);
    const emulated = emulate(c);
    expect(emulated.outcome.kind, emulated.outcome.kind === "failed" ? emulated.outcome.message : "").not.toBe("failed");
    expect(differences(emulated, native, c, SEQ_DUMP_NAMES)).toEqual([]);
  };
  test.each(rows(false))("$name ($outcome)", run);
  test.skipIf(!HOST_BMI2).each(rows(true))("$name ($outcome, BMI2)", run); // without BMI2: said once, at the top of the file
});

// Encodings outside the generator's forms (other prefixes, vendor-specific meanings, forms the
// table does not list): the machine must agree with the CPU or refuse the instruction, never
// silently compute something else.
const ODD_ENCODINGS: [string, string][] = [
  ["66 eb 00", "jmp short with 66h (AMD: 16-bit rip)"], ["31 c0 66 74 00", "je short with 66h"],
  ["e8 02 00 00 00 eb 02 66 c3", "ret with 66h (AMD: pops 2 bytes)"], ["48 8d 05 03 00 00 00 66 ff e0", "jmp rax with 66h"],
  ["66 48 e9 00 00 00 00", "jmp with 66h and REX.W (64-bit)"], ["48 e8 02 00 00 00 eb 02 48 c3", "call and ret with REX.W"],
  ["f2 e9 00 00 00 00", "bnd jmp"], ["48 8d 05 03 00 00 00 3e ff e0", "notrack jmp rax"],
  ["65 67 48 8b 04 25 f0 ff ff ff", "32-bit address size, absolute gs: operand"], ["67 48 8b 04 25 10 00 00 20", "32-bit address size, absolute"],
  ["67 48 8b 05 00 00 00 00", "EIP-relative"], ["67 8d 04 0b", "lea with 32-bit address size"],
  ["f0 48 01 d8", "lock on a register destination (#UD)"], ["f0 48 01 5c 24 f8", "lock add to memory"],
  ["f3 48 01 d8", "rep on add"], ["3e 48 8b 04 24", "ds: override (ignored in 64-bit mode)"], ["64 48 8b 04 24", "fs: override"],
  ["40 89 d8", "redundant REX"], ["66 66 0f 1f 44 00 00", "nop with two 66h"], ["66 50 66 58", "push ax / pop ax"],
  ["66 9c 66 9d", "pushf / popf, 16-bit"], ["48 87 c3", "xchg"], ["f6 e8", "one-operand imul"], ["63 c3", "movsxd r32"],
  ["48 d1 f0", "shl through the /6 alias (sal)"], ["f6 c8 01", "test through the /1 alias"], ["0f 19 c0", "reserved nop"],
  ["f0 48 0f b1 d8", "lock cmpxchg with a register destination (#UD)"], ["f0 48 39 5c 24 f8", "lock cmp (#UD: cmp writes nothing)"],
  ["f0 48 0f c1 5c 24 f8", "lock xadd to memory"], ["f0 48 87 5c 24 f8", "xchg with a redundant lock"], ["66 0f c8", "bswap ax (undefined)"],
  ["c4 e2 fd f7 c0", "shlx with VEX.L=1 (#UD)"], ["f6 e0", "one-operand mul"], ["f3 48 0f 1e f8", "ibhf"],
];

describe("the machine against the real CPU: encodings outside the generated forms", () => {
  test.each(ODD_ENCODINGS)("%s (%s): the machine agrees with the CPU or refuses it", async (hex) => {
    const c = codeCase(Uint8Array.from(hex.split(" "), (b) => parseInt(b, 16)), { regs: Array.from({ length: 16 }, (_, i) => BigInt(i) * 0x1111n), memSeed: 7 });
    const e = emulate(c);
    const diffs = differences(e, await runner.run(c), c, SEQ_DUMP_NAMES);
    if (e.outcome.kind === "failed") expect(e.outcome.message).toMatch(/^unsupported instruction/);
    else expect(diffs).toEqual([]);
  });
});

describe("the native runner", () => {
  test("a fault ends the case as a signal at the faulting rip, with the registers as the machine has them", async () => {
    // mov rax, 0x12345000; mov rbx, [rax] (unmapped) ... the CPU and the machine both stop at the load.
    const raw: RawCase = { regs: Array(16).fill(0n), flags: 0, memSeed: 0, gsOff: 0, rspOff: 0, main: [], subs: [] };
    const p = sequenceCase({ ...raw, main: [{ form: DRAWN_FORMS.findIndex((f) => f.name === "Nopd"), regs: [0, 0, 0], mem: null, imm: 0n, skip: 1, variant: 0 }] });
    const code = Uint8Array.of(0x48, 0xc7, 0xc0, 0x00, 0x50, 0x34, 0x12, 0x48, 0x8b, 0x18); // mov rax,0x12345000; mov rbx,[rax]
    const c = { ...p.case, loads: [{ addr: SEQ.code, bytes: code }, ...p.case.loads.slice(1)], rip: SEQ.code };
    const native = await runner.run(c);
    expect(native).toMatchObject({ kind: "signal", signal: "SIGSEGV", rip: SEQ.code + 7n, address: 0x12345000n });
    expect(differences(emulate(c), native, c, SEQ_DUMP_NAMES)).toEqual([]);
  });

  test("a divide error ends the case as SIGFPE at the divide, with the registers before it, and the runner goes on", async () => {
    // mov eax,7; div ebx (ebx = 0): #DE at the div; then the same case with ebx = 2 completes.
    const code = Uint8Array.of(0xb8, 0x07, 0x00, 0x00, 0x00, 0xf7, 0xf3);
    const zero = codeCase(code, { regs: Array(16).fill(0n) });
    const native = await runner.run(zero);
    expect(native).toMatchObject({ kind: "signal", signal: "SIGFPE", rip: SEQ.code + 5n, address: SEQ.code + 5n });
    if (native.kind === "signal") expect(native.regs[0]).toBe(7n);
    const emulated = emulate(zero);
    expect(emulated.outcome).toMatchObject({ kind: "signal", signal: "SIGFPE", rip: SEQ.code + 5n });
    expect(differences(emulated, native, zero, SEQ_DUMP_NAMES)).toEqual([]);
    const two = codeCase(code, { regs: Array.from({ length: 16 }, (_, i) => (i === 3 ? 2n : 0n)) });
    expect(await runner.run(two)).toMatchObject({ kind: "stopped", regs: expect.arrayContaining([3n, 1n]) });
  });

  test("a case that never reaches the stop ends with a timeout", async () => {
    const p = sequenceCase({ regs: Array(16).fill(0n), flags: 0, memSeed: 0, gsOff: 0, rspOff: 0, main: [], subs: [] });
    const c = { ...p.case, loads: [{ addr: SEQ.code, bytes: Uint8Array.of(0xeb, 0xfe) }], rip: SEQ.code, timeoutMs: 50 }; // jmp $
    expect((await runner.run(c)).kind).toBe("timeout");
  });

  test("without a C compiler the suite fails, saying which compiler and what to install", () => {
    let err: unknown;
    try {
      compileRunner({ cc: "cc", env: { ...process.env, PATH: "/nonexistent" } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeToolchainError);
    expect((err as Error).message).toMatch(/`cc` was not found on PATH\. Install a C compiler \(Debian\/Ubuntu: apt-get install gcc/);
    expect((err as Error).stack, "no stack trace").toBe(`NativeToolchainError: ${(err as Error).message}`);
  });
});
