// Shared by the kernel-tree tests: finding a prepared tree, building small BPF programs as
// requests, and the bytes the tree's JIT is expected to emit for them.
import { existsSync, mkdtempSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "vitest";
import { defaultTreeDir, openTree, TREE_ENV, type KernelTree, type RawInsn, type JitRequest, type FuncRequest } from "../../jit/tree/index.ts";

export const SKIP_LINE = "kernel tree tests skipped: no prepared tree (run `npx stackcheck kernel fetch` or set STACKCHECK_KERNEL_TREE)";

let said = false;
/**
 * The tree a test file runs on; without one, SKIP_LINE (printed once per test worker: the tree
 * test files share it) and a skipped test in the file's place.
 */
export function treeOrSkip(): KernelTree | undefined {
  const tree = findTree();
  if (tree !== undefined) return tree;
  if (!said) {
    said = true;
    writeSync(2, `${SKIP_LINE}\n`);
  }
  test.skip(SKIP_LINE, () => {});
  return undefined;
}

/**
 * The tree the tests run on: $STACKCHECK_KERNEL_TREE (which must then be usable: a wrong
 * setting is an error, not a skip), else the default cache location, 7.2 first. undefined when
 * there is none.
 */
export function findTree(): KernelTree | undefined {
  const env = process.env[TREE_ENV];
  if (env !== undefined && env !== "") return openTree(env);
  for (const v of ["7.2", "6.12"] as const) {
    const dir = defaultTreeDir(v);
    if (existsSync(dir)) {
      try {
        return openTree(dir);
      } catch {
        // a fetch in progress or a broken cache entry: try the next
      }
    }
  }
  return undefined;
}

/** Another prepared tree in the cache (6.12 when the main one is 7.2, and the other way round). */
export function otherTree(main: KernelTree): KernelTree | undefined {
  for (const v of ["7.2", "6.12"] as const) {
    const dir = defaultTreeDir(v);
    if (dir === main.dir || !existsSync(dir)) continue;
    try {
      const t = openTree(dir);
      if (t.versionCode[0] !== main.versionCode[0] || t.versionCode[1] !== main.versionCode[1]) return t;
    } catch {
      // not usable
    }
  }
  return undefined;
}

// ---- BPF instructions (struct bpf_insn values) ----
const I = (code: number, dst = 0, src = 0, off = 0, imm = 0): RawInsn => ({ code, dst, src, off, imm });
export const bpf = {
  /** r_dst = imm (BPF_ALU64 | BPF_MOV | BPF_K) */
  movImm: (dst: number, imm: number) => I(0xb7, dst, 0, 0, imm),
  /** r_dst = r_src */
  movReg: (dst: number, src: number) => I(0xbf, dst, src),
  addImm: (dst: number, imm: number) => I(0x07, dst, 0, 0, imm),
  /** r_dst <<= r_src (BPF_ALU64 | BPF_LSH | BPF_X) */
  lshReg: (dst: number, src: number) => I(0x6f, dst, src),
  /** *(u64 *)(r_dst + off) = r_src */
  stxDw: (dst: number, src: number, off: number) => I(0x7b, dst, src, off),
  /** r_dst = *(u64 *)(r_src + off) */
  ldxDw: (dst: number, src: number, off: number) => I(0x79, dst, src, off),
  /** r_dst = *(u64 *)(r_src + off), a BTF pointer read (BPF_LDX | BPF_PROBE_MEM | BPF_DW): needs an extable entry */
  probeLdxDw: (dst: number, src: number, off: number) => I(0x39, dst, src, off),
  /** helper call (its target comes with the request's `calls`) */
  call: (id = 1) => I(0x85, 0, 0, 0, id),
  /** BPF_PSEUDO_CALL: imm = callee start - (this index + 1) */
  callSub: (rel: number) => I(0x85, 0, 1, 0, rel),
  exit: () => I(0x95),
  raw: I,
};

export const IMAGE = 0xffffffffa0000000n;
export const HELPER = 0xffffffff81000100n;

/** A request from functions given as instruction lists (contiguous, main first). */
export function program(funcs: readonly { insns: readonly RawInsn[]; depth?: number; image?: bigint; priv?: bigint }[], extra: Partial<JitRequest> = {}): JitRequest {
  let at = 0;
  const fr: FuncRequest[] = funcs.map((f, i) => {
    const r: FuncRequest = { start: at, len: f.insns.length, stackDepth: f.depth ?? 0, image: f.image ?? IMAGE + BigInt(i) * 0x1000n, ...(f.priv !== undefined ? { privStack: f.priv } : {}) };
    at += f.insns.length;
    return r;
  });
  return { type: "kprobe", funcs: fr, insns: funcs.flatMap((f) => f.insns), ...extra };
}

// ---- expected bytes (arch/x86/net/bpf_jit_comp.c: emit_prologue, do_jit, emit_return; 7.2 and 6.12 alike) ----
export const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
export const le32 = (v: number) => Buffer.from(Uint32Array.of(v >>> 0).buffer).toString("hex");
export const le64 = (v: bigint) => Buffer.from(BigUint64Array.of(v).buffer).toString("hex");

export interface Expect {
  readonly endbr: string;
  readonly ret: string;
}
export function expectFor(tree: KernelTree): Expect {
  return {
    endbr: tree.config.X86_KERNEL_IBT === "y" ? "f30f1efa" : "",
    ret: tree.config.MITIGATION_SLS === "y" ? "c3cc" : "c3",
  };
}

/** emit_prologue() of a (sub)prog without tail calls: endbr, nop5, nop3, push rbp, mov rbp,rsp, endbr, sub rsp. */
export function prologue(x: Expect, depth: number): string {
  return `${x.endbr}0f1f440000` + "0f1f00" + "55" + "4889e5" + x.endbr + (depth > 0 ? `4881ec${le32(Math.ceil(depth / 8) * 8)}` : "");
}

/** The call at byte `at` of `bytes` (e8 rel32), as an absolute target given the function's image address. */
export function callTarget(bytes: Uint8Array, at: number, image: bigint): bigint {
  if (bytes[at] !== 0xe8) throw new Error(`no call at +${at}: ${hex(bytes.subarray(at, at + 5))}`);
  const rel = Buffer.from(bytes).readInt32LE(at + 1);
  return BigInt.asUintN(64, image + BigInt(at + 5) + BigInt(rel));
}

/** A small deterministic generator of typical programs: 2-4 functions, stack traffic, helper and subprog calls. */
export function typicalProgram(seed: number): JitRequest {
  let s = seed >>> 0 || 1;
  const rnd = (n: number) => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
  const nf = 2 + rnd(3);
  const bodies: { insns: RawInsn[]; depth: number }[] = [];
  for (let f = 0; f < nf; f++) {
    const depth = 8 * (1 + rnd(32));
    const insns: RawInsn[] = [bpf.movImm(6, rnd(1000))];
    const n = 3 + rnd(12);
    for (let k = 0; k < n; k++) {
      switch (rnd(5)) {
        case 0: insns.push(bpf.stxDw(10, 6, -8 * (1 + rnd(depth / 8)))); break;
        case 1: insns.push(bpf.ldxDw(7, 10, -8)); break;
        case 2: insns.push(bpf.addImm(6, rnd(100))); break;
        case 3: insns.push(bpf.movReg(1, 6), bpf.call(1)); break;
        default: insns.push(bpf.movImm(0, rnd(50)));
      }
    }
    insns.unshift(bpf.stxDw(10, 6, -8));
    bodies.push({ insns, depth });
  }
  // subprog calls: function f calls f + 1 (placed before its exit)
  for (let f = 0; f + 1 < nf; f++) bodies[f]!.insns.push(bpf.raw(0x85, 0, 1, 0, 0));
  for (const b of bodies) b.insns.push(bpf.movImm(0, 0), bpf.exit());
  const req = program(bodies.map((b) => ({ insns: b.insns, depth: b.depth })));
  // resolve the pseudo calls and collect helper targets
  const insns = req.insns.map((x) => ({ ...x }));
  const calls: { insn: number; target: bigint }[] = [];
  req.funcs.forEach((fn, f) => {
    for (let i = fn.start; i < fn.start + fn.len; i++) {
      const x = insns[i]!;
      if (x.code === 0x85 && x.src === 1) x.imm = req.funcs[f + 1]!.start - (i + 1);
      else if (x.code === 0x85) calls.push({ insn: i, target: HELPER + BigInt(rnd(8)) * 0x40n });
    }
  });
  return { ...req, insns, calls };
}

// ---- patched copies of the tree's JIT (the bugs a JIT developer might make) ----

type Edit = readonly [from: string, to: string];
export const PATCHES = {
  /** emit_prologue(): the stack reservation 8 bytes short. */
  shortReservation: [["EMIT3_off32(0x48, 0x81, 0xEC, round_up(stack_depth, 8));", "EMIT3_off32(0x48, 0x81, 0xEC, round_up(stack_depth, 8) - 8);"]],
  /** do_jit(), BPF_CALL: r9 (the private frame pointer) not saved around calls (the helpers stay referenced, so -Werror holds). */
  r9NotSaved: [
    ["if (priv_frame_ptr) {\n\t\t\t\tpush_r9(&prog);", "if (0 && priv_frame_ptr) {\n\t\t\t\tpush_r9(&prog);"],
    ["if (priv_frame_ptr)\n\t\t\t\tpop_r9(&prog);", "if (0 && priv_frame_ptr)\n\t\t\t\tpop_r9(&prog);"],
  ],
} as const satisfies Record<string, readonly Edit[]>;

/** A copy of the tree's bpf_jit_comp.c with each `from` (which must occur exactly once) replaced. */
export function patched(dir: string, name: string, edits: readonly Edit[]): string {
  let text = readFileSync(join(dir, "arch/x86/net/bpf_jit_comp.c"), "utf8");
  for (const [from, to] of edits) {
    const n = text.split(from).length - 1;
    if (n !== 1) throw new Error(`patch ${name}: '${from}' occurs ${n} times in the tree's bpf_jit_comp.c`);
    text = text.replace(from, to);
  }
  const out = join(mkdtempSync(join(tmpdir(), "stackcheck-patch-")), `${name}.c`);
  writeFileSync(out, text);
  return out;
}

