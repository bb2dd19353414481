// Machine benchmarks: emulated instructions per second, and snapshot/restore cost.
import { Code, Instruction as I, MemoryOperand as M, Register as R } from "iced-x86";
import { Assembler } from "../../jit/asm.ts";
import { Machine } from "../../harness/machine/index.ts";

const TEXT = 0xffffffff81000000n;
const STACK = 0xffffc90000000000n;

/** A loop calling f, which calls g: push/pop/mov/sub/lea/call/ret/leave/jne, like toolchain-notes §2. */
function loopImage(): Uint8Array {
  const a = new Assembler("bench");
  a.label("main")
    .emit(() => I.createReg(Code.Push_r64, R.RBP))
    .emit(() => I.createRegReg(Code.Mov_rm64_r64, R.RBP, R.RSP))
    .emit(() => I.createRegI32(Code.Sub_rm64_imm8, R.RSP, 0x10))
    .label("loop")
    .emit(() => I.createMemReg(Code.Mov_rm64_r64, M.createBaseDispl(R.RBP, -8n), R.RDI))
    .call({ label: "f" })
    .emit(() => I.createRegI32(Code.Sub_rm64_imm8, R.RDI, 1))
    .branch(Code.Jne_rel32_64, { label: "loop" })
    .emit(() => I.create(Code.Leaveq))
    .emit(() => I.create(Code.Retnq))
    .label("f")
    .emit(() => I.createReg(Code.Push_r64, R.RBP))
    .emit(() => I.createRegReg(Code.Mov_rm64_r64, R.RBP, R.RSP))
    .emit(() => I.createRegMem(Code.Lea_r64_m, R.RAX, M.createBaseDispl(R.RDI, 3n)))
    .call({ label: "g" })
    .emit(() => I.createReg(Code.Pop_r64, R.RBP))
    .emit(() => I.create(Code.Retnq))
    .label("g")
    .emit(() => I.createReg(Code.Push_r64, R.RBX))
    .emit(() => I.createRegReg(Code.Mov_rm64_r64, R.RBX, R.RAX))
    .emit(() => I.createRegReg(Code.Add_rm64_r64, R.RAX, R.RBX))
    .emit(() => I.createRegReg(Code.Xor_rm64_r64, R.RAX, R.RDI))
    .emit(() => I.createReg(Code.Pop_r64, R.RBX))
    .emit(() => I.create(Code.Retnq));
  return a.assemble(TEXT).bytes;
}

/** CPU time of this process (user + system), in seconds: steadier than wall time on a shared host. */
export function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export function makeMachine(): Machine {
  const m = new Machine({
    regions: [
      { name: "text", kind: "text", start: TEXT, size: 4096, perms: "r-x" },
      { name: "stack", kind: "stack", start: STACK, size: 16384, perms: "rw-" },
    ],
  });
  m.load(TEXT, loopImage());
  return m;
}

export function benchThroughput(iterations: number): { insns: number; seconds: number; mips: number } {
  const m = makeMachine();
  m.call(TEXT, { args: [BigInt(iterations)], rsp: STACK + 16384n });
  const t0 = cpuSeconds();
  const r = m.run({ maxSteps: 1e9 });
  const seconds = cpuSeconds() - t0;
  if (r.kind !== "completed") throw new Error(`bench run did not complete: ${JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString(16) : v))}`);
  m.dispose();
  return { insns: r.steps, seconds, mips: r.steps / seconds / 1e6 };
}

/** Snapshot at every boundary of a short run, restoring each time (the exhaustive-mode pattern). */
export function benchSnapshots(iterations: number): { snapshots: number; perSnapshotUs: number } {
  const m = makeMachine();
  m.call(TEXT, { args: [BigInt(iterations)], rsp: STACK + 16384n });
  const t0 = cpuSeconds();
  let n = 0;
  for (;;) {
    const s = m.snapshot();
    const r = m.step();
    m.restore(s);
    m.step();
    n++;
    if (r.kind === "completed") break;
  }
  const us = ((cpuSeconds() - t0) * 1e6) / n;
  m.dispose();
  return { snapshots: n, perSnapshotUs: us };
}
