// Pre-decoding: iced-x86 decodes each address once into a plain, monomorphic record that the
// interpreter dispatches on. Enum values are copied into module-local consts at load time:
// under vitest every access to an imported enum binding costs ~100 ns (toolchain-notes §1).
import { Decoder, DecoderOptions, Formatter, FormatterSyntax, forEachInstruction, Instruction, MemorySize, OpKind, Register } from "../../jit/iced.ts";
import { codeValue, CODE_TO_COND as CODE_TO_COND__, CODE_TO_OP as CODE_TO_OP__, IMPLICIT_SIZE as IMPLICIT_SIZE__, LOCKABLE_OP as LOCKABLE_OP__, Op as Op__, REFUSED as REFUSED__ } from "./isa.ts";
import { ContentCache } from "./content-cache.ts";
import type { InsnRecorder } from "../../jit/x86/emit.ts";
// Imported values as module locals: under vitest an imported binding is a getter on the module,
// which the emulator's inner loop would pay for at every use (3-4x slower than under tsx).
const CODE_TO_COND = CODE_TO_COND__, CODE_TO_OP = CODE_TO_OP__, IMPLICIT_SIZE = IMPLICIT_SIZE__, LOCKABLE_OP = LOCKABLE_OP__, Op = Op__, REFUSED = REFUSED__;

/** Operand kinds in a DInsn. */
export const K_NONE = 0, K_REG = 1, K_MEM = 2, K_IMM = 3;

/** Register indices in x86 encoding order; 16..19 are AH, CH, DH, BH. */
export const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
export const R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;
export const REG_NAMES = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const;
export type RegName = (typeof REG_NAMES)[number];

/** A hook; a `first` one runs before the others at its address, and its "stop" keeps them from running. */
export type HookFn = (() => "stop" | void) & { readonly first?: boolean };

/** One pre-decoded instruction. Every field is always present (one hidden class). */
export interface DInsn {
  ip: number;          // internal (signed) address
  next: number;        // ip + length
  len: number;
  op: number;          // our op id (isa.ts)
  code: number;        // iced Code, for messages
  size: number;        // operand size in bytes (1, 2, 4, 8)
  srcSize: number;     // movzx/movsx source size
  k0: number; r0: number;  // operand 0 kind, register index
  k1: number; r1: number;  // operand 1 kind, register index
  r2: number;          // operand 2 register index (the count of shlx/shrx/sarx), or -1
  base: number;        // memory base register index or -1 (RIP-relative is folded into disp)
  index: number;       // memory index register or -1
  scale: number;
  disp: number;        // signed displacement, or the absolute address for RIP-relative/no-base
  gs: boolean;         // gs: segment override
  immLo: number;       // immediate as uint32 halves: sign-extended to 64 bits at operand size 8,
  immHi: number;       // masked to the size below (imm16 of `ret imm16`; 1 for shift-by-1)
  target: number;      // near-branch target (internal address)
  cond: number;        // jcc/cmovcc condition (isa.ts COND)
  hooks: HookFn[] | null; // address hooks at this ip
  exec: number;        // the op the machine's loop dispatches on: `op`, or 0 (its slow path) when hooks are attached or op is 0 (setHooks())
}

/** Attach (or with null, detach) an address's hooks; the loop then takes the instruction's slow path. */
export function setHooks(d: DInsn, hooks: HookFn[] | null): void {
  d.hooks = hooks;
  d.exec = hooks === null ? d.op : OP_UNSUPPORTED;
}

// ---- load-time tables from iced enums ----
const REG_INDEX = new Int8Array(512).fill(-1);
const REG_SIZE = new Uint8Array(512);
{
  const R = Register as unknown as Record<string, number>;
  const l8 = ["AL", "CL", "DL", "BL", "SPL", "BPL", "SIL", "DIL"];
  const w16 = ["AX", "CX", "DX", "BX", "SP", "BP", "SI", "DI"];
  const d32 = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI"];
  const q64 = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI"];
  const set = (name: string, idx: number, size: number) => { REG_INDEX[R[name]!] = idx; REG_SIZE[R[name]!] = size; };
  for (let i = 0; i < 8; i++) {
    set(l8[i]!, i, 1); set(w16[i]!, i, 2); set(d32[i]!, i, 4); set(q64[i]!, i, 8);
    set(`R${i + 8}L`, i + 8, 1); set(`R${i + 8}W`, i + 8, 2); set(`R${i + 8}D`, i + 8, 4); set(`R${i + 8}`, i + 8, 8);
  }
  ["AH", "CH", "DH", "BH"].forEach((n, i) => set(n, 16 + i, 1));
}
const MEM_SIZE = new Uint8Array(1024);
{
  const M = MemorySize as unknown as Record<string, number>;
  // QwordOffset: the memory operand of `call`/`jmp qword ptr [...]`.
  for (const [n, s] of [["UInt8", 1], ["Int8", 1], ["UInt16", 2], ["Int16", 2], ["UInt32", 4], ["Int32", 4], ["UInt64", 8], ["Int64", 8], ["QwordOffset", 8]] as const) MEM_SIZE[M[n]!] = s;
}
const OK_REGISTER = OpKind.Register, OK_MEMORY = OpKind.Memory, OK_NEAR64 = OpKind.NearBranch64;
const OK_IMM_FIRST = OpKind.Immediate8, OK_IMM_LAST = OpKind.Immediate32to64;
const REG_RIP = Register.RIP, REG_NONE = Register.None, REG_GS = Register.GS, REG_FS = Register.FS;
const OP_UNSUPPORTED = Op.UNSUPPORTED, OP_MOVZX = Op.MOVZX, OP_MOVSX = Op.MOVSX;
const OP_LEA = Op.LEA, OP_NOP = Op.NOP, OP_PUSH = Op.PUSH, OP_POP = Op.POP;
/** Ops with a register third operand (VEX.vvvv of shlx/shrx/sarx). */
const THIRD_REG = new Set<number>([Op.SHLX, Op.SHRX, Op.SARX]);

function blank(ip: number): DInsn {
  return {
    ip, next: ip, len: 0, op: OP_UNSUPPORTED, code: 0, size: 0, srcSize: 0,
    k0: K_NONE, r0: -1, k1: K_NONE, r1: -1, r2: -1, base: -1, index: -1, scale: 1, disp: 0, gs: false,
    immLo: 0, immHi: 0, target: 0, cond: 0, hooks: null, exec: OP_UNSUPPORTED,
  };
}

/** Placeholder in the decode cache for an address not decoded yet (never executed). */
export const NOT_DECODED: DInsn = Object.freeze(blank(NaN)) as DInsn;

/** Why a decoded instruction is unsupported, when it looked supported but used a form we do not model. */
export const unsupportedWhy = new WeakMap<DInsn, string>();

const NEAR_BRANCH = new Set<number>([Op.CALL, Op.CALL_IND, Op.RET, Op.JMP, Op.JMP_IND, Op.JCC]);
const LEGACY_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

/**
 * Does the instruction starting at bytes[0] carry an operand-size prefix (66h) that a REX.W does
 * not override? On a near branch its meaning depends on the vendor: Intel ignores it ("In 64-bit
 * mode the operand size is fixed at 64 bits", SDM Vol. 2A, CALL/JMP/Jcc/RET), AMD gives the
 * branch a 16-bit operand size: RIP truncated to 16 bits, 2-byte pushes and pops (AMD APM Vol. 1
 * §3.7.9, Table 3-9). iced decodes the Intel way, so the machine refuses these encodings.
 */
function operandSizePrefixed(bytes: Uint8Array): boolean {
  let i = 0, p66 = false;
  for (; i < bytes.length && LEGACY_PREFIXES.has(bytes[i]!); i++) if (bytes[i] === 0x66) p66 = true;
  const rex = bytes[i];
  return p66 && !(rex !== undefined && (rex & 0xf8) === 0x48);
}

/**
 * Convert the iced instruction just decoded at `ip` into a DInsn. `bytes` are the instruction's
 * bytes (from its first), for what iced does not report (a 66h prefix on a near branch).
 */
export function convert(ins: Instruction, ip: number, bytes?: Uint8Array): DInsn {
  const d = blank(ip);
  d.len = ins.length;
  d.next = ip + d.len;
  d.code = ins.code;
  const op = ins.isInvalid ? OP_UNSUPPORTED : CODE_TO_OP[ins.code]!;
  d.op = op;
  if (op === OP_UNSUPPORTED) {
    const why = ins.isInvalid ? undefined : REFUSED.get(ins.code);
    if (why !== undefined) unsupportedWhy.set(d, why);
    return d;
  }
  if (NEAR_BRANCH.has(op) && bytes !== undefined && operandSizePrefixed(bytes)) {
    unsupportedWhy.set(d, "an operand-size prefix on a near branch (16-bit operand size on AMD, ignored on Intel)");
    d.op = OP_UNSUPPORTED;
    return d;
  }
  fromCode(d, ins.code);
  const n = ins.opCount;
  let hasMem = false;
  let lo = 0, hi = 0;
  for (let i = 0; i < n && i < 3; i++) {
    const k = ins.opKind(i);
    let kind = K_NONE, reg = -1;
    if (k === OK_REGISTER) {
      const r = ins.opRegister(i);
      kind = K_REG; reg = REG_INDEX[r]!;
      if (reg < 0) { unsupportedWhy.set(d, "register operand"); d.op = OP_UNSUPPORTED; return d; }
      sizeFrom(d, i, REG_SIZE[r]!);
    } else if (k === OK_MEMORY) {
      kind = K_MEM; hasMem = true;
      sizeFrom(d, i, MEM_SIZE[ins.memorySize]!);
    } else if (k >= OK_IMM_FIRST && k <= OK_IMM_LAST) {
      kind = K_IMM;
      const imm = ins.immediate(i); // sign-extended to a u64
      lo = Number(imm & 0xffffffffn); hi = Number((imm >> 32n) & 0xffffffffn);
    } else if (k === OK_NEAR64) {
      d.target = Number(BigInt.asIntN(64, ins.nearBranch64));
    } else {
      unsupportedWhy.set(d, `operand kind ${OpKind[k]}`); d.op = OP_UNSUPPORTED; return d;
    }
    if (i === 0) { d.k0 = kind; d.r0 = reg; }
    else if (i === 1) { d.k1 = kind; d.r1 = reg; }
    else if (kind === K_REG && THIRD_REG.has(op)) d.r2 = reg;
    else if (kind !== K_IMM) { unsupportedWhy.set(d, "third operand"); d.op = OP_UNSUPPORTED; return d; }
  }
  // iced already decodes a lock prefix the CPU would refuse as invalid; the table says the same.
  if (ins.hasLockPrefix && !(LOCKABLE_OP[op] === 1 && d.k0 === K_MEM)) {
    unsupportedWhy.set(d, "a lock prefix where the CPU raises #UD (it takes one only on the memory destination of add, and, cmpxchg, dec, inc, neg, not, or, sub, xadd, xchg, xor)");
    d.op = OP_UNSUPPORTED;
    return d;
  }
  if (hasMem && op !== OP_NOP) {
    const base = ins.memoryBase, index = ins.memoryIndex;
    const seg = ins.segmentPrefix;
    if (seg === REG_FS) { unsupportedWhy.set(d, "fs: segment"); d.op = OP_UNSUPPORTED; return d; }
    d.gs = seg === REG_GS;
    d.disp = Number(BigInt.asIntN(64, ins.memoryDisplacement));
    if (base === REG_RIP) {
      d.base = -1; // iced already gives the absolute target in the displacement
    } else if (base !== REG_NONE) {
      if (REG_SIZE[base] !== 8) { unsupportedWhy.set(d, "32-bit address size"); d.op = OP_UNSUPPORTED; return d; }
      d.base = REG_INDEX[base]!;
    }
    if (index !== REG_NONE) {
      if (REG_SIZE[index] !== 8) { unsupportedWhy.set(d, "32-bit address size"); d.op = OP_UNSUPPORTED; return d; }
      d.index = REG_INDEX[index]!;
      d.scale = ins.memoryIndexScale;
    }
    if (d.size === 0 && op !== OP_LEA) { unsupportedWhy.set(d, "memory operand size"); d.op = OP_UNSUPPORTED; return d; }
  }
  return complete(d, lo, hi);
}

/** What a form's iced Code says by itself: its condition (jcc, cmovcc) and an implicit operand size. */
function fromCode(d: DInsn, code: number): void {
  d.cond = CODE_TO_COND.get(code) ?? 0;
  d.size = IMPLICIT_SIZE.get(code) ?? 0;
}

/** Operand `i` of `size` bytes: the first operand's size is the instruction's; a movzx/movsx source's is srcSize. */
function sizeFrom(d: DInsn, i: number, size: number): void {
  if (i === 0 || d.size === 0) d.size = size;
  if (i === 1 && (d.op === OP_MOVZX || d.op === OP_MOVSX)) d.srcSize = size;
}

/**
 * push and pop move 8 bytes; the immediate (uint32 halves of its value sign-extended to 64
 * bits), kept whole at operand size 8 and masked to the size below it; then the specialised op,
 * and the op to dispatch on.
 */
function complete(d: DInsn, lo: number, hi: number): DInsn {
  if (d.op === OP_PUSH || d.op === OP_POP) d.size = 8;
  if (d.size > 0 && d.size < 8) {
    hi = 0;
    if (d.size < 4) lo &= d.size === 2 ? 0xffff : 0xff;
  }
  d.immLo = lo >>> 0;
  d.immHi = hi >>> 0;
  specialise(d);
  d.exec = d.op;
  return d;
}

/** iced Code values by name, as encoders name their forms. */
const FORM_CODE = new Map<string, number>();

/**
 * The records of instructions as an encoder writes them (the JIT's emitters, jit/x86/emit.ts),
 * made from what the encoder knows instead of decoding its bytes again: what decoding the same
 * bytes gives, field for field (test/unit/jit/records.test.ts holds every emitter form to
 * iced's decoding). Forms the machine supports only (begin() throws on another).
 */
export class InsnRecords implements InsnRecorder {
  private readonly list: DInsn[] = [];
  private d: DInsn | null = null;
  private lo = 0;
  private hi = 0;

  /** The next record: `len` bytes at internal address `ip`, of the form iced calls `form` (a Code name). */
  begin(form: string, ip: number, len: number): this {
    this.end();
    let code = FORM_CODE.get(form);
    if (code === undefined) {
      code = codeValue(form);
      if (CODE_TO_OP[code] === OP_UNSUPPORTED) throw new Error(`InsnRecords: ${form} is not a form the machine supports (isa.ts)`);
      FORM_CODE.set(form, code);
    }
    const d = blank(ip);
    d.len = len; d.next = ip + len; d.code = code; d.op = CODE_TO_OP[code]!;
    fromCode(d, code);
    this.d = d; this.lo = this.hi = 0;
    return this;
  }

  /** Operand `i`: register `reg` (encoding order; 16..19 AH, CH, DH, BH) of `size` bytes. */
  reg(i: 0 | 1 | 2, reg: number, size: number): this {
    const d = this.d!;
    if (i === 2) { d.r2 = reg; return this; }
    sizeFrom(d, i, size);
    if (i === 0) { d.k0 = K_REG; d.r0 = reg; } else { d.k1 = K_REG; d.r1 = reg; }
    return this;
  }

  /** Operand `i`: memory of `size` bytes (0: none, as lea's) at [base + disp] (base -1: none), gs: if `gs`. */
  mem(i: 0 | 1, size: number, base: number, disp: number, gs = false): this {
    const d = this.d!;
    sizeFrom(d, i, size);
    if (i === 0) d.k0 = K_MEM; else d.k1 = K_MEM;
    if (d.op !== OP_NOP) { d.base = base; d.disp = disp + 0; d.gs = gs; } // + 0: an offset of -0 is 0
    return this;
  }

  /**
   * Operand `i`: an immediate of 32 bits or fewer, given signed or unsigned (the emitters write
   * its low 32 bits), sign-extended to 64 bits as the CPU does at operand size 8.
   */
  imm(i: 0 | 1 | 2, v: number): this {
    const s = v | 0;
    return this.imm64(i, s >>> 0, s < 0 ? 0xffffffff : 0);
  }

  /** Operand `i`: a 64-bit immediate as uint32 halves. */
  imm64(i: 0 | 1 | 2, lo: number, hi: number): this {
    const d = this.d!;
    if (i === 0) d.k0 = K_IMM; else if (i === 1) d.k1 = K_IMM;
    this.lo = lo; this.hi = hi;
    return this;
  }

  /** A near branch's target (internal address). */
  target(t: number): this {
    this.d!.target = t;
    return this;
  }

  /** The records, if they cover `bytes` at `ip` instruction by instruction (a copy: more may follow). */
  take(ip: number, bytes: Uint8Array): readonly DInsn[] | undefined {
    this.end();
    let at = ip;
    for (const d of this.list) {
      if (d.ip !== at) return undefined;
      at = d.next;
    }
    if (at !== ip + bytes.length) return undefined;
    const out: Recorded = this.list.slice();
    Object.defineProperty(out, SPAN, { value: { ip, bytes: bytes.slice() } }); // (not enumerable: the records compare and print as the array they are)
    return out;
  }

  /** Finish the record begun last. */
  private end(): void {
    const d = this.d;
    if (d === null) return;
    this.list.push(complete(d, this.lo, this.hi));
    this.d = null;
  }
}

const OP_MOV = Op.MOV, OP_ADD = Op.ADD, OP_SUB = Op.SUB, OP_CMP = Op.CMP;
const OP_MOV_RR64 = Op.MOV_RR64, OP_MOV_LOAD64 = Op.MOV_LOAD64, OP_MOV_STORE64 = Op.MOV_STORE64;
const OP_PUSH_R = Op.PUSH_R, OP_POP_R = Op.POP_R, OP_ADD_RI64 = Op.ADD_RI64, OP_SUB_RI64 = Op.SUB_RI64, OP_CMP_RI64 = Op.CMP_RI64;
const OP_XOR = Op.XOR, OP_XOR_RR32 = Op.XOR_RR32, OP_MOV_RI = Op.MOV_RI;
/** The register-register 64-bit form of each ALU op that has one. */
const RR64 = new Map<number, number>([
  [Op.ADD, Op.ADD_RR64], [Op.SUB, Op.SUB_RR64], [Op.AND, Op.AND_RR64], [Op.OR, Op.OR_RR64], [Op.XOR, Op.XOR_RR64], [Op.CMP, Op.CMP_RR64], [Op.TEST, Op.TEST_RR64],
]);

/** Re-label the hottest operand shapes with their specialised op (isa.ts); the semantics are the generic op's. */
function specialise(d: DInsn): void {
  const op = d.op;
  // Writes to rsp stay on the generic handlers, which keep the CPU's rsp cache coherent.
  if (d.k0 === K_REG && d.r0 === RSP && op !== OP_PUSH) return;
  if (op === OP_PUSH && d.k0 === K_REG) d.op = OP_PUSH_R;
  else if (op === OP_POP && d.k0 === K_REG) d.op = OP_POP_R;
  else if (op === OP_MOV && d.k0 === K_REG && d.k1 === K_IMM && d.r0 < 16 && (d.size === 8 || d.size === 4)) d.op = OP_MOV_RI;
  else if (op === OP_XOR && d.size === 4 && d.k0 === K_REG && d.k1 === K_REG) d.op = OP_XOR_RR32;
  else if (d.size !== 8) return;
  else if (op === OP_MOV) {
    if (d.k0 === K_REG && d.k1 === K_REG) d.op = OP_MOV_RR64;
    else if (d.k0 === K_REG && d.k1 === K_MEM) d.op = OP_MOV_LOAD64;
    else if (d.k0 === K_MEM && d.k1 === K_REG) d.op = OP_MOV_STORE64;
  } else if (d.k0 === K_REG && d.k1 === K_IMM) {
    if (op === OP_ADD) d.op = OP_ADD_RI64;
    else if (op === OP_SUB) d.op = OP_SUB_RI64;
    else if (op === OP_CMP) d.op = OP_CMP_RI64;
  } else if (d.k0 === K_REG && d.k1 === K_REG) {
    d.op = RR64.get(op) ?? op;
  }
}


/**
 * Decoded blocks by address and content: decoding is most of building a machine. Entries are
 * templates: callers get copies.
 */
const blocks = new ContentCache<readonly DInsn[]>(1 << 17);

/**
 * Blocks whose records the code that wrote them handed over (the JIT's), which cost nothing to
 * have again: kept only for decodeCode()'s readers of the same image's code right after it is
 * loaded (the frame-window oracle), in generations of 4 KB, a few small scenarios' worth. In
 * `blocks`, every image's records were kept for some 500 small scenarios (random immediates:
 * almost none asked for again), which took them all into V8's old generation.
 */
const recorded = new ContentCache<readonly DInsn[]>(1 << 12);

function decodedBlock(bytes: Uint8Array, ip: number, records?: readonly DInsn[]): readonly DInsn[] {
  if (records !== undefined && recordsOf(records, ip, bytes)) return recorded.get(ip, bytes, () => records);
  return recorded.find(ip, bytes) ?? blocks.get(ip, bytes, () => decode(bytes, ip));
}

/**
 * Records InsnRecords.take() handed out carry the address and a copy of the bytes they cover,
 * under a key no other module has. (On the records themselves, not in a WeakMap by records: that
 * kept every image's records alive into V8's old generation, jit/recent-cache.ts.)
 */
const SPAN = Symbol("the bytes these records were taken for");
type Recorded = DInsn[] & { [SPAN]?: { readonly ip: number; readonly bytes: Uint8Array } };

/**
 * Are `records` what an InsnRecords made for exactly these bytes at `ip`? Anything else (an
 * array of another origin, records kept beside other bytes: `{ ...image, bytes }`, bytes
 * changed since) is not trusted: the block is decoded.
 */
function recordsOf(records: readonly DInsn[], ip: number, bytes: Uint8Array): boolean {
  const span = (records as Recorded)[SPAN];
  return span !== undefined && span.ip === ip && Buffer.compare(span.bytes, bytes) === 0;
}

/** The block's instructions decoded linearly, up to the first invalid bytes. */
function decode(bytes: Uint8Array, ip: number): DInsn[] {
  const out: DInsn[] = [];
  let at = ip;
  forEachInstruction(bytes, BigInt(ip), (ins) => {
    if (ins.isInvalid) return false;
    const d = convert(ins, at, bytes.subarray(at - ip));
    out.push(d);
    at = d.next;
    return true;
  });
  return out;
}

/**
 * The decoded records of a block of code at canonical address `base` (shared, read-only: do not
 * change them): what the code is, by op id and operands, for code that reads facts from
 * instructions (objtool's ORC derivation, frame windows) rather than from disassembly text.
 */
export function decodeCode(bytes: Uint8Array, base: bigint): readonly Readonly<DInsn>[] {
  return decodedBlock(bytes, Number(BigInt.asIntN(64, base)));
}

/** The immediate of a decoded record as a signed number (sign-extended at operand size 8). */
export function immediateOf(d: Readonly<DInsn>): number {
  return Number(BigInt.asIntN(64, (BigInt(d.immHi >>> 0) << 32n) | BigInt(d.immLo >>> 0)));
}

/** A DInsn of one's own with the same fields and no hooks (a machine's, to attach hooks to). */
export function copyInsn(t: DInsn): DInsn {
  const d: DInsn = {
    ip: t.ip, next: t.next, len: t.len, op: t.op, code: t.code, size: t.size, srcSize: t.srcSize, k0: t.k0, r0: t.r0, k1: t.k1, r1: t.r1, r2: t.r2,
    base: t.base, index: t.index, scale: t.scale, disp: t.disp, gs: t.gs, immLo: t.immLo, immHi: t.immHi, target: t.target, cond: t.cond, hooks: null, exec: t.op,
  };
  const why = unsupportedWhy.get(t);
  if (why !== undefined) unsupportedWhy.set(d, why);
  return d;
}

/**
 * Decodes instructions from byte buffers. Owns one iced Decoder input at a time and one reused
 * Instruction; `free()` releases the WASM objects.
 */
export class InsnDecoder {
  private readonly ins = new Instruction();
  private fmtIntel: Formatter | undefined;

  /** Decode one instruction at internal address `ip` from `bytes` (bytes[0] is at ip). */
  decodeOne(bytes: Uint8Array, ip: number): DInsn {
    const dec = new Decoder(64, bytes, DecoderOptions.None);
    try {
      dec.ip = BigInt.asUintN(64, BigInt(ip));
      dec.decodeOut(this.ins);
      return convert(this.ins, ip, bytes);
    } finally {
      dec.free();
    }
  }

  /**
   * Decode a whole block linearly (one Decoder for the block), up to the first invalid bytes;
   * or take `records`, the block's instructions as the code that wrote it recorded them
   * (InsnRecords). The DInsns passed to `sink` are shared by every machine that loads the same
   * bytes at the same address, and by decodeCode(): read-only, without hooks (a machine attaches
   * hooks to a copyInsn() of its own).
   */
  decodeBlock(bytes: Uint8Array, ip: number, sink: (d: DInsn) => void, records?: readonly DInsn[]): void {
    for (const t of decodedBlock(bytes, ip, records)) sink(t);
  }

  /** Intel-syntax text of the instruction in `bytes` at `ip` (for messages). */
  text(bytes: Uint8Array, ip: number): string {
    const dec = new Decoder(64, bytes, DecoderOptions.None);
    try {
      dec.ip = BigInt.asUintN(64, BigInt(ip));
      dec.decodeOut(this.ins);
      if (this.ins.isInvalid) return "(bad)";
      if (!this.fmtIntel) {
        this.fmtIntel = new Formatter(FormatterSyntax.Intel);
        this.fmtIntel.smallHexNumbersInDecimal = false; // iced 1.21 prints imm64 0x100000001 as 1 otherwise
        this.fmtIntel.hexPrefix = "0x";
        this.fmtIntel.hexSuffix = "";
      }
      return this.fmtIntel.format(this.ins);
    } finally {
      dec.free();
    }
  }

  free(): void {
    this.ins.free();
    this.fmtIntel?.free();
    this.fmtIntel = undefined;
  }
}
