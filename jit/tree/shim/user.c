// SPDX-License-Identifier: GPL-2.0-only
/*
 * stackcheck kernel-JIT shim, user half: reads requests on stdin, JITs each program with the
 * tree's own arch/x86/net/bpf_jit_comp.c (the kernel half: kdriver.c, kstubs.c, jit_tu.c),
 * answers on stdout. jit/tree/protocol.ts is the other end; keep the two in step.
 *
 * Protocol, version 1. Text lines; numbers are decimal unless said hex (lowercase, no 0x).
 *
 * At start the shim writes one line:
 *   hello stackcheck-kjit 1 <kernel release> <caps>     caps: comma list of priv_stack,
 *                                                       fp_window, stack_args, env_arg; or "-"
 *
 * A request, one line each, `key args...`:
 *   begin <seq>                       starts a request; <seq> is echoed in the answer
 *   type <name>                       program type: kprobe tracepoint perf_event raw_tracepoint
 *                                     (raw_tp) tracing struct_ops lsm syscall ext xdp sched_cls
 *                                     sched_act socket_filter unspec (a converted classic program)
 *   feature <NAME>                    X86_FEATURE_<NAME> is on for this request (repeatable);
 *                                     the others are off
 *   return_thunk <hex>                x86_return_thunk (default: the build's model address)
 *   exception_boundary <0|1>          func[0]->aux->exception_boundary
 *   cap_sys_admin <0|1>               the loader has CAP_SYS_ADMIN (default 1); only converted
 *                                     classic programs (type unspec) ask
 *   func <start> <len> <depth> <hex>  one per function, in order (0 = main): its first flat
 *                                     instruction, instruction count, verifier stack depth, and
 *                                     the image address the JIT must be given
 *   priv <fi> <hex>                   function fi has a private stack; the __percpu pointer
 *                                     __alloc_percpu_gfp() returns for it (7.x)
 *   tail_call_reachable <fi> <0|1>    aux->tail_call_reachable
 *   exception_cb <fi> <0|1>           aux->exception_cb
 *   out_stack_arg_cnt <fi> <n>        what bpf_out_stack_arg_cnt() returns (7.x)
 *   insn <code> <dst> <src> <off> <imm>   the next instruction (flat, all functions)
 *   call <i> <hex>                    absolute target of the helper/kfunc call at flat index i
 *   end                               JIT it and answer
 * Unknown keys, malformed lines and out-of-range values are answered with an error (`request`).
 *
 * An answer:
 *   result <seq> ok <nfuncs>          or: result <seq> error
 *   then, for ok, per function fi:
 *     func <fi> <image hex> <bpf_func hex> <jited_len> <image_len>
 *     bytes <fi> <hex>                image_len bytes from the image start (CFI preamble included)
 *     addrs <fi> <a0> ... <alen>      do_jit()'s addrs[]: offsets from the image start;
 *                                     addrs[0] = end of the prologue, addrs[k+1] = end of
 *                                     instruction k (captured in bpf_prog_fill_jited_linfo)
 *     fp <fi> <fp_start> <fp_end>     aux->ksym.fp_start/fp_end as do_jit() stored them;
 *                                     or: fp <fi> unsupported (the tree has no such fields)
 *     priv <fi> <ptr hex> <size> <align> [<off>:<hex u64>]...
 *                                     aux->priv_stack_ptr, the allocation's size and alignment,
 *                                     and every non-zero 8-byte word in it (the guard words)
 *     extable <fi> <k> <insn addr hex> <insn> <fixup> <data>
 *   for error:
 *     error <fi> <where> <insn> <rc>  where: insn|prologue|after|request|unmodelled|unknown;
 *                                     insn: function-relative index or -1; rc: do_jit()'s return
 *                                     code (-22 ...), 0 when not known
 *     message <text>
 *   and in both:
 *     log <level> <text>              printk output during the request (level 0-7, or -1)
 *   done <seq>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include "shim.h"

#define PROTOCOL 1

/* ---- growable buffers: the answer being written, and the request's log ---- */
struct buf {
	char *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p) {
			fputs("stackcheck-kjit: out of memory\n", stderr);
			exit(70);
		}
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static struct buf out;

static void put(const char *s, size_t n) { buf_put(&out, s, n); }
static void puts_(const char *s) { put(s, strlen(s)); }
static void putf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void putf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put(buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}
static void put_hex(const unsigned char *b, size_t n)
{
	static const char d[] = "0123456789abcdef";
	char chunk[512];
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		chunk[k++] = d[b[i] >> 4];
		chunk[k++] = d[b[i] & 15];
		if (k == sizeof(chunk)) {
			put(chunk, k);
			k = 0;
		}
	}
	put(chunk, k);
}
static void flush_out(void)
{
	fwrite(out.p, 1, out.len, stdout);
	fflush(stdout);
	out.len = 0;
}

/* ---- the request's log (printk) ---- */
static struct buf logbuf;

static void log_put(const char *s, size_t n) { buf_put(&logbuf, s, n); }

/* Printable ASCII as is, the rest as \xNN: one log line stays one protocol line. */
static void log_line(int level, const char *s, size_t n)
{
	char pre[16];
	size_t i;

	snprintf(pre, sizeof(pre), "log %d ", level);
	log_put(pre, strlen(pre));
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];
		char esc[5];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			log_put((const char *)&c, 1);
		} else {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			log_put(esc, 4);
		}
	}
	log_put("\n", 1);
}

/*
 * The kernel's format extensions: %p followed by letters/digits (%pS, %pK, %px, ...) is one
 * pointer conversion in lib/vsprintf.c. libc knows plain %p only, so the extension is dropped
 * (the raw address is printed, like %px; the kernel would hash a plain %p).
 */
static void kernel_fmt(char *dst, size_t cap, const char *fmt)
{
	size_t k = 0;

	while (*fmt && k + 2 < cap) {
		if (*fmt != '%') {
			dst[k++] = *fmt++;
			continue;
		}
		dst[k++] = *fmt++;
		while (*fmt && strchr("-+ #0123456789.*hlLqjzt", *fmt) && k + 2 < cap)
			dst[k++] = *fmt++;
		if (*fmt == 'p') {
			dst[k++] = *fmt++;
			while ((*fmt >= 'a' && *fmt <= 'z') || (*fmt >= 'A' && *fmt <= 'Z') || (*fmt >= '0' && *fmt <= '9'))
				fmt++;
		} else if (*fmt) {
			dst[k++] = *fmt++;
		}
	}
	dst[k] = 0;
}

int u_vsnprintf(char *buf, unsigned long size, const char *fmt, va_list ap)
{
	char f[1024];

	kernel_fmt(f, sizeof(f), fmt);
	return vsnprintf(buf, size, f, ap);
}

void u_vlog(int level, const char *fmt, va_list ap)
{
	char text[2048];
	const char *s, *nl;
	int n = u_vsnprintf(text, sizeof(text), fmt, ap);

	if (n < 0)
		return;
	for (s = text; *s; s = nl + 1) {
		nl = strchr(s, '\n');
		if (!nl) {
			log_line(level, s, strlen(s));
			break;
		}
		log_line(level, s, nl - s);
	}
}

void u_note(const char *text)
{
	log_line(-1, text, strlen(text));
}

void *u_calloc(unsigned long size)
{
	void *p = calloc(1, size ? size : 1);

	if (!p) {
		fputs("stackcheck-kjit: out of memory\n", stderr);
		exit(70);
	}
	return p;
}

void u_free(void *p) { free(p); }

/* An unmodelled kernel function was called: abandon the request with an error answer. */
static jmp_buf in_request;
static int requesting;
static char fatal_what[512];

void u_fatal(const char *what)
{
	if (requesting) {
		snprintf(fatal_what, sizeof(fatal_what), "%s", what);
		longjmp(in_request, 1);
	}
	fprintf(stderr, "stackcheck-kjit: %s\n", what);
	exit(70);
}

/* ---- crashes: say where on stderr (the harness keeps it), then die by the same signal ---- */
static volatile unsigned long long cur_seq;

static void on_crash(int sig, siginfo_t *si, void *uc_)
{
	ucontext_t *uc = uc_;
	char msg[200];
	int n = snprintf(msg, sizeof(msg), "stackcheck-kjit: signal %d (%s) at rip %llx, address %llx, request %llu\n",
			 sig, strsignal(sig), (unsigned long long)uc->uc_mcontext.gregs[REG_RIP],
			 (unsigned long long)(unsigned long)si->si_addr, cur_seq);

	if (n > 0 && write(2, msg, n) < 0)
		_exit(71);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- request parsing ---- */
static struct sc_request rq;
static unsigned int cap_insns, cap_funcs;
static unsigned long long seq;
static int in_req;
static char req_error[512];

static const char *caps_text(void)
{
	static char b[64];

	b[0] = 0;
	if (sc_caps & SC_CAP_PRIV_STACK)
		strcat(b, ",priv_stack");
	if (sc_caps & SC_CAP_FP_WINDOW)
		strcat(b, ",fp_window");
	if (sc_caps & SC_CAP_STACK_ARGS)
		strcat(b, ",stack_args");
	if (sc_caps & SC_CAP_ENV_ARG)
		strcat(b, ",env_arg");
	return b[0] ? b + 1 : "-";
}

static int lookup(const struct sc_name *t, const char *name)
{
	for (; t->name; t++)
		if (!strcmp(t->name, name))
			return t->value;
	return -1;
}

static void reset_request(void)
{
	rq.prog_type = -1;
	rq.nfuncs = rq.ninsns = 0;
	rq.nfeatures = 0;
	rq.has_return_thunk = 0;
	rq.exception_boundary = 0;
	rq.cap_sys_admin = 1;
	req_error[0] = 0;
	logbuf.len = 0;
}

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
	va_list ap;

	if (req_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(req_error, sizeof(req_error), fmt, ap);
	va_end(ap);
}

/* Parse `n` numbers (base 10 or 16 per `hex` bit i) after the key; strict. */
static int nums(char *s, int n, unsigned hexmask, long long *v, const char *key)
{
	int i;

	for (i = 0; i < n; i++) {
		char *end;

		while (*s == ' ')
			s++;
		if (!*s) {
			bad("'%s' needs %d arguments", key, n);
			return -1;
		}
		errno = 0;
		if ((hexmask & (1u << i)) && *s == '-') {
			bad("'%s': argument %d is a negative hex number", key, i + 1);
			return -1;
		}
		if (hexmask & (1u << i))
			v[i] = (long long)strtoull(s, &end, 16);
		else
			v[i] = strtoll(s, &end, 10);
		if (errno || end == s || (*end && *end != ' ')) {
			bad("'%s': argument %d is not a %s number", key, i + 1, hexmask & (1u << i) ? "hex" : "decimal");
			return -1;
		}
		s = end;
	}
	while (*s == ' ')
		s++;
	if (*s) {
		bad("'%s': unexpected text '%s'", key, s);
		return -1;
	}
	return 0;
}

static struct sc_func *func_arg(long long fi, const char *key)
{
	if (fi < 0 || fi >= rq.nfuncs) {
		bad("'%s': function %lld is not defined (give its 'func' line first)", key, fi);
		return NULL;
	}
	return &rq.funcs[fi];
}

static void grow(void)
{
	if (rq.ninsns == cap_insns) {
		cap_insns = cap_insns ? cap_insns * 2 : 1024;
		rq.insns = realloc(rq.insns, cap_insns * sizeof(*rq.insns));
		rq.target = realloc(rq.target, cap_insns * sizeof(*rq.target));
		rq.has_target = realloc(rq.has_target, cap_insns);
		if (!rq.insns || !rq.target || !rq.has_target)
			exit(70);
	}
}

static void request_line(char *key, char *args)
{
	long long v[5];
	struct sc_func *f;

	if (!strcmp(key, "type")) {
		rq.prog_type = lookup(sc_prog_types, args);
		if (rq.prog_type < 0)
			bad("unknown program type '%s'", args);
	} else if (!strcmp(key, "feature")) {
		int bit = lookup(sc_features, args);

		if (bit < 0)
			bad("unknown CPU feature '%s' (this tree's JIT consults: see sc_features in kstubs.c)", args);
		else if (rq.nfeatures == SC_MAX_FEATURES)
			bad("more than %d features", SC_MAX_FEATURES);
		else
			rq.features[rq.nfeatures++] = bit;
	} else if (!strcmp(key, "return_thunk")) {
		if (!nums(args, 1, 1, v, key)) {
			rq.has_return_thunk = 1;
			rq.return_thunk = (unsigned long long)v[0];
		}
	} else if (!strcmp(key, "exception_boundary")) {
		if (!nums(args, 1, 0, v, key))
			rq.exception_boundary = !!v[0];
	} else if (!strcmp(key, "cap_sys_admin")) {
		if (!nums(args, 1, 0, v, key))
			rq.cap_sys_admin = !!v[0];
	} else if (!strcmp(key, "func")) {
		if (nums(args, 4, 8, v, key))
			return;
		if (v[0] < 0 || v[1] < 1 || v[2] < 0 || v[0] > 0xffffffffLL || v[1] > 0xffffffffLL || v[2] > 0xffffffffLL) {
			bad("'func': start, len and depth must be unsigned 32-bit, len > 0");
			return;
		}
		if (rq.nfuncs == cap_funcs) {
			cap_funcs = cap_funcs ? cap_funcs * 2 : 64;
			rq.funcs = realloc(rq.funcs, cap_funcs * sizeof(*rq.funcs));
			if (!rq.funcs)
				exit(70);
		}
		f = &rq.funcs[rq.nfuncs++];
		memset(f, 0, sizeof(*f));
		f->start = v[0];
		f->len = v[1];
		f->stack_depth = v[2];
		f->want = (unsigned long long)v[3];
	} else if (!strcmp(key, "priv")) {
		if (!nums(args, 2, 2, v, key) && (f = func_arg(v[0], key))) {
			if (!(sc_caps & SC_CAP_PRIV_STACK))
				bad("private stacks are not supported by this tree's JIT (Linux %s; they are 6.13+)", sc_release);
			else if (!v[1])
				bad("'priv': the __percpu pointer must not be 0");
			f->priv = (unsigned long long)v[1];
		}
	} else if (!strcmp(key, "tail_call_reachable") || !strcmp(key, "exception_cb")) {
		if (!nums(args, 2, 0, v, key) && (f = func_arg(v[0], key))) {
			unsigned int bit = key[0] == 't' ? SC_F_TAIL_CALL_REACHABLE : SC_F_EXCEPTION_CB;

			f->flags = v[1] ? f->flags | bit : f->flags & ~bit;
		}
	} else if (!strcmp(key, "out_stack_arg_cnt")) {
		if (!nums(args, 2, 0, v, key) && (f = func_arg(v[0], key))) {
			if (!(sc_caps & SC_CAP_STACK_ARGS))
				bad("stack arguments are not supported by this tree's JIT (Linux %s)", sc_release);
			else if (v[1] < 0 || v[1] > 12)
				bad("'out_stack_arg_cnt': %lld is out of range", v[1]);
			f->out_stack_arg_cnt = v[1];
		}
	} else if (!strcmp(key, "insn")) {
		if (nums(args, 5, 0, v, key))
			return;
		if (v[0] < 0 || v[0] > 255 || v[1] < 0 || v[1] > 15 || v[2] < 0 || v[2] > 15 || v[3] < -32768 ||
		    v[3] > 32767 || v[4] < -2147483648LL || v[4] > 4294967295LL) {
			bad("instruction %u: code 0..255, dst and src 0..15, off s16, imm 32-bit", rq.ninsns);
			return;
		}
		grow();
		rq.insns[rq.ninsns] = (struct sc_insn){ .code = v[0], .dst = v[1], .src = v[2], .off = v[3], .imm = (int)(unsigned int)v[4] };
		rq.has_target[rq.ninsns] = 0;
		rq.ninsns++;
	} else if (!strcmp(key, "call")) {
		if (nums(args, 2, 2, v, key))
			return;
		if (v[0] < 0 || v[0] >= rq.ninsns)
			bad("'call %lld': no such instruction (give its 'insn' line first)", v[0]);
		else {
			rq.has_target[v[0]] = 1;
			rq.target[v[0]] = (unsigned long long)v[1];
		}
	} else {
		bad("unknown request line '%s'", key);
	}
}

static const char *where_text(int w)
{
	switch (w) {
	case SC_WHERE_INSN: return "insn";
	case SC_WHERE_PROLOGUE: return "prologue";
	case SC_WHERE_AFTER: return "after";
	case SC_WHERE_REQUEST: return "request";
	default: return "unknown";
	}
}

static void answer_error(int func, const char *where, int insn, int rc, const char *msg)
{
	putf("result %llu error\n", seq);
	putf("error %d %s %d %d\n", func, where, insn, rc);
	puts_("message ");
	puts_(msg);
	puts_("\n");
}

static void answer(void)
{
	struct sc_error err;
	unsigned int i, k;
	int r;

	if (req_error[0]) {
		answer_error(-1, "request", -1, 0, req_error);
	} else if (rq.prog_type < 0) {
		answer_error(-1, "request", -1, 0, "no 'type' line");
	} else {
		requesting = 1;
		if (setjmp(in_request)) {
			requesting = 0;
			answer_error(-1, "unmodelled", -1, 0, fatal_what);
			goto out;
		}
		r = sc_jit(&rq, &err);
		requesting = 0;
		if (r) {
			answer_error(err.func, where_text(err.where), err.insn, err.rc, err.what);
			goto out;
		}
		putf("result %llu ok %u\n", seq, rq.nfuncs);
		for (i = 0; i < rq.nfuncs; i++) {
			const struct sc_func *f = &rq.funcs[i];

			putf("func %u %llx %llx %u %u\n", i, f->image, f->bpf_func, f->jited_len, f->image_len);
			putf("bytes %u ", i);
			put_hex(f->rw, f->image_len);
			puts_("\n");
			if (f->have_addrs) {
				putf("addrs %u", i);
				for (k = 0; k <= f->len; k++)
					putf(" %d", f->addrs[k]);
				puts_("\n");
			}
			if (f->have_fp)
				putf("fp %u %u %u\n", i, f->fp_start, f->fp_end);
			else
				putf("fp %u unsupported\n", i);
			if (f->priv_ptr) {
				putf("priv %u %llx %u %u", i, f->priv_ptr, f->priv_size, f->priv_align);
				for (k = 0; k + 8 <= f->priv_size; k += 8) {
					unsigned long long w;

					memcpy(&w, f->priv_bytes + k, 8);
					if (w)
						putf(" %u:%llx", k, w);
				}
				puts_("\n");
			}
			for (k = 0; k < f->num_ex; k++)
				putf("extable %u %u %llx %d %d %d\n", i, k, f->ex[k].insn_addr, f->ex[k].insn,
				     f->ex[k].fixup, f->ex[k].data);
		}
	}
out:
	put(logbuf.p, logbuf.len);
	putf("done %llu\n", seq);
	flush_out();
	sc_request_done();
}

int main(void)
{
	struct sigaction sa = { .sa_sigaction = on_crash, .sa_flags = SA_SIGINFO };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
	signal(SIGPIPE, SIG_DFL);

	printf("hello stackcheck-kjit %d %s %s\n", PROTOCOL, sc_release, caps_text());
	fflush(stdout);
	reset_request();
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		char *key = line, *args;

		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (!n)
			continue;
		args = strchr(line, ' ');
		if (args)
			*args++ = 0;
		else
			args = line + n;
		if (!strcmp(key, "begin")) {
			long long v;

			reset_request();
			in_req = 1;
			if (nums(args, 1, 0, &v, key) || v < 0)
				seq = 0;
			else
				seq = v;
			cur_seq = seq;
		} else if (!in_req) {
			/* garbage before a request: answered, so the other end does not wait forever */
			reset_request();
			seq = 0;
			bad("'%s' outside a request (no 'begin')", key);
			answer();
		} else if (!strcmp(key, "end")) {
			answer();
			in_req = 0;
		} else {
			request_line(key, args);
		}
	}
	return 0;
}
