// An image (jit/image.ts, plain data) loaded into a machine: its regions mapped, its bytes
// loaded, the IDT gates of its IRQ vectors and of the NMI (on its IST stack), the GS base at the
// per-CPU area, IF set; and the task entered through do_syscall_64.
import { Machine, type MachineSnapshot } from "./machine/index.ts";
import type { Image } from "../jit/image.ts";
import { EXCEPTION_STKSZ, NMI_IST } from "../jit/kernel/layout.ts";

/** A machine with the image loaded, the IDT and TSS set, the GS base, IF set. */
export function loadImage(img: Image): Machine {
  const m = new Machine({ regions: img.regions, symbols: img.symbols });
  for (const l of img.loads) m.load(l.addr, l.bytes);
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

/** Prepare a machine to run the task's program: rsp = task_pt_regs, stop at entry_SYSCALL_64's return. */
export function startTask(img: Image, m: Machine): void {
  m.rflags = 0x2; // entry_SYSCALL_64 runs with IRQs off; do_syscall_64 enables them
  m.call(img.kernel.addr("do_syscall_64"), { args: [BigInt(img.task)], rsp: img.taskPtRegs, stopAt: img.kernel.addr("entry_return") });
}
