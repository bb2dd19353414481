// The line protocol between KernelJit (child.ts) and the shim binary (shim/user.c, whose header
// comment is the reference; keep the two in step). One request = one BPF program, main + subprogs.
//
// The shim starts with:  hello stackcheck-kjit <protocol> <release> <caps>
//
// Request:
//   begin <seq>
//   type <prog type>                        kprobe, tracepoint, struct_ops, ..., unspec
//   feature <X86_FEATURE name>              repeatable; the others are clear
//   return_thunk <hex>                      x86_return_thunk
//   exception_boundary <0|1>                func[0]->aux->exception_boundary
//   cap_sys_admin <0|1>                     ns_capable_noaudit() (classic programs)
//   func <start> <len> <depth> <image hex>  one per function, main first
//   priv <fi> <percpu hex>                  private stack (7.x)
//   tail_call_reachable <fi> <0|1>
//   exception_cb <fi> <0|1>
//   out_stack_arg_cnt <fi> <n>              (7.x)
//   insn <code> <dst> <src> <off> <imm>     every instruction, flat
//   call <flat insn> <target hex>           helper/kfunc targets
//   end
//
// Answer:
//   result <seq> ok <nfuncs>                or: result <seq> error
//   func <fi> <image> <bpf_func> <jited_len> <image_len>
//   bytes <fi> <hex>
//   addrs <fi> <a0> ... <alen>
//   fp <fi> <fp_start> <fp_end>             or: fp <fi> unsupported
//   priv <fi> <ptr> <size> <align> [<off>:<hex>]...
//   extable <fi> <k> <insn addr> <insn> <fixup> <data>
//   error <fi> <where> <insn> <rc>          (error answers)
//   message <text>                          (error answers)
//   log <level> <text>                      printk output
//   done <seq>
//
// New request keys are added as new `key value` lines; the shim rejects keys it does not know,
// so a request never means less than it says.

export const PROTOCOL_VERSION = 1;

/** A BPF instruction exactly as the kernel holds it (`struct bpf_insn`). */
export interface RawInsn {
  readonly code: number;
  readonly dst: number;
  readonly src: number;
  readonly off: number;
  /** Signed or unsigned 32-bit. */
  readonly imm: number;
}

export interface FuncRequest {
  /** First instruction (index into `insns`) and count: functions are contiguous, in order, main first. */
  readonly start: number;
  readonly len: number;
  /** The verifier's stack depth (aux->stack_depth), unrounded. */
  readonly stackDepth: number;
  /** The image address: bpf_jit_binary_pack_alloc() hands this out as the ro image (4-byte aligned). */
  readonly image: bigint;
  /** A private stack (7.x): the __percpu pointer __alloc_percpu_gfp() returns for this function. */
  readonly privStack?: bigint;
  /** aux->tail_call_reachable, aux->exception_cb. */
  readonly tailCallReachable?: boolean;
  readonly exceptionCb?: boolean;
  /** What bpf_out_stack_arg_cnt() returns for this function (7.x stack arguments). */
  readonly outStackArgCnt?: number;
}

export interface JitRequest {
  /** Program type, the kernel's name without BPF_PROG_TYPE_ (lower case): kprobe, tracepoint, struct_ops, ... */
  readonly type: string;
  readonly funcs: readonly FuncRequest[];
  readonly insns: readonly RawInsn[];
  /** Absolute targets of helper and kfunc calls, by flat instruction index (one for each such call). */
  readonly calls?: readonly { readonly insn: number; readonly target: bigint }[];
  /** X86_FEATURE_* names set in boot_cpu_data for this request (BMI2, RETHUNK, ...); all others are clear. */
  readonly features?: readonly string[];
  /** x86_return_thunk (default: the build's model address, build.ts MODEL_SYMBOLS). */
  readonly returnThunk?: bigint;
  /** func[0]->aux->exception_boundary. */
  readonly exceptionBoundary?: boolean;
  /** Whether the loader has CAP_SYS_ADMIN (default true); asked only for converted classic programs (type "unspec"). */
  readonly capSysAdmin?: boolean;
}

export interface FuncResult {
  /** The ro image address, and prog->bpf_func (the image plus the CFI preamble, if any). */
  readonly image: bigint;
  readonly bpfFunc: bigint;
  readonly jitedLen: number;
  /** Bytes from `image` to the end of the code: jitedLen + the CFI preamble. */
  readonly imageLen: number;
  /** imageLen bytes from `image`. */
  readonly bytes: Uint8Array;
  /**
   * do_jit()'s addrs[] after the final pass (captured in bpf_prog_fill_jited_linfo(), which gets
   * addrs + 1): offsets from `image`; addrs[0] is the end of the prologue, addrs[k + 1] the end of
   * BPF instruction k (so addrs[k] is where instruction k starts). len + 1 entries.
   */
  readonly addrs?: readonly number[];
  /**
   * aux->ksym.fp_start / fp_end exactly as the tree's do_jit() stores them (7.x), or
   * "unsupported" (6.12 has no such fields). In 7.2 they are offsets from different places:
   * fp_start from the image start (prog - temp right after the prologue, when temp holds the
   * code from the image start), fp_end from the start of the first BPF_EXIT's code (prog - temp
   * right after `leave`, temp holding only that instruction). Not corrected here.
   */
  readonly fp: { readonly start: number; readonly end: number } | "unsupported";
  /** The private stack: aux->priv_stack_ptr, the allocation, and its non-zero words after the JIT (the guard words). */
  readonly privStack?: {
    readonly ptr: bigint;
    readonly size: number;
    readonly align: number;
    readonly words: readonly { readonly off: number; readonly value: bigint }[];
  };
  readonly extable: readonly { readonly insnAddr: bigint; readonly insn: number; readonly fixup: number; readonly data: number }[];
}

export interface LogLine {
  /** printk level 0-7 (3 = KERN_ERR), -1 without one. */
  readonly level: number;
  readonly text: string;
}

export type FailureWhere = "insn" | "prologue" | "after" | "request" | "unmodelled" | "unknown";

export interface JitFailure {
  /** Function index, or -1 (the request as a whole). */
  readonly func: number;
  readonly where: FailureWhere;
  /** Function-relative BPF instruction index, when where is "insn" (or a request problem at an instruction). */
  readonly insn?: number;
  /** do_jit()'s return code (negative errno), when the shim could find it (see shim/jit_tu.c). */
  readonly rc?: number;
  /** Its name: EINVAL, EFAULT, ERANGE, ... */
  readonly errno?: string;
  /** What the shim says happened; the printk lines are in the response's log. */
  readonly message: string;
}

export type JitResponse =
  | { readonly ok: true; readonly funcs: readonly FuncResult[]; readonly log: readonly LogLine[] }
  | { readonly ok: false; readonly error: JitFailure; readonly log: readonly LogLine[] };

export interface Hello {
  readonly protocol: number;
  /** The tree's kernel release (UTS_RELEASE). */
  readonly release: string;
  /** priv_stack, fp_window, stack_args, env_arg. */
  readonly caps: ReadonlySet<string>;
}

/** A malformed request: the field, by path (`funcs[1].len`), and what is wrong. */
export class JitRequestError extends Error {
  override name = "JitRequestError";
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
  }
}

/** The shim's output does not follow the protocol. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const ERRNO: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 7: "E2BIG", 12: "ENOMEM", 14: "EFAULT", 16: "EBUSY", 22: "EINVAL", 28: "ENOSPC", 34: "ERANGE",
  95: "EOPNOTSUPP", 524: "ENOTSUPP",
};
export const errnoName = (rc: number): string | undefined => ERRNO[-rc];

const U64 = (1n << 64n) - 1n;
const isInt = (v: unknown, lo: number, hi: number): v is number => typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi;
const hex = (v: bigint) => v.toString(16);

function mustU64(v: unknown, path: string): bigint {
  if (typeof v !== "bigint" || v < 0n || v > U64) throw new JitRequestError(path, `must be a bigint in 0..2^64-1, got ${String(v)}`);
  return v;
}

/** The request's lines, after checking every field (throws JitRequestError). */
export function encodeRequest(seq: number, req: JitRequest): string {
  const out: string[] = [`begin ${seq}`];
  if (typeof req.type !== "string" || !/^[a-z_]+$/.test(req.type)) throw new JitRequestError("type", `must be a program type name, got ${String(req.type)}`);
  out.push(`type ${req.type}`);
  for (const [i, f] of (req.features ?? []).entries()) {
    if (typeof f !== "string" || !/^[A-Z0-9_]+$/.test(f)) throw new JitRequestError(`features[${i}]`, `must be an X86_FEATURE_ name such as BMI2, got ${String(f)}`);
    out.push(`feature ${f}`);
  }
  if (req.returnThunk !== undefined) out.push(`return_thunk ${hex(mustU64(req.returnThunk, "returnThunk"))}`);
  if (req.exceptionBoundary !== undefined) out.push(`exception_boundary ${req.exceptionBoundary ? 1 : 0}`);
  if (req.capSysAdmin !== undefined) out.push(`cap_sys_admin ${req.capSysAdmin ? 1 : 0}`);
  if (!Array.isArray(req.funcs) || req.funcs.length === 0) throw new JitRequestError("funcs", "needs at least one function (the main program)");
  let at = 0;
  req.funcs.forEach((f, i) => {
    const p = `funcs[${i}]`;
    if (!isInt(f.start, 0, 0xffffffff) || f.start !== at) throw new JitRequestError(`${p}.start`, `must be ${at} (functions are contiguous, in order), got ${String(f.start)}`);
    if (!isInt(f.len, 1, 0xffffffff)) throw new JitRequestError(`${p}.len`, `must be a positive integer, got ${String(f.len)}`);
    if (!isInt(f.stackDepth, 0, 0xffffffff)) throw new JitRequestError(`${p}.stackDepth`, `must be a non-negative integer, got ${String(f.stackDepth)}`);
    if (mustU64(f.image, `${p}.image`) === 0n) throw new JitRequestError(`${p}.image`, "must not be 0");
    at += f.len;
    out.push(`func ${f.start} ${f.len} ${f.stackDepth} ${hex(f.image)}`);
    if (f.privStack !== undefined) {
      if (mustU64(f.privStack, `${p}.privStack`) === 0n) throw new JitRequestError(`${p}.privStack`, "must not be 0");
      out.push(`priv ${i} ${hex(f.privStack)}`);
    }
    if (f.tailCallReachable !== undefined) out.push(`tail_call_reachable ${i} ${f.tailCallReachable ? 1 : 0}`);
    if (f.exceptionCb !== undefined) out.push(`exception_cb ${i} ${f.exceptionCb ? 1 : 0}`);
    if (f.outStackArgCnt !== undefined) {
      if (!isInt(f.outStackArgCnt, 0, 12)) throw new JitRequestError(`${p}.outStackArgCnt`, `must be 0..12, got ${String(f.outStackArgCnt)}`);
      out.push(`out_stack_arg_cnt ${i} ${f.outStackArgCnt}`);
    }
  });
  if (!Array.isArray(req.insns) || req.insns.length !== at) throw new JitRequestError("insns", `the functions cover ${at} instructions, insns has ${Array.isArray(req.insns) ? req.insns.length : "none"}`);
  req.insns.forEach((x, i) => {
    if (!isInt(x.code, 0, 255) || !isInt(x.dst, 0, 15) || !isInt(x.src, 0, 15) || !isInt(x.off, -32768, 32767) || !isInt(x.imm, -0x80000000, 0xffffffff)) {
      throw new JitRequestError(`insns[${i}]`, `code 0..255, dst and src 0..15, off s16, imm 32-bit; got ${JSON.stringify(x)}`);
    }
    out.push(`insn ${x.code} ${x.dst} ${x.src} ${x.off} ${x.imm}`);
  });
  for (const [k, c] of (req.calls ?? []).entries()) {
    if (!isInt(c.insn, 0, at - 1)) throw new JitRequestError(`calls[${k}].insn`, `must be an instruction index 0..${at - 1}, got ${String(c.insn)}`);
    out.push(`call ${c.insn} ${hex(mustU64(c.target, `calls[${k}].target`))}`);
  }
  out.push("end", "");
  return out.join("\n");
}

/** Parse `hello stackcheck-kjit <protocol> <release> <caps>`. */
export function parseHello(line: string): Hello {
  const m = /^hello stackcheck-kjit (\d+) (\S+) (\S+)$/.exec(line);
  if (m === null) throw new ProtocolError(`expected the shim's hello line, got: ${line.slice(0, 200)}`);
  const protocol = Number(m[1]);
  if (protocol !== PROTOCOL_VERSION) throw new ProtocolError(`the shim speaks protocol ${protocol}, this code ${PROTOCOL_VERSION}: rebuild it`);
  return { protocol, release: m[2]!, caps: new Set(m[3] === "-" ? [] : m[3]!.split(",")) };
}

function badAnswer(seq: number, why: string, line?: string): never {
  throw new ProtocolError(`answer ${seq}: ${why}${line !== undefined ? `: ${line.slice(0, 200)}` : ""}`);
}

const unescape = (s: string) => s.replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

type MutableResult = { -readonly [K in keyof FuncResult]: FuncResult[K] };

/** Parse one answer (the lines from `result <seq>` to `done <seq>`). Throws ProtocolError. */
export function parseResponse(seq: number, lines: readonly string[]): JitResponse {
  const bad = (why: string, line?: string): never => badAnswer(seq, why, line);
  const head = /^result (\d+) (ok (\d+)|error)$/.exec(lines[0] ?? "");
  if (head === null || Number(head[1]) !== seq) bad("no `result` line for this request", lines[0] ?? "(nothing)");
  if (lines.at(-1) !== `done ${seq}`) bad("no `done` line", lines.at(-1));
  const log: LogLine[] = [];
  const body = lines.slice(1, -1).filter((l) => {
    if (!l.startsWith("log ")) return true;
    const m = /^log (-?\d+) (.*)$/.exec(l);
    if (m === null) bad("malformed log line", l);
    log.push({ level: Number(m![1]), text: unescape(m![2]!) });
    return false;
  });
  if (head![2] === "error") {
    const e = /^error (-?\d+) (insn|prologue|after|request|unmodelled|unknown) (-?\d+) (-?\d+)$/.exec(body[0] ?? "");
    const msg = /^message (.*)$/.exec(body[1] ?? "");
    if (e === null || msg === null || body.length !== 2) bad("malformed error answer", body.join(" | "));
    const rc = Number(e![4]), insn = Number(e![3]);
    const errno = rc < 0 ? errnoName(rc) : undefined;
    return {
      ok: false, log,
      error: { func: Number(e![1]), where: e![2] as FailureWhere, ...(insn >= 0 ? { insn } : {}), ...(rc < 0 ? { rc } : {}), ...(errno !== undefined ? { errno } : {}), message: msg![1]! },
    };
  }
  const n = Number(head![3]);
  const funcs: Partial<MutableResult>[] = [];
  for (let i = 0; i < n; i++) funcs.push({ extable: [] });
  for (const l of body) {
    const [key, fi, ...rest] = l.split(" ");
    const f = funcs[Number(fi)];
    if (fi === undefined || !/^\d+$/.test(fi) || f === undefined) bad("malformed line or function index", l);
    if (f === undefined) continue;
    switch (key) {
      case "func": {
        if (rest.length !== 4) bad("malformed func line", l);
        f.image = BigInt(`0x${rest[0]}`);
        f.bpfFunc = BigInt(`0x${rest[1]}`);
        f.jitedLen = Number(rest[2]);
        f.imageLen = Number(rest[3]);
        break;
      }
      case "bytes":
        if (rest.length !== 1 || rest[0]!.length % 2 !== 0) bad("malformed bytes line", l);
        f.bytes = new Uint8Array(Buffer.from(rest[0]!, "hex"));
        if (f.bytes.length * 2 !== rest[0]!.length) bad("bytes are not hex", l);
        break;
      case "addrs":
        f.addrs = rest.map(Number);
        break;
      case "fp":
        f.fp = rest[0] === "unsupported" ? "unsupported" : { start: Number(rest[0]), end: Number(rest[1]) };
        break;
      case "priv":
        f.privStack = {
          ptr: BigInt(`0x${rest[0]}`), size: Number(rest[1]), align: Number(rest[2]),
          words: rest.slice(3).map((w) => {
            const [off, v] = w.split(":");
            return { off: Number(off), value: BigInt(`0x${v}`) };
          }),
        };
        break;
      case "extable":
        (f.extable as { insnAddr: bigint; insn: number; fixup: number; data: number }[]).push({
          insnAddr: BigInt(`0x${rest[1]}`), insn: Number(rest[2]), fixup: Number(rest[3]), data: Number(rest[4]),
        });
        break;
      default:
        bad("unknown answer line", l);
    }
  }
  funcs.forEach((f, i) => {
    if (f.image === undefined || f.bytes === undefined || f.fp === undefined) bad(`function ${i} is incomplete`);
    if (f.bytes!.length !== f.imageLen) bad(`function ${i}: ${f.bytes!.length} bytes, image_len ${f.imageLen}`);
  });
  return { ok: true, funcs: funcs as FuncResult[], log };
}

/** A failure as one sentence: function, instruction (with its opcode), message, printk text, errno. */
export function describeFailure(req: JitRequest, r: Extract<JitResponse, { ok: false }>): string {
  const e = r.error;
  const parts: string[] = [];
  if (e.func >= 0) parts.push(`function ${e.func}`);
  if (e.insn !== undefined) {
    const f = req.funcs[e.func];
    const x = f !== undefined ? req.insns[f.start + e.insn] : undefined;
    parts.push(`instruction ${e.insn}${x !== undefined ? ` (code 0x${x.code.toString(16).padStart(2, "0")})` : ""}`);
  } else if (e.where !== "insn" && e.where !== "unknown") parts.push(e.where);
  const printk = r.log.filter((l) => l.level >= 0 && l.level <= 3).map((l) => l.text);
  const rc = e.rc !== undefined ? ` (${e.errno !== undefined ? `-${e.errno}` : e.rc})` : "";
  return `${parts.length > 0 ? `${parts.join(", ")}: ` : ""}${[...printk, e.message].join("; ")}${rc}`;
}
