// Timeouts scale with the host (vitest.config.ts measures it; test/helpers/runs.ts applies it).
import { expect, test } from "vitest";
import { HOST_SLOWNESS, hostTimeout, runsTimeout } from "../helpers/runs.ts";

test("the workers know the host's slowness the configuration measured, and scale timeouts by it", () => {
  expect(Number(process.env.STACKCHECK_HOST_SLOWNESS)).toBeGreaterThanOrEqual(1);
  expect(HOST_SLOWNESS).toBe(Math.max(1, Number(process.env.STACKCHECK_HOST_SLOWNESS)));
  expect(hostTimeout(1000)).toBe(Math.ceil(1000 * HOST_SLOWNESS));
  expect(runsTimeout(10, 1000)).toBeGreaterThanOrEqual(hostTimeout(1000));
});
