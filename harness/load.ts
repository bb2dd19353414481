// An image (jit/image.ts, plain data) loaded into a machine: its regions mapped, its bytes
// loaded, the IDT gates of its IRQ vectors and of the NMI (on its IST stack), the GS base at the
// per-CPU area, IF set; and the task entered through do_syscall_64.
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
  const m = new Machine({ regions: img.regions, symbols: img.symbols });
  // a function's records are DInsns: this module's recorder made them (below)
  for (const l of img.loads) m.load(l.addr, l.bytes, l.decoded as readonly DInsn[] | undefined);
  m.gsBase = img.layout.percpu;
  for (const v of img.irqVectors) m.setGate(v, img.kernel.addr(`irq_entry_${v}`));
  m.setGate(2, img.kernel.addr("asm_exc_nmi"), NMI_IST);
  m.setIst(NMI_IST, img.layout.nmiStack + BigInt(EXCEPTION_STKSZ));
  m.rflags = 0x202;
  return m;
}

const reused = new WeakMap<Image, { m: Machine; loaded: MachineSnapshot }>();

/**
 * The same, for one run at a time: the image's own machine, restored to its loaded state with
 * no hooks, observer or watchers, its decode cache kept. The same object on every call for one
 * image; a call ends the previous run's use of it.
 */
export function reusedMachine(img: Image): Machine {
  const r = reused.get(img);
  if (!r) {
    const m = loadImage(img);
    reused.set(img, { m, loaded: m.snapshot() });
    return m;
  }
  r.m.restore(r.loaded);
  r.m.resetInstrumentation();
  return r.m;
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

/** Which task a task_struct pointer names, or -1. */
const taskAt = (img: Image, struct: bigint) => img.tasks.findIndex((t) => t.struct === struct);

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
