// SPDX-License-Identifier: GPL-2.0-only
/*
 * The driver: JIT one program (main + subprogs) with the tree's bpf_int_jit_compile(), the way
 * the kernel's loader calls it, and collect what it produced.
 *
 * - One function: bpf_prog_select_runtime() -> bpf_int_jit_compile() once (kernel/bpf/core.c).
 * - Several: jit_subprogs() (kernel/bpf/fixups.c in 7.2, kernel/bpf/verifier.c in 6.12): every
 *   BPF_PSEUDO_CALL (and BPF_PSEUDO_FUNC ld_imm64) gets the callee's index in `off` and a
 *   placeholder target (imm 1; MODULES_VADDR for function addresses); each function is JITed
 *   once (is_func = 1, so bpf_int_jit_compile() keeps jit_data for later); then the real targets
 *   (BPF_CALL_IMM(func[callee]->bpf_func)) are filled in; then the extra pass, which must leave
 *   every bpf_func where it was ("JIT doesn't support bpf-to-bpf calls" otherwise).
 *
 * Helper and kfunc calls: the verifier stores `target - __bpf_call_base` in imm
 * (fixup_kfunc_call, do_misc_fixups); the request gives the absolute target and this file does
 * the same subtraction.
 *
 * 7.x passes the verifier's env to bpf_int_jit_compile(); here it is NULL, and the two functions
 * the JIT asks it through (bpf_insn_is_indirect_target, bpf_out_stack_arg_cnt) are stubs that
 * answer from the request (kstubs.c).
 */
#include <linux/filter.h>
#include <linux/bpf.h>
#include <linux/bpf_verifier.h>
#include <linux/percpu.h>
#include <linux/version.h>
#include <asm/processor.h>
#include <asm/cfi.h>
#include "kshim.h"

#define SC_V7 (LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0))
#if SC_V7
#define SC_JIT(p) bpf_int_jit_compile(NULL, (p))
#else
#define SC_JIT(p) bpf_int_jit_compile(p)
#endif

/* Link-time model addresses (build.ts --defsym): where x86_return_thunk points by default. */
extern char sc_model_return_thunk[];

/* The per-CPU window: from the lowest requested __percpu pointer, this many bytes past the highest. */
#define SC_PCPU_SLACK (64 * 1024)
#define SC_PCPU_MAX (16 * 1024 * 1024)

static int sc_fail(int func, int where, int insn, const char *fmt, ...) __printf(4, 5);
static int sc_fail(int func, int where, int insn, const char *fmt, ...)
{
	va_list ap;

	sc.err->func = func;
	sc.err->where = where;
	sc.err->insn = insn;
	va_start(ap, fmt);
	u_vsnprintf(sc.err->what, sizeof(sc.err->what), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- stubs' side of the state (called from kstubs.c) ---- */

void __percpu *sc_percpu_alloc(size_t size, size_t align)
{
	struct sc_func_state *f = &sc.f[sc.cur];
	unsigned long long p = sc.rq->funcs[sc.cur].priv;

	if (!p) {
		sc.bad = "the JIT allocated per-CPU memory for a function the request gave no private-stack pointer for";
		return NULL;
	}
	if (f->pcpu_allocs++) {
		sc.bad = "the JIT allocated a second private stack for one function";
		return NULL;
	}
	if (p % align || p < sc.pcpu_lo || p - sc.pcpu_lo + size > sc.pcpu_len) {
		sc.bad = "the private-stack pointer is misaligned for the JIT's allocation, or the allocation does not fit the shim's per-CPU window";
		return NULL;
	}
	f->pcpu_ptr = p;
	f->pcpu_size = size;
	f->pcpu_align = align;
	return (void __percpu *)(unsigned long)p;
}

void sc_percpu_free(void __percpu *p)
{
	/* the window is freed with the request; bpf_int_jit_compile() frees on failure only */
}

void sc_capture_addrs(struct bpf_prog *prog, const u32 *insn_to_jit_off)
{
	struct sc_func_state *f = &sc.f[sc.cur];
	u32 i;

	if (f->prog != prog || f->addrs)
		return;
	f->addrs = u_calloc((prog->len + 1) * sizeof(int));
	/* do_jit() passes addrs + 1 (bpf_int_jit_compile: "for historical reasons"); addrs[0], the
	 * end of the prologue, is the word before it in the same kvmalloc'ed array. */
	for (i = 0; i <= prog->len; i++)
		f->addrs[i] = (int)insn_to_jit_off[(int)i - 1];
}

void sc_note_insn(const struct bpf_prog *prog, int insn_idx)
{
	if (sc.f && sc.f[sc.cur].prog == prog)
		sc.f[sc.cur].last_insn = insn_idx;
}

u16 sc_out_stack_arg_cnt(const struct bpf_prog *prog)
{
	/* do_jit() calls this first: a new pass starts */
	if (sc.f && sc.f[sc.cur].prog == prog) {
		sc.f[sc.cur].last_insn = -1;
		return sc.rq->funcs[sc.cur].out_stack_arg_cnt;
	}
	return 0;
}

struct bpf_binary_header *sc_image_alloc(unsigned int size, u8 **ro_image, struct bpf_binary_header **rw_hdr,
					 u8 **rw_image, bpf_jit_fill_hole_t fill)
{
	struct sc_func_state *f = &sc.f[sc.cur];
	unsigned long long want = sc.rq->funcs[sc.cur].want;
	unsigned int total = size + offsetof(struct bpf_binary_header, image);
	struct bpf_binary_header *rw;

	if (f->allocs++) {
		sc.bad = "bpf_jit_binary_pack_alloc() was called twice for one function (the extra pass must reuse the first image)";
		return NULL;
	}
	/* The kernel's image start is aligned to the JIT's `alignment` (4, the extable's). */
	if (want & 3) {
		sc.bad = "the image address is not 4-byte aligned (bpf_jit_binary_pack_alloc aligns the image start to the extable's alignment)";
		return NULL;
	}
	rw = u_calloc(total);
	fill(rw, total);
	rw->size = total;
	f->rw = rw;
	f->rw_size = size;
	f->ro = want;
	*rw_hdr = rw;
	*rw_image = rw->image;
	*ro_image = (u8 *)(unsigned long)want;
	return (struct bpf_binary_header *)(unsigned long)(want - offsetof(struct bpf_binary_header, image));
}

void sc_image_free(struct bpf_binary_header *rw)
{
	struct sc_func_state *f = &sc.f[sc.cur];

	if (f->rw == rw)
		f->rw = NULL;
	u_free(rw);
}

/* ---- the driver ---- */

/* What jit_subprogs() (and the verifier, for one function) count as exception-table users. */
static u32 sc_count_exentries(const struct bpf_insn *insn, u32 len)
{
	u32 n = 0, j;

	for (j = 0; j < len; j++, insn++) {
		u8 cls = BPF_CLASS(insn->code), mode = BPF_MODE(insn->code);

		if (cls == BPF_LDX && (mode == BPF_PROBE_MEM || mode == BPF_PROBE_MEMSX
#ifdef BPF_PROBE_MEM32
				       || mode == BPF_PROBE_MEM32
#endif
#ifdef BPF_PROBE_MEM32SX
				       || mode == BPF_PROBE_MEM32SX
#endif
				       ))
			n++;
#ifdef BPF_PROBE_MEM32
		if ((cls == BPF_STX || cls == BPF_ST) && mode == BPF_PROBE_MEM32)
			n++;
#endif
#ifdef BPF_PROBE_ATOMIC
		if (cls == BPF_STX && mode == BPF_PROBE_ATOMIC)
			n++;
#endif
	}
	return n;
}

static bool sc_is_pseudo_call(const struct bpf_insn *x)
{
	return x->code == (BPF_JMP | BPF_CALL) && x->src_reg == BPF_PSEUDO_CALL;
}
static bool sc_is_pseudo_func(const struct bpf_insn *x)
{
	return x->code == (BPF_LD | BPF_IMM | BPF_DW) && x->src_reg == BPF_PSEUDO_FUNC;
}

static struct bpf_prog *sc_new_prog(int i, const struct bpf_insn *insns)
{
	const struct sc_func *rf = &sc.rq->funcs[i];
	struct bpf_prog *p = u_calloc(bpf_prog_size(rf->len));

	p->aux = u_calloc(sizeof(*p->aux));
	p->aux->prog = p;
	p->type = sc.rq->prog_type;
	p->len = rf->len;
	p->jit_requested = 1;
	memcpy(p->insnsi, insns + rf->start, rf->len * sizeof(struct bpf_insn));
	p->aux->func_idx = i;
	p->aux->stack_depth = rf->stack_depth;
	p->aux->num_exentries = sc_count_exentries(p->insnsi, p->len);
	p->aux->tail_call_reachable = !!(rf->flags & SC_F_TAIL_CALL_REACHABLE);
	p->aux->exception_cb = !!(rf->flags & SC_F_EXCEPTION_CB);
	if (i == 0)
		p->aux->exception_boundary = sc.rq->exception_boundary;
#if SC_V7
	p->aux->subprog_start = rf->start;
	p->aux->jits_use_priv_stack = rf->priv != 0;
#endif
	sc.f[i].prog = p;
	return p;
}

/* Why function i is not JITed: what a stub said, the printk log, and a replay of do_jit(). */
static int sc_jit_failed(int i)
{
	struct bpf_prog *p = sc.f[i].prog;
	int where = SC_WHERE_UNKNOWN, insn = -1, rc;
#if SC_V7
	int last = sc.f[i].last_insn;
#endif

	/* the replay's own printk output would repeat the real run's: muted */
	sc.mute = 1;
	rc = sc_replay_do_jit(p, sc.rq->funcs[i].want, &where, &insn);
	sc.mute = 0;
	sc.err->rc = rc < 0 ? rc : 0;
#if SC_V7
	/* the position in the real run: the last instruction do_jit() started (used when the
	 * replay, too, failed inside the instruction loop) */
	if (last >= 0 && rc < 0 && where == SC_WHERE_INSN)
		insn = last;
#endif
	if (sc.bad)
		return sc_fail(i, where, insn, "%s", sc.bad);
	return sc_fail(i, where, insn, "bpf_int_jit_compile() left function %d unJITed%s", i,
		       rc < 0 ? "" : " (a replay of its do_jit() passes did not fail: the error code is unknown)");
}

static int sc_compile(int i)
{
	struct bpf_prog *p = sc.f[i].prog, *r;

	sc.cur = i;
	sc.f[i].last_insn = -1;
	r = SC_JIT(p);
	if (r != p || !p->jited)
		return sc_jit_failed(i);
	return 0;
}

static int sc_check_request(void)
{
	struct sc_request *rq = sc.rq;
	unsigned int i, at = 0;
	int k;

	if (rq->nfuncs < 1)
		return sc_fail(-1, SC_WHERE_REQUEST, -1, "no functions");
	for (i = 0; i < rq->nfuncs; i++) {
		const struct sc_func *f = &rq->funcs[i];

		if (f->start != at || f->len < 1)
			return sc_fail(i, SC_WHERE_REQUEST, -1, "function %u starts at %u with %u instructions; expected a non-empty function at %u (functions are contiguous, in order)", i, f->start, f->len, at);
		at += f->len;
		if (!f->want)
			return sc_fail(i, SC_WHERE_REQUEST, -1, "function %u has no image address", i);
#if !SC_V7
		if (f->priv)
			return sc_fail(i, SC_WHERE_REQUEST, -1, "function %u asks for a private stack, which Linux %s does not have (aux->jits_use_priv_stack is 6.13+)", i, sc_release);
		if (f->out_stack_arg_cnt)
			return sc_fail(i, SC_WHERE_REQUEST, -1, "function %u has stack arguments, which Linux %s does not have (7.x)", i, sc_release);
#endif
	}
	if (at != rq->ninsns)
		return sc_fail(-1, SC_WHERE_REQUEST, -1, "the functions cover %u instructions, the program has %u", at, rq->ninsns);
	for (k = 0; k < rq->nfeatures; k++)
		if (rq->features[k] == X86_FEATURE_CALL_DEPTH)
			return sc_fail(-1, SC_WHERE_REQUEST, -1, "X86_FEATURE_CALL_DEPTH is not modelled: x86_call_depth_emit_accounting() would emit callthunks.c's accounting template");
	return 0;
}

/* __percpu pointers [lo, hi + slack) map onto one zeroed buffer through __per_cpu_offset[0]. */
static int sc_setup_percpu(void)
{
	unsigned long long lo = ~0ULL, hi = 0;
	unsigned int i;

	for (i = 0; i < sc.rq->nfuncs; i++) {
		unsigned long long p = sc.rq->funcs[i].priv;

		if (!p)
			continue;
		lo = min(lo, p);
		hi = max(hi, p);
	}
	if (!hi)
		return 0;
	if (hi - lo > SC_PCPU_MAX - SC_PCPU_SLACK)
		return sc_fail(-1, SC_WHERE_REQUEST, -1, "the private-stack pointers span more than %d bytes", SC_PCPU_MAX - SC_PCPU_SLACK);
	sc.pcpu_lo = lo;
	sc.pcpu_len = hi - lo + SC_PCPU_SLACK;
	sc.pcpu_buf = u_calloc(sc.pcpu_len);
	__per_cpu_offset[0] = (unsigned long)sc.pcpu_buf - (unsigned long)lo;
	return 0;
}

/* Helper/kfunc targets into imm, as the verifier's fixups leave them. */
static int sc_set_call_targets(struct bpf_insn *insns)
{
	struct sc_request *rq = sc.rq;
	unsigned int i, fi = 0;

	for (i = 0; i < rq->ninsns; i++) {
		struct bpf_insn *x = &insns[i];
		bool call = x->code == (BPF_JMP | BPF_CALL) && x->src_reg != BPF_PSEUDO_CALL;
		s64 delta;

		while (i >= rq->funcs[fi].start + rq->funcs[fi].len)
			fi++;
		if (rq->has_target[i] && !call)
			return sc_fail(fi, SC_WHERE_REQUEST, i - rq->funcs[fi].start, "instruction %u (code 0x%02x) has a call target but is not a helper or kfunc call", i, x->code);
		if (!call)
			continue;
		if (!rq->has_target[i])
			return sc_fail(fi, SC_WHERE_REQUEST, i - rq->funcs[fi].start, "instruction %u is a %s call without a target address", i, x->src_reg == BPF_PSEUDO_KFUNC_CALL ? "kfunc" : "helper");
		delta = (s64)(rq->target[i] - (unsigned long long)(unsigned long)__bpf_call_base);
		if (delta != (s32)delta || delta == 0)
			return sc_fail(fi, SC_WHERE_REQUEST, i - rq->funcs[fi].start, "instruction %u: call target 0x%llx is not a non-zero imm32 from __bpf_call_base (0x%lx)", i, rq->target[i], (unsigned long)__bpf_call_base);
		x->imm = (s32)delta;
	}
	return 0;
}

static int sc_find_func(unsigned int start)
{
	unsigned int k;

	for (k = 0; k < sc.rq->nfuncs; k++)
		if (sc.rq->funcs[k].start == start)
			return k;
	return -1;
}

/* jit_subprogs(), first loop: callee index in off, placeholder targets. */
static int sc_mark_subprog_calls(struct bpf_insn *insns)
{
	unsigned int i, fi = 0;

	for (i = 0; i < sc.rq->ninsns; i++) {
		struct bpf_insn *x = &insns[i];
		int k;

		while (i >= sc.rq->funcs[fi].start + sc.rq->funcs[fi].len)
			fi++;
		if (!sc_is_pseudo_call(x) && !sc_is_pseudo_func(x))
			continue;
		k = sc_find_func(i + x->imm + 1);
		if (k < 0)
			return sc_fail(fi, SC_WHERE_REQUEST, i - sc.rq->funcs[fi].start, "instruction %u refers to instruction %d, which starts no function", i, (int)(i + x->imm + 1));
		x->off = k;
		x->imm = 1;
		if (sc_is_pseudo_func(x)) {
			if (i + 1 >= sc.rq->ninsns)
				return sc_fail(fi, SC_WHERE_REQUEST, i - sc.rq->funcs[fi].start, "ld_imm64 at instruction %u has no second half", i);
#if defined(MODULES_VADDR)
			x[0].imm = (u32)MODULES_VADDR;
			x[1].imm = (u64)MODULES_VADDR >> 32;
#else
			x[0].imm = (u32)VMALLOC_START;
			x[1].imm = (u64)VMALLOC_START >> 32;
#endif
		}
	}
	return 0;
}

static void sc_collect(int i)
{
	struct sc_func *out = &sc.rq->funcs[i];
	struct sc_func_state *f = &sc.f[i];
	struct bpf_prog *p = f->prog;
	u32 k;

	out->image = f->ro;
	out->bpf_func = (unsigned long)p->bpf_func;
	out->jited_len = p->jited_len;
	out->image_len = p->jited_len + cfi_get_offset();
	out->rw = f->rw->image;
	out->have_addrs = f->addrs != NULL;
	out->addrs = f->addrs;
#if SC_V7
	/*
	 * As arch/x86/net/bpf_jit_comp.c:do_jit (7.2) stores them, both `prog - temp`, but temp
	 * means two things: fp_start is taken right after emit_prologue(), when temp holds the code
	 * from the image start, so it is an offset from the image start (bpf_func minus any CFI
	 * preamble); fp_end is taken after `leave` in the first BPF_EXIT, when temp holds only that
	 * instruction's code, so it is an offset from where that instruction starts. Reported as
	 * stored: kernel/bpf/core.c:bpf_has_frame_pointer() compares both with ip - ksym->start.
	 */
	out->have_fp = 1;
	out->fp_start = p->aux->ksym.fp_start;
	out->fp_end = p->aux->ksym.fp_end;
	out->priv_ptr = (unsigned long)p->aux->priv_stack_ptr;
	if (out->priv_ptr) {
		out->priv_size = f->pcpu_size;
		out->priv_align = f->pcpu_align;
		out->priv_bytes = sc.pcpu_buf + (out->priv_ptr - sc.pcpu_lo);
	}
#endif
	out->num_ex = p->aux->num_exentries;
	if (out->num_ex && p->aux->extable) {
		struct sc_extable *ex = u_calloc(out->num_ex * sizeof(*ex));
		unsigned long off = (unsigned long)p->aux->extable - (unsigned long)f->ro;
		const struct exception_table_entry *e = (const void *)(f->rw->image + off);

		for (k = 0; k < out->num_ex; k++) {
			ex[k].insn_addr = (unsigned long)&p->aux->extable[k].insn + e[k].insn;
			ex[k].insn = e[k].insn;
			ex[k].fixup = e[k].fixup;
			ex[k].data = e[k].data;
		}
		out->ex = ex;
	}
}

int sc_jit(struct sc_request *rq, struct sc_error *err)
{
	struct bpf_insn *insns;
	unsigned int i, j, n;
	int k;

	memset(&sc, 0, sizeof(sc));
	memset(err, 0, sizeof(*err));
	err->func = err->insn = -1;
	sc.rq = rq;
	sc.err = err;
	n = rq->nfuncs;
	if (sc_check_request())
		return -1;
	sc.f = u_calloc(n * sizeof(*sc.f));

	memset(boot_cpu_data.x86_capability, 0, sizeof(boot_cpu_data.x86_capability));
	for (k = 0; k < rq->nfeatures; k++)
		set_bit(rq->features[k], (unsigned long *)boot_cpu_data.x86_capability);
	x86_return_thunk = rq->has_return_thunk ? (void *)(unsigned long)rq->return_thunk : (void *)sc_model_return_thunk;
	if (sc_setup_percpu())
		return -1;

	insns = u_calloc(rq->ninsns * sizeof(*insns));
	for (i = 0; i < rq->ninsns; i++) {
		insns[i].code = rq->insns[i].code;
		insns[i].dst_reg = rq->insns[i].dst;
		insns[i].src_reg = rq->insns[i].src;
		insns[i].off = rq->insns[i].off;
		insns[i].imm = rq->insns[i].imm;
	}
	if (sc_set_call_targets(insns))
		goto out;

	if (n == 1) {
		/* bpf_prog_select_runtime(): the main program alone, is_func = 0 */
		sc_new_prog(0, insns);
		if (sc_compile(0))
			goto out;
	} else {
		if (sc_mark_subprog_calls(insns))
			goto out;
		for (i = 0; i < n; i++) {
			struct bpf_prog *p = sc_new_prog(i, insns);

			p->is_func = 1;
			p->aux->name[0] = 'F';
			if (sc_compile(i))
				goto out;
		}
		for (i = 0; i < n; i++) {
			struct bpf_prog *p = sc.f[i].prog;

			for (j = 0; j < p->len; j++) {
				struct bpf_insn *x = &p->insnsi[j];

				/* x->off: the callee's index, set by sc_mark_subprog_calls() */
				if (sc_is_pseudo_func(x)) {
					void *callee = sc.f[x->off].prog->bpf_func;

					x[0].imm = (u32)(long)callee;
					x[1].imm = ((u64)(long)callee) >> 32;
					j++;
				} else if (sc_is_pseudo_call(x)) {
					x->imm = BPF_CALL_IMM(sc.f[x->off].prog->bpf_func);
				}
			}
			p->aux->func_cnt = n;
			p->aux->real_func_cnt = n;
		}
		for (i = 0; i < n; i++) {
			void *old = sc.f[i].prog->bpf_func;

			if (sc_compile(i))
				goto out;
			if (sc.f[i].prog->bpf_func != old) {
				sc_fail(i, SC_WHERE_AFTER, -1, "JIT doesn't support bpf-to-bpf calls (the extra pass moved function %u: jit_subprogs() fails with -ENOTSUPP)", i);
				goto out;
			}
		}
	}
	for (i = 0; i < n; i++)
		sc_collect(i);
	u_free(insns);
	return 0;
out:
	u_free(insns);
	return -1;
}

void sc_request_done(void)
{
	unsigned int i;

	if (!sc.rq)
		return;
	if (sc.f) {
		for (i = 0; i < sc.rq->nfuncs; i++) {
			struct sc_func_state *f = &sc.f[i];

			if (f->prog) {
				u_free(f->prog->aux);
				u_free(f->prog);
			}
			u_free(f->rw);
			u_free(f->addrs);
			u_free((void *)sc.rq->funcs[i].ex);
		}
		u_free(sc.f);
	}
	u_free(sc.pcpu_buf);
	__per_cpu_offset[0] = 0;
	memset(&sc, 0, sizeof(sc));
}
