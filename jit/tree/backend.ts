// The kernel's own JIT as a JIT backend (jit/backend.ts): a program goes to the tree's
// bpf_jit_comp.c through KernelJit as jit_subprogs() (kernel/bpf/fixups.c, 7.2) gives it to
// bpf_int_jit_compile(): every function's instructions, the verifier's stack depth
// (aux->stack_depth), the private stack the verifier chose (jits_use_priv_stack; its
// __alloc_percpu_gfp() pointer in the harness's per-CPU area), the helpers' and kfuncs'
// addresses in the synthetic kernel; one function is JITed once at its image, several first at
// placeholder images (for their sizes) and then at their packed images with the real call
// targets. What comes back (bytes, addrs[], ksym.fp_start/fp_end, the private stack and its
// guard words) becomes the JitProgram the TypeScript JIT would give.
//
// A strategy is what the tree implements: `r9-private` is the tree's private stacks where its
// verifier rules give one (7.x; 6.12 has none), `baseline` the same JIT with none. Any other
// design is not in a tree.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { helperOrFixupById, kfuncById } from "../bpf/abi.ts";
import type { BpfInsn } from "../bpf/insn.ts";
import { BPF_CALL, BPF_CLASS, BPF_EXIT, BPF_HELPER_CALL, BPF_JMP, BPF_OP, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, BPF_REG_AX } from "../bpf/opcodes.ts";
import type { ProgType, Program } from "../bpf/program.ts";
import type { Validated } from "../bpf/validate.ts";
import type { JitBackend } from "../backend.ts";
import { symbolName, type JitFunction, type JitLayout, type JitProgram } from "../jit.ts";
import { calleeSavedUsed, insnAddrsOf, JitError } from "../lower.ts";
import { PRIV_STACK_GUARD_VAL } from "../percpu.ts";
import { jitStackDepths, StrategyError, type JitOptions, type PlacedPrivate, type Strategy } from "../strategy.ts";
import { privateStackRequests } from "../strategies/r9-private.ts";
import { KernelJitError, type KernelJit } from "./child.ts";
import type { FuncResult, JitRequest } from "./protocol.ts";
import { TreeError } from "./errors.ts";
import { sha256File, type KernelTree } from "./tree.ts";

/** The designs a tree implements (see the header). */
export const TREE_STRATEGIES = ["r9-private", "baseline"] as const;

/** BPF_PROG_TYPE_* names the shim takes. */
const KERNEL_TYPE: Readonly<Record<ProgType, string>> = {
  kprobe: "kprobe", tracepoint: "tracepoint", perf_event: "perf_event", raw_tp: "raw_tracepoint", tracing: "tracing", struct_ops: "struct_ops",
};

/** A tree's version, its path and the hash of its JIT: what every report names. */
export function describeTree(tree: KernelTree, jitSource?: string): string {
  return jitSource === undefined
    ? `kernel ${tree.version} at ${tree.dir} (bpf_jit_comp.c sha256 ${tree.jitSourceHash.slice(0, 12)})`
    : `kernel ${tree.version} at ${tree.dir} with ${jitSource} for its bpf_jit_comp.c (sha256 ${sha256File(jitSource).slice(0, 12)})`;
}

/** The JIT options the tree's Kconfig gives (IBT: endbr64; SLS: int3 after ret). */
export function treeJitOptions(tree: KernelTree): JitOptions {
  return { ibt: tree.config.X86_KERNEL_IBT === "y", sls: tree.config.MITIGATION_SLS === "y" };
}

/** Whether the tree has private stacks (v6.13+). */
export const treeHasPrivateStacks = (tree: KernelTree): boolean => tree.versionCode[0] > 6 || (tree.versionCode[0] === 6 && tree.versionCode[1] >= 13);

/** A tree's header, or "" if it has none. */
const header = (tree: KernelTree, file: string): string => {
  try {
    return readFileSync(join(tree.dir, file), "utf8");
  } catch {
    return "";
  }
};

/**
 * BPF_REG_AX's register number in a tree (include/linux/filter.h): `MAX_BPF_REG` (11, to 6.x)
 * or `(MAX_BPF_REG + 1)` (12, from 7.x, which put BPF_REG_PARAMS first); undefined if the
 * header says neither.
 */
export function treeRegAx(tree: KernelTree): number | undefined {
  const m = /^#define\s+BPF_REG_AX\s+\(?\s*MAX_BPF_REG\s*(?:\+\s*(\d+)\s*)?\)?\s*$/m.exec(header(tree, "include/linux/filter.h"));
  return m ? 11 + Number(m[1] ?? 0) : undefined;
}

/**
 * Why the programs the model makes are not the tree's to run, if they are not: the harness gives
 * a tree's JIT what 7.2's verifier gives 7.2's (its instruction set, its fix-ups, which use
 * BPF_REG_AX), so a tree whose verifier speaks another BPF reads some of them as other
 * programs. 6.12 does, twice: its BPF_REG_AX is register 11, and the fix-ups' register 12 has
 * no entry in its reg2hex[] (AUX_REG is 13 there), so it is rax, BPF's R0 (an sdiv fix-up's
 * `r12 = r1` becomes `mov %rdi,%rax`); and it has no load-acquire, whose BPF_ATOMIC imm 0x100 its
 * emit_atomic() takes as a u8, BPF_ADD: `r1 = load_acquire((u64 *)(r10 -8))` becomes
 * `lock add %rbp,-0x8(%rdi)` (arch/x86/net/bpf_jit_comp.c, 6.12: do_jit() passes insn->imm to
 * `emit_atomic(u8 **pprog, u8 atomic_op, ...)`). 6.12's own verifier refuses that instruction
 * (check_atomic(): "invalid atomic opcode"), so no 6.12 kernel runs it; a campaign would call
 * it a failure. None: the tree's BPF is the model's, as far as these two tell.
 */
export function modelBpfDiffers(tree: KernelTree): string[] {
  const why: string[] = [];
  const ax = treeRegAx(tree);
  if (ax !== BPF_REG_AX) {
    why.push(ax === undefined
      ? "its include/linux/filter.h defines BPF_REG_AX in no form the harness reads"
      : `its BPF_REG_AX is register ${ax} (include/linux/filter.h), where the model's fix-ups put register ${BPF_REG_AX}, another register to its JIT${ax === 11 ? " (its reg2hex[] has no entry 12: rax, BPF's R0)" : ""}`);
  }
  if (!/^#define\s+BPF_LOAD_ACQ\b/m.test(header(tree, "include/uapi/linux/bpf.h"))) {
    why.push("it has no load-acquire or store-release (no BPF_LOAD_ACQ in include/uapi/linux/bpf.h): its JIT takes the model's load-acquire for an atomic add");
  }
  return why;
}

/** Refuse a tree whose BPF is not the model's for commands that run the model's programs on its JIT (modelBpfDiffers()). */
export function mustRunModelBpf(tree: KernelTree): void {
  const why = modelBpfDiffers(tree).map((w) => `\n  - ${w}`).join("");
  if (why === "") return;
  throw new TreeError("usage", `--jit kernel: the kernel tree ${tree.dir} (${tree.version}) does not take the programs the model makes (7.2's instruction set and verifier fix-ups), so campaigns, runs and listings on it would show the differences as failures:${why}\n  (its JIT against the model's, the differences shown: npx stackcheck jit-diff --kernel-tree ${tree.dir}; a tree that takes them: the 7.2 one)`, "npx stackcheck kernel fetch");
}

/** Refuse a design the tree does not implement, saying which it does. */
export function mustBeTreeStrategy(tree: KernelTree, strategy: Strategy): void {
  const ok = treeHasPrivateStacks(tree) ? TREE_STRATEGIES : (["baseline"] as const);
  if (!(ok as readonly string[]).includes(strategy.name)) {
    throw new StrategyError(`strategy '${strategy.name}' is not what the kernel tree ${tree.dir} (${tree.version}) implements; with --jit kernel use ${ok.join(" or ")}${treeHasPrivateStacks(tree) ? " (r9-private: the tree's private stacks where its verifier rules give one; baseline: none)" : " (a tree before 6.13 has no private stacks)"}`);
  }
}

/** The request jit_subprogs() would make: function images at `bases`, private stacks at `privates`. */
export function kernelRequest(p: Program, v: Validated, bases: readonly bigint[], privates: readonly PlacedPrivate[], kernelSymbols: (name: string) => bigint | undefined, opts: JitOptions = { ibt: true, sls: false }): JitRequest {
  const depths = jitStackDepths(v);
  const calls: { insn: number; target: bigint }[] = [];
  p.insns.forEach((x, i) => {
    if (BPF_CLASS(x.code) !== BPF_JMP || BPF_OP(x.code) !== BPF_CALL || x.src === BPF_PSEUDO_CALL) return;
    const sig = x.src === BPF_HELPER_CALL ? helperOrFixupById(x.imm) : x.src === BPF_PSEUDO_KFUNC_CALL ? kfuncById(x.imm) : undefined;
    const target = sig ? kernelSymbols(sig.name) : undefined;
    if (target === undefined) throw new JitError(`${p.name}: insn ${i}: a call to no helper or kfunc of the synthetic kernel (src ${x.src}, imm ${x.imm})`);
    calls.push({ insn: i, target });
  });
  return {
    type: KERNEL_TYPE[p.type],
    funcs: p.funcs.map((f, fi) => {
      const priv = privates.find((x) => x.fi === fi);
      return { start: f.start, len: f.end - f.start, stackDepth: depths[fi]!, image: bases[fi]!, ...(priv ? { privStack: priv.percpuPtr } : {}) };
    }),
    insns: p.insns.map((x: BpfInsn) => ({ code: x.code, dst: x.dst, src: x.src, off: x.off, imm: x.imm })),
    calls,
    ...(opts.bmi2 ? { features: ["BMI2"] } : {}), // boot_cpu_has(X86_FEATURE_BMI2)
  };
}

/** The first exit instruction of a function (its epilogue: do_jit()'s cleanup). */
function firstExit(p: Program, fi: number): number {
  const f = p.funcs[fi]!;
  for (let i = f.start; i < f.end; i++) if (BPF_CLASS(p.insns[i]!.code) === BPF_JMP && BPF_OP(p.insns[i]!.code) === BPF_EXIT) return i - f.start;
  throw new JitError(`${p.name}/${f.name}: no exit`);
}

/** Bytes of push_callee_regs() for the registers a function uses (rbx 1, r13-r15 2 each). */
const pushBytes = (regs: readonly string[]) => regs.reduce((n, r) => n + (r === "rbx" ? 1 : 2), 0);

/** A function the tree JITed, as the image records it. */
export function kernelFunction(p: Program, fi: number, r: FuncResult): JitFunction {
  const f = p.funcs[fi]!;
  const addrs = r.addrs;
  if (addrs === undefined || addrs.length !== f.end - f.start + 1) throw new JitError(`${p.name}/${f.name}: the kernel JIT's answer has no addrs[] of ${f.end - f.start + 1} entries`);
  const base = r.image;
  const exit = firstExit(p, fi);
  // The frame window: after emit_prologue() (fp_start) and after the first exit's `leave`
  // (fp_end, counted from that exit's own code). A 6.12 tree keeps neither: the same points from
  // the code's shape (the callee-saved pushes end the prologue, their pops and `leave` start the exit).
  const pushes = pushBytes(calleeSavedUsed(p.insns.slice(f.start, f.end)));
  const fp = r.fp === "unsupported" ? { start: addrs[0]! - pushes, end: pushes + 1 } : r.fp;
  return {
    fi, name: f.name, symbol: symbolName(p, fi), image: { base, bytes: r.bytes, end: base + BigInt(r.bytes.length) },
    insnAddrs: insnAddrsOf(p.insns.slice(f.start, f.end), addrs, base), addrs,
    frame: { ready: base + BigInt(fp.start), gone: base + BigInt(addrs[exit]! + fp.end) },
    ksym: r.fp === "unsupported" || (fi === 0 && p.funcs.length > 1) ? { fpStart: 0, fpEnd: 0 } : { fpStart: r.fp.start, fpEnd: r.fp.end },
  };
}

/** The private stack the tree allocated, checked against what was asked for (size, pointer, guard words). */
function placedPrivate(p: Program, want: PlacedPrivate, r: FuncResult): PlacedPrivate {
  const where = `${p.name}/${p.funcs[want.fi]!.name}`;
  const got = r.privStack;
  if (got === undefined) throw new JitError(`${where}: the kernel JIT allocated no private stack where its verifier rules give one`);
  if (got.ptr !== want.percpuPtr || got.size !== want.size) {
    throw new JitError(`${where}: the kernel JIT's private stack is ${got.size} bytes at ${got.ptr.toString(16)}, the model's ${want.size} at ${want.percpuPtr.toString(16)}`);
  }
  for (const g of want.guards) {
    const w = got.words.find((x) => x.off === g);
    if (w?.value !== PRIV_STACK_GUARD_VAL) throw new JitError(`${where}: no guard word at offset ${g} of the kernel JIT's private stack`);
  }
  return want;
}

/** The backend over a running KernelJit of `tree`; `cpu`: the CPU features the JIT sees (BMI2). */
export function kernelBackend(tree: KernelTree, kjit: KernelJit, jitSource?: string, cpu: { readonly bmi2?: boolean } = {}): JitBackend {
  const describe = `${describeTree(tree, jitSource)}${cpu.bmi2 ? ", CPU with BMI2" : ""}`;
  const options: JitOptions = { ...treeJitOptions(tree), ...(cpu.bmi2 ? { bmi2: true } : {}) };
  const run = (req: JitRequest) => {
    try {
      return kjit.jitOrThrow(req).funcs;
    } catch (e) {
      if (e instanceof KernelJitError) throw new JitError(`${describe}: ${e.message}`);
      throw e;
    }
  };
  return {
    name: "kernel", describe, options,
    admit: (strategy) => mustBeTreeStrategy(tree, strategy),
    jitProgram(p: Program, v: Validated, strategy: Strategy, layout: JitLayout): JitProgram {
      mustBeTreeStrategy(tree, strategy);
      // __alloc_percpu_gfp(round_up(depth, 8) + 16, 8) per function with a private stack, handed out in order
      let next = layout.percpuBase;
      const privates: PlacedPrivate[] = (strategy.name === "r9-private" ? privateStackRequests(v.privStack, jitStackDepths(v)) : []).map((r) => {
        const percpuPtr = next;
        next += BigInt(Math.ceil(r.size / 8) * 8);
        return { ...r, percpuPtr, framePtr: percpuPtr + BigInt(r.framePtrOffset) };
      });
      const n = p.funcs.length;
      let bases = p.funcs.map(() => layout.base);
      if (n > 1) {
        // jit_subprogs()'s first round: each image where nothing can overlap, for its size
        const slot = (fi: number) => BigInt(64 * (p.funcs[fi]!.end - p.funcs[fi]!.start + 2) + 0x100);
        let at = layout.base;
        bases = p.funcs.map((_, fi) => { const b = at; at += slot(fi); return b; });
        const sizes = run(kernelRequest(p, v, bases, privates, layout.kernelSymbols, options)).map((r) => r.bytes.length);
        at = layout.base;
        bases = sizes.map((s) => { const b = at; at += BigInt(Math.ceil(s / 16) * 16); return b; });
      }
      const results = run(kernelRequest(p, v, bases, privates, layout.kernelSymbols, options));
      const funcs = results.map((r, fi) => kernelFunction(p, fi, r));
      const last = funcs.at(-1)!;
      return {
        strategy: strategy.name, funcs, end: last.image.base + BigInt(Math.ceil(last.image.bytes.length / 16) * 16),
        privates: privates.map((x) => placedPrivate(p, x, results[x.fi]!)),
      };
    },
  };
}
