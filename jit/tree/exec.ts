// Running the external tools (apt-get, dpkg-deb, tar, make, gcc): asynchronously with their
// output kept for the error message, or synchronously for the short ones.
import { spawn, spawnSync } from "node:child_process";

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Called with each line the command writes (stdout and stderr). */
  readonly onLine?: (line: string) => void;
}

/** Keep at most this much of each stream (the end of it: that is where errors are). */
const KEEP = 256 * 1024;

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "" };
    const partial = { stdout: "", stderr: "" };
    const take = (which: "stdout" | "stderr") => (chunk: Buffer) => {
      const s = chunk.toString("utf8");
      out[which] = (out[which] + s).slice(-KEEP);
      if (opts.onLine === undefined) return;
      const lines = (partial[which] + s).split("\n");
      partial[which] = lines.pop() ?? "";
      for (const l of lines) opts.onLine(l);
    };
    child.stdout.on("data", take("stdout"));
    child.stderr.on("data", take("stderr"));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (opts.onLine !== undefined) for (const p of [partial.stdout, partial.stderr]) if (p !== "") opts.onLine(p);
      resolve({ code, signal, ...out });
    });
  });
}

export function runSync(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, input: opts.input, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (r.error !== undefined) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** The last `n` non-empty lines of a command's output, for an error message. */
export function tail(r: RunResult, n = 25): string {
  const lines = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.trim() !== "");
  return lines.slice(-n).map((l) => `    ${l}`).join("\n");
}

/** The first lines that look like compiler errors (`file:line:col: error: ...`), else the tail. */
export function firstErrors(r: RunResult, n = 12): string {
  const lines = `${r.stderr}\n${r.stdout}`.split("\n");
  const at = lines.findIndex((l) => /\berror\b|undefined reference|multiple definition/.test(l));
  if (at < 0) return tail(r, n);
  return lines.slice(at, at + n).filter((l) => l.trim() !== "").map((l) => `    ${l}`).join("\n");
}

/** How a command ended, for a message: "exit code 2" or "signal SIGKILL". */
export function howEnded(r: RunResult): string {
  return r.signal !== null ? `signal ${r.signal}` : `exit code ${r.code}`;
}
