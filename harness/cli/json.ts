// The version of every --json output's shape (its `schema` field): bumped when a field changes meaning or goes.
export const JSON_SCHEMA = 1;

/** JSON.stringify's replacer for values with bigints in them: addresses and registers as hex strings. */
export const bigintHex = (_key: string, v: unknown): unknown => (typeof v === "bigint" ? `0x${v.toString(16)}` : v);
