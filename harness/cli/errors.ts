// Errors the CLI turns into exit codes (main.ts): a usage error exits 2 with its message; a run
// or campaign that found a failure exits 1 after its report was printed.

/** A usage error found while a command runs (commander's own errors are reported by commander). */
export class UsageError extends Error {}
/** A run that found a failure: exit code 1, the report already printed. */
export class RunFailed extends Error {}
