// README finding 9 on a live kernel (test/scenarios/cmpxchg-zext-prune.json in the model): does
// the verifier put its zero-extension of R0 after a 32-bit cmpxchg on a path it prunes? Run as
// root on the kernel to check (needs BPF and its JIT, net.core.bpf_jit_enable=1):
//
//   cc -o /tmp/cmpxchg-zext-prune test/native/cmpxchg-zext-prune.c && sudo /tmp/cmpxchg-zext-prune
//
// The program (a socket filter, run once by BPF_PROG_TEST_RUN with 64 bytes of data):
//   0: r2 = *(u32 *)(r1 +0)          skb->len: 64 at run time, unknown to the verifier
//   1: r0 = -1
//   2: *(u64 *)(r10 -8) = r0
//   3: r1 = -1
//   4: if r2 != 0x0 goto pc+2        the verifier walks 5-6 first and pushes 7 for later
//   5: r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r1)    (A)
//   6: goto pc+1
//   7: r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r1)    (B: the path taken at run time)
//   8: r0 >>= 32                     a 64-bit read: marks the cmpxchg that defined R0
//   9: exit
// The comparison succeeds (w0 and the stored word are both 0xffffffff), so x86's cmpxchg leaves
// eax, and rax's upper half, as they were; BPF's loads R0 zero-extended, and the verifier
// proves R0 = 0 at insn 9. Path B reaches insn 8 with a state equal to A's there and is
// pruned ("8: safe"), so only a kernel that carries A's 64-bit read over to B's def at the
// prune (6.12-6.18: propagate_liveness() -> mark_insn_zext()) gives B its `w0 = w0`.
// Prints the xlated program and the result; exit 0 when R0 came back zero-extended (0),
// 1 when it kept its upper half (0xffffffff), 2 when the program could not be loaded or run.
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

static long bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }

int main(void) {
  struct bpf_insn prog[] = {
    INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),
    INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, -1),
    INSN(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0),
    INSN(BPF_ALU64 | BPF_MOV | BPF_K, 1, 0, 0, -1),
    INSN(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 2, 0),
    INSN(BPF_STX | BPF_ATOMIC | BPF_W, 10, 1, -8, BPF_CMPXCHG),
    INSN(BPF_JMP | BPF_JA, 0, 0, 1, 0),
    INSN(BPF_STX | BPF_ATOMIC | BPF_W, 10, 1, -8, BPF_CMPXCHG),
    INSN(BPF_ALU64 | BPF_RSH | BPF_K, 0, 0, 0, 32),
    INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
  static char log[1 << 16];
  union bpf_attr load;
  memset(&load, 0, sizeof load);
  load.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  load.insns = (uintptr_t)prog;
  load.insn_cnt = sizeof prog / sizeof prog[0];
  load.license = (uintptr_t)"GPL";
  load.log_buf = (uintptr_t)log;
  load.log_size = sizeof log;
  load.log_level = 2;
  int fd = bpf(BPF_PROG_LOAD, &load);
  if (fd < 0) {
    perror("BPF_PROG_LOAD");
    fputs(log, stderr);
    return 2;
  }
  if (getenv("VERIFIER_LOG")) fputs(log, stdout);

  struct bpf_insn xlated[64];
  struct bpf_prog_info info;
  memset(&info, 0, sizeof info);
  info.xlated_prog_insns = (uintptr_t)xlated;
  info.xlated_prog_len = sizeof xlated;
  union bpf_attr get;
  memset(&get, 0, sizeof get);
  get.info.bpf_fd = fd;
  get.info.info_len = sizeof info;
  get.info.info = (uintptr_t)&info;
  if (bpf(BPF_OBJ_GET_INFO_BY_FD, &get) == 0) {
    unsigned n = info.xlated_prog_len / sizeof xlated[0];
    printf("xlated, %u instructions (JITed: %u bytes):\n", n, info.jited_prog_len);
    for (unsigned i = 0; i < n; i++) {
      const struct bpf_insn *x = &xlated[i];
      int zext = x->code == (BPF_ALU | BPF_MOV | BPF_X) && x->imm == 1;
      printf("  %2u: code %02x dst r%d src r%d off %d imm %d%s\n", i, x->code, x->dst_reg, x->src_reg, x->off, x->imm, zext ? "   w0 = w0 (the zero-extension)" : "");
    }
  }

  unsigned char data[64] = { 0 };
  union bpf_attr run;
  memset(&run, 0, sizeof run);
  run.test.prog_fd = fd;
  run.test.data_in = (uintptr_t)data;
  run.test.data_size_in = sizeof data;
  run.test.repeat = 1;
  if (bpf(BPF_PROG_TEST_RUN, &run)) {
    perror("BPF_PROG_TEST_RUN");
    return 2;
  }
  printf("R0 >> 32 = 0x%x (BPF and the verifier: 0)\n", run.test.retval);
  return run.test.retval == 0 ? 0 : 1;
}
