// The address space of one CPU (design.md §2), with canonical kernel addresses so reports read
// like kernel traces: kernel text near 0xffffffff81000000, BPF images in the module area, the
// task, IRQ and NMI stacks in the vmalloc area with guard pages, and the per-CPU area that gs:
// addresses. Sizes follow asm/page_64_types.h without KASAN (kernel-model.md §4.3).
//
// Where the pieces sit is a `Layout` value: KERNEL_LAYOUT (these constants, the default
// everywhere) or `userLayout(base)`, the same image placed at low user-space addresses so that
// the differential tests can run it natively in a ring-3 process (test/native/). Sizes and
// offsets inside the pieces do not depend on the layout.
import { PT_REGS_SIZE } from "../../arch/ptrace.ts";

export const KTEXT = 0xffffffff81000000n;
export const KTEXT_SIZE = 0x10000;
/** Kernel data: the runner's program table, nested-run and interrupt tables. */
export const KDATA = 0xffffffff82000000n;
export const KDATA_SIZE = 0x6000;
export const BPF_TEXT = 0xffffffffa0000000n;
export const BPF_TEXT_SIZE = 0x100000;

export const THREAD_SIZE = 0x4000;       // 16 KiB
export const IRQ_STACK_SIZE = 0x4000;    // 16 KiB
export const EXCEPTION_STKSZ = 0x1000;   // 4 KiB
export const TASK_STACK = 0xffffc90000010000n;
export const IRQ_STACK = 0xffffc90000020000n;
export const NMI_STACK = 0xffffc90000030000n;
/** IST_INDEX_NMI + 1: the TSS.IST slot the NMI gate uses. */
export const NMI_IST = 2;

/** CPU 0's per-CPU area; the GS base. Static per-CPU variables sit at small offsets in it. */
export const PERCPU = 0xffff88807fc00000n;
/**
 * The per-CPU area: what an image maps is what its allocations need (at least 256 KiB), up to
 * this much, so a machine's snapshots do not pay for unused pages.
 */
export const PERCPU_SIZE = 0x1000000;
export const PERCPU_MIN_MAPPED = 0x40000;
export const PCPU_THIS_CPU_OFF = 0x10;
export const PCPU_HARDIRQ_STACK_PTR = 0x18;
export const PCPU_HARDIRQ_STACK_INUSE = 0x20;
/** current_task (arch/x86/include/asm/current.h): the running task's task_struct (0 in a single-task image: task 0). */
export const PCPU_CURRENT_TASK = 0x28;
/**
 * __preempt_count (arch/x86/include/asm/preempt.h), as a plain count: preempt_disable() depth
 * plus HARDIRQ_OFFSET in hardirq and NMI_OFFSET + HARDIRQ_OFFSET in NMI context
 * (include/linux/preempt.h). The folded PREEMPT_NEED_RESCHED bit is the task's TIF flag here.
 */
export const PCPU_PREEMPT_COUNT = 0x30;
/** __stack_chk_guard (CONFIG_STACKPROTECTOR): __switch_to_asm loads the next task's canary into it. */
export const PCPU_STACK_CHK_GUARD = 0x38;
export const HARDIRQ_OFFSET = 0x10000, NMI_OFFSET = 0x100000;
/** __percpu pointers of dynamic allocations are origin + offset; this_cpu_off = PERCPU - origin. */
export const PERCPU_ORIGIN = 0x0000600000000000n;
/** Dynamic per-CPU allocations (prog->active, misses, private stacks) start at this offset. */
export const PERCPU_DYNAMIC = 0x1000;

/** Tasks on the CPU at most (task 0's stack is TASK_STACK; task k's is TASK_STACK_STRIDE × k above the NMI stack). */
export const MAX_TASKS = 4;
export const TASK_STACK_STRIDE = 0x10000;
/**
 * LOCAL_TIMER_VECTOR (arch/x86/include/asm/irq_vectors.h): the tick. In an image with tasks its
 * handler runs sched_tick() before any program attached to the vector.
 */
export const LOCAL_TIMER_VECTOR = 0xec;

/** task_pt_regs(): the user-mode pt_regs at the top of the task stack (no padding). */
export const TASK_PT_REGS = TASK_STACK + BigInt(THREAD_SIZE - PT_REGS_SIZE);

/** The runner's value for a refused run (recursion): -EBUSY. */
export const RUN_REFUSED = -16n;
/** scx_sc_run_nested() with an index that names no nested run: -EINVAL. */
export const NESTED_EINVAL = -22n;

/**
 * How far ktime_get_mono_fast_ns() moves per read in the synthetic kernel: NSEC_PER_SEC / 4,
 * bpf_check_timed_may_goto()'s time slice (kernel/bpf/core.c, 7.2), so a frame's second refill
 * finds the slice spent (the reference interpreter's default: jit/bpf/interp.ts mayGoto()).
 */
export const MONO_CLOCK_STEP = 250_000_000;
/** ktime_get_mono_fast_ns() when a run starts: a minute after boot, as on a machine that has been up a while. */
export const MONO_CLOCK_START = 60_000_000_000n;

/** Kernel data layout. */
export const KD = {
  progTable: 0x000,       // 64 bytes per program: bpf_func, active ptr, misses ptr, recursion limit, ctx ptr, preempt_disable() word
  progEntry: 64,
  maxProgs: 48,
  nestedCount: 0xc00,     // u64
  nested: 0xc08,          // u64 program index per nested run
  maxNested: 32,
  nmiProg: 0xd08,         // program index, or -1
  monoClock: 0xd10,       // u64: ktime_get_mono_fast_ns()'s clock (bpf_check_timed_may_goto())
  nrTasks: 0xd18,         // u64: tasks in the image (an image with tasks)
  irqTable: 0xe00,        // 256 × u64: program index per vector, or -1
  scratch: 0x1f00,        // where bpf_sc_get_stack() leaves r9 pointing (a kernel data pointer)
  ctx: 0x2000,            // CTX_SIZE bytes per program: the context the runner passes in rdi (R1)
  tasks: 0x5000,          // TASK_STRUCT_SIZE bytes per task: the fields of TASK below
} as const;

/**
 * The task_struct fields the synthetic kernel uses, at offsets of its own (the real ones come
 * from asm-offsets.c; only the values matter to the code): thread.sp (TASK_threadsp), __state,
 * thread_info.flags (TIF_NEED_RESCHED), the program its syscall runs, stack_canary
 * (TASK_stack_canary), and its task_pt_regs().
 */
export const TASK = { threadSp: 0, state: 8, flags: 16, prog: 24, canary: 32, ptRegs: 40 } as const;
export const TASK_STRUCT_SIZE = 64;
/** __state: TASK_RUNNING, TASK_INTERRUPTIBLE (include/linux/sched.h), TASK_DEAD (0x80). */
export const TASK_RUNNING = 0, TASK_INTERRUPTIBLE = 1, TASK_DEAD = 0x80;
/** thread_info.flags: TIF_NEED_RESCHED (bit 4, include/asm-generic/thread_info_tif.h, 7.2: x86 selects HAVE_GENERIC_TIF_BITS; bit 3 is TIF_MEMDIE). */
export const TIF_NEED_RESCHED = 1 << 4;
/** __schedule()'s sched_mode (kernel/sched/core.c:6731). */
export const SM_NONE = 0, SM_PREEMPT = 1;

/**
 * The context each program is run with (what R1 points to), by program type: kprobe a struct
 * pt_regs (168 bytes), tracepoint a record whose first 8 bytes the program may not read
 * (tp_prog_is_valid_access()), raw_tp the u64 arguments (MAX_BPF_FUNC_ARGS of them); the
 * synthetic kernel gives each program CTX_SIZE bytes of known, distinct values.
 */
export const CTX_SIZE = 0x100;

const ctxMade: Uint8Array[] = [];

/**
 * Program `p`'s context bytes: byte k is a fixed function of p and k (the same for the machine
 * and the interpreter). Made once per p and shared: callers copy them or read them, never write.
 */
export function ctxBytes(p: number): Uint8Array {
  let b = ctxMade[p];
  if (b === undefined) {
    b = new Uint8Array(CTX_SIZE);
    for (let k = 0; k < CTX_SIZE; k++) b[k] = (p * 131 + k * 29 + 7) & 0xff;
    ctxMade[p] = b;
  }
  return b;
}

/** Where the pieces of an image sit. Everything else (sizes, per-CPU offsets, KD) is fixed. */
export interface Layout {
  readonly ktext: bigint;
  readonly kdata: bigint;
  readonly bpfText: bigint;
  readonly taskStack: bigint;
  readonly irqStack: bigint;
  readonly nmiStack: bigint;
  /** CPU 0's per-CPU area: the GS base. */
  readonly percpu: bigint;
  /** Where __percpu pointers are handed out from (never dereferenced: this_cpu_off = percpu - origin). */
  readonly percpuOrigin: bigint;
}

/** The canonical kernel addresses above: the default layout of every image. */
export const KERNEL_LAYOUT: Layout = Object.freeze({
  ktext: KTEXT, kdata: KDATA, bpfText: BPF_TEXT, taskStack: TASK_STACK, irqStack: IRQ_STACK, nmiStack: NMI_STACK,
  percpu: PERCPU, percpuOrigin: PERCPU_ORIGIN,
});

/** task_pt_regs() of a layout (TASK_PT_REGS for the kernel layout); of task `k` in an image with tasks. */
export function taskPtRegs(l: Layout, k = 0): bigint {
  return taskStackOf(l, k) + BigInt(THREAD_SIZE - PT_REGS_SIZE);
}

/** The bottom of task `k`'s stack: task 0's is the layout's; the others' sit above the NMI stack, one stride each. */
export function taskStackOf(l: Layout, k: number): bigint {
  return k === 0 ? l.taskStack : l.nmiStack + BigInt(TASK_STACK_STRIDE * k);
}

/** Offsets of the pieces in a user-space layout (each piece with room for its guard pages). */
const USER_OFFSETS = {
  ktext: 0x0000000, kdata: 0x0100000, bpfText: 0x0200000,
  taskStack: 0x0400000, irqStack: 0x0410000, nmiStack: 0x0420000, percpu: 0x0800000,
} as const;
/** How much address space a user layout spans from its base. */
export const USER_LAYOUT_SPAN = USER_OFFSETS.percpu + PERCPU_SIZE;

/**
 * The image at low user-space addresses from `base` (page aligned, with the whole layout below
 * 2 GiB). The code depends on two relative placements, kept by construction: rel32 calls between
 * kernel text and BPF text (±2 GiB), and kernel data reachable as a sign-extended imm32
 * (bpf_sc_get_stack's `mov r9, imm32`), which holds for the kernel's top 2 GiB and for user
 * addresses below 2 GiB.
 */
export function userLayout(base: bigint): Layout {
  if (base <= 0n || base % 0x1000n !== 0n || base + BigInt(USER_LAYOUT_SPAN) > 0x80000000n) {
    throw new RangeError(`userLayout: base 0x${base.toString(16)} must be page aligned, above 0, with the layout (0x${USER_LAYOUT_SPAN.toString(16)} bytes) below 2 GiB`);
  }
  const at = (off: number) => base + BigInt(off);
  return Object.freeze({
    ktext: at(USER_OFFSETS.ktext), kdata: at(USER_OFFSETS.kdata), bpfText: at(USER_OFFSETS.bpfText),
    taskStack: at(USER_OFFSETS.taskStack), irqStack: at(USER_OFFSETS.irqStack), nmiStack: at(USER_OFFSETS.nmiStack),
    percpu: at(USER_OFFSETS.percpu), percpuOrigin: PERCPU_ORIGIN,
  });
}
