// The kernel-tree backend: the Linux kernel's own x86-64 BPF JIT (arch/x86/net/bpf_jit_comp.c),
// compiled from a real kernel tree into a small native helper process that JITs programs on
// request, so that the harness can check the bytes the kernel emits, not only its model of them.
//
// Workflow
//   1. A tree. Either let stackcheck fetch one:
//        fetchTree({ version: "7.2" })      Debian's linux-source-7.2 (sid), or "6.12" (bookworm),
//                                           into ~/.cache/stackcheck/trees/linux-<version>:
//                                           download, unpack, defconfig + BPF_SYSCALL BPF_JIT
//                                           BPF_JIT_ALWAYS_ON X86_KERNEL_IBT, make prepare, and
//                                           one make of bpf_jit_comp.o (kbuild records its
//                                           command). About 90 s cold on 2 cores, instant after.
//      or use your own, in place (a reviewer's tree with the patch under review applied):
//        cd linux && make defconfig && ./scripts/config -e BPF_SYSCALL -e BPF_JIT \
//            -e BPF_JIT_ALWAYS_ON -e X86_KERNEL_IBT && make olddefconfig && make -j$(nproc) prepare
//        export STACKCHECK_KERNEL_TREE=$PWD     (or pass the directory to openTree / KernelJit)
//      openTree(dir) checks it (configured, prepared, JIT on) and reports the JIT-relevant
//      Kconfig values; every problem is a TreeError that says what to run.
//   2. The shim: buildShim(tree) compiles the tree's bpf_jit_comp.c with the exact flags kbuild
//      recorded, plus the shim's stub kernel (shim/), into one static binary cached under
//      ~/.cache/stackcheck/kjit/<key>. Editing the tree's bpf_jit_comp.c rebuilds it on next use.
//      To try a patch without touching the tree, pass a patched copy: buildShim(tree,
//      { jitSource: "/tmp/bpf_jit_comp.c" }) or new KernelJit({ tree, jitSource }); it is compiled
//      against the tree's headers and flags.
//   3. new KernelJit({ tree }) starts the shim; jit(request) is synchronous (the image builder
//      is): one program (main + subprogs, their image addresses, stack depths, private stacks,
//      helper targets) in, per function the bytes, addrs[], fp_start/fp_end, private stack and
//      guard words, extable out, or an error answer naming function, instruction and the
//      kernel's pr_err text. A crash or hang of the shim throws KernelJitCrash with the request.
//      close() when done (one KernelJit per campaign, per worker thread).
//
// The protocol is documented in protocol.ts and shim/user.c; the model addresses the JIT embeds
// (thunks, this_cpu_off, __bpf_call_base) in build.ts (MODEL_SYMBOLS).
export { fetchTree, fetchTimings, readAptSources, sourcesFor } from "./fetch.ts";
export type { AptSource, FetchOptions, StepRecord } from "./fetch.ts";
export { openTree, parseConfig, FETCH_CONFIG_ENABLE, JIT_CONFIG_KEYS } from "./tree.ts";
export type { JitConfigKey, KernelTree } from "./tree.ts";
export { buildShim, recordedJitCommand, shellWords, MODEL_SYMBOLS } from "./build.ts";
export type { BuildOptions, ModelSymbols, ShimBinary } from "./build.ts";
export { KernelJit, KernelJitCrash, KernelJitError } from "./child.ts";
export type { CrashReason, KernelJitOptions } from "./child.ts";
export { describeFailure, encodeRequest, errnoName, JitRequestError, parseHello, parseResponse, ProtocolError, PROTOCOL_VERSION } from "./protocol.ts";
export type { FailureWhere, FuncRequest, FuncResult, Hello, JitFailure, JitRequest, JitResponse, LogLine, RawInsn } from "./protocol.ts";
export { TreeError } from "./errors.ts";
export type { TreeErrorCode } from "./errors.ts";
export { cacheRoot, defaultTreeDir, TREE_ENV, TREE_VERSIONS } from "./paths.ts";
export type { TreeVersion } from "./paths.ts";
export { FETCH_TOOLS, missingTools, requireTools } from "./tools.ts";
export type { Tool } from "./tools.ts";
