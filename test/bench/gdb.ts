// The reference point of the exhaustive budget (design §9): gdb single-stepping a native program
// with a backtrace at every step, the OOPSLA'19 eh_frame_check method, on this machine, in this
// run. A small C program with nested calls, built with `cc -O1 -fno-omit-frame-pointer`, run
// under `gdb -batch` with a Python loop of `stepi` and `bt`. undefined where gdb or cc is missing.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PROGRAM = `
#include <stdint.h>
__attribute__((noinline)) static uint64_t leaf(uint64_t x) { return x * 2654435761u + (x >> 3); }
__attribute__((noinline)) static uint64_t mid(uint64_t x) { uint64_t a = leaf(x); return leaf(a ^ x) + a; }
__attribute__((noinline)) static uint64_t top(uint64_t x) { uint64_t s = 0; for (int i = 0; i < 4; i++) s += mid(x + i); return s; }
int main(void) { volatile uint64_t s = 0; for (int i = 0; i < 100000; i++) s += top(i); return (int)(s & 1); }
`;

const SCRIPT = (steps: number) => `
import gdb, time
gdb.execute("break top")
gdb.execute("run")
t0 = time.time()
n = 0
while n < ${steps}:
    gdb.execute("stepi", to_string=True)
    gdb.execute("bt", to_string=True)
    n += 1
print("STEPS_PER_S %f" % (n / (time.time() - t0)))
gdb.execute("kill")
`;

/** Boundaries (instructions) per second that gdb steps with a backtrace at each, or undefined. */
export function gdbStepBacktracePerSecond(steps = 3000): number | undefined {
  const has = (tool: string, arg: string) => spawnSync(tool, [arg], { encoding: "utf8" }).status === 0;
  if (!has("gdb", "--version") || !has("cc", "--version")) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "stackcheck-gdb-"));
  try {
    writeFileSync(join(dir, "p.c"), PROGRAM);
    writeFileSync(join(dir, "s.py"), SCRIPT(steps));
    const cc = spawnSync("cc", ["-O1", "-g", "-fno-omit-frame-pointer", "-o", join(dir, "p"), join(dir, "p.c")], { encoding: "utf8" });
    if (cc.status !== 0) return undefined;
    const r = spawnSync("gdb", ["-batch", "-nx", "-x", join(dir, "s.py"), join(dir, "p")], { encoding: "utf8", timeout: 300_000 });
    const m = /STEPS_PER_S ([\d.]+)/.exec(r.stdout);
    return m ? Number(m[1]) : undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
