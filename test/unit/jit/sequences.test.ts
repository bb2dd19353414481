// Each strategy's documented sequence (its module header), the byte-exact baseline main and
// subprog, the selftests' vector 2 under baseline too, the shift-by-R4 form, and golden listings
// per strategy (test/golden/<strategy>.lst: a change in any byte shows as a diff; accepting one
// is a deliberate `vitest -u`).
import { describe, expect, test } from "vitest";
import { alu64, exit, stx } from "../../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R4, R10 } from "../../../jit/bpf/opcodes.ts";
import { disassemble, formatListing } from "../../../jit/disasm.ts";
import { buildImage } from "../../../jit/image.ts";
import { BUILTIN_STRATEGIES } from "../../../jit/strategies/index.ts";
import type { Strategy } from "../../../jit/strategy.ts";
import { goldenProgram } from "../../helpers/golden.ts";
import { fn, jit, listing, matchesJited } from "../../helpers/jit.ts";

const byName = (n: string): Strategy => BUILTIN_STRATEGIES.find((s) => s.name === n)!;
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
function texts(s: Strategy, fi = 0): string[] {
  const f = buildImage({ programs: [goldenProgram], task: 0 }, s).programs[0]!.jit.funcs[fi]!;
  return disassemble(f.image.bytes, f.image.base, { syntax: "intel" }).map((l) => l.text.replace(/0x6[0-9a-f]{11}$/, "PCPU").replace(/^call 0xffffffff[0-9a-f]{8}$/, "call ADDR"));
}
const ENTRY = ["endbr64", "nop [rax+rax]", "nop [rax]"];
const BODY = ["mov qword ptr [rbp-0x40],0x0", "mov ebx,0x7", "mov [rbp-0x8],rbx", "call ADDR", "mov rdi,rbp", "add rdi,0xfffffffffffffff8", "call ADDR", "add rax,rbx"];

describe("each strategy's documented sequence (main program)", () => {
  const cases: [string, string[]][] = [
    ["baseline", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "sub rsp,0x40", "push rbx", ...BODY, "pop rbx", "leave", "ret"]],
    ["r9-private", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "push rbx", "mov r9,PCPU", "add r9,gs:[0x10]",
      "mov qword ptr [r9-0x40],0x0", "mov ebx,0x7", "mov [r9-0x8],rbx", "push r9", "call ADDR", "pop r9", "mov rdi,r9", "add rdi,0xfffffffffffffff8", "push r9", "call ADDR", "pop r9", "add rax,rbx", "pop rbx", "leave", "ret"]],
    ["r9-no-save", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "push rbx", "mov r9,PCPU", "add r9,gs:[0x10]",
      "mov qword ptr [r9-0x40],0x0", "mov ebx,0x7", "mov [r9-0x8],rbx", "call ADDR", "mov rdi,r9", "add rdi,0xfffffffffffffff8", "call ADDR", "add rax,rbx", "pop rbx", "leave", "ret"]],
    ["split-stack", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "sub rsp,0x40", "push rbx", "mov r11,PCPU", "add r11,gs:[0x10]", "mov rsp,r11", ...BODY, "lea rsp,[rbp-0x48]", "pop rbx", "leave", "ret"]],
    ["full-private", [...ENTRY, "mov r10,rsp", "mov r11,PCPU", "add r11,gs:[0x10]", "mov rsp,r11", "push r10", "push rbp", "mov rbp,rsp", "endbr64", "sub rsp,0x40", "push rbx", ...BODY, "pop rbx", "leave", "pop rsp", "ret"]],
    ["rbp-private", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "push rbx", "mov rbp,PCPU", "add rbp,gs:[0x10]", ...BODY, "pop rbx", "pop rbp", "ret"]],
    ["split-double-frame", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "mov r11,PCPU", "add r11,gs:[0x10]", "mov rsp,r11", "push rbp", "mov rbp,rsp", "sub rsp,0x40", "push rbx", ...BODY, "pop rbx", "leave", "leave", "ret"]],
    ["limited-recursion", [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "sub rsp,0x40", "push rbx", "mov r11,PCPU", "add r11,gs:[0x10]",
      "mov r10,PCPU", "add r10,gs:[0x10]", "mov r10,[r10]", "shl r10,0xe", "add r11,r10", "mov rsp,r11", ...BODY, "lea rsp,[rbp-0x48]", "pop rbx", "leave", "ret"]],
  ];
  test.each(cases)("%s", (name, expected) => {
    expect(texts(byName(name))).toEqual(expected);
  });

  test("subprogs keep the upstream prologue in every design but r9-private's private frame", () => {
    const sub = (n: string) => texts(byName(n), 1);
    const upstream = [...ENTRY, "push rbp", "mov rbp,rsp", "endbr64", "sub rsp,0x10", "mov rax,[rdi]", "mov [rbp-0x10],rax", "mov rax,[rbp-0x10]", "leave", "ret"];
    for (const n of ["baseline", "split-stack", "full-private", "rbp-private", "split-double-frame", "limited-recursion"]) expect(sub(n), n).toEqual(upstream);
    expect(sub("r9-private")).toEqual(upstream); // 16 bytes is under the 64-byte threshold: no private stack
  });
});

describe("byte-exact baseline", () => {
  test("main and subprog prologue and epilogue bytes", () => {
    const img = buildImage({ programs: [goldenProgram], task: 0 }, byName("baseline"));
    const [main, sub] = img.programs[0]!.jit.funcs;
    const b = (f: typeof main) => hex(f!.image.bytes);
    const prologue = (depth: string) => `f3 0f 1e fa 0f 1f 44 00 00 0f 1f 00 55 48 89 e5 f3 0f 1e fa 48 81 ec ${depth} 00 00 00`;
    expect(b(main)).toMatch(new RegExp(`^${prologue("40")} 53 `));      // + push rbx
    expect(b(main)).toMatch(/ 5b c9 c3$/);                               // pop rbx; leave; ret
    expect(b(sub)).toMatch(new RegExp(`^${prologue("10")} `));
    expect(b(sub)).toMatch(/ c9 c3$/);
  });

  test("vector 2 ('No private stack') under baseline too", () => {
    const j = jit([fn("main", 8, [alu64.mov.imm(R1, 42), stx(BPF_DW, R10, R1, -8), alu64.mov.imm(R0, 0), exit()])], byName("baseline"), "raw_tp");
    expect(matchesJited(listing(j), ["\tsubq\t$0x8, %rsp"])).toBe(true);
  });

  test("a shift whose count is already in R4 (rcx) is just 'shl dst,cl', as upstream", () => {
    const j = jit([fn("main", 0, [alu64.mov.imm(R0, 1), alu64.mov.imm(R4, 3), alu64.lsh.reg(R0, R4), alu64.lsh.reg(R4, R4), alu64.add.reg(R0, R4), exit()])], byName("baseline"));
    expect(listing(j).slice(8, 11)).toEqual(["\tshlq\t%cl, %rax", "\tshlq\t%cl, %rcx", "\taddq\t%rcx, %rax"]);
  });
});

describe("golden listings", () => {
  test.each(BUILTIN_STRATEGIES.map((s) => [s.name, s] as const))("%s", async (name, s) => {
    const img = buildImage({ programs: [goldenProgram], task: 0 }, s);
    const text = img.programs[0]!.jit.funcs.map((f) => `${f.symbol}:\n${formatListing(disassemble(f.image.bytes, f.image.base, { syntax: "gas" }))}`).join("\n\n");
    await expect(`; ${s.name}: ${s.summary}\n${text}\n`).toMatchFileSnapshot(`../../golden/${name}.lst`);
  });
});
