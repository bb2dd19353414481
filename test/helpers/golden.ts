// The program every strategy's golden listing is made from: a main program with a 64-byte stack
// that uses a callee-saved register, calls a helper and a subprog with a stack pointer, and a
// subprog with its own 16-byte stack. Each touches the bottom of its stack: the JIT's depth is
// the verifier's, what the accesses reach.
import { alu64, call, exit, ldx, st, stx } from "../../jit/bpf/insn.ts";
import { BPF_DW, R0, R1, R6, R10 } from "../../jit/bpf/opcodes.ts";
import { program } from "../../jit/bpf/program.ts";

export const goldenProgram = program({ name: "golden", type: "raw_tp", funcs: [
  { name: "main", stackDepth: 64, body: [
    st(BPF_DW, R10, -64, 0), alu64.mov.imm(R6, 7), stx(BPF_DW, R10, R6, -8), call.helper(3),
    alu64.mov.reg(R1, R10), alu64.add.imm(R1, -8), call.subprog("sub"), alu64.add.reg(R0, R6), exit(),
  ] },
  { name: "sub", stackDepth: 16, body: [ldx(BPF_DW, R0, R1, 0), stx(BPF_DW, R10, R0, -16), ldx(BPF_DW, R0, R10, -16), exit()] },
] });
