// The TypeScript end of the native runner (runner.c): compile it with the system `cc` into a
// temporary directory, keep one process for a whole suite, and run cases through it.
//
// Protocol (little-endian; one response per request, in order):
//   request:  u32 "SCC1"
//             u32 nregions, then per region: u64 start, u64 size, u32 prot (r=1 w=2 x=4), u32 0
//             u32 nloads,   then per load:   u64 addr, u64 len, len bytes
//             u64 regs[16] (rax..r15, encoding order), u64 rip, u64 rflags (arithmetic bits used)
//             u64 gs base, u64 stop address (page aligned; the runner maps its stub there)
//             u32 ndumps,   then per dump:   u64 addr, u64 size
//             u32 timeout in ms
//   response: u32 "SCR1", u32 total length, u32 status (0 stopped, 1 signal, 2 timeout, 3 error),
//             u32 signal, u64 fault rip, u64 fault address, u64 regs[16], u64 rip, u64 rflags,
//             u32 ndumps, the dumps' bytes in order, u32 error length, error text
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const SOURCE = fileURLToPath(new URL("./runner.c", import.meta.url));
const REQ_MAGIC = 0x31434353;
const RESP_MAGIC = 0x31524353;

export interface NativeRegion {
  readonly start: bigint;
  readonly size: number;
  /** `r-x`, `rw-`, `r--`. */
  readonly perms: string;
}

export interface NativeCase {
  readonly regions: readonly NativeRegion[];
  readonly loads: readonly { readonly addr: bigint; readonly bytes: Uint8Array }[];
  /** The 16 general registers in encoding order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15). */
  readonly regs: readonly bigint[];
  readonly rip: bigint;
  /** Only the arithmetic flags are loaded (IF and bit 1 are set as in any user process). */
  readonly rflags: number;
  readonly gsBase: bigint;
  /** Page-aligned address of the stop stub; reaching it ends the case. */
  readonly stop: bigint;
  readonly dumps: readonly { readonly addr: bigint; readonly size: number }[];
  readonly timeoutMs?: number;
}

/** The machine state at the end: at the stop stub, at a fault, or where the timer found it. */
export interface NativeState {
  readonly regs: readonly bigint[];
  readonly rip: bigint;
  readonly rflags: number;
  readonly dumps: readonly Uint8Array[];
}

export type NativeOutcome =
  | ({ readonly kind: "stopped" } & NativeState)
  | ({ readonly kind: "signal"; readonly signal: string; readonly address: bigint } & NativeState)
  | ({ readonly kind: "timeout" } & NativeState)
  | { readonly kind: "error"; readonly message: string };

/** The toolchain or platform the native runner needs is missing: a message, not a stack trace. */
export class NativeToolchainError extends Error {
  override name = "NativeToolchainError";
  constructor(message: string) {
    super(message);
    this.stack = `${this.name}: ${message}`;
  }
}

/**
 * Compile runner.c with `cc` (from PATH, or `options.cc`) into a new temporary directory and
 * return the binary's path. Throws a NativeToolchainError naming what is missing.
 */
export function compileRunner(options: { readonly cc?: string; readonly env?: NodeJS.ProcessEnv } = {}): string {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new NativeToolchainError(`the differential tests run x86-64 code natively and need an x86-64 Linux host; this is ${process.platform}/${process.arch}`);
  }
  const cc = options.cc ?? "cc";
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-native-"));
  const out = join(dir, "runner");
  const r = spawnSync(cc, ["-O2", "-std=gnu11", "-Wall", "-Werror", "-o", out, SOURCE], { encoding: "utf8", env: options.env ?? process.env });
  if (r.error !== undefined) {
    rmSync(dir, { recursive: true, force: true });
    if ((r.error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new NativeToolchainError(
        `the differential tests against the real CPU compile a small C runner (test/native/runner.c) with \`${cc}\`, ` +
        `and \`${cc}\` was not found on PATH. Install a C compiler (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; ` +
        `Alpine: apk add build-base) and run the tests again.`,
      );
    }
    throw new NativeToolchainError(`running \`${cc}\` failed: ${r.error.message}`);
  }
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new NativeToolchainError(`\`${cc}\` could not compile test/native/runner.c:\n${r.stderr}`);
  }
  return out;
}

const PROT = { r: 1, w: 2, x: 4 } as const;
function protOf(perms: string): number {
  if (!/^[r-][w-][x-]$/.test(perms)) throw new RangeError(`native runner: perms '${perms}' must look like 'r-x'`);
  return (perms[0] === "r" ? PROT.r : 0) | (perms[1] === "w" ? PROT.w : 0) | (perms[2] === "x" ? PROT.x : 0);
}

/** Serialize one request. */
export function encodeCase(c: NativeCase): Buffer {
  if (c.regs.length !== 16) throw new RangeError(`native runner: ${c.regs.length} registers; expected 16`);
  const loadBytes = c.loads.reduce((n, l) => n + l.bytes.length, 0);
  const size = 4 + 4 + c.regions.length * 24 + 4 + c.loads.length * 16 + loadBytes + 18 * 8 + 16 + 4 + c.dumps.length * 16 + 4;
  const b = Buffer.alloc(size);
  let o = 0;
  const u32 = (v: number) => { b.writeUInt32LE(v >>> 0, o); o += 4; };
  const u64 = (v: bigint) => { b.writeBigUInt64LE(BigInt.asUintN(64, v), o); o += 8; };
  u32(REQ_MAGIC);
  u32(c.regions.length);
  for (const r of c.regions) { u64(r.start); u64(BigInt(r.size)); u32(protOf(r.perms)); u32(0); }
  u32(c.loads.length);
  for (const l of c.loads) { u64(l.addr); u64(BigInt(l.bytes.length)); b.set(l.bytes, o); o += l.bytes.length; }
  for (const v of c.regs) u64(v);
  u64(c.rip);
  u64(BigInt(c.rflags));
  u64(c.gsBase);
  u64(c.stop);
  u32(c.dumps.length);
  for (const d of c.dumps) { u64(d.addr); u64(BigInt(d.size)); }
  u32(c.timeoutMs ?? 1000);
  return b;
}

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, n]) => [n as number, name]));

/** Parse one response (the whole frame). */
export function decodeOutcome(b: Buffer, c: NativeCase): NativeOutcome {
  if (b.readUInt32LE(0) !== RESP_MAGIC) throw new Error("native runner: bad response magic");
  let o = 8;
  const u32 = () => { const v = b.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = b.readBigUInt64LE(o); o += 8; return v; };
  const status = u32(), signal = u32(), faultRip = u64(), address = u64();
  const regs = Array.from({ length: 16 }, u64);
  const rip = u64(), rflags = Number(u64());
  const nd = u32();
  const dumps = c.dumps.slice(0, nd).map((d) => { const x = new Uint8Array(b.subarray(o, o + d.size)); o += d.size; return x; });
  const elen = u32();
  const message = b.subarray(o, o + elen).toString("utf8");
  const state = { regs, rip, rflags, dumps };
  switch (status) {
    case 0: return { kind: "stopped", ...state };
    case 1: return { kind: "signal", signal: SIGNAL_NAMES.get(signal) ?? `signal ${signal}`, address, ...state, rip: faultRip };
    case 2: return { kind: "timeout", ...state };
    default: return { kind: "error", message };
  }
}

/** One runner process; cases run one after another in it. */
export class NativeRunner {
  private buf: Buffer = Buffer.alloc(0);
  private readonly pending: { c: NativeCase; resolve: (o: NativeOutcome) => void; reject: (e: Error) => void }[] = [];
  private stderr = "";
  private dead: Error | undefined;

  private constructor(private readonly child: ChildProcessWithoutNullStreams, private readonly dir: string) {
    child.stdout.on("data", (d: Buffer) => this.onData(d));
    child.stderr.on("data", (d: Buffer) => { this.stderr += d.toString("utf8"); });
    child.on("exit", (code, sig) => this.fail(new Error(`native runner exited (${sig ?? `code ${code}`})${this.stderr ? `: ${this.stderr.trim()}` : ""}`)));
    child.on("error", (e) => this.fail(e));
    child.stdin.on("error", () => {}); // reported through "exit"
  }

  /** Compile and start a runner. */
  static start(): NativeRunner {
    const bin = compileRunner();
    const dir = join(bin, "..");
    return new NativeRunner(spawn(bin, [], { stdio: ["pipe", "pipe", "pipe"] }), dir);
  }

  run(c: NativeCase): Promise<NativeOutcome> {
    if (this.dead) return Promise.reject(this.dead);
    const req = encodeCase(c);
    return new Promise((resolve, reject) => {
      this.pending.push({ c, resolve, reject });
      this.child.stdin.write(req);
    });
  }

  /** End the process (closing its input) and remove the temporary directory. */
  async close(): Promise<void> {
    if (!this.dead) {
      const exited = new Promise<void>((res) => this.child.once("exit", () => res()));
      this.child.stdin.end();
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 8) {
      const total = this.buf.readUInt32LE(4);
      if (this.buf.length < total) return;
      const frame = this.buf.subarray(0, total);
      this.buf = this.buf.subarray(total);
      const p = this.pending.shift();
      if (p === undefined) { this.fail(new Error("native runner: a response nobody asked for")); return; }
      try {
        p.resolve(decodeOutcome(frame, p.c));
      } catch (e) {
        p.reject(e as Error);
      }
    }
  }

  private fail(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    for (const p of this.pending.splice(0)) p.reject(e);
  }
}
