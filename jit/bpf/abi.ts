// The helpers and kfuncs of stackcheck's synthetic kernel, as the verifier sees them: ids,
// names and argument types (the bpf_func_proto / kfunc BTF of a real kernel). The synthetic
// kernel implements them in x86; the reference interpreter gives the same results.

/** Argument kinds (a tiny subset of the kernel's ARG_*). */
export type ArgKind =
  | "anything"        // ARG_ANYTHING: any initialised register
  | "scalar"          // a number, not a pointer
  | "stack-ptr-8";    // ARG_PTR_TO_MEM of 8 initialised, writable bytes on a BPF stack

export interface CallSig {
  readonly id: number;
  readonly name: string;
  readonly args: readonly ArgKind[];
  /** What it is for, in one line (documentation and reports). */
  readonly does: string;
  /** bpf_func_proto.might_sleep: only sleepable programs may call it. */
  readonly mightSleep?: boolean;
}

/** Helper ids are our own; the names say they belong to the synthetic kernel (`sc_`). */
export const HELPERS: readonly CallSig[] = [
  { id: 1, name: "bpf_sc_mix", args: ["anything", "anything", "anything", "anything", "anything"], does: "a leaf that mixes its five arguments into r0" },
  { id: 2, name: "bpf_sc_rw", args: ["stack-ptr-8", "scalar"], does: "reads the u64 at r1, writes back a mix of it and r2, returns the old value" },
  { id: 3, name: "bpf_sc_get_stack", args: [], does: "takes a stack sample like bpf_get_stack(), returns 0" },
  { id: 4, name: "bpf_sc_sleep", args: [], does: "sleeps (schedule(), as bpf_copy_from_user() does when the user page faults), returns 0; sleepable programs only", mightSleep: true },
];

/**
 * kfuncs, by BTF id. scx_sc_run_nested has the call shape of sched_ext's scx_bpf_sub_dispatch()
 * (kernel/sched/ext/ext.c, 7.2), a kfunc that runs another program, but not its implicit
 * argument: 7.2 declares that one KF_IMPLICIT_ARGS, and bpf_fixup_kfunc_call() (verifier.c)
 * puts `r2 = <prog->aux>` (an ld_imm64) before each call of it, which the model's fix-ups do not:
 * the JIT's input lacks those two instructions (a 10-byte movabs), which moves addrs[] after each
 * call, and changes no stack and no result (r2 is caller-saved; the synthetic kfunc ignores it).
 */
export const KFUNCS: readonly CallSig[] = [
  { id: 1000, name: "scx_sc_run_nested", args: ["scalar"], does: "runs nested program r1 through a trampoline-like runner (scx_bpf_sub_dispatch shape)" },
];

export const helperById = (id: number): CallSig | undefined => HELPERS.find((h) => h.id === id);
export const kfuncById = (id: number): CallSig | undefined => KFUNCS.find((k) => k.id === id);

/**
 * Kernel functions the verifier's fix-ups call (BPF_EMIT_CALL in bpf_do_misc_fixups(),
 * kernel/bpf/fixups.c, 7.2): in the JIT's input after jit/bpf/fixups.ts, never in a program as
 * written (the validator knows only HELPERS). Their ids are our own, outside the helpers'.
 */
export const FIXUP_CALLS: readonly CallSig[] = [
  { id: 0x7ff0, name: "arch_bpf_timed_may_goto", args: [], does: "may_goto's refill (x86-64's timed form): r10 = the count's offset from the frame pointer" },
];
export const TIMED_MAY_GOTO_CALL = FIXUP_CALLS[0]!;

/** What a helper call (src_reg 0) of the JIT's input reaches: a helper, or a fix-up's kernel function. */
export const helperOrFixupById = (id: number): CallSig | undefined => helperById(id) ?? FIXUP_CALLS.find((c) => c.id === id);

/** Names for printed calls (print.ts PrintCallbacks): `call bpf_sc_rw#2`. */
export const CALL_NAMES = { helperName: (id: number) => helperOrFixupById(id)?.name, kfuncName: (id: number) => kfuncById(id)?.name } as const;
