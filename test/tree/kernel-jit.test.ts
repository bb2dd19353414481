// The kernel's own x86-64 BPF JIT, compiled from a prepared tree into the shim, driven through
// KernelJit. Needs a prepared tree ($STACKCHECK_KERNEL_TREE, or the default cache location); without
// one the file prints one line and skips.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildShim, describeFailure, fetchTimings, fetchTree, KernelJit, KernelJitCrash, KernelJitError, MODEL_SYMBOLS, TreeError, type JitResponse, type KernelTree } from "../../jit/tree/index.ts";
import { bpf, callTarget, expectFor, HELPER, hex, IMAGE, le32, le64, otherTree, program, prologue, treeOrSkip, typicalProgram } from "./helpers.ts";
import { hostTimeout } from "../helpers/runs.ts";

const tree = treeOrSkip();

const ok = (r: JitResponse) => {
  if (!r.ok) throw new Error(`expected an answer, got an error: ${r.error.message} ${r.log.map((l) => l.text).join("; ")}`);
  return r;
};
const isV7 = (t: KernelTree) => t.versionCode[0] >= 7;
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
};

if (tree !== undefined) describe(`the kernel's JIT from ${tree.dir} (${tree.version})`, () => {
  const t = tree;
  const x = expectFor(t);
  const cfi = t.config.CFI === "y" || t.config.CFI_CLANG === "y";
  let kj: KernelJit;

  beforeAll(() => {
    kj = new KernelJit({ tree: t });
  }, hostTimeout(180_000));
  afterAll(() => kj?.close());

  describe.skipIf(cfi)("bytes of simple programs, as kernel-model-7.2.md and emit_prologue() give them", () => {
    test("main only, no stack: endbr64, nop5, nop3, push rbp, mov rbp,rsp, endbr64, xor eax,eax, leave, ret", () => {
      const r = ok(kj.jit(program([{ insns: [bpf.movImm(0, 0), bpf.exit()] }])));
      const f = r.funcs[0]!;
      expect(hex(f.bytes)).toBe(`${prologue(x, 0)}31c0c9${x.ret}`);
      expect(f.image).toBe(IMAGE);
      expect(f.bpfFunc).toBe(IMAGE);
      expect(f.jitedLen).toBe(f.bytes.length);
      // addrs[0] = end of the prologue; addrs[k + 1] = end of instruction k
      const pro = prologue(x, 0).length / 2;
      expect(f.addrs).toEqual([pro, pro + 2, f.bytes.length]);
    });

    test("a stack of 20 bytes: sub rsp, imm32 rounded up to 8 (48 81 ec 18 00 00 00), then the store through rbp", () => {
      const r = ok(kj.jit(program([{ insns: [bpf.movImm(1, 7), bpf.stxDw(10, 1, -8), bpf.movImm(0, 0), bpf.exit()], depth: 20 }])));
      const b = hex(r.funcs[0]!.bytes);
      expect(b.startsWith(prologue(x, 20))).toBe(true);
      expect(prologue(x, 20).endsWith("4881ec18000000")).toBe(true);
      // mov edi, 7; mov [rbp-8], rdi; xor eax, eax; leave; ret
      expect(b.slice(prologue(x, 20).length)).toBe(`bf07000000` + `48897df8` + `31c0` + `c9${x.ret}`);
    });

    test("ksym.fp_start and fp_end are stored as the tree's do_jit() stores them", () => {
      const r = ok(kj.jit(program([{ insns: [bpf.movImm(0, 0), bpf.exit()], depth: 8 }])));
      const f = r.funcs[0]!;
      if (!isV7(t)) {
        expect(f.fp).toBe("unsupported");
        return;
      }
      // fp_start = prog - temp after emit_prologue(): an offset from the image start (the end of
      // the prologue, before callee-saved pushes). fp_end = prog - temp after `leave` in the
      // BPF_EXIT case, where temp holds only that instruction: an offset from the exit's own code
      // (here `leave` is its first byte, so 1). bpf_has_frame_pointer() compares both with
      // ip - ksym->start.
      expect(f.fp).toEqual({ start: prologue(x, 8).length / 2, end: 1 });
      expect(f.addrs![0]).toBe(prologue(x, 8).length / 2);
    });

    test("the same request gives the same bytes, every time and in a second shim", () => {
      const req = typicalProgram(7);
      const a = ok(kj.jit(req)), b = ok(kj.jit(req));
      const other = new KernelJit({ binary: kj.binary.path });
      try {
        const c = ok(other.jit(req));
        for (const r of [b, c]) expect(r.funcs.map((f) => hex(f.bytes))).toEqual(a.funcs.map((f) => hex(f.bytes)));
      } finally {
        other.close();
      }
    });
  });

  test.runIf(existsSync(join(t.dir, ".stackcheck-fetch")))("fetchTree on a tree it finished: every step is skipped, well under 10 s", async () => {
    const lines: string[] = [];
    const t0 = performance.now();
    const again = await fetchTree({ version: t.versionCode[0] >= 7 ? "7.2" : "6.12", dir: t.dir, onProgress: (l) => lines.push(l) });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(again).toEqual(t);
    expect(lines).toEqual([expect.stringMatching(/is fetched and prepared$/)]);
    expect(Object.keys(fetchTimings(t.dir))).toEqual(["download", "unpack", "config", "prepare", "jit"]);
  });

  test("main + subprog: jit_subprogs() order; the call lands on the subprog's bpf_func and nothing moves", () => {
    const sub = IMAGE + 0x840n;
    const req = program([
      { insns: [bpf.callSub(1), bpf.exit()], depth: 16 },
      { insns: [bpf.movImm(0, 3), bpf.exit()], depth: 0, image: sub },
    ]);
    const r = ok(kj.jit(req));
    expect(r.funcs.map((f) => f.image)).toEqual([IMAGE, sub]);
    const main = r.funcs[0]!;
    const at = main.addrs![0]!; // the call is instruction 0
    expect(callTarget(main.bytes, at, main.image)).toBe(r.funcs[1]!.bpfFunc);
    expect(main.addrs).toHaveLength(3);
    expect(r.funcs[1]!.addrs).toHaveLength(3);
    if (!cfi) expect(hex(r.funcs[1]!.bytes)).toBe(`${prologue(x, 0)}b803000000c9${x.ret}`);
  });

  test("a helper call at an absolute address: e8 rel32 to exactly that address", () => {
    const req = program([{ insns: [bpf.movImm(1, 1), bpf.call(), bpf.exit()] }], { calls: [{ insn: 1, target: HELPER + 0x40n }] });
    const r = ok(kj.jit(req));
    const f = r.funcs[0]!;
    expect(callTarget(f.bytes, f.addrs![1]!, f.image)).toBe(HELPER + 0x40n);
  });

  test("a helper out of rel32 reach: an error answer with do_jit()'s -EINVAL, the printk text, the function and the instruction", () => {
    const req = program([{ insns: [bpf.movImm(1, 1), bpf.movImm(2, 2), bpf.call(), bpf.exit()] }], { calls: [{ insn: 2, target: 0x7fff0000n }] });
    const r = kj.jit(req);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    // emit_patch() says -ERANGE and prints the message; do_jit() turns it into -EINVAL.
    expect(r.error).toMatchObject({ func: 0, where: "insn", insn: 2, rc: -22, errno: "EINVAL" });
    expect(r.log.map((l) => l.text)).toContainEqual(expect.stringMatching(/^Target call 0x7fff0000 is out of range$/));
    expect(describeFailure(req, r)).toMatch(/^function 0, instruction 2 \(code 0x85\): Target call 0x7fff0000 is out of range; .* \(-EINVAL\)$/);
  });

  test("an unknown opcode: an error naming the instruction, the kernel's message and -EINVAL", () => {
    const req = program([
      { insns: [bpf.callSub(1), bpf.exit()] },
      { insns: [bpf.movImm(0, 0), bpf.movImm(1, 1), bpf.raw(0xff), bpf.exit()] },
    ]);
    const r = kj.jit(req);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toMatchObject({ func: 1, where: "insn", insn: 2, rc: -22, errno: "EINVAL" });
    expect(r.log).toEqual([{ level: 3, text: "bpf_jit: unknown opcode ff" }]);
    expect(() => kj.jitOrThrow(req)).toThrow(KernelJitError);
    expect(() => kj.jitOrThrow(req)).toThrow(/function 1, instruction 2 \(code 0xff\): bpf_jit: unknown opcode ff; .*\(-EINVAL\)/);
  });

  test("requests the driver refuses say what is wrong: a helper call without a target, a call with no function", () => {
    const r1 = kj.jit(program([{ insns: [bpf.call(), bpf.exit()] }]));
    expect(r1.ok || r1.error).toMatchObject({ where: "request", func: 0, insn: 0, message: expect.stringMatching(/helper call without a target/) });
    const r2 = kj.jit(program([{ insns: [bpf.callSub(5), bpf.exit()] }, { insns: [bpf.exit()] }]));
    expect(r2.ok || r2.error).toMatchObject({ where: "request", message: expect.stringMatching(/refers to instruction 6, which starts no function/) });
    const r3 = kj.jit({ ...program([{ insns: [bpf.exit()] }]), features: ["NO_SUCH_FEATURE"] });
    expect(r3.ok || r3.error).toMatchObject({ where: "request", message: expect.stringMatching(/unknown CPU feature 'NO_SUCH_FEATURE'/) });
  });

  test("CPU features come from the request: BMI2 turns a shift by a register into shlx, RETHUNK turns ret into jmp x86_return_thunk", () => {
    const req = program([{ insns: [bpf.movImm(1, 1), bpf.movImm(2, 3), bpf.lshReg(1, 2), bpf.movImm(0, 0), bpf.exit()] }]);
    const plain = ok(kj.jit(req)).funcs[0]!;
    const bmi2 = ok(kj.jit({ ...req, features: ["BMI2"] })).funcs[0]!;
    const shift = (f: typeof plain) => hex(f.bytes.subarray(f.addrs![2]!, f.addrs![3]!));
    expect(shift(bmi2)).toBe("c4e2c9f7ff"); // shlx rdi, rdi, rsi (BPF r1, r2)
    expect(shift(plain)).not.toBe(shift(bmi2));
    if (t.config.MITIGATION_RETHUNK === "y") {
      const thunk = 0xffffffff81f00000n;
      const rh = ok(kj.jit({ ...req, features: ["RETHUNK"], returnThunk: thunk })).funcs[0]!;
      const at = rh.bytes.length - 5;
      expect(rh.bytes[at]).toBe(0xe9); // jmp rel32
      expect(BigInt.asUintN(64, rh.image + BigInt(rh.bytes.length) + BigInt(Buffer.from(rh.bytes).readInt32LE(at + 1)))).toBe(thunk);
      const dflt = ok(kj.jit({ ...req, features: ["RETHUNK"] })).funcs[0]!;
      expect(BigInt.asUintN(64, dflt.image + BigInt(dflt.bytes.length) + BigInt(Buffer.from(dflt.bytes).readInt32LE(dflt.bytes.length - 4)))).toBe(MODEL_SYMBOLS.sc_model_return_thunk);
    }
  });

  test("a converted classic program: no nop3; without CAP_SYS_ADMIN and with CLEAR_BHB_LOOP, the BHB barrier before leave", () => {
    const req = { ...program([{ insns: [bpf.movImm(0, 0), bpf.exit()] }]), type: "unspec" };
    const root = ok(kj.jit(req)).funcs[0]!;
    if (!cfi) expect(hex(root.bytes)).toBe(`${x.endbr}0f1f440000554889e5${x.endbr}31c0c9${x.ret}`);
    const user = ok(kj.jit({ ...req, capSysAdmin: false, features: ["CLEAR_BHB_LOOP"] })).funcs[0]!;
    const at = root.addrs![1]!; // the exit
    expect(hex(user.bytes.subarray(at, at + 3))).toBe("5051e8"); // push rax; push rcx; call clear_bhb_loop
    expect(callTarget(user.bytes, at + 2, user.image)).toBe(MODEL_SYMBOLS.clear_bhb_loop);
    expect(hex(user.bytes.subarray(at + 7))).toBe(`5958c9${x.ret}`); // pop rcx; pop rax; leave; ret
  });

  test("a BTF pointer load (BPF_PROBE_MEM) gets an exception-table entry pointing into the function", () => {
    const r = ok(kj.jit(program([{ insns: [bpf.probeLdxDw(0, 1, 8), bpf.exit()] }])));
    const f = r.funcs[0]!;
    expect(f.extable).toHaveLength(1);
    const e = f.extable[0]!;
    expect(e.insnAddr).toBeGreaterThanOrEqual(f.image + BigInt(f.addrs![0]!));
    expect(e.insnAddr).toBeLessThan(f.image + BigInt(f.addrs![1]!));
  });

  test.runIf(isV7(t))("a private stack (7.x): r9 = the per-CPU frame top, guard words at both ends, push r9/pop r9 around calls", () => {
    const priv = 0x600000001000n; // the harness's per-CPU area (layout.ts PERCPU_ORIGIN + offset)
    const depth = 64;
    const req = program([{ insns: [bpf.movImm(1, 5), bpf.stxDw(10, 1, -8), bpf.call(), bpf.exit()], depth, priv }], {
      type: "struct_ops", calls: [{ insn: 2, target: HELPER }],
    });
    const r = ok(kj.jit(req));
    const f = r.funcs[0]!;
    const b = hex(f.bytes);
    // priv_frame_ptr = priv + PRIV_STACK_GUARD_SZ + round_up(depth, 8); stack_depth is then 0: no sub rsp
    const top = priv + 8n + BigInt(depth);
    const r9 = `49b9${le64(top)}` + `654c030c25${le32(Number(MODEL_SYMBOLS.this_cpu_off))}`; // movabs r9, top; add r9, gs:[this_cpu_off]
    if (!cfi) expect(b.startsWith(prologue(x, 0) + r9)).toBe(true);
    expect(b).toContain("498979f8"); // mov [r9-8], rdi: R10 is r9
    expect(b).toMatch(/4151e8[0-9a-f]{8}4159/); // push r9; call; pop r9
    // __alloc_percpu_gfp(round_up(depth, 8) + 2 * PRIV_STACK_GUARD_SZ, 8): guards at 0 and size - 8
    expect(f.privStack).toEqual({
      ptr: priv, size: depth + 16, align: 8,
      words: [{ off: 0, value: 0xeb9f12345678eb9fn }, { off: depth + 8, value: 0xeb9f12345678eb9fn }],
    });
  });

  test.runIf(!isV7(t))("no private stacks before 6.13: the answer says so", () => {
    const r = kj.jit(program([{ insns: [bpf.exit()], depth: 64, priv: 0x600000001000n }]));
    expect(r.ok || r.error).toMatchObject({ where: "request", message: expect.stringMatching(/private stacks are not supported .*6\.13/) });
  });

  test("a patched copy of bpf_jit_comp.c is compiled against the tree and changes the bytes; editing it again rebuilds", () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-patch-"));
    try {
      const patched = join(dir, "bpf_jit_comp.c");
      copyFileSync(t.jitSource, patched);
      const src = readFileSync(patched, "utf8");
      const line = "EMIT1(0x55);             /* push rbp */";
      expect(src.split(line)).toHaveLength(2);
      writeFileSync(patched, src.replace(line, "EMIT1(0x53);             /* push rbx: a reviewer's patch */"));
      const req = program([{ insns: [bpf.movImm(0, 0), bpf.exit()] }]);
      const p1 = new KernelJit({ tree: t, jitSource: patched });
      let key1: string;
      try {
        expect(p1.binary).toMatchObject({ jitSource: patched });
        key1 = (p1.binary as { key: string }).key;
        expect(key1).not.toBe((kj.binary as { key: string }).key);
        const a = ok(kj.jit(req)).funcs[0]!.bytes, b = ok(p1.jit(req)).funcs[0]!.bytes;
        const pushAt = x.endbr.length / 2 + 8; // endbr, nop5, nop3
        expect(a[pushAt]).toBe(0x55);
        expect(b[pushAt]).toBe(0x53);
        expect(hex(b.subarray(pushAt + 1))).toBe(hex(a.subarray(pushAt + 1)));
      } finally {
        p1.close();
      }
      // An edit of the copy: another binary, under another key (built once per machine: the edit is
      // always the same text, so the shared cache keeps it), and the same one again on next use.
      writeFileSync(patched, `${readFileSync(patched, "utf8")}\n/* edited by a reviewer */\n`);
      const again = buildShim(t, { jitSource: patched });
      expect(again.key).not.toBe(key1);
      expect(again.path).not.toBe((p1.binary as { path: string }).path);
      expect(buildShim(t, { jitSource: patched })).toMatchObject({ built: false, key: again.key, path: again.path });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, hostTimeout(240_000));

  test("a compile error in a patched copy is a TreeError with the compiler's first error lines", () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-patch-"));
    try {
      const patched = join(dir, "bpf_jit_comp.c");
      writeFileSync(patched, readFileSync(t.jitSource, "utf8").replace("EMIT1(0x55);             /* push rbp */", "EMIT1(0x55) /* a missing semicolon */"));
      let err: unknown;
      try {
        buildShim(t, { jitSource: patched });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TreeError);
      expect((err as TreeError).code).toBe("build");
      expect((err as Error).message).toMatch(/bpf_jit_comp\.c:\d+:\d+: error: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, hostTimeout(120_000));

  test("a shim killed mid-request: KernelJitCrash carrying the program, then a fresh shim answers", () => {
    const j = new KernelJit({ binary: kj.binary.path, timeoutMs: 10_000 });
    try {
      const pid = j.pid!;
      const req = typicalProgram(3);
      // Stopped, so the request is surely in flight when the kill comes.
      process.kill(pid, "SIGSTOP");
      spawn("sh", ["-c", `sleep 0.3; kill -KILL ${pid}`], { stdio: "ignore" }).unref();
      let err: unknown;
      try {
        j.jit(req);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KernelJitCrash);
      expect(err).toMatchObject({ reason: "signal", request: req });
      expect((err as Error).message).toMatch(/killed by signal 9/);
      expect(j.restarts).toBe(1);
      expect(j.pid).not.toBe(pid);
      expect(ok(j.jit(req)).funcs).toHaveLength(req.funcs.length);
    } finally {
      j.close();
    }
  });

  test("a hung shim: a timeout KernelJitCrash after about timeoutMs, never a hang of the caller", () => {
    const j = new KernelJit({ binary: kj.binary.path, timeoutMs: 300 });
    try {
      const pid = j.pid!;
      const req = program([{ insns: [bpf.movImm(0, 0), bpf.exit()] }]);
      process.kill(pid, "SIGSTOP");
      const t0 = performance.now();
      let err: unknown;
      try {
        j.jit(req);
      } catch (e) {
        err = e;
      }
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(KernelJitCrash);
      expect(err).toMatchObject({ reason: "timeout", request: req });
      expect(ms).toBeGreaterThanOrEqual(300);
      expect(ms).toBeLessThan(3000);
      expect(ok(j.jit(req)).funcs).toHaveLength(1);
    } finally {
      j.close();
    }
  });

  test("output that breaks the protocol is a `garbage` crash, at once", () => {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-fake-"));
    try {
      const fake = join(dir, "fake-shim");
      writeFileSync(fake, `#!/bin/sh\necho "hello stackcheck-kjit 1 ${t.version} -"\nwhile read l; do [ "$l" = end ] && echo "something else"; done\n`, { mode: 0o755 });
      const j = new KernelJit({ binary: fake, timeoutMs: 5000 });
      try {
        const t0 = performance.now();
        expect(() => j.jit(program([{ insns: [bpf.exit()] }]))).toThrow(KernelJitCrash);
        expect(performance.now() - t0).toBeLessThan(2000);
      } finally {
        j.close();
      }
      const dead = join(dir, "dead-shim");
      writeFileSync(dead, "#!/bin/sh\necho 'cannot start' >&2\nexit 3\n", { mode: 0o755 });
      expect(() => new KernelJit({ binary: dead })).toThrow(/did not start: the shim exited with code 3.*cannot start/s);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("close() ends the shim; no process is left", async () => {
    const j = new KernelJit({ binary: kj.binary.path });
    const pid = j.pid!;
    expect(alive(pid)).toBe(true);
    const closing = j.close();
    expect(j.close()).toBe(closing);
    await closing;
    expect(() => j.jit(program([{ insns: [bpf.exit()] }]))).toThrow(/after close/);
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(`/proc/${pid}`)).toBe(false); // exited and reaped
  });

  test("KernelJit works inside a worker_threads Worker", async () => {
    const req = program([{ insns: [bpf.movImm(0, 0), bpf.exit()] }]);
    const w = new Worker(new URL("./jit-in-worker.js", import.meta.url), { workerData: { binary: kj.binary.path, request: req, times: 3 } });
    const msg = await new Promise<{ out: string[]; pid: number }>((res, rej) => {
      w.once("message", res);
      w.once("error", rej);
    });
    await w.terminate();
    expect(msg.out).toEqual(Array(3).fill(hex(ok(kj.jit(req)).funcs[0]!.bytes)));
    for (let i = 0; i < 100 && existsSync(`/proc/${msg.pid}`); i++) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(`/proc/${msg.pid}`)).toBe(false);
  }, hostTimeout(60_000));
});

const second = tree !== undefined ? otherTree(tree) : undefined;
if (tree !== undefined) describe.skipIf(second === undefined)("a second tree version", () => {
  test("both trees emit the same prologue for a simple program; only 7.x has fp_start/fp_end and private stacks", () => {
    const a = tree, b = second!;
    const v7 = isV7(a) ? a : b, v6 = isV7(a) ? b : a;
    const j7 = new KernelJit({ tree: v7 }), j6 = new KernelJit({ tree: v6 });
    try {
      expect(j7.hello.caps.has("priv_stack")).toBe(true);
      expect(j6.hello.caps.size).toBe(0);
      const req = program([{ insns: [bpf.movImm(1, 7), bpf.stxDw(10, 1, -8), bpf.movImm(0, 0), bpf.exit()], depth: 8 }]);
      const r7 = ok(j7.jit(req)).funcs[0]!, r6 = ok(j6.jit(req)).funcs[0]!;
      expect(hex(r6.bytes)).toBe(hex(r7.bytes));
      expect(r6.addrs).toEqual(r7.addrs);
      expect(r6.fp).toBe("unsupported");
      expect(r7.fp).not.toBe("unsupported");
    } finally {
      j7.close();
      j6.close();
    }
  }, hostTimeout(240_000));
});
