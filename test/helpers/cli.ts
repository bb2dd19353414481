// The CLI in this process, its output captured: what the e2e and kernel-tree tests drive.
import { main } from "../../harness/cli/main.ts";

export async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await main(["node", "stackcheck", ...args], (s) => { out += s; });
  return { code, out };
}
