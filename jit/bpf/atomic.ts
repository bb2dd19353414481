// Atomic instructions (include/linux/filter.h BPF_ATOMIC_OP): BPF_STX|BPF_ATOMIC with the
// operation in imm. Read-modify-write operations exist in BPF_W and BPF_DW only
// (verifier.c:6506 check_atomic_rmw); load-acquire and store-release in every size
// (core.c ___bpf_prog_run STX_ATOMIC_*).
//   atomic.add(BPF_DW, R10, R1, -8)       lock *(u64 *)(r10 -8) += r1
//   atomic.fetchAdd(BPF_DW, R10, R1, -8)  r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)
//   atomic.xchg(BPF_W, R10, R1, -8)       r1 = atomic_xchg((u32 *)(r10 -8), r1)
//   atomic.cmpxchg(BPF_DW, R10, R1, -8)   r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)
//   atomic.loadAcquire(BPF_DW, R1, R10, -8)   r1 = load_acquire((u64 *)(r10 -8))
//   atomic.storeRelease(BPF_DW, R10, R1, -8)  store_release((u64 *)(r10 -8), r1)
import { insn, InsnError, item, type Item, type Size } from "./instruction.ts";
import {
  BPF_ADD, BPF_AND, BPF_ATOMIC, BPF_CMPXCHG, BPF_DW, BPF_FETCH, BPF_LOAD_ACQ, BPF_OR, BPF_STORE_REL, BPF_STX, BPF_W,
  BPF_XCHG, BPF_XOR, type Reg,
} from "./opcodes.ts";

export type RmwSize = typeof BPF_W | typeof BPF_DW;
type Rmw = (size: RmwSize, dst: Reg, src: Reg, off: number) => Item;

function rmw(name: string, op: number): Rmw {
  return (size, dst, src, off) => {
    if ((size as number) !== BPF_W && (size as number) !== BPF_DW) throw new InsnError(`atomic.${name}: read-modify-write atomics take BPF_W or BPF_DW`);
    return item(insn(BPF_STX | BPF_ATOMIC | size, dst, src, off, op));
  };
}

export const atomic = {
  /** `lock *(size *)(dst + off) op= src` */
  add: rmw("add", BPF_ADD), and: rmw("and", BPF_AND), or: rmw("or", BPF_OR), xor: rmw("xor", BPF_XOR),
  /** `src = atomic_fetch_op((size *)(dst + off), src)`: the old value goes to src. */
  fetchAdd: rmw("fetchAdd", BPF_ADD | BPF_FETCH), fetchAnd: rmw("fetchAnd", BPF_AND | BPF_FETCH),
  fetchOr: rmw("fetchOr", BPF_OR | BPF_FETCH), fetchXor: rmw("fetchXor", BPF_XOR | BPF_FETCH),
  /** `src = atomic_xchg((size *)(dst + off), src)` */
  xchg: rmw("xchg", BPF_XCHG),
  /** `r0 = atomic_cmpxchg((size *)(dst + off), r0, src)`: stores src if the memory equals R0; R0 gets the old value. */
  cmpxchg: rmw("cmpxchg", BPF_CMPXCHG),
  /** `dst = load_acquire((size *)(src + off))`, zero-extended. */
  loadAcquire: (size: Size, dst: Reg, src: Reg, off: number): Item => item(insn(BPF_STX | BPF_ATOMIC | size, dst, src, off, BPF_LOAD_ACQ)),
  /** `store_release((size *)(dst + off), src)` */
  storeRelease: (size: Size, dst: Reg, src: Reg, off: number): Item => item(insn(BPF_STX | BPF_ATOMIC | size, dst, src, off, BPF_STORE_REL)),
};
