// SPDX-License-Identifier: GPL-2.0-only
/*
 * The kernel symbols arch/x86/net/bpf_jit_comp.o needs, for a user-space process that only JITs
 * programs. Compiled with the tree's own kbuild flags and headers, so every signature and
 * structure layout is the tree's. Written for this shim; no kernel code is copied.
 *
 * Three kinds of stub:
 * - used while a program is JITed, and modelled: allocation, per-CPU memory, CPU features, the
 *   image allocator that places the image where the harness wants it, addrs[] capture, printk;
 * - addresses the JIT embeds in code (thunks, this_cpu_off, __bpf_call_base): link-time
 *   constants given by build.ts with --defsym, the model kernel's addresses;
 * - reachable only from trampolines, the dispatcher, text poking, exceptions or bpf_jit_free():
 *   UNMODELLED(), which abandons the request with an error answer naming the function and the
 *   path (user.c: u_fatal), never a silent answer.
 *
 * The list is what `nm -u` shows for the 7.2.13 and 6.12.118 objects; LINUX_VERSION_CODE
 * separates the two APIs.
 */
#include <linux/filter.h>
#include <linux/bpf.h>
#include <linux/bpf_verifier.h>
#include <linux/slab.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sort.h>
#include <linux/version.h>
#include <asm/processor.h>
#include <asm/nops.h>
#include <asm/text-patching.h>
#include <asm/unwind.h>
#include <asm/cfi.h>
#include <asm/nospec-branch.h>
#include <generated/utsrelease.h>
#include "kshim.h"

#define SC_V7 (LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0))

/* The current request's state (kdriver.c). */
struct sc_state sc;

static void __noreturn sc_unmodelled(const char *what)
{
	u_fatal(what);
}
/* `name` was called: it is reached only on paths the shim does not model (`why`). */
#define UNMODELLED(name, why) sc_unmodelled(name "() is not modelled by the stackcheck kernel shim (" why ")")

/* ---- data the JIT reads ---- */

/* CPU features: cpu_feature_enabled()/boot_cpu_has() read boot_cpu_data.x86_capability here
 * (the alternatives that would patch static_cpu_has() never run, so the unpatched path that
 * tests the bit is what executes). kdriver.c sets the request's bits. */
struct cpuinfo_x86 boot_cpu_data;
/* bpf_jit_enable > 1 would dump every image through print_hex_dump (bpf_jit_dump). */
int bpf_jit_enable = 1;
/* x86_return_thunk: where emit_return() jumps when cpu_wants_rethunk(); set per request. */
void (*x86_return_thunk)(void);
/* cfi_mode: what emit_cfi() switches on; the kernel picks kCFI or FineIBT at boot when built
 * with CONFIG_CFI (CFI_CLANG in 6.12). build.ts refuses such trees, so the zero value (no
 * preamble beyond endbr64) is what the tree would do. */
enum cfi_mode cfi_mode;
/* x86_nops[]: what emit_nops() copies; the bytes are the tree's BYTES_NOP* (asm/nops.h). */
static const unsigned char sc_nop1[] = { BYTES_NOP1 }, sc_nop2[] = { BYTES_NOP2 }, sc_nop3[] = { BYTES_NOP3 },
	sc_nop4[] = { BYTES_NOP4 }, sc_nop5[] = { BYTES_NOP5 }, sc_nop6[] = { BYTES_NOP6 },
	sc_nop7[] = { BYTES_NOP7 }, sc_nop8[] = { BYTES_NOP8 };
const unsigned char * const x86_nops[ASM_NOP_MAX + 1] = {
	NULL, sc_nop1, sc_nop2, sc_nop3, sc_nop4, sc_nop5, sc_nop6, sc_nop7, sc_nop8,
};
/* Referenced by text poking and the BHB barrier (classic programs), never locked here. */
struct mutex text_mutex;
struct user_namespace init_user_ns;
struct kmem_cache *kmalloc_caches[NR_KMALLOC_TYPES][KMALLOC_SHIFT_HIGH + 1];

/*
 * `current`: read through gs: (this_cpu_read_const). The process's GS base is 0, so the gs:
 * read hits this object itself; it is only read on paths this shim does not model.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
asm(".pushsection .data\n.globl const_current_task\n.balign 64\nconst_current_task: .zero 64\n.popsection\n");
#else
asm(".pushsection .data\n.globl const_pcpu_hot\n.balign 64\nconst_pcpu_hot: .zero 256\n.popsection\n");
#endif

/*
 * Code the compiled kernel objects themselves call: -mfunction-return=thunk-extern turns every
 * `ret` into `jmp __x86_return_thunk`, -mindirect-branch=thunk-extern every indirect call into
 * `call __x86_indirect_thunk_<reg>`; cond_resched() is a static call (PREEMPT_DYNAMIC) through
 * __SCT__cond_resched. These run in this process, so they are real (and trivial) code. The
 * __x86_indirect_thunk_array the JIT embeds in tail calls is a separate, link-time address.
 */
#define SC_THUNK(reg) ".globl __x86_indirect_thunk_" #reg "\n__x86_indirect_thunk_" #reg ": jmp *%" #reg "\n"
asm(".pushsection .text\n"
    ".globl __x86_return_thunk\n__x86_return_thunk: ret\n"
    SC_THUNK(rax) SC_THUNK(rbx) SC_THUNK(rcx) SC_THUNK(rdx) SC_THUNK(rsi) SC_THUNK(rdi) SC_THUNK(rbp)
    SC_THUNK(r8) SC_THUNK(r9) SC_THUNK(r10) SC_THUNK(r11) SC_THUNK(r12) SC_THUNK(r13) SC_THUNK(r14) SC_THUNK(r15)
    ".globl __SCT__cond_resched\n__SCT__cond_resched: xor %eax, %eax\n ret\n"
    ".popsection\n"
    ".pushsection .data\n.globl __SCK__cond_resched\n.balign 8\n__SCK__cond_resched: .quad 0, 0, 0\n.popsection\n");

/* ---- allocation: libc through the user half; kfree/kvfree free at once, as the kernel does ---- */

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
#if SC_V7
void *__kmalloc_noprof(DECL_TOKEN_PARAMS(size, token), gfp_t flags) { return u_calloc(size); }
void *__kvmalloc_node_noprof(DECL_KMALLOC_PARAMS(size, b, token), unsigned long align, gfp_t flags, int node)
{
	return u_calloc(size);
}
#else
void *__kmalloc_noprof(size_t size, gfp_t flags) { return u_calloc(size); }
void *__kvmalloc_node_noprof(DECL_BUCKET_PARAMS(size, b), gfp_t flags, int node) { return u_calloc(size); }
#endif
void *__kmalloc_cache_noprof(struct kmem_cache *s, gfp_t flags, size_t size) { return u_calloc(size); }
#endif
void kfree(const void *p) { u_free((void *)p); }
void kvfree(const void *p) { u_free((void *)p); }

/* ---- per-CPU memory (7.x private stacks) ----
 * One possible CPU. per_cpu_ptr(p, 0) = p + __per_cpu_offset[0]; kdriver.c points
 * __per_cpu_offset[0] so that the request's __percpu pointers land in its per-CPU window, where
 * priv_stack_init_guard() writes the guard words the answer reports. */
unsigned long __per_cpu_offset[NR_CPUS];
struct cpumask __cpu_possible_mask = { .bits = { 1 } };

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
void __percpu *pcpu_alloc_noprof(size_t size, size_t align, bool reserved, gfp_t gfp)
{
	return sc_percpu_alloc(size, align);
}
#endif
void free_percpu(void __percpu *p) { sc_percpu_free(p); }

/* ---- CPU behaviour ---- */

/* arch/x86/kernel/alternative.c:cpu_wants_rethunk (7.2; 6.12 has the same test): the feature bit. */
#ifdef CONFIG_MITIGATION_RETHUNK
bool cpu_wants_rethunk(void) { return cpu_feature_enabled(X86_FEATURE_RETHUNK); }
#endif

#ifdef CONFIG_MITIGATION_ITS
/* arch/x86/kernel/alternative.c:its_static_thunk without FineIBT's paranoid mode: the array
 * element (the array's address is a link-time constant). */
u8 *its_static_thunk(int reg) { return __x86_indirect_its_thunk_array[reg]; }
#endif

#ifdef CONFIG_MITIGATION_CALL_DEPTH_TRACKING
/* arch/x86/kernel/callthunks.c:x86_call_depth_emit_accounting returns 0 until call-depth
 * tracking is set up, which needs X86_FEATURE_CALL_DEPTH; kdriver.c refuses that feature, so 0
 * is exact. */
int x86_call_depth_emit_accounting(u8 **pprog, void *func, void *ip) { return 0; }
#endif

/* ---- printk: formatted by the user half (user.c), kept in the request's log ---- */
asmlinkage __visible int _printk(const char *fmt, ...)
{
	va_list ap;
	int level = -1;

	if (sc.mute)
		return 0;
	if (fmt[0] == KERN_SOH_ASCII && fmt[1]) {
		level = fmt[1] >= '0' && fmt[1] <= '7' ? fmt[1] - '0' : -1;
		fmt += 2;
	}
	va_start(ap, fmt);
	u_vlog(level, fmt, ap);
	va_end(ap);
	return 0;
}

/* ---- the BPF core functions the JIT calls ---- */

#if !SC_V7
/* kernel/bpf/core.c:bpf_jit_blind_constants returns the program unchanged unless blinding was
 * requested (bpf_jit_harden); requests never ask for it. 6.12 calls it from bpf_int_jit_compile. */
struct bpf_prog *bpf_jit_blind_constants(struct bpf_prog *fp)
{
	if (fp->blinding_requested)
		UNMODELLED("bpf_jit_blind_constants", "constant blinding");
	return fp;
}
#endif
void bpf_jit_prog_release_other(struct bpf_prog *fp, struct bpf_prog *fp_other)
{
	UNMODELLED("bpf_jit_prog_release_other", "constant blinding");
}

/* Asked in do_jit()'s BPF_EXIT for converted classic programs only (bpf_prog_was_classic): a loader
 * without CAP_SYS_ADMIN gets emit_spectre_bhb_barrier(). The request says which. */
bool ns_capable_noaudit(struct user_namespace *ns, int cap)
{
	return cap == CAP_SYS_ADMIN && sc.rq && sc.rq->cap_sys_admin;
}

/* Called once per function, in the final pass, with do_jit()'s addrs + 1: the exact table. */
void bpf_prog_fill_jited_linfo(struct bpf_prog *prog, const u32 *insn_to_jit_off)
{
	sc_capture_addrs(prog, insn_to_jit_off);
}

u64 bpf_arena_get_kern_vm_start(struct bpf_arena *arena)
{
	if (arena)
		UNMODELLED("bpf_arena_get_kern_vm_start", "arena programs");
	return 0;
}
u64 bpf_arena_get_user_vm_start(struct bpf_arena *arena)
{
	if (arena)
		UNMODELLED("bpf_arena_get_user_vm_start", "arena programs");
	return 0;
}

#if SC_V7
/*
 * kernel/bpf/core.c:bpf_insn_is_indirect_target (7.2) answers from the verifier's
 * insn_aux_data (gotox targets); requests have no indirect jumps, so false, as with env == NULL.
 * do_jit() calls it at the start of every instruction, which tells kdriver.c which instruction
 * a failure happened in.
 */
bool bpf_insn_is_indirect_target(const struct bpf_verifier_env *env, const struct bpf_prog *prog, int insn_idx)
{
	sc_note_insn(prog, insn_idx);
	return false;
}
/* kernel/bpf/core.c:bpf_out_stack_arg_cnt (7.2): the request's per-function count. do_jit()
 * calls it first, before the prologue. */
u16 bpf_out_stack_arg_cnt(const struct bpf_verifier_env *env, const struct bpf_prog *prog)
{
	return sc_out_stack_arg_cnt(prog);
}
/* Only for the private-stack overflow message of bpf_jit_free() (kernel/bpf/core.c, 7.2). */
const char *bpf_jit_get_prog_name(struct bpf_prog *prog) { return prog->aux->name; }
/* kernel/bpf/bpf_insn_array.c (7.2): updates instruction-array maps; requests use none. */
void bpf_prog_update_insn_ptrs(struct bpf_prog *prog, u32 *offsets, void *image) {}
void bpf_prog_report_arena_violation(bool write, unsigned long addr, unsigned long fault_ip)
{
	UNMODELLED("bpf_prog_report_arena_violation", "arena programs, at run time");
}
#endif

/*
 * The image allocator (kernel/bpf/core.c:bpf_jit_binary_pack_alloc): the kernel carves the ro
 * image out of a shared pack at a random offset; here it is exactly where the harness wants
 * this function, and the rw copy is a private buffer.
 */
struct bpf_binary_header *
bpf_jit_binary_pack_alloc(unsigned int proglen, u8 **ro_image, unsigned int alignment,
			  struct bpf_binary_header **rw_hdr, u8 **rw_image,
			  bpf_jit_fill_hole_t bpf_fill_ill_insns, bool was_classic)
{
	return sc_image_alloc(proglen, ro_image, rw_hdr, rw_image, bpf_fill_ill_insns);
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
int bpf_jit_binary_pack_finalize(struct bpf_binary_header *ro_header, struct bpf_binary_header *rw_header)
#else
int bpf_jit_binary_pack_finalize(struct bpf_prog *prog, struct bpf_binary_header *ro_header,
				 struct bpf_binary_header *rw_header)
#endif
{
	/* The kernel copies rw to ro and frees rw; here rw is the answer, kept until the request ends. */
	return 0;
}

void bpf_jit_binary_pack_free(struct bpf_binary_header *ro_header, struct bpf_binary_header *rw_header)
{
	sc_image_free(rw_header);
}

/* bpf_arch_text_copy() on the failure path copies the size field into the ro header, which is
 * a harness address, not memory of this process: nothing to do. */
void *text_poke_copy(void *addr, const void *opcode, size_t len) { return addr; }

/* ---- reachable only from paths the shim does not model ---- */
struct bpf_binary_header *bpf_jit_binary_pack_hdr(const struct bpf_prog *fp) { UNMODELLED("bpf_jit_binary_pack_hdr", "bpf_jit_free()"); }
void __bpf_prog_free(struct bpf_prog *fp) { UNMODELLED("__bpf_prog_free", "bpf_jit_free()"); }
void *bpf_jit_alloc_exec(unsigned long size) { UNMODELLED("bpf_jit_alloc_exec", "trampolines, the dispatcher"); }
void bpf_jit_free_exec(void *addr) { UNMODELLED("bpf_jit_free_exec", "trampolines, the dispatcher"); }
void *bpf_prog_pack_alloc(u32 size, bpf_jit_fill_hole_t bpf_fill_ill_insns, bool was_classic) { UNMODELLED("bpf_prog_pack_alloc", "trampolines, the dispatcher"); }
void bpf_prog_pack_free(void *ptr, u32 size) { UNMODELLED("bpf_prog_pack_free", "trampolines, the dispatcher"); }
void *text_poke_set(void *addr, int c, size_t len) { UNMODELLED("text_poke_set", "text poking"); }
#if SC_V7
void smp_text_poke_single(void *addr, const void *opcode, size_t len, const void *emulate) { UNMODELLED("smp_text_poke_single", "text poking"); }
__noendbr bool is_endbr(u32 *val) { UNMODELLED("is_endbr", "text poking"); }
#else
void text_poke_bp(void *addr, const void *opcode, size_t len, const void *emulate) { UNMODELLED("text_poke_bp", "text poking"); }
#endif
void mutex_lock(struct mutex *m) { UNMODELLED("mutex_lock", "text poking"); }
void mutex_unlock(struct mutex *m) { UNMODELLED("mutex_unlock", "text poking"); }
void synchronize_rcu(void) { UNMODELLED("synchronize_rcu", "text poking"); }
int in_gate_area_no_mm(unsigned long addr) { UNMODELLED("in_gate_area_no_mm", "text poking"); }
bool is_bpf_text_address(unsigned long addr) { UNMODELLED("is_bpf_text_address", "text poking"); }
void sort(void *base, size_t num, size_t size, cmp_func_t cmp_func, swap_func_t swap_func) { UNMODELLED("sort", "the BPF dispatcher"); }
void print_hex_dump(const char *level, const char *prefix_str, int prefix_type, int rowsize,
		    int groupsize, const void *buf, size_t len, bool ascii) { UNMODELLED("print_hex_dump", "bpf_jit_enable > 1"); }
void __unwind_start(struct unwind_state *state, struct task_struct *task, struct pt_regs *regs,
		    unsigned long *first_frame) { UNMODELLED("__unwind_start", "arch_bpf_stack_walk"); }
bool unwind_next_frame(struct unwind_state *state) { UNMODELLED("unwind_next_frame", "arch_bpf_stack_walk(), bpf_throw"); }
unsigned long unwind_get_return_address(struct unwind_state *state) { UNMODELLED("unwind_get_return_address", "arch_bpf_stack_walk(), bpf_throw"); }

#ifdef CONFIG_FORTIFY_SOURCE
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
void __fortify_panic(const u8 reason, const size_t avail, const size_t size) { sc_unmodelled("fortify panic"); }
#else
void fortify_panic(const char *name) { sc_unmodelled(name); }
#endif
#endif

/* ---- what the request may name ---- */
const char sc_release[] = UTS_RELEASE;
const int sc_caps = (SC_V7 ? SC_CAP_PRIV_STACK | SC_CAP_FP_WINDOW | SC_CAP_STACK_ARGS | SC_CAP_ENV_ARG : 0);

#define T(name, v) { name, v }
const struct sc_name sc_prog_types[] = {
	T("unspec", BPF_PROG_TYPE_UNSPEC), /* bpf_prog_was_classic(): a converted classic program */
	T("socket_filter", BPF_PROG_TYPE_SOCKET_FILTER), T("kprobe", BPF_PROG_TYPE_KPROBE),
	T("sched_cls", BPF_PROG_TYPE_SCHED_CLS), T("sched_act", BPF_PROG_TYPE_SCHED_ACT),
	T("tracepoint", BPF_PROG_TYPE_TRACEPOINT), T("xdp", BPF_PROG_TYPE_XDP),
	T("perf_event", BPF_PROG_TYPE_PERF_EVENT), T("raw_tracepoint", BPF_PROG_TYPE_RAW_TRACEPOINT),
	T("raw_tp", BPF_PROG_TYPE_RAW_TRACEPOINT), T("tracing", BPF_PROG_TYPE_TRACING),
	T("struct_ops", BPF_PROG_TYPE_STRUCT_OPS), T("ext", BPF_PROG_TYPE_EXT), T("lsm", BPF_PROG_TYPE_LSM),
	T("syscall", BPF_PROG_TYPE_SYSCALL),
	{ NULL, 0 },
};

/* The X86_FEATURE_* bits the JIT consults (cpu_feature_enabled/boot_cpu_has in
 * bpf_jit_comp.c and the helpers it calls), where the tree defines them. */
const struct sc_name sc_features[] = {
	T("BMI2", X86_FEATURE_BMI2),                    /* do_jit: shlx/sarx/shrx for shifts by a register */
	T("RETHUNK", X86_FEATURE_RETHUNK),              /* emit_return: jmp x86_return_thunk */
	T("RETPOLINE", X86_FEATURE_RETPOLINE),          /* emit_indirect_jump (tail calls) */
	T("RETPOLINE_LFENCE", X86_FEATURE_RETPOLINE_LFENCE),
#ifdef X86_FEATURE_INDIRECT_THUNK_ITS
	T("INDIRECT_THUNK_ITS", X86_FEATURE_INDIRECT_THUNK_ITS),
#endif
	T("CALL_DEPTH", X86_FEATURE_CALL_DEPTH),        /* refused by kdriver.c (see x86_call_depth_emit_accounting) */
	T("CLEAR_BHB_LOOP", X86_FEATURE_CLEAR_BHB_LOOP), /* emit_spectre_bhb_barrier (classic programs) */
	T("CLEAR_BHB_HW", X86_FEATURE_CLEAR_BHB_HW),        /* emit_spectre_bhb_barrier: IBHF */
	T("HYPERVISOR", X86_FEATURE_HYPERVISOR),        /* with CLEAR_BHB_LOOP: emit_spectre_bhb_barrier()'s IBHF */
	{ NULL, 0 },
};
#undef T
