// The memory oracle (design.md §6 "memory"), from machine state only:
//   - no write into bytes that belong to a live frame of another context. A context is what runs
//     from one boundary to its return: a BPF invocation (a call from kernel text into BPF text,
//     as bpf_sc_run calls prog->bpf_func) or an interrupt. Everything at or above the rsp a
//     boundary left behind, on that stack, is live data of the contexts outside it, so no code
//     inside may write there. On a private stack the outer contexts' rsp is elsewhere (r9-style
//     designs keep rsp on the kernel stack), so there a context owns what it wrote: from the
//     lowest byte each of its BPF functions wrote to the highest, until both that function and
//     the function whose allocation it is have returned (a subprog's private frame is dead once
//     it has returned, as a kernel-stack frame is below rsp; the allocation's owner is the
//     function that asked for it, main for a design that puts its subprogs' frames there too;
//     bytes a live function wrote into another's allocation, as a design with a stale frame
//     register does, stay its live data). A private allocation may hold several stacks (one slot
//     per recursion level), so there even a boundary's rsp only marks live data up to the
//     highest byte the outer contexts wrote, not up to the allocation's top.
//   - private-stack accesses in bounds: a write into a guard word (kernel/bpf/core.c,
//     priv_stack_init_guard()), or a read of one by BPF code, is reported when it happens, with
//     the instruction that did it (the kernel only notices a changed guard at teardown,
//     priv_stack_check_guard()). And every access to the per-CPU area must lie inside one
//     per-CPU object: a static variable the code uses (this_cpu_off, hardirq_stack_ptr,
//     hardirq_stack_inuse), a counter (bpf_prog_active, prog->active, misses), a guard word, or
//     one private stack (a per-level slot is a stack of its own). An access that jumps over a
//     guard, or runs from one slot into the next, is reported with the object it missed.
import { hex64, REG_NAMES, toCanonical, toInternal, type Activation } from "../machine/index.ts";
import { bpfProgs, type Image } from "../../jit/image.ts";
import { INACTIVE_TASK_FRAME_SIZE } from "../../arch/switch_to.ts";
import { attachOf } from "../../jit/bpf/program.ts";
import { TASK, PCPU_CURRENT_TASK, PCPU_HARDIRQ_STACK_INUSE, PCPU_HARDIRQ_STACK_PTR, PCPU_PREEMPT_COUNT, PCPU_STACK_CHK_GUARD, PCPU_THIS_CPU_OFF } from "../../jit/kernel/layout.ts";
import { kernelStacks, privateStacks } from "../../jit/private-stacks.ts";
import { PerTask, type Oracle, type Range } from "./types.ts";

// Addresses here are in the machine's internal form (addr.ts: a canonical address as a signed
// number; kernel addresses are negative): every stack write comes through onWrite, which makes
// no bigint of it. Reports print them as the canonical addresses they are.
const hex = (a: number | bigint) => hex64(typeof a === "number" ? toCanonical(a) : a);
/** An image's address (always canonical) in the internal form. */
const I = (a: bigint) => toInternal(a)!;
/**
 * Is the kernel address `x` above the word `w` as the CPU compares them (unsigned)? `w` is a
 * word read from memory in the internal form, NaN when it is not canonical: every kernel
 * address is above a user-half or non-canonical word.
 */
const above = (x: number, w: number) => !(w < 0) || x > w;
/** Is rsp inside the switch frame at sp (both the words as they are, unsigned)? */
const switchingIn = (rsp: bigint, sp: bigint) => rsp >= sp && rsp <= sp + BigInt(INACTIVE_TASK_FRAME_SIZE);

interface Area {
  readonly name: string; readonly begin: number; readonly end: number; readonly private: boolean; /** where pushes start */ readonly top: number;
  /** A private stack's owner: the function whose allocation it is (program index, function name). */
  readonly owner?: { readonly program: number; readonly func: string };
}

interface Context {
  /** The boundary activation's return-address (or hardware-frame RIP) slot, to match its return. */
  readonly slot: number;
  /** The rsp the boundary left behind (NaN if not canonical; `spRaw` exactly), and the stack it is on. */
  readonly sp: number;
  readonly spRaw: bigint;
  readonly area: Area | undefined;
  /** What began it, for reports (built only then). */
  readonly entered: () => string;
  /** Began by an interrupt (else a call into BPF, or the task itself). */
  readonly interrupt: boolean;
  /** The program a BPF invocation runs (index), if this context is one. */
  readonly program?: number;
  /** The bytes [low, high) this context wrote on each private stack, by the BPF function that wrote them (index into the image's functions). */
  readonly written: Map<Area, Written[]>;
  /** The BPF functions live in this context (indices), innermost last. */
  readonly bpf: number[];
}

interface Written { readonly writer: number; low: number; high: number }

const MAX_REPORTS = 20;
/** r12's index in the register file (the runner keeps its table index there). */
const R12 = REG_NAMES.indexOf("r12");

export interface PerCpuObject {
  readonly name: string;
  readonly begin: bigint;
  readonly end: bigint;
  /** What BPF code may do here: JIT-emitted reads of this_cpu_off and of prog->active (limited
   * recursion's slot), reads and writes of private stacks (any program's: a nested program's
   * frame lands on whatever stack rsp is on; whose live bytes those are is the rule above's
   * business); nothing else. */
  readonly bpf: "r" | "rw" | "";
}

/** Every object of this CPU's per-CPU area the image's code may touch, in address order. */
export function perCpuObjects(img: Image): PerCpuObject[] {
  const at = (name: string, begin: bigint, size: number, bpf: PerCpuObject["bpf"] = ""): PerCpuObject => ({ name, begin, end: begin + BigInt(size), bpf });
  const { percpu } = img.layout;
  const objects = [
    at("this_cpu_off", percpu + BigInt(PCPU_THIS_CPU_OFF), 8, "r"),
    at("hardirq_stack_ptr", percpu + BigInt(PCPU_HARDIRQ_STACK_PTR), 8),
    at("hardirq_stack_inuse", percpu + BigInt(PCPU_HARDIRQ_STACK_INUSE), 1),
    ...(img.multitask ? [
      at("current_task", percpu + BigInt(PCPU_CURRENT_TASK), 8),
      at("__preempt_count", percpu + BigInt(PCPU_PREEMPT_COUNT), 8),
      at("__stack_chk_guard", percpu + BigInt(PCPU_STACK_CHK_GUARD), 8),
    ] : []),
    at("bpf_prog_active", img.thisCpu(img.bpfProgActive), 8, "r"),
    ...bpfProgs(img).flatMap((p) => [at(`${p.program.name}->active`, img.thisCpu(p.progActive), 8, "r"), at(`${p.program.name}->misses`, img.thisCpu(p.misses), 8)]),
    // a runner row's own count where its path has no counter (a row per attachment)
    ...img.programs.flatMap((p) => (p.active === p.progActive || p.active === img.bpfProgActive ? [] : [at(`the runner's count of ${p.program.name}${p.linkOf === undefined ? "" : ` through ${attachOf(p.program)}`} (it has no recursion counter)`, img.thisCpu(p.active), 8)])),
    // guard words: BPF accesses to them are the guard rule's to report
    ...img.guards.map((g) => at(`the guard of private ${img.programs[g.program]!.program.name}/${g.func}`, g.addr, 8, "rw")),
    ...privateStacks(img).map((x) => at(`${x.name} stack`, x.begin, Number(x.end - x.begin), "rw")),
  ];
  return objects.sort((a, b) => (a.begin < b.begin ? -1 : a.begin > b.begin ? 1 : 0));
}

export const memory: Oracle = ({ img, m, fail, sym }) => {
  const percpu = I(img.layout.percpu);
  const areas: Area[] = [
    // task, IRQ, NMI: pushes start at the top
    ...kernelStacks(img).map((s) => ({ name: s.name.replace(/ stack$/, ""), begin: I(s.begin), end: I(s.end), top: I(s.end), private: false })),
    // every private stack (a per-level slot is a stack of its own)
    ...privateStacks(img).map((x) => ({ name: x.name, begin: I(x.begin), end: I(x.end), top: I(x.top), private: true, owner: { program: x.program, func: x.func } })),
  ];
  // (loops, not find() with a closure: these run at every stack write)
  const areaOf = (a: number) => { for (const x of areas) if (a >= x.begin && a < x.end) return x; return undefined; };
  const isBpf = (a: number) => m.symbols.lookupInternal(a)?.kind === "bpf";
  // Per task: its live contexts, outermost (the task itself) first.
  const copyWritten = (w: Context["written"]) => new Map([...w].map(([k, v]) => [k, v.map((x) => ({ ...x }))]));
  const tasks = new PerTask<Context[]>(
    () => [{ slot: NaN, sp: 0, spRaw: 0n, area: undefined, entered: () => "the task", interrupt: false, written: new Map(), bpf: [] }],
    (t) => t.map((c) => ({ ...c, written: copyWritten(c.written), bpf: [...c.bpf] })),
  );
  /** What context `c` wrote on `area` that overlaps [addr, end), if anything. */
  const overlap = (c: Context, area: Area, addr: number, end: number) => {
    const ws = c.written.get(area);
    if (ws !== undefined) for (const w of ws) if (end > w.low && addr < w.high) return w;
    return undefined;
  };
  let running = 0;
  /** `task k`, and with several tasks the programs it is inside, with their attach paths. */
  const taskName = (k: number, cs: readonly Context[]) => {
    const progs = cs.flatMap((c) => (c.program === undefined ? [] : [`${img.programs[c.program]!.program.name} through ${pathName(c.program)}`]));
    return `task ${k}${progs.length ? ` (inside ${progs.join(", then ")})` : ""}`;
  };
  const pathName = (p: number) => attachOf(img.programs[p]!.program);
  let reports = 0;
  const report = (message: string, at: number) => {
    if (reports++ < MAX_REPORTS) fail({ check: "memory", message, at: toCanonical(at) });
    else if (reports === MAX_REPORTS + 1) fail({ check: "memory", message: "further memory reports suppressed" });
  };
  const objects = perCpuObjects(img).map((o) => ({ ...o, begin: I(o.begin), end: I(o.end) }));
  const percpuRegion = img.regions.find((r) => r.kind === "percpu")!;
  const perCpuEnd = I(percpuRegion.start) + percpuRegion.size;
  const guards = img.guards.map((g) => ({ ...g, addr: I(g.addr) }));
  // each task's stack and where its thread.sp is kept, as internal addresses (looked at by every
  // stack write while another task is switched out)
  const taskAt = img.tasks.map((t) => ({ begin: I(t.stack.begin), end: I(t.stack.end), threadSp: I(t.struct) + TASK.threadSp }));
  // Every BPF function (by index): its image, its program, the private stacks it owns.
  const functions = bpfProgs(img).flatMap((p, program) => p.jit.funcs.map((f) => ({
    program, base: I(f.image.base), end: I(f.image.end), areas: areas.filter((a) => a.owner?.program === program && a.owner.func === f.name),
  })));
  /** The BPF function an instruction belongs to (index), if any. */
  const functionAt = (ip: number) => { for (let i = 0; i < functions.length; i++) if (ip >= functions[i]!.base && ip < functions[i]!.end) return i; return undefined; };
  /** Which program a BPF instruction belongs to. */
  const programAt = (ip: number) => { const i = functionAt(ip); return i === undefined ? undefined : functions[i]!.program; };
  // Which attachment a BPF invocation runs through: the runner's table index (r12 at its call,
  // jit/kernel/kernel.ts bpf_sc_run); a program with a second attachment (Program.linkOf) has
  // one code for both, so its code cannot say
  const runnerCall = I(img.kernel.addr("run_call"));
  const invoked = (a: Activation) => (a.site === runnerCall ? Number(m.regFile.lo[R12]!) : programAt(a.entry));
  /** An access, in a report (built only then: every stack write comes through the watchers). */
  const access = (write: boolean, size: number, addr: number, ip: number) => `${size}-byte ${write ? "write" : "read"} at ${hex(addr)} by ${sym(toCanonical(ip))}`;
  /** An access to the per-CPU area inside no object, reported with the object nearest to it. */
  const outsideEvery = (write: boolean, addr: number, end: number, ip: number): true => {
    const distance = (x: (typeof objects)[number]) => (addr >= x.end ? addr - x.end : x.begin >= end ? x.begin - end : 0);
    const near = objects.reduce((a, b) => (distance(b) < distance(a) ? b : a));
    const where = addr >= near.end ? `${addr - near.end} bytes above` : near.begin >= end ? `${near.begin - end} bytes below` : "across the edge of";
    report(`${access(write, end - addr, addr, ip)} is out of the bounds of every per-CPU object: ${where} ${near.name} [${hex(near.begin)}, ${hex(near.end)})`, ip);
    return true;
  };
  /**
   * Reported (and true): an access to the per-CPU area outside every object, or one BPF code may
   * not make. (At every watched write and read: no closure over its arguments here, which would
   * make V8 allocate a context for them at every call; outsideEvery() has that one.)
   */
  const outOfBounds = (write: boolean, addr: number, end: number, ip: number): boolean => {
    if (addr >= perCpuEnd || end <= percpu) return false;
    let o: (typeof objects)[number] | undefined;
    for (const x of objects) if (addr >= x.begin && end <= x.end) { o = x; break; }
    if (o === undefined) return outsideEvery(write, addr, end, ip);
    const program = programAt(ip);
    if (program === undefined || o.bpf.includes(write ? "w" : "r")) return false; // kernel code: its own variables, and pointers BPF handed it
    report(`${access(write, end - addr, addr, ip)} (BPF code of ${img.programs[program]!.program.name}) ${write ? "writes" : "reads"} ${o.name}, which BPF code never ${write ? "writes" : "reads"}: out of bounds`, ip);
    return true;
  };
  const onWrite = (addr: number, size: number, ip: number) => {
    const end = addr + size;
    if (outOfBounds(true, addr, end, ip)) return;
    for (const g of guards) {
      if (addr < g.addr + 8 && end > g.addr) {
        report(`${access(true, size, addr, ip)} hits the private-stack guard of ${img.programs[g.program]!.program.name}/${g.func} at ${hex(g.addr)}`, ip);
        return; // once, and not counted as the writer's own stack bytes
      }
    }
    const area = areaOf(addr);
    if (!area) return;
    const ctxs = tasks.cur;
    const cur = ctxs.length - 1;
    // Another task's live frames: everything from its saved rsp (thread.sp) up on its task
    // stack, and what its live contexts wrote on private stacks. It is switched out in the
    // middle of them (preempted or asleep), so nothing else may write there.
    const others = tasks.others();
    const rsp = others.length ? m.rspAt : 0;
    for (let o = 0; o < others.length; o++) {
      const [k, theirs] = others[o]!;
      const t = taskAt[k]!;
      const sp = m.memory.peekAddr(t.threadSp); // (NaN: not a canonical address)
      // the task being switched in: __switch_to_asm has loaded its rsp (its switch frame, on
      // whatever stack it slept on) and is popping it; current_task is not it yet
      // (as numbers when both are kernel addresses and the frame ends below the top, where
      // signed and unsigned order agree; else the words as the CPU compares them: a rare state)
      if (rsp < 0 && sp + INACTIVE_TASK_FRAME_SIZE < 0 ? rsp >= sp && rsp <= sp + INACTIVE_TASK_FRAME_SIZE : switchingIn(m.reg("rsp"), m.memory.peek64(t.threadSp) ?? 0n)) continue;
      const onTheirStack = addr < t.end && end > t.begin && above(end, sp);
      let hit: { c: Context; w: Written } | undefined;
      if (!onTheirStack) for (const c of theirs) { const w = overlap(c, area, addr, end); if (w !== undefined) { hit = { c, w }; break; } }
      if (onTheirStack || hit) {
        const what = onTheirStack ? `${k === 0 ? "the task" : `task ${k}`} stack above its saved rsp ${hex(m.memory.peek64(t.threadSp) ?? 0n)}` : `the ${area.name} stack inside ${hex(hit!.w.low)}..${hex(hit!.w.high)}, written by ${hit!.c.entered()}`;
        report(`${access(true, size, addr, ip)}: ${taskName(running, ctxs)} writes into ${what}: live data of ${taskName(k, theirs)}, which is switched out in the middle of it`, ip);
        return;
      }
    }
    // (the highest byte the contexts outside ctxs[j] wrote on this area, kept as j grows)
    let outerHigh = -Infinity;
    for (let j = 1; j <= cur; j++) {
      const b = ctxs[j]!;
      const ws = ctxs[j - 1]!.written.get(area);
      if (ws !== undefined) for (const w of ws) if (w.high > outerHigh) outerHigh = w.high;
      if (b.area === area && end > b.sp && (!area.private || outerHigh > addr)) {
        report(`${access(true, size, addr, ip)} (inside ${ctxs[cur]!.entered()}) lands at or above rsp ${hex(b.spRaw)} that ${b.entered()} left on the ${area.name} stack: live data of the context it ${b.interrupt ? "interrupted" : "was called from"}`, ip);
        return;
      }
    }
    if (!area.private) return;
    // (the innermost context whose boundary left rsp on this area)
    let lastOnArea = -1;
    for (let j = cur; j > 0 && lastOnArea < 0; j--) if (ctxs[j]!.area === area) lastOnArea = j;
    for (let j = Math.max(0, lastOnArea); j < cur; j++) {
      const w = overlap(ctxs[j]!, area, addr, end);
      if (w !== undefined) {
        report(`${access(true, size, addr, ip)} (inside ${ctxs[cur]!.entered()}) lands in the ${area.name} stack inside ${hex(w.low)}..${hex(w.high)}, written by ${ctxs[j]!.entered()}, which is still live`, ip);
        return;
      }
    }
    // the writer: the BPF function at ip, or for a helper's write, the innermost live one
    const me = ctxs[cur]!;
    const writer = functionAt(ip) ?? me.bpf[me.bpf.length - 1] ?? -1;
    const mine = me.written.get(area);
    let w: Written | undefined;
    if (mine !== undefined) for (const x of mine) if (x.writer === writer) { w = x; break; }
    if (w === undefined) { if (mine) mine.push({ writer, low: addr, high: end }); else me.written.set(area, [{ writer, low: addr, high: end }]); }
    else { if (addr < w.low) w.low = addr; if (end > w.high) w.high = end; }
  };
  const writes: Range[] = [
    ...areas.map((a) => ({ begin: toCanonical(a.begin) - 16n, end: toCanonical(a.end) + 16n })),
    ...img.guards.map((g) => ({ begin: g.addr, end: g.addr + 8n })),
    { begin: img.layout.percpu, end: toCanonical(perCpuEnd) },
  ];
  const onRead = (addr: number, size: number, ip: number) => {
    const end = addr + size;
    if (outOfBounds(false, addr, end, ip) || !isBpf(ip)) return;
    for (const g of guards) {
      if (addr < g.addr + 8 && end > g.addr) report(`${access(false, size, addr, ip)} reads the private-stack guard of ${img.programs[g.program]!.program.name}/${g.func} at ${hex(g.addr)}: out of the stack's bounds`, ip);
    }
  };

  const enter = (a: Activation, entered: () => string, interrupt: boolean, program?: number) => {
    const sp = a.rsp;
    tasks.cur.push({ slot: a.slot, sp, spRaw: a.rspRaw, area: areaOf(sp - 1), entered, interrupt, written: new Map(), bpf: [], ...(program === undefined ? {} : { program }) }); // sp may be a stack's top
  };
  /** A call into a BPF function: live in this context until it returns. */
  const called = (a: Activation) => {
    const f = functionAt(a.entry);
    if (f !== undefined) tasks.cur[tasks.cur.length - 1]!.bpf.push(f);
  };
  /**
   * Its return: what was written by a function no longer live, in an allocation whose owner is
   * no longer live either, is dead (BPF has no recursion within a run: one activation each).
   */
  const returned = (a: Activation) => {
    const f = functionAt(a.entry);
    const c = tasks.cur[tasks.cur.length - 1]!;
    if (f === undefined || c.bpf[c.bpf.length - 1] !== f) return;
    c.bpf.pop();
    for (const [area, ws] of c.written) {
      if (!area.private || c.bpf.some((g) => functions[g]!.areas.includes(area))) continue; // its owner is live
      const kept = ws.filter((w) => c.bpf.includes(w.writer));
      if (kept.length === 0) c.written.delete(area);
      else if (kept.length < ws.length) c.written.set(area, kept);
    }
  };
  // How a context names what entered it, made out of the observers (a closure over an
  // observer's argument would make V8 allocate a context for it at every call)
  // (with a program attached twice, Program.linkOf, its invocations also say which attachment ran them)
  const linked = img.programs.some((p) => p.linkOf !== undefined);
  const calledName = (a: Activation, program: number | undefined) => () =>
    `${m.symbols.lookupInternal(a.entry)!.name} (${linked && program !== undefined ? `${img.programs[program]!.program.name} through ${pathName(program)}, ` : ""}called from ${sym(toCanonical(a.site))})`;
  const interruptName = (a: Activation) => () => `vector ${a.vector} (taken at ${sym(toCanonical(a.ret))})`;
  const leave = (a: Activation) => {
    const ctxs = tasks.cur;
    if (ctxs.length > 1 && ctxs[ctxs.length - 1]!.slot === a.slot) ctxs.pop();
  };
  return {
    writes, onWrite,
    reads: [{ begin: img.layout.percpu, end: toCanonical(perCpuEnd) }], onRead,
    save() {
      const back = tasks.save(), kept = { reports, running };
      return () => {
        back();
        reports = kept.reports;
        running = kept.running;
      };
    },
    onSwitch(prev, next) {
      tasks.switch(prev, next);
      running = next;
    },
    onCall(a) {
      if (isBpf(a.entry) && !isBpf(a.site)) { const program = invoked(a); enter(a, calledName(a, program), false, program); }
      called(a);
    },
    onReturn(a) {
      returned(a);
      leave(a);
    },
    onInterrupt(a) { enter(a, interruptName(a), true); },
    onIret: leave,
    report: () => ({}),
  };
};
