// The private stacks of an image, at this CPU's addresses: each allocation a strategy asked for
// (jit/strategy.ts PrivateRequest) split into the stacks it holds (one, or one per recursion
// level), with the design's back-link word if it keeps one. One list for the unwinders'
// get_stack_info() and for the run oracles, so both see the same stacks. And the kernel's own
// stacks, from the image's regions.
import { bpfProgs, type Image } from "./image.ts";

/** One of the kernel's own stacks (task, IRQ, NMI): its region's name (`task stack`) and bounds. */
export interface KernelStack { readonly name: string; readonly begin: bigint; readonly end: bigint; /** A task's stack (not IRQ or NMI). */ readonly task: boolean }

export function kernelStacks(img: Image): KernelStack[] {
  return img.regions.filter((r) => r.kind === "stack").map((r) => ({ name: r.name, begin: r.start, end: r.start + BigInt(r.size), task: /^task( \d+)? stack$/.test(r.name) }));
}

export interface PrivateStack {
  /** `private <prog>/<func>`, plus ` slot <k>` when the allocation holds several stacks. */
  readonly name: string;
  readonly program: number;
  readonly func: string;
  /** Index of the allocation among all the image's private allocations (program order). */
  readonly alloc: number;
  readonly begin: bigint;
  readonly end: bigint;
  /** Where its pushes start: the function's frame pointer if that lies inside, else the end
   * (a lower per-level slot). High-water marks are measured from here. */
  readonly top: bigint;
  /** Address of the word holding the previous stack's rsp, if the design keeps one. */
  readonly backLink: bigint | undefined;
}

export function privateStacks(img: Image): PrivateStack[] {
  const out: PrivateStack[] = [];
  let alloc = 0;
  bpfProgs(img).forEach((p, program) => {
    for (const x of p.jit.privates) {
      const base = img.thisCpu(x.percpuPtr);
      const func = p.program.funcs[x.fi]!.name;
      const stacks = x.stacks ?? [{ begin: 0, end: x.size }];
      const framePtr = img.thisCpu(x.framePtr);
      stacks.forEach((s, k) => out.push({
        name: `private ${p.program.name}/${func}${stacks.length > 1 ? ` slot ${k}` : ""}`,
        program, func, alloc,
        begin: base + BigInt(s.begin), end: base + BigInt(s.end),
        top: base + BigInt(s.begin) < framePtr && framePtr < base + BigInt(s.end) ? framePtr : base + BigInt(s.end),
        backLink: x.backLink === undefined ? undefined : base + BigInt(x.backLink),
      }));
      alloc++;
    }
  });
  return out;
}
