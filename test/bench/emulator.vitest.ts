// The emulator's throughput under vitest (design §9: as fast as under tsx), printed as one line
// `EMULATOR_MIPS <median> <best>` for test/bench/run.ts to read. Not part of `npm test`.
import { expect, test } from "vitest";
import { benchThroughput } from "./machine.ts";

test("emulator throughput under vitest", () => {
  benchThroughput(200_000); // warm-up
  const mips = Array.from({ length: 7 }, () => benchThroughput(200_000).mips).sort((a, b) => a - b);
  expect(mips[0]).toBeGreaterThan(0);
  process.stdout.write(`EMULATOR_MIPS ${mips[mips.length >> 1]} ${mips[mips.length - 1]}\n`);
});
