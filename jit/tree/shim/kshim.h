// SPDX-License-Identifier: GPL-2.0-only
/* Shared by the kernel half's files (kstubs.c, kdriver.c, jit_tu.c); include after kernel headers. */
#ifndef SC_KSHIM_H
#define SC_KSHIM_H

#include "shim.h"

/* Per function of the current request. */
struct sc_func_state {
	struct bpf_prog *prog;
	struct bpf_binary_header *rw;   /* the rw image bpf_jit_binary_pack_alloc() handed out */
	unsigned int rw_size;
	unsigned long long ro;          /* the ro image */
	int allocs;                     /* image allocations for this function (must be 1) */
	int *addrs;                     /* addrs[0..len], captured in bpf_prog_fill_jited_linfo() */
	int pcpu_allocs;
	unsigned long long pcpu_ptr;
	unsigned int pcpu_size, pcpu_align;
	int last_insn;                  /* the last instruction do_jit() started (7.x), or -1 */
};

struct sc_state {
	struct sc_request *rq;
	struct sc_error *err;
	struct sc_func_state *f;        /* rq->nfuncs entries */
	int cur;                        /* the function being compiled */
	/* the per-CPU window: __percpu addresses [pcpu_lo, pcpu_lo + pcpu_len) map to pcpu_buf */
	unsigned long long pcpu_lo;
	unsigned long pcpu_len;
	unsigned char *pcpu_buf;
	const char *bad;                /* a stub found something wrong: the message */
	int mute;                       /* drop printk output (during the diagnostic replay) */
};
extern struct sc_state sc;

void __percpu *sc_percpu_alloc(size_t size, size_t align);
void sc_percpu_free(void __percpu *p);
void sc_capture_addrs(struct bpf_prog *prog, const u32 *insn_to_jit_off);
void sc_note_insn(const struct bpf_prog *prog, int insn_idx);
u16 sc_out_stack_arg_cnt(const struct bpf_prog *prog);
struct bpf_binary_header *sc_image_alloc(unsigned int size, u8 **ro_image, struct bpf_binary_header **rw_hdr,
					 u8 **rw_image, bpf_jit_fill_hole_t fill);
void sc_image_free(struct bpf_binary_header *rw);

/* jit_tu.c: run do_jit() again on a failed function (its passes, then the image pass at
 * `image`), for the return code and position of the failure. */
int sc_replay_do_jit(struct bpf_prog *prog, unsigned long long image, int *where, int *insn);

#endif
