// What the unwinders see of an image and a machine: a read-only memory view, the CPU's and the
// task's stacks (with private stacks registered as stack types when asked, an unwinder change
// a design would need), __kernel_text_address(), in_entry_code(), vmlinux's ORC data
// (objtool.ts) and the BPF ksyms bpf_has_frame_pointer() reads. The unwinders themselves
// (unwinder/) know nothing of images or machines.
import type { Machine } from "./machine/index.ts";
import { bpfProgs, type Image } from "../jit/image.ts";
import { privateStacks as imagePrivateStacks } from "../jit/private-stacks.ts";
import { EXCEPTION_STKSZ, IRQ_STACK_SIZE } from "../jit/kernel/layout.ts";
import { currentTask } from "./load.ts";
import {
  makeUnwinder, STACK_TYPE_NMI, STACK_TYPE_PRIVATE, type BpfKsym, type PrivateStackDef, type PrivateStackKnowledge, type UnwindEnv,
  type Unwinder, type UnwinderName,
} from "../unwinder/index.ts";
import { kernelOrcTable } from "./objtool.ts";

const TEXT_KINDS: ReadonlySet<string> = new Set(["kernel", "entry", "bpf", "trampoline"]);

export function envFromImage(img: Image, m: Machine, knowledge: PrivateStackKnowledge = "none"): UnwindEnv {
  // Each private stack as an extra known stack type (one for all, or one per stack: a per-level
  // slot is a stack of its own). The back-link rule is in_irq_stack()'s: next_sp is read from
  // the word where the design keeps the previous rsp (full-private's `push r10`); a design that
  // keeps none gets next_sp = 0, so a walk cannot leave its stack, as on any stack whose way
  // back is unknown.
  const privateStacks: PrivateStackDef[] = knowledge === "none" ? [] : imagePrivateStacks(img).map((x, i) => ({
    begin: x.begin, end: x.end, type: knowledge === "per-type" ? STACK_TYPE_PRIVATE : STACK_TYPE_PRIVATE + i,
    ...(x.backLink === undefined ? {} : { backLink: x.backLink }),
  }));
  const { irqStack, nmiStack } = img.layout;
  // current's stack and task_pt_regs(current): with several tasks, whichever current_task names now
  const cur = () => img.tasks[currentTask(img, m)]!;
  return {
    mem: { read64: (a) => m.peek64(a) },
    stacks: {
      get task() { return cur().stack; },
      hardirqStackPtr: irqStack + BigInt(IRQ_STACK_SIZE) - 8n,
      irqStackSize: IRQ_STACK_SIZE,
      exception: [{ type: STACK_TYPE_NMI, begin: nmiStack, end: nmiStack + BigInt(EXCEPTION_STKSZ) }],
      privateStacks,
    },
    get taskPtRegs() { return cur().ptRegs; },
    isKernelText: (a) => TEXT_KINDS.has(m.symbols.kindOf(a) ?? ""),
    inEntryCode: (a) => m.symbols.kindOf(a) === "entry",
    symbolize: (a) => m.symbols.symbolize(a) ?? a.toString(16),
  };
}

/** The BPF ksyms of an image: each JITed function's start, end and ksym.fp_start/fp_end as do_jit() stored them. */
export function bpfKsyms(img: Image): BpfKsym[] {
  return bpfProgs(img).flatMap((p) => p.jit.funcs.map((f) => ({ start: f.image.base, end: f.image.end, fpStart: f.ksym.fpStart, fpEnd: f.ksym.fpEnd })));
}

/** The unwinder `name` over an image loaded in a machine. */
export function unwinderFor(name: UnwinderName, img: Image, m: Machine, knowledge: PrivateStackKnowledge = "none"): Unwinder {
  return makeUnwinder(name, envFromImage(img, m, knowledge), { kernel: kernelOrcTable(img.kernel), bpfKsyms: bpfKsyms(img), ...(img.multitask ? { retFromFork: img.kernel.addr("ret_from_fork_asm") } : {}) });
}
