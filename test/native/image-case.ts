// A whole JIT image as a differential case: the synthetic kernel and the JITed programs, built
// at a user-space layout (userLayout), run from do_syscall_64 as the task would run them, with no
// interrupts. That path executes no privileged instruction: the kernel's only one is the iretq of
// its interrupt entry code, and entry_return's ud2 is never reached because the run stops at
// the stub that takes its place as do_syscall_64's return address. do_syscall_64's IRQ enable
// and disable are `push imm; popfq`: at CPL 3 (IOPL 0) popfq leaves IF alone without a fault, so
// natively IF stays set where the machine clears it on the way out. Only the arithmetic flags
// are compared, and popfq loads those alike on both.
import type { Machine } from "../../harness/machine/index.ts";
import type { Image } from "../../jit/image.ts";
import type { NativeCase } from "./runner.ts";
import { loadImage } from "../../harness/load.ts";

/** The stop stub's page: just below the layout's kernel text. */
export const stopFor = (img: Image): bigint => img.layout.ktext - 0x1000n;

export interface ImageCase {
  readonly case: NativeCase;
  /** Names of the dumps: every data region of the image (stacks, kernel data, per-CPU). */
  readonly dumpNames: readonly string[];
  /** A machine with the same memory as the native run (the caller disposes it). */
  machine(): Machine;
}

/**
 * Run the task's program: rsp at task_pt_regs - 8 holding the stop address (where
 * entry_SYSCALL_64's call would have put its return address), rdi the program index, the other
 * registers and the arithmetic flags as given, GS at the per-CPU area.
 */
export function imageCase(img: Image, task: number, regs: readonly bigint[], flags: number): ImageCase {
  const stop = stopFor(img);
  const rsp = img.taskPtRegs - 8n;
  const word = new Uint8Array(8);
  new DataView(word.buffer).setBigUint64(0, stop, true);
  const mapped = img.regions.filter((r) => r.kind !== "guard"); // guard pages stay unmapped natively: any access faults
  const data = mapped.filter((r) => r.perms[2] !== "x");
  return {
    case: {
      regions: mapped.map((r) => ({ start: r.start, size: r.size, perms: r.perms })),
      loads: [...img.loads, { addr: rsp, bytes: word }],
      regs: regs.map((v, i) => (i === 4 ? rsp : i === 7 ? BigInt(task) : v)),
      rip: img.kernel.addr("do_syscall_64"), rflags: flags, gsBase: img.layout.percpu, stop,
      dumps: data.map((r) => ({ addr: r.start, size: r.size })),
    },
    dumpNames: data.map((r) => r.name),
    machine() {
      const m = loadImage(img);
      m.load(rsp, word);
      return m;
    },
  };
}
