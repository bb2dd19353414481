// The version of every --json output's shape (its `schema` field): bumped when a field changes meaning or goes.
export const JSON_SCHEMA = 1;
