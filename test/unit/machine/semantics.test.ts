// Per-instruction semantics, Unicorn-style: bytes with the assembly they encode (checked against
// iced's decoder), input registers, run, output registers and flags. Expected values are worked
// out by hand from the SDM definitions, not by running the machine.
import { describe, expect, test } from "vitest";
import { AF, CF, DF, FIXED, IF, OF, PF, SF, TF, ZF, type RegName } from "../../../harness/machine/index.ts";
import { disassemble } from "../../../jit/disasm.ts";
import { bytes, DATA, PERCPU, runSnippet, STACK_TOP, TEXT, type Regs } from "../../helpers/layout.ts";

const FLAG = { CF, PF, AF, ZF, SF, OF } as const;
const ALL = CF | PF | AF | ZF | SF | OF;
function flags(names: string): number {
  return names.split(/\s+/).filter(Boolean).reduce((f, n) => f | FLAG[n as keyof typeof FLAG], 0);
}

interface Case {
  asm: string;            // iced Intel syntax of the first instruction (checked)
  code: string;           // bytes of the snippet
  in?: Regs;
  out: Regs;
  /** Arithmetic flags expected set, e.g. "CF ZF". */
  flags?: string;
  /** Which arithmetic flags to compare (default all six): undefined flags are left out. */
  mask?: string;
  /** RFLAGS before the snippet runs. */
  pre?: number;
  setup?: Parameters<typeof runSnippet>[2];
}

const cases: Record<string, Case[]> = {
  "add and sub": [
    { asm: "add rax,rbx", code: "48 01 d8", in: { rax: 1n, rbx: 2n }, out: { rax: 3n }, flags: "PF" },
    { asm: "add rax,rbx", code: "48 01 d8", in: { rax: 0xffffffffffffffffn, rbx: 1n }, out: { rax: 0n }, flags: "CF PF AF ZF" },
    { asm: "add rax,rbx", code: "48 01 d8", in: { rax: 0x7fffffffffffffffn, rbx: 1n }, out: { rax: 0x8000000000000000n }, flags: "PF AF SF OF" },
    { asm: "add rax,rbx", code: "48 01 d8", in: { rax: 0x00000000ffffffffn, rbx: 1n }, out: { rax: 0x100000000n }, flags: "PF AF" },
    { asm: "add eax,ebx", code: "01 d8", in: { rax: 0x1234567800000001n, rbx: 0xffffffff00000002n }, out: { rax: 3n }, flags: "PF" },
    { asm: "add ax,bx", code: "66 01 d8", in: { rax: 0x111122223333fffen, rbx: 3n }, out: { rax: 0x1111222233330001n }, flags: "CF AF" },
    { asm: "add al,bl", code: "00 d8", in: { rax: 0xffffffffffffff7fn, rbx: 1n }, out: { rax: 0xffffffffffffff80n }, flags: "AF SF OF" },
    { asm: "add ah,bh", code: "00 fc", in: { rax: 0x1234n, rbx: 0x2100n }, out: { rax: 0x3334n }, flags: "PF" },
    { asm: "add rax,0xffffffffffffffff", code: "48 83 c0 ff", in: { rax: 5n }, out: { rax: 4n }, flags: "CF AF" },
    { asm: "add rax,0xffffffff80000000", code: "48 05 00 00 00 80", in: { rax: 0x80000000n }, out: { rax: 0n }, flags: "CF PF ZF" },
    { asm: "sub rax,rbx", code: "48 29 d8", in: { rax: 0n, rbx: 1n }, out: { rax: 0xffffffffffffffffn }, flags: "CF PF AF SF" },
    { asm: "sub rax,rbx", code: "48 29 d8", in: { rax: 0x8000000000000000n, rbx: 1n }, out: { rax: 0x7fffffffffffffffn }, flags: "PF AF OF" },
    { asm: "sub rax,rbx", code: "48 29 d8", in: { rax: 0x100000000n, rbx: 1n }, out: { rax: 0xffffffffn }, flags: "PF AF" },
    { asm: "cmp rax,rbx", code: "48 39 d8", in: { rax: 5n, rbx: 5n }, out: { rax: 5n }, flags: "PF ZF" },
    { asm: "cmp eax,ebx", code: "39 d8", in: { rax: 0x100000001n, rbx: 2n }, out: { rax: 0x100000001n }, flags: "CF PF AF SF" },
  ],
  "logic": [
    { asm: "and rax,rbx", code: "48 21 d8", in: { rax: 0xf0f0n, rbx: 0xff00n }, out: { rax: 0xf000n }, flags: "PF", pre: CF | OF | FIXED },
    { asm: "or rax,rbx", code: "48 09 d8", in: { rax: 1n, rbx: 0x8000000000000000n }, out: { rax: 0x8000000000000001n }, flags: "SF" },
    { asm: "xor eax,eax", code: "31 c0", in: { rax: 0xdeadbeefcafebaben }, out: { rax: 0n }, flags: "PF ZF" },
    { asm: "test rax,rax", code: "48 85 c0", in: { rax: 0n }, out: { rax: 0n }, flags: "PF ZF", pre: CF | FIXED },
    { asm: "test al,0x80", code: "a8 80", in: { rax: 0x80n }, out: { rax: 0x80n }, flags: "SF" },
    { asm: "not rax", code: "48 f7 d0", in: { rax: 0xffn }, out: { rax: 0xffffffffffffff00n }, flags: "CF", pre: CF | FIXED },
  ],
  "neg inc dec": [
    { asm: "neg rax", code: "48 f7 d8", in: { rax: 1n }, out: { rax: 0xffffffffffffffffn }, flags: "CF PF AF SF" },
    { asm: "neg rax", code: "48 f7 d8", in: { rax: 0x8000000000000000n }, out: { rax: 0x8000000000000000n }, flags: "CF PF SF OF" },
    { asm: "neg rax", code: "48 f7 d8", in: { rax: 0x100000000n }, out: { rax: 0xffffffff00000000n }, flags: "CF PF SF" },
    { asm: "neg eax", code: "f7 d8", in: { rax: 0xffffffff00000000n }, out: { rax: 0n }, flags: "PF ZF" },
    { asm: "inc rax", code: "48 ff c0", in: { rax: 0x7fffffffffffffffn }, out: { rax: 0x8000000000000000n }, flags: "CF PF AF SF OF", pre: CF | FIXED },
    { asm: "inc rax", code: "48 ff c0", in: { rax: 0xffffffffn }, out: { rax: 0x100000000n }, flags: "PF AF" },
    { asm: "dec rax", code: "48 ff c8", in: { rax: 0n }, out: { rax: 0xffffffffffffffffn }, flags: "PF AF SF" },
    { asm: "dec rax", code: "48 ff c8", in: { rax: 0x100000000n }, out: { rax: 0xffffffffn }, flags: "PF AF" },
  ],
  "shifts": [
    { asm: "shl rax,0x1", code: "48 d1 e0", in: { rax: 0x8000000000000001n }, out: { rax: 2n }, flags: "CF OF", mask: "CF PF ZF SF OF" },
    { asm: "shl rax,cl", code: "48 d3 e0", in: { rax: 1n, rcx: 0x40n }, out: { rax: 1n }, flags: "ZF", pre: ZF | FIXED },
    { asm: "shl rax,cl", code: "48 d3 e0", in: { rax: 1n, rcx: 0x3fn }, out: { rax: 0x8000000000000000n }, flags: "PF SF", mask: "CF PF ZF SF" },
    { asm: "shl rax,0x21", code: "48 c1 e0 21", in: { rax: 0x0000000180000001n }, out: { rax: 0x200000000n }, flags: "CF PF", mask: "CF PF ZF SF" },
    { asm: "shl rax,0x20", code: "48 c1 e0 20", in: { rax: 0x00000001ffffffffn }, out: { rax: 0xffffffff00000000n }, flags: "CF PF SF", mask: "CF PF ZF SF" },
    { asm: "shr rax,0x4", code: "48 c1 e8 04", in: { rax: 0xf00000000000001fn }, out: { rax: 0x0f00000000000001n }, flags: "CF", mask: "CF PF ZF SF" },
    { asm: "shr rax,0x1", code: "48 d1 e8", in: { rax: 0x8000000000000000n }, out: { rax: 0x4000000000000000n }, flags: "PF OF", mask: "CF PF ZF SF OF" },
    { asm: "shr rax,0x24", code: "48 c1 e8 24", in: { rax: 0x0000001800000000n }, out: { rax: 1n }, flags: "CF", mask: "CF PF ZF SF" },
    { asm: "sar rax,0x3f", code: "48 c1 f8 3f", in: { rax: 0x8000000000000000n }, out: { rax: 0xffffffffffffffffn }, flags: "PF SF", mask: "CF PF ZF SF" },
    { asm: "sar rax,0x21", code: "48 c1 f8 21", in: { rax: 0x8000000300000000n }, out: { rax: 0xffffffffc0000001n }, flags: "CF SF", mask: "CF PF ZF SF" },
    { asm: "sar rax,0x1", code: "48 d1 f8", in: { rax: 0x7n }, out: { rax: 3n }, flags: "CF PF", mask: "CF PF ZF SF OF" },
    { asm: "shl eax,0x0", code: "c1 e0 00", in: { rax: 0xffffffff12345678n }, out: { rax: 0x12345678n }, flags: "ZF", pre: ZF | FIXED },
    { asm: "shl al,0x1", code: "d0 e0", in: { rax: 0x1ffn }, out: { rax: 0x1fen }, flags: "CF SF", mask: "CF PF ZF SF OF" },
    { asm: "sar ax,cl", code: "66 d3 f8", in: { rax: 0xaaaa8000n, rcx: 0xfn }, out: { rax: 0xaaaaffffn }, flags: "PF SF", mask: "CF PF ZF SF" },
    { asm: "shr ebx,cl", code: "d3 eb", in: { rbx: 0xffffffff80000000n, rcx: 0x1fn }, out: { rbx: 1n }, flags: "", mask: "CF PF ZF SF" },
    { asm: "shr ebx,cl", code: "d3 eb", in: { rbx: 0xffffffffc0000000n, rcx: 0x1fn }, out: { rbx: 1n }, flags: "CF", mask: "CF PF ZF SF" },
  ],
  "multiply": [
    { asm: "imul rax,rbx", code: "48 0f af c3", in: { rax: 3n, rbx: 0xfffffffffffffffen }, out: { rax: 0xfffffffffffffffan }, flags: "", mask: "CF OF" },
    { asm: "imul rax,0xfffffffffffffffe", code: "48 6b c0 fe", in: { rax: 0x4000000000000000n }, out: { rax: 0x8000000000000000n }, flags: "", mask: "CF OF" },
    { asm: "imul rax,0xfffffffffffffffe", code: "48 6b c0 fe", in: { rax: 0x4000000000000001n }, out: { rax: 0x7ffffffffffffffen }, flags: "CF OF", mask: "CF OF" },
    { asm: "imul eax,ebx", code: "0f af c3", in: { rax: 0x10000n, rbx: 0x10000n }, out: { rax: 0n }, flags: "CF OF", mask: "CF OF" },
  ],
  "moves": [
    { asm: "mov rax,rbx", code: "48 89 d8", in: { rbx: 0x8000000000000001n }, out: { rax: 0x8000000000000001n } },
    { asm: "mov eax,ebx", code: "89 d8", in: { rax: 0xffffffffffffffffn, rbx: 0xaaaaaaaa12345678n }, out: { rax: 0x12345678n } },
    { asm: "mov ax,bx", code: "66 89 d8", in: { rax: 0x1111222233334444n, rbx: 0x5555n }, out: { rax: 0x1111222233335555n } },
    { asm: "mov al,bl", code: "88 d8", in: { rax: 0x1111222233334444n, rbx: 0x55n }, out: { rax: 0x1111222233334455n } },
    { asm: "mov al,ah", code: "88 e0", in: { rax: 0x1234n }, out: { rax: 0x1212n } },
    { asm: "mov sil,dil", code: "40 88 fe", in: { rsi: 0xffffn, rdi: 0x12n }, out: { rsi: 0xff12n } },
    { asm: "mov r9d,r15d", code: "45 89 f9", in: { r9: 0xffffffffffffffffn, r15: 0x1_00000002n }, out: { r9: 2n } },
    { asm: "mov rax,0x100000001", code: "48 b8 01 00 00 00 01 00 00 00", out: { rax: 0x100000001n } },
    { asm: "mov r9,0x8000000000000001", code: "49 b9 01 00 00 00 00 00 00 80", out: { r9: 0x8000000000000001n } },
    { asm: "mov rax,0xffffffffffffffff", code: "48 c7 c0 ff ff ff ff", out: { rax: 0xffffffffffffffffn } },
    { asm: "mov eax,0xffffffff", code: "b8 ff ff ff ff", in: { rax: 0x123400000000n }, out: { rax: 0xffffffffn } },
    { asm: "mov edi,0x2a", code: "bf 2a 00 00 00", in: { rdi: 0xffffffffffffffffn }, out: { rdi: 42n } },
    { asm: "movzx eax,ah", code: "0f b6 c4", in: { rax: 0xffffffffffff8a00n }, out: { rax: 0x8an } },
    { asm: "movzx eax,bx", code: "0f b7 c3", in: { rax: 0xffffffffffffffffn, rbx: 0xffffffffn }, out: { rax: 0xffffn } },
    { asm: "movzx rax,bl", code: "48 0f b6 c3", in: { rax: 0xffffffffffffffffn, rbx: 0x1ffn }, out: { rax: 0xffn } },
    { asm: "movsx rax,bl", code: "48 0f be c3", in: { rbx: 0x80n }, out: { rax: 0xffffffffffffff80n } },
    { asm: "movsx eax,bx", code: "0f bf c3", in: { rax: 0xffffffffffffffffn, rbx: 0x8000n }, out: { rax: 0xffff8000n } },
    { asm: "movsxd rax,ebx", code: "48 63 c3", in: { rbx: 0x180000000n }, out: { rax: 0xffffffff80000000n } },
    { asm: "lea rax,[rax+rbx*4+0x8]", code: "48 8d 44 98 08", in: { rax: 0x100n, rbx: 0x10n }, out: { rax: 0x148n } },
    { asm: "lea rax,[rax+rbx*4+0x8]", code: "48 8d 44 98 08", in: { rax: 0x7fffffffffffffffn, rbx: 1n }, out: { rax: 0x800000000000000bn } },
    { asm: "lea eax,[rax+rbx]", code: "8d 04 18", in: { rax: 0xfffffffffffffff0n, rbx: 0x20n }, out: { rax: 0x10n } },
    { asm: "lea rbp,[rsp+0x1]", code: "48 8d 6c 24 01", out: { rbp: STACK_TOP - 8n + 1n } },
  ],
  "memory operands": [
    { asm: "mov [rsp-0x8],rax", code: "48 89 44 24 f8 48 8b 5c 24 f8", in: { rax: 0x1122334455667788n }, out: { rbx: 0x1122334455667788n } },
    { asm: "mov [rdi+rcx*8-0x10],esi", code: "89 74 cf f0 48 8b 47 f0", in: { rdi: DATA + 0x100n, rcx: 0n, rsi: 0xffffffffaabbccddn, rax: 0n }, out: { rax: 0xaabbccddn },
      setup: (m) => m.load(DATA + 0xf0n, bytes("00 00 00 00 00 00 00 00")) },
    { asm: "mov [rdi+0x3],sil", code: "40 88 77 03 48 8b 07", in: { rdi: DATA, rsi: 0x5an }, out: { rax: 0x5a000000n } },
    { asm: "mov word ptr [rdi+0xfff],0xbeef", code: "66 c7 87 ff 0f 00 00 ef be 0f b7 87 ff 0f 00 00", in: { rdi: DATA }, out: { rax: 0xbeefn } }, // crosses a page boundary
    { asm: "mov rax,gs:[0x8]", code: "65 48 8b 04 25 08 00 00 00", out: { rax: 0x0807060504030201n },
      setup: (m) => m.load(PERCPU + 8n, bytes("01 02 03 04 05 06 07 08")) },
    { asm: "add r9,gs:[0x10]", code: "65 4c 03 0c 25 10 00 00 00", in: { r9: 0x100n }, out: { r9: 0x142n },
      setup: (m) => m.load(PERCPU + 0x10n, bytes("42")) },
    { asm: "mov rax,[0xffffffff81000007]", code: "48 8b 05 00 00 00 00", out: { rax: 0xc3n } },
    { asm: "mov qword ptr [rsp-0x8],0xffffffffffffffff", code: "48 c7 44 24 f8 ff ff ff ff 48 83 44 24 f8 01 48 8b 44 24 f8", out: { rax: 0n }, flags: "CF PF AF ZF" },
    { asm: "movzx eax,word ptr [rdi]", code: "0f b7 07", in: { rdi: DATA + 0xffen, rax: 0xffffffffffffffffn }, out: { rax: 0x2211n },
      setup: (m) => m.load(DATA + 0xffen, bytes("11 22")) },
  ],
  "stack": [
    { asm: "push 0xfffffffffffffffe", code: "6a fe 58", out: { rax: 0xfffffffffffffffen, rsp: STACK_TOP } },
    { asm: "push 0xffffffff80000000", code: "68 00 00 00 80 5b", out: { rbx: 0xffffffff80000000n } },
    { asm: "push rsp", code: "54 58", out: { rax: STACK_TOP - 8n } },
    { asm: "push 0x5", code: "6a 05 6a 07 8f 04 24 58", out: { rax: 7n, rsp: STACK_TOP } },
    { asm: "push qword ptr [rsp]", code: "ff 34 24 58", out: { rax: 0xfffffffffffff000n } },
    { asm: "push rbp", code: "55 48 89 e5 48 83 ec 20 c9", in: { rbp: 0x1234n }, out: { rbp: 0x1234n, rsp: STACK_TOP } },
    { asm: "push r9", code: "41 51 41 59", in: { r9: 0xabcn }, out: { r9: 0xabcn, rsp: STACK_TOP } },
    { asm: "pushfq", code: "9c 58", pre: CF | ZF | IF | FIXED, out: { rax: BigInt(CF | ZF | IF | FIXED) } },
  ],
  // div/idiv leave every arithmetic flag undefined (no `flags`: none compared).
  "divide": [
    { asm: "div rbx", code: "48 f7 f3", in: { rax: 100n, rdx: 0n, rbx: 7n }, out: { rax: 14n, rdx: 2n, rbx: 7n } },
    { asm: "div rbx", code: "48 f7 f3", in: { rax: 0n, rdx: 1n, rbx: 2n }, out: { rax: 0x8000000000000000n, rdx: 0n } },
    { asm: "div rbx", code: "48 f7 f3", in: { rax: 0xffffffffffffffffn, rdx: 0xfffffffffffffffen, rbx: 0xffffffffffffffffn }, out: { rax: 0xffffffffffffffffn, rdx: 0xfffffffffffffffen } },
    { asm: "div ebx", code: "f7 f3", in: { rax: 0xffffffffffffffffn, rdx: 0xaaaaaaaa00000001n, rbx: 0x100000002n }, out: { rax: 0xffffffffn, rdx: 1n } },
    { asm: "div bx", code: "66 f7 f3", in: { rax: 0x1111222233330005n, rdx: 0x44440001n, rbx: 0x10n }, out: { rax: 0x1111222233331000n, rdx: 0x44440005n } },
    { asm: "div bl", code: "f6 f3", in: { rax: 0xffffffffffff0107n, rbx: 0x10n }, out: { rax: 0xffffffffffff0710n } },
    { asm: "div r11", code: "49 f7 f3", in: { rax: 0x1234n, rdx: 0n, r11: 0x1234n }, out: { rax: 1n, rdx: 0n } },
    { asm: "div qword ptr [rsp-0x8]", code: "48 f7 74 24 f8", in: { rax: 10n, rdx: 0n }, out: { rax: 3n, rdx: 1n },
      setup: (m) => m.load(STACK_TOP - 16n, bytes("03 00 00 00 00 00 00 00")) },
    { asm: "idiv rbx", code: "48 f7 fb", in: { rax: 0xfffffffffffffff9n, rdx: 0xffffffffffffffffn, rbx: 2n }, out: { rax: 0xfffffffffffffffdn, rdx: 0xffffffffffffffffn } },
    { asm: "idiv rbx", code: "48 f7 fb", in: { rax: 7n, rdx: 0n, rbx: 0xfffffffffffffffen }, out: { rax: 0xfffffffffffffffdn, rdx: 1n } },
    { asm: "idiv rbx", code: "48 f7 fb", in: { rax: 0x8000000000000000n, rdx: 0xffffffffffffffffn, rbx: 1n }, out: { rax: 0x8000000000000000n, rdx: 0n } },
    { asm: "idiv ecx", code: "f7 f9", in: { rax: 0x80000000n, rdx: 0xffffffffn, rcx: 2n }, out: { rax: 0xc0000000n, rdx: 0n } },
    { asm: "idiv bl", code: "f6 fb", in: { rax: 0xff81n, rbx: 2n }, out: { rax: 0xffc1n } },
    { asm: "idiv bx", code: "66 f7 fb", in: { rax: 0x7fffn, rdx: 0n, rbx: 0xffffn }, out: { rax: 0x8001n, rdx: 0n } },
  ],
  "sign extension of the accumulator": [
    { asm: "cbw", code: "66 98", in: { rax: 0x1111222233334480n }, out: { rax: 0x111122223333ff80n } },
    { asm: "cwde", code: "98", in: { rax: 0xffffffff00008000n }, out: { rax: 0xffff8000n } },
    { asm: "cdqe", code: "48 98", in: { rax: 0x1234567880000000n }, out: { rax: 0xffffffff80000000n } },
    { asm: "cdqe", code: "48 98", in: { rax: 0xffffffff7fffffffn }, out: { rax: 0x7fffffffn } },
    { asm: "cwd", code: "66 99", in: { rax: 0x8000n, rdx: 0x1111222233334444n }, out: { rdx: 0x111122223333ffffn } },
    { asm: "cdq", code: "99", in: { rax: 0x7fffffffn, rdx: 0xffffffffffffffffn }, out: { rdx: 0n } },
    { asm: "cdq", code: "99", in: { rax: 0x80000000n, rdx: 0x1234000000000000n }, out: { rdx: 0xffffffffn } },
    { asm: "cqo", code: "48 99", in: { rax: 0x8000000000000000n }, out: { rdx: 0xffffffffffffffffn } },
    { asm: "cqo", code: "48 99", in: { rax: 0x7fffffffffffffffn, rdx: 5n }, out: { rdx: 0n }, flags: "CF ZF", pre: CF | ZF | FIXED },
  ],
  "byte swaps and rotates": [
    { asm: "bswap eax", code: "0f c8", in: { rax: 0x1122334455667788n }, out: { rax: 0x88776655n }, flags: "CF", pre: CF | FIXED },
    { asm: "bswap rax", code: "48 0f c8", in: { rax: 0x1122334455667788n }, out: { rax: 0x8877665544332211n } },
    { asm: "bswap r9d", code: "41 0f c9", in: { r9: 0xff01020304n }, out: { r9: 0x04030201n } },
    { asm: "ror ax,0x8", code: "66 c1 c8 08", in: { rax: 0x1122334455667788n }, out: { rax: 0x1122334455668877n }, flags: "CF", mask: "CF" },
    { asm: "rol rax,0x20", code: "48 c1 c0 20", in: { rax: 0x0000000100000002n }, out: { rax: 0x0000000200000001n }, flags: "CF", mask: "CF" },
    { asm: "rol rax,0x4", code: "48 c1 c0 04", in: { rax: 0xf000000000000001n }, out: { rax: 0x000000000000001fn }, flags: "CF PF ZF", mask: "CF PF ZF", pre: PF | ZF | FIXED },
    { asm: "rol eax,0x1", code: "d1 c0", in: { rax: 0xffffffff80000001n }, out: { rax: 3n }, flags: "CF OF", mask: "CF OF" },
    { asm: "ror eax,0x1", code: "d1 c8", in: { rax: 1n }, out: { rax: 0x80000000n }, flags: "CF OF", mask: "CF OF" },
    { asm: "ror rax,0x1", code: "48 d1 c8", in: { rax: 0x8000000000000000n }, out: { rax: 0x4000000000000000n }, flags: "OF", mask: "CF OF" },
    { asm: "rol al,cl", code: "d2 c0", in: { rax: 0x81n, rcx: 9n }, out: { rax: 3n }, flags: "CF", mask: "CF" },
    { asm: "rol r8b,0x8", code: "41 c0 c0 08", in: { r8: 0x81n }, out: { r8: 0x81n }, flags: "CF", mask: "CF" },
    { asm: "ror r8w,cl", code: "66 41 d3 c8", in: { r8: 0xffff0001n, rcx: 0x24n }, out: { r8: 0xffff1000n }, flags: "", mask: "CF" },
    { asm: "rol eax,0x0", code: "c1 c0 00", in: { rax: 0xffffffff12345678n }, out: { rax: 0x12345678n }, flags: "CF", pre: CF | FIXED },
  ],
  "BMI2 shifts (no flags)": [
    { asm: "shlx rax,rax,rbx", code: "c4 e2 e1 f7 c0", in: { rax: 1n, rbx: 65n }, out: { rax: 2n }, flags: "CF PF AF ZF SF OF", pre: ALL | FIXED },
    { asm: "shlx rax,rax,rbx", code: "c4 e2 e1 f7 c0", in: { rax: 0x1234n, rbx: 64n }, out: { rax: 0x1234n }, flags: "" },
    { asm: "shrx ecx,ecx,ebx", code: "c4 e2 63 f7 c9", in: { rcx: 0xdeadbeef80000000n, rbx: 33n }, out: { rcx: 0x40000000n }, flags: "" },
    { asm: "sarx rdx,rdx,rbx", code: "c4 e2 e2 f7 d2", in: { rdx: 0x8000000000000000n, rbx: 63n }, out: { rdx: 0xffffffffffffffffn }, flags: "ZF", pre: ZF | FIXED },
    { asm: "sarx r11d,[rsp-0x8],r9d", code: "c4 62 32 f7 5c 24 f8", in: { r9: 31n, r11: 0x1234567812345678n }, out: { r11: 0xffffffffn },
      setup: (m) => m.load(STACK_TOP - 16n, bytes("00 00 00 80")) },
    { asm: "shrx r10,r9,r8", code: "c4 42 bb f7 d1", in: { r8: 4n, r9: 0xf0n }, out: { r10: 0xfn, r9: 0xf0n } },
  ],
  "atomics": [
    { asm: "lock xadd [rsp-0x8],rbx", code: "f0 48 0f c1 5c 24 f8 48 8b 44 24 f8", in: { rbx: 3n }, out: { rax: 8n, rbx: 5n }, flags: "",
      setup: (m) => m.load(STACK_TOP - 16n, bytes("05 00 00 00 00 00 00 00")) },
    { asm: "xadd rax,rbx", code: "48 0f c1 d8", in: { rax: 0x7fffffffffffffffn, rbx: 1n }, out: { rax: 0x8000000000000000n, rbx: 0x7fffffffffffffffn }, flags: "PF AF SF OF" },
    { asm: "xadd eax,eax", code: "0f c1 c0", in: { rax: 0xffffffff00000001n }, out: { rax: 2n }, flags: "" },
    { asm: "xchg [rsp-0x8],rbx", code: "48 87 5c 24 f8 48 8b 44 24 f8", in: { rbx: 0xabcn }, out: { rax: 0xabcn, rbx: 0x1122334455667788n },
      setup: (m) => m.load(STACK_TOP - 16n, bytes("88 77 66 55 44 33 22 11")) },
    { asm: "xchg ebx,eax", code: "87 c3", in: { rax: 0xffffffff00000001n, rbx: 0xffffffff00000002n }, out: { rax: 2n, rbx: 1n } },
    { asm: "xchg r8d,eax", code: "41 90", in: { rax: 0xdead00000001n, r8: 0xdead00000002n }, out: { rax: 2n, r8: 1n } },
    { asm: "xchg ecx,ecx", code: "87 c9", in: { rcx: 0xffffffffffffffffn }, out: { rcx: 0xffffffffn } },
    { asm: "xchg bx,ax", code: "66 93", in: { rax: 0x11110001n, rbx: 0x22220002n }, out: { rax: 0x11110002n, rbx: 0x22220001n } },
    { asm: "lock cmpxchg [rsp-0x8],rbx", code: "f0 48 0f b1 5c 24 f8 48 8b 4c 24 f8", in: { rax: 5n, rbx: 9n }, out: { rax: 5n, rcx: 9n }, flags: "PF ZF",
      setup: (m) => m.load(STACK_TOP - 16n, bytes("05 00 00 00 00 00 00 00")) },
    { asm: "lock cmpxchg [rsp-0x8],rbx", code: "f0 48 0f b1 5c 24 f8 48 8b 4c 24 f8", in: { rax: 5n, rbx: 9n }, out: { rax: 6n, rcx: 6n }, flags: "CF PF AF SF",
      setup: (m) => m.load(STACK_TOP - 16n, bytes("06 00 00 00 00 00 00 00")) },
    { asm: "lock cmpxchg [rsp-0x8],ebx", code: "f0 0f b1 5c 24 f8 48 8b 4c 24 f8", in: { rax: 0xdead000000000005n, rbx: 9n }, out: { rax: 0xdead000000000005n, rcx: 0x1111111100000009n }, flags: "PF ZF",
      setup: (m) => m.load(STACK_TOP - 16n, bytes("05 00 00 00 11 11 11 11")) },
    { asm: "lock cmpxchg [rsp-0x8],ebx", code: "f0 0f b1 5c 24 f8", in: { rax: 0xdead000000000005n, rbx: 9n }, out: { rax: 6n }, flags: "CF PF AF SF",
      setup: (m) => m.load(STACK_TOP - 16n, bytes("06 00 00 00 11 11 11 11")) },
    { asm: "cmpxchg ecx,edx", code: "0f b1 d1", in: { rax: 0xdead000000000005n, rcx: 0xdead000000000006n, rdx: 0xdead000000000007n }, out: { rax: 6n, rcx: 0xdead000000000006n }, flags: "CF PF AF SF" },
    { asm: "cmpxchg ecx,edx", code: "0f b1 d1", in: { rax: 0xdead000000000006n, rcx: 0xbeef000000000006n, rdx: 0xdead000000000007n }, out: { rax: 0xdead000000000006n, rcx: 7n }, flags: "PF ZF" },
    { asm: "cmpxchg bl,ah", code: "0f b0 e3", in: { rax: 0x1234n, rbx: 0x12n }, out: { rax: 0x1212n, rbx: 0x12n }, mask: "ZF", flags: "" },
  ],
  "no-ops": [
    { asm: "xchg ax,ax", code: "66 90", in: { rax: 0xdead000000000000n }, out: { rax: 0xdead000000000000n } },
    { asm: "nop [rax+rax]", code: "0f 1f 44 00 00", in: { rax: 0xdead000000000000n }, out: { rax: 0xdead000000000000n } },
    { asm: "nop [rax]", code: "0f 1f 00", in: { rax: 0xdead000000000000n }, out: { rax: 0xdead000000000000n } },
    { asm: "endbr64", code: "f3 0f 1e fa", in: { rax: 1n }, out: { rax: 1n } },
    { asm: "nop", code: "90", out: {} },
    { asm: "nop rax,rdi", code: "f3 48 0f 1e f8", in: { rax: 1n, rdi: 2n }, out: { rax: 1n, rdi: 2n }, flags: "CF", pre: CF | FIXED }, // ibhf
  ],
};

describe("instruction semantics", () => {
  for (const [group, rows] of Object.entries(cases)) {
    describe(group, () => {
      test.each(rows.map((c, i) => ({ ...c, name: `${c.asm} #${i}` })))("$name", (c) => {
        const text = disassemble(bytes(c.code), TEXT, { syntax: "intel" })[0]!.text;
        expect(text, "the bytes encode the instruction the row names").toBe(c.asm);
        const { m, result } = runSnippet(c.code, c.in ?? {}, (mm) => {
          if (c.pre !== undefined) mm.rflags = c.pre;
          c.setup?.(mm);
        });
        expect(result.kind, JSON.stringify(result, (_, v) => (typeof v === "bigint" ? v.toString(16) : v))).toBe("completed");
        for (const [reg, v] of Object.entries(c.out)) expect(m.reg(reg as RegName).toString(16), reg).toBe(v.toString(16));
        if (c.flags !== undefined) {
          const mask = c.mask ? flags(c.mask) : ALL;
          expect(m.rflags & mask, `flags (got ${m.rflags.toString(16)})`).toBe(flags(c.flags) & mask);
        }
      });
    });
  }
});

/** Each x86 condition in encoding order (cc 0..15), as the SDM defines it (jcc and cmovcc alike). */
const conds: [string, (f: number) => boolean][] = [
  ["o", (f) => !!(f & OF)], ["no", (f) => !(f & OF)], ["b", (f) => !!(f & CF)], ["ae", (f) => !(f & CF)],
  ["e", (f) => !!(f & ZF)], ["ne", (f) => !(f & ZF)], ["be", (f) => !!(f & (CF | ZF))], ["a", (f) => !(f & (CF | ZF))],
  ["s", (f) => !!(f & SF)], ["ns", (f) => !(f & SF)], ["p", (f) => !!(f & PF)], ["np", (f) => !(f & PF)],
  ["l", (f) => !!(f & SF) !== !!(f & OF)], ["ge", (f) => !!(f & SF) === !!(f & OF)],
  ["le", (f) => !!(f & ZF) || !!(f & SF) !== !!(f & OF)], ["g", (f) => !(f & ZF) && !!(f & SF) === !!(f & OF)],
];
/** Flag values that tell the conditions apart. */
const flagSets = [0, CF, ZF, SF, OF, PF, SF | OF, ZF | SF, CF | ZF, ALL];

describe("conditional moves", () => {
  // Each condition as for jcc (below), in all three sizes; a false condition still zero-extends
  // a 32-bit destination, and the memory source is read either way.
  const A = 0xaaaaaaaaaaaaaaaan, B = 0xbbbbbbbbbbbbbbbbn;
  for (const [i, [cc, taken]] of conds.entries()) {
    const op = (0x40 + i).toString(16);
    test(`cmov${cc} r64, r32 and r16 (0f ${op}) follow the SDM condition`, () => {
      for (const f of flagSets) {
        for (const [code, size, asm] of [[`48 0f ${op} c3`, 64, `cmov${cc} rax,rbx`], [`0f ${op} c3`, 32, `cmov${cc} eax,ebx`], [`66 0f ${op} c3`, 16, `cmov${cc} ax,bx`]] as const) {
          expect(disassemble(bytes(code), TEXT, { syntax: "intel" })[0]!.text).toBe(asm);
          const { m } = runSnippet(code, { rax: A, rbx: B }, (mm) => { mm.rflags = f | FIXED; });
          const mask = (1n << BigInt(size)) - 1n;
          const want = taken(f) ? (A & ~mask) | (B & mask) : A;
          expect(m.reg("rax"), `${asm} with flags ${f.toString(16)}`).toBe(size === 32 ? want & 0xffffffffn : want);
          expect(m.rflags, "no flags change").toBe(f | FIXED);
        }
      }
    });
  }
  test("cmove rax,[rbx] reads its source when the condition is false: an unmapped one faults", () => {
    const { m, result } = runSnippet("48 0f 44 03", { rax: 1n, rbx: DATA + 0x100000n }, (mm) => { mm.rflags = FIXED; });
    expect(result).toMatchObject({ kind: "fault", reason: "unmapped", access: "read", address: DATA + 0x100000n, rip: TEXT });
    expect(m.reg("rax")).toBe(1n);
  });
});

describe("flags outside the arithmetic set", () => {
  test("popfq loads the writable flags and keeps bit 1 set", () => {
    const { m } = runSnippet("68 d5 0c 00 00 9d", {}, (mm) => { mm.rflags = IF | FIXED; });
    // 0xcd5 = CF PF AF ZF SF DF OF; IF (bit 9) clear
    expect(m.rflags).toBe(CF | PF | AF | ZF | SF | DF | OF | FIXED);
  });
  test("popfq ignores RF and VM", () => {
    const { m } = runSnippet("68 00 00 03 00 9d");
    expect(m.rflags).toBe(FIXED);
  });
  test("cli clears IF and sti sets it", () => {
    expect(runSnippet("fa", {}, (m) => { m.rflags = IF | FIXED; }).m.rflags & IF).toBe(0);
    expect(runSnippet("fb").m.rflags & IF).toBe(IF);
  });
  test("pushfq shows TF and DF as they are", () => {
    const { m } = runSnippet("9c 58", {}, (mm) => { mm.rflags = TF | DF | FIXED; });
    expect(m.reg("rax")).toBe(BigInt(TF | DF | FIXED));
  });
});

describe("conditional jumps", () => {
  // Each condition as the SDM defines it.
  for (const [i, [cc, taken]] of conds.entries()) {
    test(`j${cc} (rel8 and rel32) follows the SDM condition`, () => {
      for (const f of flagSets) {
        // mov eax,1 ; jcc +2 ; xor eax,eax  →  rax = 1 iff taken
        const rel8 = runSnippet(`b8 01 00 00 00 ${(0x70 + i).toString(16)} 02 31 c0`, {}, (m) => { m.rflags = f | FIXED; });
        const rel32 = runSnippet(`b8 01 00 00 00 0f ${(0x80 + i).toString(16)} 02 00 00 00 31 c0`, {}, (m) => { m.rflags = f | FIXED; });
        expect(rel8.m.reg("rax"), `j${cc} rel8 with flags ${f.toString(16)}`).toBe(taken(f) ? 1n : 0n);
        expect(rel32.m.reg("rax"), `j${cc} rel32 with flags ${f.toString(16)}`).toBe(taken(f) ? 1n : 0n);
      }
    });
  }
});
