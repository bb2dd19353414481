// bpf_throw() from a main program with a private stack (kernel-model-7.2.md B.3, its [derived]
// hazard), on the tree's own JIT (7.x). The JIT brackets every call of a program with a private
// stack with `push r9` / `pop r9` (bpf_jit_comp.c do_jit(), BPF_JMP | BPF_CALL), bpf_throw()'s
// call too. bpf_throw() (kernel/bpf/helpers.c) walks the stack with arch_bpf_stack_walk()
// (bpf_jit_comp.c: ORC's unwind_start()/unwind_next_frame()) and takes the first main-program
// frame's state.sp (bpf_stack_walker()): the CFA of bpf_throw(), where the main program's rsp is
// once the call has returned, so the saved r9 word. It calls the exception callback with it
// (rsi = ctx.sp + stack_arg_sp_adjust, rdx = ctx.bp), whose prologue (emit_prologue(),
// is_exception_cb) pops r15, r14, r13, rbx, r12 from there, expecting the exception boundary's
// pushes (do_jit(): push r12, then rbx, r13, r14, r15). Nothing skips the r9 word
// (stack_arg_sp_adjust is the outgoing-argument area only), so every register comes back one
// slot off: the program's caller gets r15 = the private frame pointer, r14 = its own r15, ...,
// r12 = its own rbx.
//
// Run here on the machine with the tree's bytes: a caller with known callee-saved values calls the
// main program, which stores to its stack and throws; bpf_throw() is a hook doing what
// arch_bpf_stack_walk() + bpf_stack_walker() give at its entry (state.sp = rsp + 8, the CFA of a
// function's first instruction; state.bp = rbp; ip = the return address into the main program)
// and jumping to the callback with bpf_throw()'s arguments. The run stops at the callback's `ret`,
// where the caller's registers are what they will be. The same program without a private stack
// is the control: its registers come back intact, so the hook's walk is the right one. Thrown
// from a subprog (the selftest's second case), the walk skips the subprog's frame, ORC taking it
// for a frame-pointer frame, and the main function's state.sp is the r9 word pushed around the
// call of the subprog: the same shift.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { KernelJit, type JitResponse } from "../../jit/tree/index.ts";
import { Machine } from "../../harness/machine/index.ts";
import { Code, Decoder, DecoderOptions } from "../../jit/iced.ts";
import { hostTimeout } from "../helpers/runs.ts";
import { bpf, IMAGE, program, treeOrSkip } from "./helpers.ts";

const tree = treeOrSkip();

const THROW = 0xffffffff81000200n; // bpf_throw()
const STOP = 0xffffffff81000400n; // the program's caller, after its call
const PCPU = 0xffffffff82000000n; // the GS base: this_cpu_off at gs:0x10 (the shim's model of it)
const PRIV = 0x2a000n; // the __percpu pointer of the private stack
const PRIV_AREA = 0xffff888000000000n; // where it lands on this CPU
const STACK = 0xffffc90000000000n;
const CALLER = { rbx: 0x1111n, r12: 0x1212n, r13: 0x1313n, r14: 0x1414n, r15: 0x1515n } as const;

// main: r1 = 42; *(u64 *)(r10 - 512) = r1; r1 = 0; call bpf_throw (a kfunc); r0 = 0; exit
// exception callback, the verifier's default (add_hidden_subprog()): r0 = r1; exit
// (the selftest's second case: main calls a subprog, no stack of its own, that throws)
const THROW_CALL = bpf.raw(0x85, 0, 2, 0, 7);
const MAIN = [bpf.movImm(1, 42), bpf.stxDw(10, 1, -512), bpf.movImm(1, 0), THROW_CALL, bpf.movImm(0, 0), bpf.exit()];
const MAIN_CALLS_SUB = [bpf.movImm(1, 42), bpf.stxDw(10, 1, -512), bpf.callSub(2), bpf.movImm(0, 0), bpf.exit()];
const SUB = [bpf.movImm(1, 0), THROW_CALL, bpf.movImm(0, 0), bpf.exit()];
const CB = [bpf.movReg(0, 1), bpf.exit()];

type Ok = Extract<JitResponse, { ok: true }>;

/** The caller's registers when the exception callback (the last function) returns to it. */
function thrown(r: Ok): { regs: Record<keyof typeof CALLER, bigint>; rax: bigint; returnsTo: bigint; r9: bigint } {
  const main = r.funcs[0]!, cb = r.funcs.at(-1)!, subs = r.funcs.slice(1, -1);
  const inImage = (f: { image: bigint; bytes: Uint8Array }, ip: bigint) => ip >= f.image && ip < f.image + BigInt(f.bytes.length);
  const m = new Machine({
    regions: [
      { name: "text", kind: "text", start: 0xffffffff81000000n, size: 0x1000, perms: "r-x" },
      { name: "bpf", kind: "text", start: IMAGE, size: 0x3000, perms: "r-x" },
      { name: "percpu", kind: "percpu", start: PCPU, size: 0x1000, perms: "rw-" },
      { name: "priv", kind: "data", start: PRIV_AREA, size: 0x1000, perms: "rw-" },
      { name: "stack", kind: "stack", start: STACK, size: 0x4000, perms: "rw-" },
    ],
  });
  for (const f of r.funcs) m.load(f.image, f.bytes);
  m.load(THROW, Uint8Array.of(0xcc)); // never runs: the hook leaves first
  m.gsBase = PCPU;
  const off = new DataView(new ArrayBuffer(8));
  off.setBigUint64(0, PRIV_AREA - PRIV, true);
  m.load(PCPU + 0x10n, new Uint8Array(off.buffer)); // this_cpu_off
  for (const [reg, v] of Object.entries(CALLER)) m.setReg(reg as keyof typeof CALLER, v);
  let r9 = 0n;
  m.addHook(THROW, (mm) => {
    // arch_bpf_stack_walk(bpf_stack_walker): bpf_throw()'s own frames are not BPF; unwinding
    // bpf_throw() (ORC_TYPE_CALL) gives the frame it returns to: ip, state.sp = its CFA,
    // state.bp = rbp. A subprog's frame is skipped, and ORC, with no data for BPF code, takes
    // the next as a frame-pointer frame (orc_fp_entry: sp = bp + 16, ip = *(bp + 8), bp = *bp);
    // the first main-program frame is taken
    let ip = mm.peek64(mm.reg("rsp"))!, sp = mm.reg("rsp") + 8n, bp = mm.reg("rbp");
    while (subs.some((f) => inImage(f, ip))) [ip, sp, bp] = [mm.peek64(bp + 8n)!, bp + 16n, mm.peek64(bp)!];
    expect(inImage(main, ip)).toBe(true);
    r9 = mm.reg("r9");
    // ctx.aux->bpf_exception_cb(cookie, ctx.sp + stack_arg_sp_adjust (0: no stack arguments), ctx.bp, 0, 0)
    mm.setReg("rsi", sp);
    mm.setReg("rdx", bp);
    mm.setReg("rcx", 0n);
    mm.setReg("r8", 0n);
    mm.rip = cb.bpfFunc;
  });
  // the callback's last `ret`: where it hands the caller its registers
  const d = new Decoder(64, cb.bytes, DecoderOptions.None);
  d.ip = cb.image;
  let ret = 0n;
  while (d.canDecode) { const ins = d.decode(); if (ins.code === Code.Retnq) ret = ins.ip; ins.free(); }
  m.addHook(ret, () => "stop");
  m.call(main.bpfFunc, { rsp: STACK + 0x3000n, stopAt: STOP, args: [0n] });
  const end = m.run();
  expect(end.kind, JSON.stringify(end, (_, v) => (typeof v === "bigint" ? v.toString(16) : v))).toBe("stopped");
  expect(m.rip).toBe(ret);
  const regs = Object.fromEntries(Object.keys(CALLER).map((k) => [k, m.reg(k as keyof typeof CALLER)])) as Record<keyof typeof CALLER, bigint>;
  return { regs, rax: m.reg("rax"), returnsTo: m.peek64(m.reg("rsp"))!, r9 };
}

if (tree !== undefined) describe.skipIf(tree.versionCode[0] < 7)(`bpf_throw() from a main program with a private stack, on the JIT of ${tree.dir} (${tree.version})`, () => {
  let kj: KernelJit;
  beforeAll(() => { kj = new KernelJit({ tree }); }, hostTimeout(180_000));
  afterAll(() => kj?.close());

  const jit = (priv: boolean, viaSubprog = false): Ok => {
    const funcs = viaSubprog ? [{ insns: MAIN_CALLS_SUB, depth: 512, ...(priv ? { priv: PRIV } : {}) }, { insns: SUB }, { insns: CB }] : [{ insns: MAIN, depth: 512, ...(priv ? { priv: PRIV } : {}) }, { insns: CB }];
    const throwAt = viaSubprog ? MAIN_CALLS_SUB.length + 1 : 3;
    const req = program(funcs, { type: "tracing", exceptionBoundary: true, calls: [{ insn: throwAt, target: THROW }] });
    const r = kj.jit({ ...req, funcs: req.funcs.map((f, i) => (i === funcs.length - 1 ? { ...f, exceptionCb: true } : f)) });
    if (!r.ok) throw new Error(`the tree's JIT refused the program: ${JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString(16) : v))}`);
    return r;
  };

  for (const viaSubprog of [false, true]) {
    const from = viaSubprog ? "thrown from a subprog" : "thrown from the main function";
    test(`${from}, without a private stack (the control): the callback returns to the caller with its callee-saved registers and the cookie`, () => {
      const t = thrown(jit(false, viaSubprog));
      expect(t.returnsTo).toBe(STOP);
      expect(t.rax).toBe(0n);
      expect(t.regs).toEqual(CALLER);
    });

    test(`${from}, with a private stack: the callback pops from the saved r9 word, so the caller gets every callee-saved register one slot off`, () => {
      const t = thrown(jit(true, viaSubprog));
      expect(t.returnsTo).toBe(STOP);
      expect(t.rax).toBe(0n);
      // the main function's private frame pointer: priv + guard (8) + round_up(512, 8)
      if (!viaSubprog) expect(t.r9).toBe(PRIV_AREA + 0x208n);
      expect(t.regs).toEqual({ r15: PRIV_AREA + 0x208n, r14: CALLER.r15, r13: CALLER.r14, rbx: CALLER.r13, r12: CALLER.rbx });
    });
  }
});
