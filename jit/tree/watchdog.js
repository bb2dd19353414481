// The watchdog thread behind KernelJit (child.ts): the calling thread blocks in a read on the
// shim's output, so something else must end a hang. This thread wakes every `periodMs`; if the
// same request has been in flight since its previous look and for longer than `timeoutMs`, it
// records the request in slot KILLED and sends SIGKILL to the shim, whose output then reaches
// end-of-file and unblocks the reader. Plain JavaScript with Node built-ins only, so it loads in
// any thread (vitest, tsx, piscina workers) without a loader. It never keeps the process alive
// (child.ts unrefs it) and ends when slot STATE is set to -1.
//
// Slots of the shared Int32Array: STATE (0 idle, -1 stop, else the request's sequence number),
// PID (the shim's pid), KILLED (the last request killed for a timeout).
import { workerData } from "node:worker_threads";

const STATE = 0, PID = 1, KILLED = 2;
const { sab, timeoutMs, periodMs } = workerData;
const slots = new Int32Array(sab);
let seen = 0, since = 0;

for (;;) {
  Atomics.wait(slots, STATE, Atomics.load(slots, STATE), periodMs);
  const state = Atomics.load(slots, STATE);
  if (state === -1) break;
  const now = performance.now();
  if (state === 0 || state !== seen) {
    seen = state;
    since = now;
    continue;
  }
  if (now - since >= timeoutMs) {
    Atomics.store(slots, KILLED, state);
    try {
      process.kill(Atomics.load(slots, PID), "SIGKILL");
    } catch {
      // already gone: the reader sees end-of-file anyway
    }
    seen = 0;
  }
}
