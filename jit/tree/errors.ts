// The errors of the kernel-tree backend: data first (a code, the file or step concerned, the
// fix), inside one Error whose message reads as a sentence a user can act on.

export type TreeErrorCode =
  /** A build tool or header is missing: `fix` names the apt package. */
  | "missing-tool"
  /** `dir` is not a Linux source tree (no top Makefile with VERSION, no x86 JIT). */
  | "not-a-tree"
  /** No `.config`. */
  | "not-configured"
  /** `make prepare` has not run, or `.config` changed since. */
  | "not-prepared"
  /** `.config` lacks an option the JIT needs. */
  | "config"
  /** apt-get update/download, or unpacking the .deb, failed. */
  | "download"
  /** A kbuild step (`make defconfig`, `make prepare`, ...) failed. */
  | "make"
  /** Compiling or linking the shim failed: the compiler's first error lines are in the message. */
  | "build"
  /** A bad argument (version, directory). */
  | "usage";

export class TreeError extends Error {
  override name = "TreeError";
  constructor(
    readonly code: TreeErrorCode,
    message: string,
    /** What to run to fix it (a command line), when there is one. */
    readonly fix?: string,
  ) {
    super(fix === undefined ? message : `${message}\n  fix: ${fix}`);
  }
}
