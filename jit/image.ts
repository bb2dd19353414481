// An image: the synthetic kernel and the JITed programs placed at canonical addresses
// (design.md §2), with the memory map, the symbol table, each BPF function's frame window and ksym
// (v6.19, kernel-model.md §5), the per-CPU area (this_cpu_off, hardirq_stack_ptr, prog->active,
// misses, private stacks with their guard words) and the interrupt configuration. Plain data:
// harness/load.ts turns it into a machine.
import { ATTACH_PATHS, attachOf, counterOf, runnerLimit, type AttachPath, type Counter, type Program } from "./bpf/program.ts";
import { validate, type Validated } from "./bpf/validate.ts";
import { miscFixups } from "./bpf/fixups.ts";
import { instructionRecorder, type JitProgram } from "./jit.ts";
import type { InsnRecord } from "./x86/emit.ts";
import { TS_JIT, type JitBackend } from "./backend.ts";
import { buildKernel, type Kernel } from "./kernel/kernel.ts";
import {
  BPF_TEXT_SIZE, CTX_SIZE, ctxBytes, EXCEPTION_STKSZ, MONO_CLOCK_START, IRQ_STACK_SIZE, KD, KDATA_SIZE, KERNEL_LAYOUT, KTEXT_SIZE, PCPU_HARDIRQ_STACK_PTR,
  PCPU_THIS_CPU_OFF, PERCPU_DYNAMIC, PERCPU_MIN_MAPPED, PERCPU_SIZE, taskPtRegs, THREAD_SIZE, type Layout,
  LOCAL_TIMER_VECTOR, MAX_TASKS, PCPU_CURRENT_TASK, TASK, TASK_RUNNING, TASK_STRUCT_SIZE, taskStackOf,
} from "./kernel/layout.ts";
import { PT_REGS, PT_REGS_SIZE } from "../arch/ptrace.ts";
import { INACTIVE_TASK_FRAME, INACTIVE_TASK_FRAME_SIZE } from "../arch/switch_to.ts";
import { checkPrivateFuncs, DEFAULT_JIT_OPTIONS, isRecursionLimit, recursionLimitProblem, StrategyError, type JitOptions, type PrivateRequest, type Strategy } from "./strategy.ts";
import { JitError } from "./lower.ts";
import { PRIV_STACK_GUARD_VAL } from "./percpu.ts";

/** The runner's limit for a path with no recursion counter: never reached. */
const UNGUARDED = 0x7fffffffffffffffn;

/** What runs what: the task's program, kfunc-nested runs, and programs attached to IRQs and NMIs. */
export interface ImageSpec {
  readonly programs: readonly Program[];
  /** Index of the program the task runs (through do_syscall_64). */
  readonly task: number;
  /** scx_sc_run_nested(i) runs programs[nested[i]]. */
  readonly nested?: readonly number[];
  /** Programs run by the handler of an IRQ vector. */
  readonly irq?: readonly { readonly vector: number; readonly program: number }[];
  /** The program the NMI handler runs. */
  readonly nmi?: number;
  /**
   * Several tasks on the CPU: the program each task's syscall runs (tasks[0] is `task`). Present
   * (even with one task), the kernel is built with its scheduler (kernel.ts TASK_FUNCTIONS):
   * ticks, preemption, sleeps. Absent: one task, and the kernel without them.
   */
  readonly tasks?: readonly number[];
}

/** A task of an image: its program, its task_struct in kernel data, its stack and task_pt_regs(). */
export interface ImageTask {
  readonly program: number;
  readonly struct: bigint;
  readonly stack: { readonly begin: bigint; readonly end: bigint };
  readonly ptRegs: bigint;
}

export class ImageError extends Error {
  override name = "ImageError";
}

/** A memory region of the image (the machine maps these: harness/machine/memory.ts RegionDef). */
export interface ImageRegion {
  readonly name: string;
  readonly kind: "text" | "data" | "stack" | "percpu" | "guard";
  readonly start: bigint;
  readonly size: number;
  /** `r-x`, `rw-`, `---`. */
  readonly perms: string;
}

/** A symbol of the image, [start, end) (the machine's symbol table: harness/machine/symbols.ts SymbolDef). */
export interface ImageSymbol {
  readonly name: string;
  readonly start: bigint;
  readonly end: bigint;
  readonly kind: "kernel" | "bpf" | "entry" | "trampoline" | "data";
}

export interface Image {
  readonly strategy: Strategy;
  /** Which JIT made the BPF code. */
  readonly backend: JitBackend;
  /** Where everything sits (KERNEL_LAYOUT unless buildImage was given another). */
  readonly layout: Layout;
  readonly kernel: Kernel;
  /** `active` is the counter the runner checks: the program's own prog->active, or the global
   * bpf_prog_active for kprobe, tracepoint and perf_event programs (trace_call_bpf()). */
  readonly programs: readonly {
    readonly program: Program;
    readonly validated: Validated;
    /** What the JIT lowered: the program after the verifier's fix-ups (bpftool's xlated form; jit/bpf/fixups.ts). */
    readonly xlated: Program;
    readonly jit: JitProgram;
    /** The counter its runner takes: progActive, bpf_prog_active, or with no counter (uprobes, struct_ops without a private stack) a count of the runner's own. */
    readonly active: bigint;
    /** The program's prog->active (what a design that reads it gets; raised only when it is `active`). */
    readonly progActive: bigint;
    readonly misses: bigint;
    /** How it is run: its attach path's preemptibility and context (program.ts ATTACH_PATHS; its counter is `counter`). */
    readonly path: (typeof ATTACH_PATHS)[AttachPath];
    /** The counter its runner takes (program.ts counterOf(): the path's, none for struct_ops without a private stack). */
    readonly counter: Counter;
    /**
     * Another attachment of programs[linkOf] (program.ts Program.linkOf): `jit`, `progActive`,
     * `misses` and the private stacks are that program's (its functions, symbols and guards are
     * listed once, under it); `active`, `path` and `counter` are this attachment's runner's.
     */
    readonly linkOf?: number;
  }[];
  /** The per-CPU bpf_prog_active counter (a __percpu pointer). */
  readonly bpfProgActive: bigint;
  readonly regions: readonly ImageRegion[];
  readonly symbols: readonly ImageSymbol[];
  /** Bytes to load, in order. */
  readonly loads: readonly { readonly addr: bigint; readonly bytes: Uint8Array; readonly decoded?: readonly InsnRecord[] }[];
  /** Private stacks to check at teardown: the address of each guard word (this CPU). */
  readonly guards: readonly { readonly program: number; readonly func: string; readonly addr: bigint }[];
  readonly irqVectors: readonly number[];
  /** The task's program (an index into programs), entered through do_syscall_64. */
  readonly task: number;
  /** task_pt_regs(): the user-mode pt_regs at the top of the task stack. */
  readonly taskPtRegs: bigint;
  /** The tasks (one, task 0, unless the spec has several); `multitask`: the kernel has its scheduler. */
  readonly tasks: readonly ImageTask[];
  readonly multitask: boolean;
  /** this CPU's address of a __percpu pointer. */
  thisCpu(ptr: bigint): bigint;
}

const u64le = (v: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
};

/**
 * JIT a program under a user's strategy module: code its hooks emitted that cannot be assembled
 * (a label never placed, an operand of the wrong type) is the module's mistake, named as such.
 * The JIT's own refusals (JitError) and the module's (StrategyError) pass through.
 */
function userCode<T>(strategy: Strategy, program: string, run: () => T): T {
  if (strategy.origin === undefined) return run();
  try {
    return run();
  } catch (e) {
    if (e instanceof StrategyError || e instanceof JitError) throw e;
    const what = e instanceof Error ? `${e.name}: ${e.message.split("\n")[0]}` : String(e);
    throw new StrategyError(`strategy module ${strategy.origin}: the code it emitted for program ${program} cannot be assembled: ${what}`);
  }
}

/** Whole pages for `bytes` bytes, within an area of `max` bytes. */
function pagesFor(bytes: number, max: number, what: string): number {
  const size = Math.ceil(bytes / 0x1000) * 0x1000;
  if (size > max) throw new ImageError(`${what} (${bytes} bytes) does not fit its ${max}-byte area`);
  return size;
}

/**
 * The synthetic kernel depends only on the layout and the IRQ vectors, and assembling it is
 * half of building an image: campaigns build thousands of images with a handful of vector
 * sets, so kernels are kept (read-only: images copy what they change).
 */
const kernels = new Map<string, Kernel>();
function kernelFor(layout: Layout, irqVectors: readonly number[], tasks = false): Kernel {
  const key = `${Object.values(layout).map(String).join(",")}|${irqVectors.join(",")}|${tasks}`;
  let k = kernels.get(key);
  if (!k) {
    if (kernels.size >= 256) kernels.clear();
    k = buildKernel(layout, irqVectors, tasks);
    kernels.set(key, k);
  }
  return k;
}

/**
 * Each bpf_prog of an image once: `programs` without the second attachments (Program.linkOf),
 * which buildImage() puts after every program, so a program's index here is its index there.
 * For what there is one of per bpf_prog (its code, symbols, private stacks, prog->active,
 * misses); `programs` itself is the runner's table, a row per attachment.
 */
export function bpfProgs(img: Pick<Image, "programs">): Image["programs"] {
  const k = img.programs.findIndex((p) => p.linkOf !== undefined);
  return k < 0 ? img.programs : img.programs.slice(0, k);
}

/**
 * The synthetic kernel's addresses of helpers and kfuncs by name, as buildImage() gives them to a
 * JIT: the kernel with its scheduler, whose helpers include the sleeping one (bpf_sc_sleep), so
 * that a sleepable program's calls resolve too.
 */
export function kernelSymbolsOf(layout: Layout = KERNEL_LAYOUT): (name: string) => bigint | undefined {
  const k = kernelFor(layout, [], true);
  return (s) => k.text.labels.get(s);
}

/**
 * The image of `spec` under `strategy`, JITed by `backend` (the TypeScript JIT by default; a
 * backend that decides its options itself, a tree's Kconfig, overrides `opts`).
 */
export function buildImage(spec: ImageSpec, strategy: Strategy, opts: JitOptions = DEFAULT_JIT_OPTIONS, layout: Layout = KERNEL_LAYOUT, backend: JitBackend = TS_JIT): Image {
  const jitOpts = backend.options ?? opts;
  // The layout under the names of the kernel layout's constants, which this body used to read.
  const {
    ktext: KTEXT, kdata: KDATA, bpfText: BPF_TEXT, taskStack: TASK_STACK, irqStack: IRQ_STACK, nmiStack: NMI_STACK, percpu: PERCPU,
    percpuOrigin: PERCPU_ORIGIN,
  } = layout;
  const TASK_PT_REGS = taskPtRegs(layout);
  const n = spec.programs.length;
  const mustBeProg = (i: number | undefined, what: string) => {
    if (i === undefined || !Number.isInteger(i) || i < 0 || i >= n) throw new ImageError(`${what}: program index ${i} is not one of the ${n} programs`);
  };
  if (n === 0 || n > KD.maxProgs) throw new ImageError(`an image holds 1..${KD.maxProgs} programs, got ${n}`);
  mustBeProg(spec.task, "task");
  (spec.nested ?? []).forEach((p, i) => mustBeProg(p, `nested run ${i}`));
  if ((spec.nested ?? []).length > KD.maxNested) throw new ImageError(`at most ${KD.maxNested} nested runs`);
  for (const a of spec.irq ?? []) {
    mustBeProg(a.program, `IRQ vector ${a.vector}`);
    if (!Number.isInteger(a.vector) || a.vector < 32 || a.vector > 255) throw new ImageError(`IRQ vector ${a.vector} is not an external interrupt vector (32..255)`);
  }
  if (spec.nmi !== undefined) mustBeProg(spec.nmi, "NMI");
  const multitask = spec.tasks !== undefined;
  const taskProgs = spec.tasks ?? [spec.task];
  if (taskProgs.length < 1 || taskProgs.length > MAX_TASKS) throw new ImageError(`an image runs 1..${MAX_TASKS} tasks, got ${taskProgs.length}`);
  taskProgs.forEach((p, k) => mustBeProg(p, `task ${k}`));
  if (multitask && taskProgs[0] !== spec.task) throw new ImageError(`task 0 runs program ${taskProgs[0]}, but the spec's task is ${spec.task}`);
  // the tick's vector always has a gate where there is a scheduler
  const irqVectors = [...new Set([...(spec.irq ?? []).map((a) => a.vector), ...(multitask ? [LOCAL_TIMER_VECTOR] : [])])].sort((x, y) => x - y);
  const kernel = kernelFor(layout, irqVectors, multitask);
  spec.programs.forEach((p) => {
    if (p.sleepable && !multitask) throw new ImageError(`program ${p.name} is sleepable: it needs an image with tasks (a scenario with "tasks"), whose kernel can sleep`);
  });

  // Per-CPU dynamic area: bpf_prog_active, then prog->active and misses per program, then private memory.
  let dyn = PERCPU_ORIGIN + BigInt(PERCPU_DYNAMIC);
  const bpfProgActive = dyn;
  dyn += 16n;
  spec.programs.forEach((p, i) => {
    if (p.linkOf === undefined) return;
    const of = spec.programs[p.linkOf];
    if (!Number.isInteger(p.linkOf) || p.linkOf >= i || of === undefined || of.linkOf !== undefined) throw new ImageError(`program ${i} (${p.name}): linkOf ${p.linkOf} is not the index of an earlier program that is not itself a link`);
    if (of.type !== p.type || of.insns !== p.insns) throw new ImageError(`program ${i} (${p.name}): a link of program ${p.linkOf} (${of.name}) must be of its type and code`);
  });
  // (links after every program: bpfProgs() is then a prefix of the programs)
  const firstLink = spec.programs.findIndex((p) => p.linkOf !== undefined);
  if (firstLink >= 0 && spec.programs.some((p, i) => i > firstLink && p.linkOf === undefined)) throw new ImageError(`program ${firstLink} (${spec.programs[firstLink]!.name}) is a link, and a program that is not one comes after it: links come after every program`);
  type Entry = { program: Program; validated: Validated; xlated: Program; requests: readonly PrivateRequest[]; active: bigint; progActive: bigint; misses: bigint; path: (typeof ATTACH_PATHS)[AttachPath]; counter: Counter };
  const entries: Entry[] = [];
  for (const program of spec.programs) entries.push(entryOf(program, entries));
  function entryOf(program: Program, before: readonly Entry[]): Entry {
    const path = ATTACH_PATHS[attachOf(program)];
    const of = program.linkOf === undefined ? undefined : before[program.linkOf]!;
    if (of) {
      // another attachment of `of` (program.ts Program.linkOf): its bpf_prog's code, prog->active,
      // misses and private stacks; its own path's runner (counter, preemptibility)
      const validated = validate(program); // (the path's own rules: a sleepable program on a path that may not sleep)
      const counter = counterOf(program, of.requests.length > 0);
      const shared = { program, validated, xlated: of.xlated, requests: of.requests, progActive: of.progActive, misses: of.misses, path, counter };
      if (counter === "prog") return { ...shared, active: of.progActive };
      if (counter === "global") return { ...shared, active: bpfProgActive };
      const runs = dyn;
      dyn += 8n;
      return { ...shared, active: runs };
    }
    const validated = validate(program);
    const xlated = miscFixups(program, validated);
    const own = dyn, misses = dyn + 8n;
    dyn += 16n;
    // kernel-model-7.2.md A.4: the path's counter (the global bpf_prog_active of trace_call_bpf() and
    // friends, or the program's own prog->active; uprobes have none, and the runner then never refuses)
    // jits_use_priv_stack: whether the design's JIT gives the program a private stack (7.2's,
    // r9-private: the verifier's decision; a split design: always; the baseline: never)
    const requests = userCode(strategy, program.name, () => strategy.privateMemory(xlated, validated));
    const counter = counterOf(program, requests.length > 0);
    if (counter === "prog") return { program, validated, xlated, requests, active: own, progActive: own, misses, path, counter };
    // kprobe, tracepoint, perf_event: trace_call_bpf() and friends raise bpf_prog_active only; a
    // design that reads prog->active (design (g)'s slot choice) reads the program's own, which
    // nothing raises there (kernel/trace/bpf_trace.c, 7.2)
    if (counter === "global") return { program, validated, xlated, requests, active: bpfProgActive, progActive: own, misses, path, counter };
    // uprobes, struct_ops without a private stack: no counter; the runner's count goes to a word
    // of its own, and prog->active (what a design that reads it gets) stays 0, as
    // bpf_prog_run_array_uprobe() and __bpf_prog_enter() never touch it
    const runs = dyn;
    dyn += 8n;
    return { program, validated, xlated, requests, active: runs, progActive: own, misses, path, counter };
  }
  let text = BPF_TEXT;
  const records = instructionRecorder();
  const jitted: (Entry & { jit: JitProgram; linkOf?: number })[] = [];
  for (const p of entries) {
    const linkOf = p.program.linkOf;
    if (linkOf !== undefined) { jitted.push({ ...p, jit: jitted[linkOf]!.jit, linkOf }); continue; } // the same code
    const jit = userCode(strategy, p.program.name, () => backend.jitProgram(p.xlated, p.validated, strategy, {
      base: text, percpuBase: dyn, thisCpuOff: PCPU_THIS_CPU_OFF, activePtr: p.progActive, kernelSymbols: (s) => kernel.text.labels.get(s), privateRequests: p.requests,
      ...(records ? { records } : {}), // the machine takes them instead of decoding the code
    }, jitOpts));
    for (const x of jit.privates) dyn = x.percpuPtr + BigInt(Math.ceil(x.size / 16) * 16);
    text = (jit.end + 0xfffn) & ~0xfffn; // each program in its own pages, as bpf_prog_pack hands them out
    jitted.push({ ...p, jit });
  }
  for (const p of jitted) if (p.linkOf === undefined) checkPrivateFuncs(strategy.name, p.xlated, p.jit.privates);
  // Too large: named by the strategy (a user's module: its StrategyError; the hooks' code or
  // requests are what is large), with the largest function or request.
  const tooLarge = (what: string): never => {
    if (strategy.origin !== undefined) throw new StrategyError(`strategy module ${strategy.origin}: ${what}`);
    throw new ImageError(`under strategy '${strategy.name}', ${what}`);
  };
  if (text > BPF_TEXT + BigInt(BPF_TEXT_SIZE)) {
    const big = jitted.flatMap((p) => p.jit.funcs.map((f) => ({ name: `${p.program.name}/${f.name}`, size: f.image.bytes.length }))).reduce((a, b) => (b.size > a.size ? b : a));
    tooLarge(`the JITed programs (${text - BPF_TEXT} bytes in whole pages; the largest function, ${big.name}, ${big.size} bytes) do not fit the ${BPF_TEXT_SIZE}-byte BPF text area`);
  }
  if (dyn > PERCPU_ORIGIN + BigInt(PERCPU_SIZE)) {
    const big = jitted.flatMap((p) => p.jit.privates.map((x) => ({ name: `${p.program.name}/${p.program.funcs[x.fi]?.name}`, size: x.size }))).reduce((a, b) => (b.size > a.size ? b : a), { name: "", size: 0 });
    tooLarge(`the per-CPU allocations (${dyn - PERCPU_ORIGIN} bytes${big.size > 0 ? `; the largest private memory request, for ${big.name}, ${big.size} bytes` : ""}) do not fit the per-CPU area (${PERCPU_SIZE} bytes)`);
  }
  const percpuMapped = Math.max(PERCPU_MIN_MAPPED, Math.ceil(Number(dyn - PERCPU_ORIGIN) / 0x1000) * 0x1000);

  const thisCpu = (ptr: bigint) => BigInt.asUintN(64, ptr - PERCPU_ORIGIN + PERCPU);
  const guard = (name: string, start: bigint, size: number): ImageRegion => ({ name, kind: "guard", start, size, perms: "---" });
  const regions: ImageRegion[] = [
    // Text regions are mapped as far as code was placed (whole pages), not their whole areas: a
    // machine's decode cache has a slot per byte of executable memory, and a campaign builds a
    // machine per run.
    { name: "kernel text", kind: "text", start: KTEXT, size: pagesFor(kernel.text.bytes.length, KTEXT_SIZE, "kernel text"), perms: "r-x" },
    { name: "kernel data", kind: "data", start: KDATA, size: KDATA_SIZE, perms: "rw-" },
    { name: "bpf images", kind: "text", start: BPF_TEXT, size: Number(text - BPF_TEXT), perms: "r-x" },
    guard("task stack guard (low)", TASK_STACK - 0x1000n, 0x1000),
    { name: "task stack", kind: "stack", start: TASK_STACK, size: THREAD_SIZE, perms: "rw-" },
    guard("task stack guard (high)", TASK_STACK + BigInt(THREAD_SIZE), 0x1000),
    guard("IRQ stack guard (low)", IRQ_STACK - 0x1000n, 0x1000),
    { name: "IRQ stack", kind: "stack", start: IRQ_STACK, size: IRQ_STACK_SIZE, perms: "rw-" },
    guard("IRQ stack guard (high)", IRQ_STACK + BigInt(IRQ_STACK_SIZE), 0x1000),
    guard("NMI stack guard (low)", NMI_STACK - 0x1000n, 0x1000),
    { name: "NMI stack", kind: "stack", start: NMI_STACK, size: EXCEPTION_STKSZ, perms: "rw-" },
    guard("NMI stack guard (high)", NMI_STACK + BigInt(EXCEPTION_STKSZ), 0x1000),
    { name: "per-CPU", kind: "percpu", start: PERCPU, size: percpuMapped, perms: "rw-" },
  ];
  const symbols: ImageSymbol[] = [...kernel.symbols];
  const loads: { addr: bigint; bytes: Uint8Array; decoded?: readonly InsnRecord[] }[] = [{ addr: KTEXT, bytes: kernel.text.bytes }];
  const guards: { program: number; func: string; addr: bigint }[] = [];
  jitted.forEach((p, pi) => {
    if (p.linkOf !== undefined) return; // its program's code, symbols and guards
    for (const f of p.jit.funcs) {
      symbols.push({ name: f.symbol, start: f.image.base, end: f.image.end, kind: "bpf" });
      loads.push({ addr: f.image.base, bytes: f.image.bytes, ...(f.image.decoded ? { decoded: f.image.decoded } : {}) });
    }
    for (const x of p.jit.privates) {
      for (const g of x.guards) {
        const addr = thisCpu(x.percpuPtr + BigInt(g));
        loads.push({ addr, bytes: u64le(PRIV_STACK_GUARD_VAL) }); // priv_stack_init_guard()
        guards.push({ program: pi, func: p.program.funcs[x.fi]!.name, addr });
      }
    }
  });
  // Kernel tables.
  const kdata = new Uint8Array(KDATA_SIZE);
  const dv = new DataView(kdata.buffer);
  const put = (off: number, v: bigint) => dv.setBigUint64(off, BigInt.asUintN(64, v), true);
  // (a Strategy object not loaded through loadStrategy(), which checks it, too: put() would wrap 2 ** 64 to 0)
  if (!isRecursionLimit(strategy.recursionLimit)) throw new StrategyError(`strategy '${strategy.name}'${strategy.origin === undefined ? "" : ` (module ${strategy.origin})`}: ${recursionLimitProblem(strategy.recursionLimit)}`);
  jitted.forEach((p, pi) => {
    const e = KD.progTable + pi * KD.progEntry;
    put(e, p.jit.funcs[0]!.image.base);
    put(e + 8, p.active);
    put(e + 16, p.misses);
    const limit = runnerLimit(p.counter, strategy.recursionLimit); // (none: a limit never reached)
    put(e + 24, limit === undefined ? UNGUARDED : BigInt(limit));
    put(e + 32, KDATA + BigInt(KD.ctx + pi * CTX_SIZE)); // the runner passes it in rdi
    put(e + 40, p.path.preemptible ? 0n : 1n); // the path's preempt_disable() (read by a kernel with tasks)
    kdata.set(ctxBytes(pi), KD.ctx + pi * CTX_SIZE);
  });
  put(KD.nestedCount, BigInt((spec.nested ?? []).length));
  (spec.nested ?? []).forEach((p, i) => put(KD.nested + 8 * i, BigInt(p)));
  put(KD.nmiProg, BigInt(spec.nmi ?? -1));
  put(KD.monoClock, MONO_CLOCK_START);
  kdata.fill(0xff, KD.irqTable, KD.irqTable + 8 * 256); // every vector's entry -1 (none)
  for (const a of spec.irq ?? []) put(KD.irqTable + 8 * a.vector, BigInt(a.program));
  loads.push({ addr: KDATA, bytes: kdata });
  // Static per-CPU variables.
  loads.push({ addr: PERCPU + BigInt(PCPU_THIS_CPU_OFF), bytes: u64le(PERCPU - PERCPU_ORIGIN) });
  loads.push({ addr: PERCPU + BigInt(PCPU_HARDIRQ_STACK_PTR), bytes: u64le(IRQ_STACK + BigInt(IRQ_STACK_SIZE) - 8n) });
  // The user-mode pt_regs at the top of the task stack (cs and ss of user mode).
  const regs = new Uint8Array(PT_REGS_SIZE);
  const rv = new DataView(regs.buffer);
  rv.setBigUint64(PT_REGS.cs, 0x33n, true);
  rv.setBigUint64(PT_REGS.ss, 0x2bn, true);
  rv.setBigUint64(PT_REGS.flags, 0x202n, true);
  rv.setBigUint64(PT_REGS.sp, 0x00007ffffffde000n, true);
  rv.setBigUint64(PT_REGS.ip, 0x0000000000401000n, true);
  rv.setBigUint64(PT_REGS.orig_ax, 0n, true);
  loads.push({ addr: TASK_PT_REGS, bytes: regs });

  // The tasks: task_struct, stack, user-mode pt_regs; the ones not running yet wait on their
  // fork_frame (copy_thread(), arch/x86/kernel/process.c): an inactive_task_frame whose ret_addr is
  // ret_from_fork_asm and whose bp is encode_frame_pointer(childregs), directly below the pt_regs.
  const tasks: ImageTask[] = taskProgs.map((program, k) => {
    const begin = taskStackOf(layout, k);
    return { program, struct: KDATA + BigInt(KD.tasks + TASK_STRUCT_SIZE * k), stack: { begin, end: begin + BigInt(THREAD_SIZE) }, ptRegs: taskPtRegs(layout, k) };
  });
  if (multitask) {
    put(KD.nrTasks, BigInt(tasks.length));
    tasks.forEach((t, k) => {
      const f = KD.tasks + TASK_STRUCT_SIZE * k;
      const frame = t.ptRegs - BigInt(INACTIVE_TASK_FRAME_SIZE);
      put(f + TASK.threadSp, k === 0 ? 0n : frame);
      put(f + TASK.state, BigInt(TASK_RUNNING));
      put(f + TASK.prog, BigInt(t.program));
      put(f + TASK.canary, 0x5a5a000000000000n + BigInt(k) * 0x1111n);
      put(f + TASK.ptRegs, t.ptRegs);
      if (k === 0) return;
      regions.push(
        guard(`task ${k} stack guard (low)`, t.stack.begin - 0x1000n, 0x1000),
        { name: `task ${k} stack`, kind: "stack", start: t.stack.begin, size: THREAD_SIZE, perms: "rw-" },
        guard(`task ${k} stack guard (high)`, t.stack.end, 0x1000),
      );
      loads.push({ addr: t.ptRegs, bytes: regs });
      const ff = new Uint8Array(INACTIVE_TASK_FRAME_SIZE);
      const fv = new DataView(ff.buffer);
      fv.setBigUint64(INACTIVE_TASK_FRAME.bp, BigInt.asUintN(64, t.ptRegs | 1n), true);
      fv.setBigUint64(INACTIVE_TASK_FRAME.retAddr, BigInt.asUintN(64, kernel.addr("ret_from_fork_asm")), true);
      loads.push({ addr: frame, bytes: ff });
    });
    loads.push({ addr: PERCPU + BigInt(PCPU_CURRENT_TASK), bytes: u64le(tasks[0]!.struct) });
  }

  return {
    strategy, backend, layout, taskPtRegs: TASK_PT_REGS, tasks, multitask, kernel, regions, symbols, loads, guards, irqVectors, thisCpu, bpfProgActive, task: spec.task,
    programs: jitted.map(({ program, validated, xlated, jit, active, progActive, misses, path, counter, linkOf }) => ({ program, validated, xlated, jit, active, progActive, misses, path, counter, ...(linkOf === undefined ? {} : { linkOf }) })),
  };
}
