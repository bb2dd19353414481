// A scenario's image loaded, its task entered and run once straight through, for tests that then
// replay it from the start with an NMI (or an IRQ) at every instruction boundary.
import { buildImage, type ImageSpec } from "../../jit/image.ts";
import type { Strategy } from "../../jit/strategy.ts";
import { envFromImage } from "../../harness/unwind-env.ts";
import { frameWindows } from "../../harness/oracles/window.ts";
import { loadImage, startTask } from "../../harness/load.ts";

export function straightRun(spec: ImageSpec, s: Strategy) {
  const img = buildImage(spec, s);
  const m = loadImage(img);
  const env = envFromImage(img, m);
  const windows = frameWindows(img, m);
  startTask(img, m);
  const base = m.snapshot();
  const straight = m.run();
  if (straight.kind !== "completed") throw new Error(`${s.name}: ${straight.kind}`);
  return { img, m, env, windows, base, straight };
}
