// Where the backend keeps what it downloads and builds: one cache root,
// `${XDG_CACHE_HOME:-~/.cache}/stackcheck`, holding
//   trees/linux-<version>/   the fetched, configured and prepared kernel trees (fetch.ts)
//   apt/{lists,cache}/       the private apt state fetch.ts downloads with (the system's is untouched)
//   debs/                    the downloaded linux-source .debs
//   kjit/<key>/              the shim binaries, one per (tree, JIT source, shim source) (build.ts)
import { homedir } from "node:os";
import { join } from "node:path";

export const TREE_VERSIONS = ["7.2", "6.12"] as const;
export type TreeVersion = (typeof TREE_VERSIONS)[number];

/** The environment variable naming a developer's own prepared tree. */
export const TREE_ENV = "STACKCHECK_KERNEL_TREE";

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg !== undefined && xdg !== "" ? xdg : join(env.HOME ?? homedir(), ".cache"), "stackcheck");
}

/** Where `fetchTree({ version })` puts a tree unless told otherwise. */
export function defaultTreeDir(version: TreeVersion, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), "trees", `linux-${version}`);
}
