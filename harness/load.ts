// An image (jit/image.ts, plain data) loaded into a machine: its regions mapped, its bytes
// loaded, the IDT gates of its IRQ vectors and of the NMI (on its IST stack), the GS base at the
// per-CPU area, IF set; and the task entered through do_syscall_64.
import { RecentCache } from "../jit/recent-cache.ts";
import { Machine, type DInsn, type MachineSnapshot } from "./machine/index.ts";
import { InsnRecords } from "./machine/decode.ts";
import { recordInstructions } from "../jit/jit.ts";
import type { Image } from "../jit/image.ts";
import { EXCEPTION_STKSZ, NMI_IST, PCPU_CURRENT_TASK } from "../jit/kernel/layout.ts";
import { INACTIVE_TASK_FRAME, INACTIVE_TASK_FRAME_SIZE } from "../arch/switch_to.ts";

// Images to be loaded here come with the machine's records of the JIT's code, which Machine.load()
// takes instead of decoding it again.
recordInstructions(() => new InsnRecords());

/** A machine with the image loaded, the IDT and TSS set, the GS base, IF set. */
export function loadImage(img: Image): Machine {
  const m = layoutMachine(img);
  loadOwn(m, img);
  return m;
}

/** The kernel's text: the one load every image of a kernel shares. */
const sharedLoad = (img: Image, l: Image["loads"][number]) => l.bytes === img.kernel.text.bytes;

/** A machine with `img`'s layout: its regions mapped, the kernel's text loaded. */
function layoutMachine(img: Image): Machine {
  const m = new Machine({ regions: img.regions, symbols: img.symbols });
  for (const l of img.loads) if (sharedLoad(img, l)) m.load(l.addr, l.bytes);
  return m;
}

/** The rest of `img` into a machine of its layout: its own bytes, its symbols, the IDT and TSS, the GS base, IF set. */
function loadOwn(m: Machine, img: Image): void {
  // a function's records are DInsns: this module's recorder made them (below)
  for (const l of img.loads) if (!sharedLoad(img, l)) m.load(l.addr, l.bytes, l.decoded as readonly DInsn[] | undefined);
  m.clearGates();
  for (const v of img.irqVectors) m.setGate(v, img.kernel.addr(`irq_entry_${v}`));
  m.setGate(2, img.kernel.addr("asm_exc_nmi"), NMI_IST);
  m.setIst(NMI_IST, img.layout.nmiStack + BigInt(EXCEPTION_STKSZ));
  m.gsBase = img.layout.percpu;
  m.rflags = 0x202;
}

/**
 * What makes machines interchangeable between images: the kernel (its text: one per set of IRQ
 * vectors, jit/image.ts kernelFor()) and the regions. A thousand small generated images had 20
 * layouts (the vector sets, their BPF text's size, their tasks), most of them in a dozen.
 */
const kernelIds = new WeakMap<Image["kernel"], number>();
let kernelsSeen = 0;
function layoutKey(img: Image): string {
  let k = kernelIds.get(img.kernel);
  if (k === undefined) kernelIds.set(img.kernel, (k = kernelsSeen++));
  return `${k}|${img.regions.map((r) => `${r.name}:${r.kind}:${r.start}:${r.size}:${r.perms}`).join("|")}`;
}

/**
 * A machine kept for a layout: its state with only the layout loaded, and the image it holds now
 * (by number: the pool keeps no image alive, nor anything else of a run that is over, until the
 * layout's next run, or V8 moves it all into its old generation; the numbers' own memo holds
 * the last 4 images), loaded.
 */
interface Pooled { readonly m: Machine; readonly bare: MachineSnapshot; owner?: number; loaded?: MachineSnapshot }
const imageIds = new RecentCache<Image, number>(4);
let imagesSeen = 0;
/** An image's number while it is one of the last few (a number again later: its machine then loads it anew). */
const imageId = (img: Image) => imageIds.getOrMake(img, () => ++imagesSeen);
const pool = new Map<string, Pooled>();
/**
 * Layouts kept at once (the least recently used goes). 4,000 small generated scenarios had 20
 * layouts: with 16 kept, 255 of them (6%) built a machine anew, whose slots and pages then went
 * into V8's old generation; with 32, only each layout's first did.
 */
export const POOL_SIZE = 32;

/**
 * The same, for one run at a time: a machine of the image's layout, restored to the image's
 * loaded state with no hooks, observer or watchers. Images of one layout share it (the kernel's
 * text stays decoded; another image's bytes are loaded over the bare layout); a call ends the
 * previous run's use of it, whatever its image.
 */
export function reusedMachine(img: Image): Machine {
  const key = layoutKey(img);
  let p = pool.get(key);
  if (p === undefined) {
    const m = layoutMachine(img);
    p = { m, bare: m.snapshot() };
    if (pool.size >= POOL_SIZE) {
      // (its run is over: a call ends the previous run's use of a machine; its decoder's WASM objects go now)
      const oldest = pool.keys().next().value!;
      pool.get(oldest)!.m.dispose();
      pool.delete(oldest);
    }
  } else {
    pool.delete(key); // (re-inserted below: the most recently used last)
  }
  pool.set(key, p);
  const { m } = p;
  m.resetInstrumentation();
  const id = imageId(img);
  if (p.owner === id) {
    m.restore(p.loaded!);
    return m;
  }
  m.restore(p.bare);
  m.setSymbols(img.symbols);
  loadOwn(m, img);
  p.owner = id;
  p.loaded = m.snapshot();
  return m;
}

/**
 * Prepare a machine to run the task's program: rsp = task_pt_regs, stop at entry_SYSCALL_64's
 * return. With several tasks (img.multitask), task 0 runs first and exits through
 * syscall_exit_tasks, the others wait on their fork frames, the ground truth follows each
 * switch (a hook where __switch_to_asm loads the next task's rsp), and the run ends when no task
 * is left (all_tasks_done).
 */
export function startTask(img: Image, m: Machine): void {
  m.rflags = 0x2; // entry_SYSCALL_64 runs with IRQs off; do_syscall_64 enables them
  const k = img.kernel;
  if (!img.multitask) {
    m.call(k.addr("do_syscall_64"), { args: [BigInt(img.task)], rsp: img.taskPtRegs, stopAt: k.addr("entry_return") });
    return;
  }
  m.call(k.addr("do_syscall_64"), { args: [BigInt(img.task)], rsp: img.taskPtRegs, returnTo: k.addr("syscall_exit_tasks"), stopAt: k.addr("all_tasks_done") });
  img.tasks.forEach((t, i) => {
    // its fork frame sits right below its pt_regs (copy_thread())
    if (i > 0) m.seedTask(i, k.addr("__switch_to_asm"), k.addr("ret_from_fork_asm"), t.ptRegs - BigInt(INACTIVE_TASK_FRAME_SIZE - INACTIVE_TASK_FRAME.retAddr));
  });
  // The ground truth changes tasks where the kernel does: when current_task becomes next
  // (__switch_to()); rsp has been on next's stack since __switch_to_asm loaded it, and until then
  // the kernel, and every unwinder, still takes prev for current.
  m.addHook(k.addr("switch_current"), (mm) => mm.switchTask(taskIndex(img, mm.reg("rsi"))));
}

/** Which task a task_struct pointer names, or -1. (A loop: currentTask() runs at every call, and a closure over `struct` is an allocation each time.) */
const taskAt = (img: Image, struct: bigint) => {
  const ts = img.tasks;
  for (let i = 0; i < ts.length; i++) if (ts[i]!.struct === struct) return i;
  return -1;
};

/** Which task a task_struct pointer names (one of the image's). */
export function taskIndex(img: Image, struct: bigint): number {
  const i = taskAt(img, struct);
  if (i < 0) throw new Error(`no task has its task_struct at 0x${struct.toString(16)}`);
  return i;
}

/** The running task (current_task): task 0 in an image without a scheduler. */
export function currentTask(img: Image, m: Machine): number {
  return img.multitask ? Math.max(0, taskAt(img, m.peek64(img.layout.percpu + BigInt(PCPU_CURRENT_TASK)) ?? 0n)) : 0;
}
