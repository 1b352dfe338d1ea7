/** RFC 8785 (JSON Canonicalization Scheme) serialization, the form in which Mycel hashes JSON. */
import { InvalidInputError } from "../errors/index.ts";

function serialize(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      // JSON.stringify escapes exactly as RFC 8785 asks (ECMAScript's JSON serialization of strings).
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value))
        throw new InvalidInputError(`${path} is not a finite number`, { code: "invalid_json" });
      // ECMAScript's Number-to-String is RFC 8785's number form; -0 becomes 0.
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value))
        return `[${value.map((item, index) => serialize(item, `${path}[${index}]`)).join(",")}]`;
      const entries = Object.entries(value as Record<string, unknown>).filter(
        ([, item]) => item !== undefined,
      );
      // Keys sort by UTF-16 code units, which is what Array.prototype.sort does with no comparator.
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${serialize(item, `${path}.${key}`)}`).join(",")}}`;
    }
    default:
      throw new InvalidInputError(`${path} has type ${typeof value}, which JSON cannot hold`, {
        code: "invalid_json",
        hint: "convert bigints to decimal strings before hashing",
      });
  }
}

/** Serializes a JSON value canonically (RFC 8785): sorted keys, no whitespace, ECMAScript number form. */
export function canonicalJson(value: unknown): string {
  return serialize(value, "$");
}
