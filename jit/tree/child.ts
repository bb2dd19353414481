// KernelJit: the tree's JIT as a synchronous function. One shim process per KernelJit (one per
// campaign, one per worker thread).
//
// The calling thread talks to the shim with blocking reads and writes on two FIFOs (a private
// temporary directory; the files are unlinked once open), so a request costs one write, the
// shim's work and one wake-up: about 40 µs for a two-function program on the 2-core machine.
// A first design, a worker thread doing async pipe I/O while the caller blocked in Atomics.wait,
// measured 390 µs for the same program (two thread hand-offs and a libuv wake-up per request).
//
// A hang cannot be ended by the blocked caller, so a watchdog thread (watchdog.js) kills a shim
// that has not answered within `timeoutMs`; its output then ends and the read returns. A crash (a
// signal, an exit), a hang or output that breaks the protocol restarts the shim and throws
// KernelJitCrash carrying the request; the caller never hangs. Neither the shim nor the watchdog
// keeps the process alive, and close() ends both.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, constants, ftruncateSync, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { buildShim, type BuildOptions, type ShimBinary } from "./build.ts";
import { TreeError } from "./errors.ts";
import { describeFailure, encodeRequest, parseHello, parseResponse, ProtocolError, type Hello, type JitRequest, type JitResponse } from "./protocol.ts";
import { openTree, type KernelTree } from "./tree.ts";

export type CrashReason = "exit" | "signal" | "timeout" | "garbage";

/** The shim died, hung or broke the protocol while JITing `request`. It has been restarted. */
export class KernelJitCrash extends Error {
  override name = "KernelJitCrash";
  constructor(
    readonly reason: CrashReason,
    /** The program being JITed (replay it to reproduce), or undefined at start-up. */
    readonly request: JitRequest | undefined,
    readonly detail: string,
    /** The end of the shim's stderr (its own crash report: signal, rip, fault address). */
    readonly stderr: string,
  ) {
    super(`kernel JIT shim ${reason}: ${detail}${request !== undefined ? ` (request: ${request.type} program, ${request.funcs.length} function${request.funcs.length === 1 ? "" : "s"}, ${request.insns.length} instructions)` : ""}${stderr.trim() !== "" ? `\n  shim stderr: ${stderr.trim().split("\n").slice(-3).join("\n  ")}` : ""}`);
  }
}

/** The program did not JIT: the error answer as an exception (KernelJit.jitOrThrow). */
export class KernelJitError extends Error {
  override name = "KernelJitError";
  constructor(readonly request: JitRequest, readonly response: Extract<JitResponse, { ok: false }>) {
    super(describeFailure(request, response));
  }
}

export interface KernelJitOptions extends BuildOptions {
  /** A prepared tree (openTree()), or its directory; default $STACKCHECK_KERNEL_TREE. */
  readonly tree?: KernelTree | string;
  /** A shim binary built before (skips openTree/buildShim). */
  readonly binary?: string;
  /** How long one request may take before the shim counts as hung (default 5000 ms). */
  readonly timeoutMs?: number;
}

/** Watchdog slots (watchdog.js). */
const STATE = 0, PID = 1, KILLED = 2;
const WATCHDOG_URL = new URL("./watchdog.js", import.meta.url);
const STDERR_KEEP = 4096;

interface Shim {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly write: number;
  readonly read: number;
  /** Settles when libuv has reaped the process (its 'exit' event). */
  readonly exited: Promise<void>;
}

export class KernelJit {
  readonly hello: Hello;
  readonly binary: ShimBinary | { readonly path: string };
  readonly timeoutMs: number;
  /** How many times the shim was restarted after a crash, hang or protocol error. */
  restarts = 0;
  private readonly stderrFd: number;
  private readonly slots: Int32Array;
  private readonly watchdog: Worker;
  private readonly buf = Buffer.allocUnsafe(1 << 16);
  private shim: Shim | undefined;
  private pending = "";
  private seq = 0;
  private killedSeen = 0;
  private closed = false;
  private lastExit: Promise<void> = Promise.resolve();

  constructor(opts: KernelJitOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 5000;
    if (opts.binary !== undefined) {
      this.binary = { path: opts.binary };
    } else {
      const tree = typeof opts.tree === "object" ? opts.tree : openTree(opts.tree, opts.env);
      this.binary = buildShim(tree, opts);
    }
    // The shim's stderr: an unlinked file (its end is the crash report a KernelJitCrash carries).
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-kjit-"));
    this.stderrFd = openSync(join(dir, "stderr"), constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    rmSync(dir, { recursive: true, force: true });
    this.slots = new Int32Array(new SharedArrayBuffer(16));
    this.watchdog = new Worker(WATCHDOG_URL, { workerData: { sab: this.slots.buffer, timeoutMs: this.timeoutMs, periodMs: Math.min(250, Math.max(10, this.timeoutMs / 4)) } });
    this.watchdog.unref();
    this.watchdog.on("error", () => {});
    try {
      this.hello = this.start();
    } catch (e) {
      this.close();
      if (e instanceof KernelJitCrash) throw new TreeError("build", `the kernel JIT shim ${this.binary.path} did not start: ${e.detail}${e.stderr !== "" ? `; stderr: ${e.stderr.trim()}` : ""}`);
      throw e;
    }
  }

  /** The shim process's pid (it changes when the shim is restarted). */
  get pid(): number | undefined {
    return this.shim?.pid;
  }

  /** JIT one program. A JIT failure is an `ok: false` answer; a crash or hang throws KernelJitCrash. */
  jit(req: JitRequest): JitResponse {
    if (this.closed) throw new Error("KernelJit: jit() after close()");
    const seq = ++this.seq;
    const text = encodeRequest(seq, req);
    // The watchdog killed the shim just after its last answer: start a fresh one first.
    if (Atomics.load(this.slots, KILLED) !== this.killedSeen) this.restart();
    if (this.shim === undefined) this.restart();
    const shim = this.shim!;
    Atomics.store(this.slots, STATE, seq);
    try {
      writeAll(shim.write, text);
      const lines = this.readAnswer(shim, seq);
      Atomics.store(this.slots, STATE, 0);
      return parseResponse(seq, lines);
    } catch (e) {
      Atomics.store(this.slots, STATE, 0);
      if (e instanceof ShimGone) throw this.crashed(req, seq, e.message);
      if (!(e instanceof ProtocolError)) throw e;
      this.stop();
      this.restarts++;
      throw new KernelJitCrash("garbage", req, e.message, this.stderrTail());
    }
  }

  /** Like jit(), but a JIT failure throws KernelJitError (naming function, instruction and the printk text). */
  jitOrThrow(req: JitRequest): Extract<JitResponse, { ok: true }> {
    const r = this.jit(req);
    if (!r.ok) throw new KernelJitError(req, r);
    return r;
  }

  /**
   * End the shim and the watchdog; everything happens before close() returns. The promise
   * settles when the shim's process has been reaped, which happens on the calling thread's event
   * loop: a worker thread that ends right after close() should await it first, or the exited
   * shim stays a zombie until the process ends. Idempotent.
   */
  close(): Promise<void> {
    if (this.closed) return this.lastExit;
    this.closed = true;
    this.lastExit = this.stop();
    Atomics.store(this.slots, STATE, -1);
    Atomics.notify(this.slots, STATE);
    void this.watchdog.terminate();
    closeSync(this.stderrFd);
    return this.lastExit;
  }

  /** Spawn the shim on two FIFOs (in a private directory, removed once they are open) and read its hello line. */
  private start(): Hello {
    const dir = mkdtempSync(join(tmpdir(), "stackcheck-kjit-"));
    const fin = join(dir, "in"), fout = join(dir, "out");
    const mk = spawnSync("mkfifo", ["-m", "600", fin, fout]);
    if (mk.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new TreeError("missing-tool", `mkfifo failed: ${mk.stderr?.toString() ?? mk.error?.message}`, "apt-get install -y coreutils");
    }
    // Opening order matters: a FIFO's read-only or write-only open blocks until the other side
    // exists, so a read-write descriptor stands in while the real ends open. The shim's stdin is
    // read-only and ours write-only (a dead shim makes our write fail with EPIPE); its stdout is
    // read-write (the shim never reads it) and ours read-only, so our read sees end-of-file
    // exactly when the shim's descriptor is gone.
    const placeholder = openSync(fin, constants.O_RDWR);
    const childIn = openSync(fin, constants.O_RDONLY);
    const write = openSync(fin, constants.O_WRONLY);
    closeSync(placeholder);
    const childOut = openSync(fout, constants.O_RDWR);
    const read = openSync(fout, constants.O_RDONLY);
    rmSync(dir, { recursive: true, force: true });
    ftruncateSync(this.stderrFd, 0);
    let proc: ChildProcess;
    try {
      proc = spawn(this.binary.path, [], { stdio: [childIn, childOut, this.stderrFd] });
    } finally {
      closeSync(childIn);
      closeSync(childOut);
    }
    proc.on("error", () => {}); // ENOENT and the like: the read below sees end-of-file
    const exited = new Promise<void>((res) => {
      proc.once("exit", () => res());
      proc.once("error", () => res());
    });
    proc.unref();
    const shim: Shim = { proc, pid: proc.pid ?? -1, write, read, exited };
    this.shim = shim;
    this.pending = "";
    Atomics.store(this.slots, PID, shim.pid);
    // the start-up is watched like a request: a shim that never says hello is killed too
    const seq = ++this.seq;
    Atomics.store(this.slots, STATE, seq);
    let line: string;
    try {
      line = this.readLine(shim);
    } catch (e) {
      Atomics.store(this.slots, STATE, 0);
      if (!(e instanceof ShimGone)) throw e;
      throw this.crashed(undefined, seq, e.message);
    }
    Atomics.store(this.slots, STATE, 0);
    return parseHello(line);
  }

  private restart(): void {
    this.stop();
    this.killedSeen = Atomics.load(this.slots, KILLED);
    const hello = this.start();
    if (hello.release !== this.hello.release) throw new ProtocolError(`the restarted shim reports ${hello.release}, not ${this.hello.release}`);
  }

  /**
   * Close our ends (the shim sees end-of-file and exits) and make sure it is gone. The process
   * is referenced again so that the event loop stays up until it has reaped it (at once: it
   * is dead or dying).
   */
  private stop(): Promise<void> {
    const s = this.shim;
    if (s === undefined) return Promise.resolve();
    this.shim = undefined;
    closeSync(s.write);
    closeSync(s.read);
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      s.proc.kill("SIGKILL");
      s.proc.ref();
    }
    return s.exited;
  }

  /** The shim is gone (or hung and killed): say why, restart it, and make the error. */
  private crashed(req: JitRequest | undefined, seq: number, how: string): KernelJitCrash {
    const shim = this.shim;
    const timedOut = Atomics.load(this.slots, KILLED) === seq;
    const status = shim !== undefined ? exitStatus(shim.pid) : undefined;
    const stderr = this.stderrTail();
    this.stop();
    this.killedSeen = Atomics.load(this.slots, KILLED);
    let reason: CrashReason, detail: string;
    if (timedOut) {
      reason = "timeout";
      detail = `no answer within ${this.timeoutMs} ms (the watchdog killed the shim)`;
    } else if (status?.signal !== undefined) {
      reason = "signal";
      detail = `the shim was killed by signal ${status.signal} (${how})`;
    } else {
      reason = "exit";
      detail = `the shim ${status?.code !== undefined ? `exited with code ${status.code}` : "went away"} (${how})`;
    }
    if (req !== undefined) {
      this.restarts++;
      // Start the next shim now, so that the next request finds it ready; if even that fails,
      // the next jit() tries again.
      try {
        this.restart();
      } catch {
        this.stop();
      }
    }
    return new KernelJitCrash(reason, req, detail, stderr);
  }

  private stderrTail(): string {
    try {
      const size = fstatSync(this.stderrFd).size;
      const n = Math.min(size, STDERR_KEEP);
      const b = Buffer.alloc(n);
      readSync(this.stderrFd, b, 0, n, size - n);
      return b.toString("utf8");
    } catch {
      return "";
    }
  }

  private fill(shim: Shim): void {
    let n: number;
    try {
      n = readSync(shim.read, this.buf, 0, this.buf.length, null);
    } catch (e) {
      throw new ShimGone(`reading its output failed: ${(e as Error).message}`);
    }
    if (n === 0) throw new ShimGone("its output ended");
    this.pending += this.buf.toString("latin1", 0, n);
  }

  private readLine(shim: Shim): string {
    for (;;) {
      const nl = this.pending.indexOf("\n");
      if (nl >= 0) {
        const line = this.pending.slice(0, nl);
        this.pending = this.pending.slice(nl + 1);
        return line;
      }
      this.fill(shim);
    }
  }

  /**
   * Read up to and including `done <seq>`; the answer is always the last thing the shim wrote.
   * An answer that does not start with `result <seq> ` is garbage at once (not after a timeout).
   */
  private readAnswer(shim: Shim, seq: number): string[] {
    const end = `done ${seq}\n`, head = `result ${seq} `;
    while (!this.pending.endsWith(end)) {
      if (this.pending.length >= head.length && !this.pending.startsWith(head)) {
        throw new ProtocolError(`answer ${seq}: expected \`${head.trim()}\`, got: ${this.pending.split("\n")[0]!.slice(0, 200)}`);
      }
      this.fill(shim);
    }
    const lines = this.pending.slice(0, -1).split("\n");
    this.pending = "";
    return lines;
  }
}

class ShimGone extends Error {}

function writeAll(fd: number, text: string): void {
  const b = Buffer.from(text, "latin1");
  let off = 0;
  try {
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
  } catch (e) {
    throw new ShimGone(`writing the request failed: ${(e as Error).message}`);
  }
}

/**
 * How a dead shim ended, from /proc/<pid>/stat's exit_code (field 52, waitpid format) while it
 * is a zombie (libuv reaps it only when this thread returns to its event loop). Waits up to
 * 200 ms for the process to finish dying; undefined if it cannot tell.
 */
function exitStatus(pid: number): { code?: number; signal?: number } | undefined {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 200; i++) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      return undefined;
    }
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") {
      const code = Number(fields[49]);
      if (!Number.isInteger(code)) return undefined;
      return (code & 0x7f) !== 0 ? { signal: code & 0x7f } : { code: (code >> 8) & 0xff };
    }
    Atomics.wait(nap, 0, 0, 1);
  }
  return undefined;
}
