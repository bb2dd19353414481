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
 * -EINVAL/-EFAULT is not observable from outside. sc_replay_do_jit() runs do_jit() once more on
 * the failed function, as bpf_int_jit_compile()'s first pass does (no image, addrs[] estimated at
 * 64 bytes per instruction, cleanup_addr at the end), and reports its return code and where it
 * stopped. It is never used for results. A failure that only happens in a later pass (the image
 * pass, the extra pass with real call targets) does not reproduce: rc is then >= 0 and the error
 * answer says the code is unknown.
 */
#include SC_JIT_SOURCE

#include <linux/version.h>

#include "kshim.h"

/* addrs[i] that do_jit() has not written in the replay: the estimate plus this. Instruction i
 * writes addrs[i + 1] when it is done, the prologue writes addrs[0]. do_jit() only reads
 * addrs[] of instructions already done (their start) or as jump targets, whose difference is
 * what the estimate gives anyway. */
#define SC_UNWRITTEN 0x40000000

int sc_replay_do_jit(struct bpf_prog *prog, int *where, int *insn)
{
	struct jit_context ctx = {};
	int *addrs, i, rc, n = prog->len;

	addrs = u_calloc((n + 1) * sizeof(int));
	for (i = 0; i <= n; i++)
		addrs[i] = 64 * (i + 1) + SC_UNWRITTEN;
	ctx.cleanup_addr = 64 * (n + 1);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
	rc = do_jit(NULL, prog, addrs, NULL, NULL, 0, &ctx, false);
#else
	rc = do_jit(prog, addrs, NULL, NULL, 0, &ctx, false);
#endif
	*where = SC_WHERE_UNKNOWN;
	*insn = -1;
	if (rc <= 0) {
		for (i = 0; i <= n && addrs[i] < SC_UNWRITTEN; i++)
			;
		if (i == 0) {
			*where = SC_WHERE_PROLOGUE;
		} else if (i <= n) {
			*where = SC_WHERE_INSN;
			*insn = i - 1;
		} else {
			*where = SC_WHERE_AFTER;
		}
	}
	u_free(addrs);
	return rc;
}
