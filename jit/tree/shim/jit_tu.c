// SPDX-License-Identifier: GPL-2.0-only
/*
 * The translation unit that compiles the JIT: the tree's (or a reviewer's patched)
 * arch/x86/net/bpf_jit_comp.c is included here unchanged, by the absolute path build.ts passes
 * as SC_JIT_SOURCE, with kbuild's recorded flags. Everything the JIT computes comes from its own
 * bpf_int_jit_compile(), called by kdriver.c.
 *
 * This file adds one thing after it, because it needs the JIT's static do_jit(): a diagnostic
 * replay. bpf_int_jit_compile() discards do_jit()'s return code (it only tests `proglen <= 0`,
 * arch/x86/net/bpf_jit_comp.c:bpf_int_jit_compile, 7.2 and 6.12), so a failed function's
 * -EINVAL/-EFAULT is not observable from outside. sc_replay_do_jit() runs do_jit() again on the
 * failed function through the same sequence of passes (sizing passes without an image until the
 * length settles, padding from PADDING_PASSES on, then one pass with the image at its address)
 * and reports the return code of the pass that fails and the instruction it failed in. It is
 * never used for results. The sequence is written here from the JIT's documented behaviour, not
 * copied; a failure it does not reproduce is reported with an unknown code.
 */
#include SC_JIT_SOURCE

#include <linux/version.h>
#include "kshim.h"

/* addrs[i] that the first pass has not written: the estimate plus this. Instruction i writes
 * addrs[i + 1] when it is done, the prologue writes addrs[0]. do_jit() only reads addrs[] of
 * instructions already done (where they start) or as jump targets, whose differences are what
 * the plain estimate gives. */
#define SC_UNWRITTEN 0x40000000

static int sc_do_jit(struct bpf_prog *prog, int *addrs, u8 *image, u8 *rw, int oldproglen,
		     struct jit_context *ctx, bool padding)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
	return do_jit(NULL, prog, addrs, image, rw, oldproglen, ctx, padding);
#else
	return do_jit(prog, addrs, image, rw, oldproglen, ctx, padding);
#endif
}

/* The first instruction whose start is `at` bytes into the code (addrs[k] = start of insn k). */
static int sc_insn_at(const int *addrs, int n, int at)
{
	int k;

	for (k = 0; k <= n; k++)
		if (addrs[k] == at)
			return k < n ? k : -1;
	return -1;
}

int sc_replay_do_jit(struct bpf_prog *prog, unsigned long long image, int *where, int *insn)
{
	struct jit_context ctx = {}, ctx0;
	int n = prog->len, i, pass, rc, proglen = 0, oldproglen = 0, k;
	int *addrs = u_calloc((n + 1) * sizeof(int)), *addrs0 = u_calloc((n + 1) * sizeof(int));
	u8 *rw[2] = { NULL, NULL };
	u32 size;

	*where = SC_WHERE_UNKNOWN;
	*insn = -1;
	for (i = 0; i <= n; i++)
		addrs[i] = 64 * (i + 1) + SC_UNWRITTEN;
	ctx.cleanup_addr = 64 * (n + 1);

	/* sizing passes */
	for (pass = 0; pass < MAX_PASSES; pass++) {
		rc = sc_do_jit(prog, addrs, NULL, NULL, oldproglen, &ctx, pass >= PADDING_PASSES);
		if (rc <= 0) {
			if (pass == 0) {
				for (i = 0; i <= n && addrs[i] < SC_UNWRITTEN; i++)
					;
				*where = i == 0 ? SC_WHERE_PROLOGUE : i <= n ? SC_WHERE_INSN : SC_WHERE_AFTER;
				*insn = i > 0 && i <= n ? i - 1 : -1;
			}
			goto out;
		}
		if (rc == oldproglen)
			break;
		oldproglen = rc;
	}
	proglen = oldproglen;
	if (!image || pass == MAX_PASSES) {
		rc = 1;
		goto out;
	}

	/* the image pass, twice over buffers filled differently: where they differ nothing was
	 * written, so the written prefix ends where the failing instruction starts */
	size = round_up(proglen, 4) + prog->aux->num_exentries * sizeof(struct exception_table_entry);
	prog->aux->extable = (void *)(unsigned long)(image + round_up(proglen, 4));
	memcpy(addrs0, addrs, (n + 1) * sizeof(int));
	ctx0 = ctx;
	for (k = 0; k < 2; k++) {
		rw[k] = u_calloc(size);
		memset(rw[k], k ? 0xff : 0, size);
		memcpy(addrs, addrs0, (n + 1) * sizeof(int));
		ctx = ctx0;
		rc = sc_do_jit(prog, addrs, (u8 *)(unsigned long)image, rw[k], proglen, &ctx, true);
	}
	if (rc <= 0) {
		for (i = 0; i < proglen && rw[0][i] == rw[1][i]; i++)
			;
		if (i >= proglen) {
			*where = SC_WHERE_AFTER;
		} else {
			*insn = sc_insn_at(addrs0, n, i);
			*where = *insn >= 0 ? SC_WHERE_INSN : SC_WHERE_UNKNOWN;
		}
	}
out:
	u_free(rw[0]);
	u_free(rw[1]);
	u_free(addrs);
	u_free(addrs0);
	return rc;
}
