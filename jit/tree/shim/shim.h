// SPDX-License-Identifier: GPL-2.0-only
/*
 * The interface between the shim's two halves. The kernel half (kstubs.c, kdriver.c, jit_tu.c)
 * is compiled with the tree's own kbuild flags and headers; the user half (user.c) with the host's
 * libc. Only plain C types cross, so this header compiles on both sides.
 */
#ifndef SC_SHIM_H
#define SC_SHIM_H

#ifndef __KERNEL__
#include <stdarg.h>
#endif

/* One BPF instruction as the request gives it (struct bpf_insn has 4-bit register fields). */
struct sc_insn {
	unsigned char code, dst, src;
	short off;
	int imm;
};

/* sc_func.flags: what jit_subprogs() copies from the verifier's subprog_info into func[i]->aux. */
#define SC_F_TAIL_CALL_REACHABLE 0x1
#define SC_F_EXCEPTION_CB 0x2

/* One exception-table entry, as the JIT wrote it (struct exception_table_entry), with the
 * address its relative `insn` field points to. */
struct sc_extable {
	unsigned long long insn_addr;
	int insn, fixup, data;
};

struct sc_func {
	/* request */
	unsigned int start, len, stack_depth, flags, out_stack_arg_cnt;
	unsigned long long want;        /* image address the harness wants (the JIT's ro image) */
	unsigned long long priv;        /* __percpu pointer __alloc_percpu_gfp() returns; 0: no private stack */
	/* answer */
	unsigned long long image;       /* the ro image bpf_jit_binary_pack_alloc() handed out */
	unsigned long long bpf_func;    /* prog->bpf_func (image + cfi_get_offset()) */
	unsigned int jited_len;         /* prog->jited_len */
	unsigned int image_len;         /* bytes from image to the end of the code (jited_len + CFI preamble) */
	const unsigned char *rw;        /* the code, image_len bytes (what the rw image holds) */
	int have_addrs;                 /* addrs[] was captured */
	const int *addrs;               /* addrs[0..len] */
	int have_fp;                    /* the tree has aux->ksym.fp_start/fp_end */
	unsigned int fp_start, fp_end;
	unsigned long long priv_ptr;    /* aux->priv_stack_ptr after the JIT (0: none) */
	unsigned int priv_size, priv_align;
	const unsigned char *priv_bytes; /* CPU 0's copy of the private stack after the JIT, priv_size bytes */
	unsigned int num_ex;
	const struct sc_extable *ex;
};

#define SC_MAX_FEATURES 32

struct sc_request {
	int prog_type;                  /* enum bpf_prog_type */
	unsigned int nfuncs, ninsns;
	struct sc_insn *insns;
	unsigned long long *target;     /* per instruction: the absolute target of a helper/kfunc call */
	unsigned char *has_target;
	struct sc_func *funcs;
	int nfeatures;
	int features[SC_MAX_FEATURES];  /* X86_FEATURE_* bits set in boot_cpu_data for this request */
	int has_return_thunk;
	unsigned long long return_thunk; /* x86_return_thunk */
	int exception_boundary;         /* func[0]->aux->exception_boundary (env->seen_exception) */
	int cap_sys_admin;              /* what ns_capable_noaudit(CAP_SYS_ADMIN) answers (classic programs) */
};

/* Where the JIT failed. insn is the function-relative BPF instruction index, or -1. */
#define SC_WHERE_UNKNOWN 0
#define SC_WHERE_INSN 1         /* at instruction `insn` */
#define SC_WHERE_PROLOGUE 2     /* before the first instruction */
#define SC_WHERE_AFTER 3        /* after the last instruction (extable check, image pass, extra pass) */
#define SC_WHERE_REQUEST 4      /* the request itself (before the JIT ran) */

struct sc_error {
	int func;                       /* function index, or -1 */
	int where;                      /* SC_WHERE_* */
	int insn;
	int rc;                         /* do_jit()'s return code (negative errno), 0 if not known */
	char what[512];
};

/* Names the request may use, with their values in this tree. */
struct sc_name {
	const char *name;
	int value;
};

/* Capabilities of this tree's JIT (the `hello` line). */
#define SC_CAP_PRIV_STACK 0x1   /* aux->jits_use_priv_stack (6.13+) */
#define SC_CAP_FP_WINDOW 0x2    /* aux->ksym.fp_start/fp_end (7.x) */
#define SC_CAP_STACK_ARGS 0x4   /* bpf_out_stack_arg_cnt() (7.x) */
#define SC_CAP_ENV_ARG 0x8      /* bpf_int_jit_compile(env, prog) (7.x) */

/* kernel half */
extern const struct sc_name sc_prog_types[];
extern const struct sc_name sc_features[];
extern const char sc_release[];
extern const int sc_caps;
int sc_jit(struct sc_request *rq, struct sc_error *err);
void sc_request_done(void);

/* user half */
void *u_calloc(unsigned long size);
void u_free(void *p);
void u_vlog(int level, const char *fmt, va_list ap);
int u_vsnprintf(char *buf, unsigned long size, const char *fmt, va_list ap);
void u_note(const char *text);
void u_fatal(const char *what) __attribute__((noreturn));

#endif
