// A user's strategy module behind a boundary (issue: a mistake in the user's own module is an
// input error naming the module, the hook and the function, never a stack trace of ours or a
// harness error). Every hook call is caught; what a hook returns is checked; what the module
// exposes is read once, here.
import { StrategyError, type FuncJit, type PrivateRequest, type Strategy } from "../strategy.ts";
import type { X86Reg } from "../x86/encode.ts";
import { BroadcastChannel, threadId } from "node:worker_threads";

const REGS: readonly X86Reg[] = ["rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/** What was thrown, in a line (or `lines` lines): an Error's name and message, or the value. */
export function thrownText(e: unknown, lines = 1): string {
  if (e instanceof Error) return `${e.name}: ${e.message.split("\n").slice(0, lines).join("\n  ")}`;
  if (typeof e === "string") return JSON.stringify(e);
  try {
    return `a non-Error value: ${String(e)}`;
  } catch {
    return "a non-Error value that cannot be printed";
  }
}

/**
 * At most three lines of the thrown error's stack that are in the user's file (where in their
 * code). A module tsx loaded as CommonJS runs from a `data:` URL holding its whole transpiled
 * text: such a frame is shown as the function and the file, without the URL.
 */
function userFrames(e: unknown, file: string): string {
  const stack = e instanceof Error && typeof e.stack === "string" ? e.stack : "";
  const encoded = encodeURIComponent(file);
  const lines = stack.split("\n").slice(1)
    .filter((l) => l.includes(file) || l.includes(encoded))
    .slice(0, 3)
    .map((l) => {
      const t = l.trim();
      if (!t.includes("data:")) return `    ${t}`;
      const fn = /^at (\S+) \(/.exec(t)?.[1];
      return `    at ${fn ? `${fn} (${file})` : file}`;
    });
  return lines.length ? `\n${lines.join("\n")}` : "";
}

const fnName = (f: FuncJit) => `${f.prog.name}/${f.func.name}`;

/**
 * Where a user's hook is running, for a watchdog (the CLI's, bin/stackcheck.js: a hook that never
 * returns cannot be stopped from inside its own thread). No-ops unless one is installed.
 */
export const hookWatch: { enter(where: string): void; leave(): void } = { enter: () => {}, leave: () => {} };

/** The channel every thread of a command reports its hooks on (bin/stackcheck.js listens). */
export const WATCHDOG_CHANNEL = "stackcheck-watchdog";

/**
 * Report this thread's hooks to the watchdog: `{ thread, enter }` when one starts, `{ thread,
 * leave }` when it returns. A BroadcastChannel reaches the main thread from any thread, the
 * pool threads of `check --workers` too; unref'd, it never keeps a thread alive.
 */
export function reportHooksToWatchdog(): void {
  const channel = new BroadcastChannel(WATCHDOG_CHANNEL);
  (channel as unknown as { unref(): void }).unref();
  hookWatch.enter = (where) => channel.postMessage({ thread: threadId, enter: where });
  hookWatch.leave = () => channel.postMessage({ thread: threadId, leave: true });
}

/** `s` with every hook guarded; `file` names the module in errors. */
export function guardStrategy(s: Strategy, file: string): Strategy {
  const fail = (what: string) => new StrategyError(`strategy module ${file}: ${what}`);
  const guard = <T>(hook: string, where: string, run: () => T): T => {
    hookWatch.enter(`strategy module ${file}: ${hook}() for ${where}`);
    try {
      const r = run();
      if (r !== null && typeof r === "object" && typeof (r as { then?: unknown }).then === "function") {
        (r as unknown as Promise<unknown>).then(undefined, () => {}); // its rejection is this error, not an unhandled one
        throw fail(`${hook}() for ${where} returned a Promise: the hooks are synchronous`);
      }
      return r;
    } catch (e) {
      if (e instanceof StrategyError) throw e;
      throw fail(`${hook}() for ${where} threw ${thrownText(e)}${userFrames(e, file)}`);
    } finally {
      hookWatch.leave();
    }
  };
  const { privateMemory, frameRegister, prologue, epilogue, call } = s;
  return {
    name: s.name,
    summary: s.summary,
    recursionLimit: s.recursionLimit,
    origin: file,
    privateMemory: (prog, v) => {
      const r: unknown = guard("privateMemory", `program ${prog.name}`, () => privateMemory.call(s, prog, v));
      if (!Array.isArray(r) || r.some((x) => typeof x !== "object" || x === null || !Array.isArray((x as PrivateRequest).guards))) {
        throw fail(`privateMemory() for program ${prog.name} returned ${r === null ? "null" : Array.isArray(r) ? "an array with an entry that is not a request ({ fi, size, framePtrOffset, guards })" : typeof r}; it must return an array of requests (empty for none)`);
      }
      return r as PrivateRequest[];
    },
    frameRegister: (f) => {
      const r: unknown = guard("frameRegister", fnName(f), () => frameRegister.call(s, f));
      if (!(REGS as readonly unknown[]).includes(r)) throw fail(`frameRegister() for ${fnName(f)} returned ${JSON.stringify(r) ?? String(r)}; it must name a register other than rsp (${REGS.join(", ")})`);
      return r as X86Reg;
    },
    prologue: (e, f) => guard("prologue", fnName(f), () => prologue.call(s, e, f)),
    epilogue: (e, f) => guard("epilogue", fnName(f), () => epilogue.call(s, e, f)),
    call: (e, f, emitCall) => {
      let called = 0;
      guard("call", fnName(f), () => call.call(s, e, f, () => { called++; emitCall(); }));
      if (called !== 1) throw fail(`call() for ${fnName(f)} emitted the call ${called} times; it must call emitCall() exactly once`);
    },
  };
}
