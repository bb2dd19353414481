// stackcheck native runner: runs x86-64 code on the real CPU for the differential tests.
//
// One process runs many cases, read from stdin and answered on stdout (a little-endian binary
// protocol; test/native/runner.ts is the other end and documents it). For each case it maps the
// regions it is given at their exact addresses (MAP_FIXED_NOREPLACE: it never replaces its own
// mappings), copies the loads in, sets the GS base with arch_prctl(ARCH_SET_GS), maps a stop stub
// at the stop address, loads every general register (rsp too) and the arithmetic flags, and jumps
// to the entry. The stub (`jmp *abs64`) leads to sc_stop, which saves every register and RFLAGS
// without touching the case's memory and returns to the runner on its own stack. A signal
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) is taken on an alternate stack and reported with
// its number, the faulting rip and address and the registers at the fault; SIGALRM ends a case
// that runs too long. Then the requested memory is dumped and every mapping removed.
//
// Faults are outcomes, not crashes. A divide error (#DE: div/idiv by zero, or a quotient too
// large) arrives as SIGFPE (FPE_INTDIV) with si_addr and the context's rip at the divide, and
// the registers as they were before it (a fault completes nothing); #GP and page faults arrive
// as SIGSEGV, #UD (a lock prefix where none is allowed) as SIGILL. The handler copies the
// registers out of the signal context and siglongjmp()s back into run_case(), which restores
// the signal mask saved by sigsetjmp(.., 1), so the same signal is deliverable again in the
// next case; the process serves every later case as usual.
//
// Build: cc -O2 -o runner runner.c (the tests do this in a temporary directory).
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#if !defined(__x86_64__) || !defined(__linux__)
#error "the native runner runs x86-64 code: it needs an x86-64 Linux host"
#endif

enum { REQ_MAGIC = 0x31434353u /* "SCC1" */, RESP_MAGIC = 0x31524353u /* "SCR1" */ };
enum { ST_STOPPED = 0, ST_SIGNAL = 1, ST_TIMEOUT = 2, ST_ERROR = 3 };
enum { MAX_REGIONS = 32, MAX_DUMPS = 32, PAGE = 4096 };

// Registers in x86 encoding order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15), then rip and
// rflags. sc_enter reads g_in; sc_stop and the signal handler write g_out. The offsets are used
// by the assembly below: 8 * index.
uint64_t g_in[18];
uint64_t g_out[18];
uint64_t g_saved_rsp;
uint64_t g_flag_stack[16];

void sc_enter(void);
void sc_stop(void);

__asm__(
    ".text\n"
    ".globl sc_enter\n"
    ".type sc_enter, @function\n"
    "sc_enter:\n"
    "  push %rbp\n  push %rbx\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  mov %rsp, g_saved_rsp(%rip)\n"
    "  pushq g_in+8*17(%rip)\n"
    "  popfq\n" // from here on only mov and jmp: no flag changes
    "  mov g_in+8*0(%rip), %rax\n  mov g_in+8*1(%rip), %rcx\n  mov g_in+8*2(%rip), %rdx\n  mov g_in+8*3(%rip), %rbx\n"
    "  mov g_in+8*5(%rip), %rbp\n  mov g_in+8*6(%rip), %rsi\n  mov g_in+8*7(%rip), %rdi\n"
    "  mov g_in+8*8(%rip), %r8\n  mov g_in+8*9(%rip), %r9\n  mov g_in+8*10(%rip), %r10\n  mov g_in+8*11(%rip), %r11\n"
    "  mov g_in+8*12(%rip), %r12\n  mov g_in+8*13(%rip), %r13\n  mov g_in+8*14(%rip), %r14\n  mov g_in+8*15(%rip), %r15\n"
    "  mov g_in+8*4(%rip), %rsp\n"
    "  jmp *g_in+8*16(%rip)\n"
    ".globl sc_stop\n"
    ".type sc_stop, @function\n"
    "sc_stop:\n" // reached through the stub at the stop address; saves before anything changes
    "  mov %rax, g_out+8*0(%rip)\n  mov %rcx, g_out+8*1(%rip)\n  mov %rdx, g_out+8*2(%rip)\n  mov %rbx, g_out+8*3(%rip)\n"
    "  mov %rsp, g_out+8*4(%rip)\n  mov %rbp, g_out+8*5(%rip)\n  mov %rsi, g_out+8*6(%rip)\n  mov %rdi, g_out+8*7(%rip)\n"
    "  mov %r8, g_out+8*8(%rip)\n  mov %r9, g_out+8*9(%rip)\n  mov %r10, g_out+8*10(%rip)\n  mov %r11, g_out+8*11(%rip)\n"
    "  mov %r12, g_out+8*12(%rip)\n  mov %r13, g_out+8*13(%rip)\n  mov %r14, g_out+8*14(%rip)\n  mov %r15, g_out+8*15(%rip)\n"
    "  lea g_flag_stack+8*16(%rip), %rsp\n" // our own stack for pushfq: the case's memory stays as it was
    "  pushfq\n"
    "  popq g_out+8*17(%rip)\n"
    "  cld\n"
    "  mov g_saved_rsp(%rip), %rsp\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbx\n  pop %rbp\n"
    "  ret\n");

static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_running;
static int g_signo;
static uint64_t g_fault_rip, g_fault_addr;

// ucontext gregs index of each register, in our order.
static const int GREG[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                             REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static void on_signal(int sig, siginfo_t *si, void *ctx) {
  if (!g_running && sig == SIGALRM) return; // the timer fired as the case ended
  if (!g_running) { // a bug in the runner itself: die loudly rather than report it as a result
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
  }
  ucontext_t *uc = (ucontext_t *)ctx;
  for (int i = 0; i < 16; i++) g_out[i] = (uint64_t)uc->uc_mcontext.gregs[GREG[i]];
  g_out[16] = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
  g_out[17] = (uint64_t)uc->uc_mcontext.gregs[REG_EFL];
  g_signo = sig;
  g_fault_rip = g_out[16];
  g_fault_addr = (uint64_t)si->si_addr;
  g_running = 0;
  siglongjmp(g_jmp, 1);
}

// ---- I/O ----

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "stackcheck native runner: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

/** Read exactly n bytes; 0 at a clean EOF before the first byte, 1 when read, dies otherwise. */
static int read_exact(void *p, size_t n, int eof_ok) {
  size_t got = fread(p, 1, n, stdin);
  if (got == n) return 1;
  if (got == 0 && eof_ok && feof(stdin)) return 0;
  die("truncated request (%zu of %zu bytes)", got, n);
  return 0;
}
static uint32_t rd32(void) { uint32_t v; read_exact(&v, 4, 0); return v; }
static uint64_t rd64(void) { uint64_t v; read_exact(&v, 8, 0); return v; }

static unsigned char *out_buf;
static size_t out_len, out_cap;
static void put(const void *p, size_t n) {
  if (out_len + n > out_cap) {
    while (out_len + n > out_cap) out_cap = out_cap ? out_cap * 2 : 1 << 16;
    out_buf = realloc(out_buf, out_cap);
    if (!out_buf) die("out of memory");
  }
  memcpy(out_buf + out_len, p, n);
  out_len += n;
}
static void put32(uint32_t v) { put(&v, 4); }
static void put64(uint64_t v) { put(&v, 8); }

// ---- one case ----

struct region { uint64_t start, size; uint32_t prot; };
struct dump { uint64_t addr, size; };

static struct region regions[MAX_REGIONS + 1];
static int nregions;
static char err[512];

static int covered(uint64_t a, uint64_t n) {
  for (int i = 0; i < nregions; i++)
    if (a >= regions[i].start && a + n <= regions[i].start + regions[i].size && a + n >= a) return 1;
  return 0;
}

static void unmap_all(void) {
  for (int i = 0; i < nregions; i++) munmap((void *)regions[i].start, regions[i].size);
  nregions = 0;
}

static int map_region(uint64_t start, uint64_t size) {
  void *p = mmap((void *)start, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED || (uint64_t)p != start) {
    if (p != MAP_FAILED) munmap(p, size); // an old kernel took MAP_FIXED_NOREPLACE as a hint
    snprintf(err, sizeof err, "cannot map 0x%llx+0x%llx: %s", (unsigned long long)start, (unsigned long long)size,
             p == MAP_FAILED ? strerror(errno) : "the kernel placed it elsewhere");
    return 0;
  }
  return 1;
}

static void run_case(void) {
  err[0] = 0;
  nregions = 0;
  uint32_t nr = rd32();
  if (nr > MAX_REGIONS) die("%u regions (at most %d)", nr, MAX_REGIONS);
  struct region req[MAX_REGIONS];
  for (uint32_t i = 0; i < nr; i++) {
    req[i].start = rd64();
    req[i].size = rd64();
    req[i].prot = rd32();
    (void)rd32();
  }
  // Loads are read into a buffer first: the regions are mapped once the whole request is in.
  uint32_t nl = rd32();
  struct { uint64_t addr, len; unsigned char *bytes; } *loads = calloc(nl ? nl : 1, sizeof *loads);
  for (uint32_t i = 0; i < nl; i++) {
    loads[i].addr = rd64();
    loads[i].len = rd64();
    loads[i].bytes = malloc(loads[i].len ? loads[i].len : 1);
    if (!loads[i].bytes) die("out of memory");
    read_exact(loads[i].bytes, loads[i].len, 0);
  }
  for (int i = 0; i < 18; i++) g_in[i] = rd64(); // 16 registers, rip, rflags
  uint64_t gs = rd64(), stop = rd64();
  uint32_t nd = rd32();
  if (nd > MAX_DUMPS) die("%u dumps (at most %d)", nd, MAX_DUMPS);
  struct dump dumps[MAX_DUMPS];
  for (uint32_t i = 0; i < nd; i++) { dumps[i].addr = rd64(); dumps[i].size = rd64(); }
  uint32_t timeout_ms = rd32();

  // Only the arithmetic flags come from the request (CF PF AF ZF SF OF); IF and bit 1 are set as
  // in any user process. TF, DF and AC would change how the code runs, so they stay clear.
  g_in[17] = (g_in[17] & 0x8d5) | 0x202;

  int status = ST_ERROR;
  for (uint32_t i = 0; i < nr && !err[0]; i++) {
    if (req[i].start % PAGE || req[i].size % PAGE || req[i].size == 0) {
      snprintf(err, sizeof err, "region 0x%llx+0x%llx is not page aligned", (unsigned long long)req[i].start, (unsigned long long)req[i].size);
      break;
    }
    if (!map_region(req[i].start, req[i].size)) break;
    regions[nregions++] = req[i];
  }
  for (uint32_t i = 0; i < nl && !err[0]; i++) {
    if (!covered(loads[i].addr, loads[i].len))
      snprintf(err, sizeof err, "load 0x%llx+0x%llx is outside the mapped regions", (unsigned long long)loads[i].addr, (unsigned long long)loads[i].len);
    else
      memcpy((void *)loads[i].addr, loads[i].bytes, loads[i].len);
  }
  for (uint32_t i = 0; i < nd && !err[0]; i++)
    if (!covered(dumps[i].addr, dumps[i].size))
      snprintf(err, sizeof err, "dump 0x%llx+0x%llx is outside the mapped regions", (unsigned long long)dumps[i].addr, (unsigned long long)dumps[i].size);
  // The stop stub: jmp *0(%rip) with sc_stop's address after it.
  if (!err[0] && stop % PAGE) snprintf(err, sizeof err, "stop address 0x%llx is not page aligned", (unsigned long long)stop);
  if (!err[0] && map_region(stop, PAGE)) {
    regions[nregions++] = (struct region){stop, PAGE, 5};
    unsigned char stub[14] = {0xff, 0x25, 0, 0, 0, 0};
    uint64_t to = (uint64_t)(uintptr_t)&sc_stop;
    memcpy(stub + 6, &to, 8);
    memcpy((void *)stop, stub, sizeof stub);
  }
  for (int i = 0; i < nregions && !err[0]; i++) {
    int prot = (regions[i].prot & 1 ? PROT_READ : 0) | (regions[i].prot & 2 ? PROT_WRITE : 0) | (regions[i].prot & 4 ? PROT_EXEC : 0);
    if (mprotect((void *)regions[i].start, regions[i].size, prot) != 0)
      snprintf(err, sizeof err, "mprotect 0x%llx: %s", (unsigned long long)regions[i].start, strerror(errno));
  }
  if (!err[0] && syscall(SYS_arch_prctl, ARCH_SET_GS, gs) != 0)
    snprintf(err, sizeof err, "arch_prctl(ARCH_SET_GS): %s", strerror(errno));

  if (!err[0]) {
    if (sigsetjmp(g_jmp, 1) == 0) {
      struct itimerval t = {{0, 0}, {timeout_ms / 1000, (timeout_ms % 1000) * 1000}};
      g_running = 1;
      setitimer(ITIMER_REAL, &t, NULL);
      sc_enter();
      g_running = 0;
      status = ST_STOPPED;
      g_out[16] = stop;
    } else {
      status = g_signo == SIGALRM ? ST_TIMEOUT : ST_SIGNAL;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
  }

  out_len = 0;
  put32(RESP_MAGIC);
  put32(0); // total length, patched below
  put32(status);
  put32(status == ST_SIGNAL || status == ST_TIMEOUT ? (uint32_t)g_signo : 0);
  put64(status == ST_SIGNAL ? g_fault_rip : 0);
  put64(status == ST_SIGNAL ? g_fault_addr : 0);
  for (int i = 0; i < 18; i++) put64(status == ST_ERROR ? 0 : g_out[i]);
  put32(status == ST_ERROR ? 0 : nd);
  if (status != ST_ERROR)
    for (uint32_t i = 0; i < nd; i++) put((const void *)dumps[i].addr, dumps[i].size);
  uint32_t elen = (uint32_t)strlen(err);
  put32(elen);
  put(err, elen);
  uint32_t total = (uint32_t)out_len;
  memcpy(out_buf + 4, &total, 4);
  if (fwrite(out_buf, 1, out_len, stdout) != out_len || fflush(stdout) != 0) die("cannot write the response");

  unmap_all();
  for (uint32_t i = 0; i < nl; i++) free(loads[i].bytes);
  free(loads);
}

int main(void) {
  static unsigned char altstack[1 << 16];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack: %s", strerror(errno));
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) die("sigaction: %s", strerror(errno));
  for (;;) {
    uint32_t magic;
    if (!read_exact(&magic, 4, 1)) return 0;
    if (magic != REQ_MAGIC) die("bad request magic 0x%08x", magic);
    run_case();
  }
}
