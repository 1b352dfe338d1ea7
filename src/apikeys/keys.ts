/** API keys themselves: made from 256 random bits, kept only as their SHA-256, and amounts written for people. */
import { createHash, randomBytes } from "node:crypto";
import { formatUnits, parseUnits } from "viem";
import { InvalidInputError } from "../errors/index.ts";

/** Every key starts with this, so a leaked one is easy to recognize (and to search for in code). */
export const apiKeyPrefix = "mycel_sk_";

/** The decimals of Mycel's token: budgets are written in whole tokens (`5`, `0.5`, `5 MYC`). */
export const tokenDecimals = 18;

/** A new key (`mycel_sk_` and 32 random bytes, base64url), with its public id and what is stored of it. */
export function generateApiKey(): { key: string; id: string; keyHash: string; prefix: string } {
  const key = `${apiKeyPrefix}${randomBytes(32).toString("base64url")}`;
  return {
    key,
    id: `key_${randomBytes(6).toString("hex")}`,
    keyHash: hashApiKey(key),
    prefix: key.slice(0, apiKeyPrefix.length + 4),
  };
}

/**
 * SHA-256 of a key, 64 hex digits. A key is 256 random bits, so a fast hash is enough: nothing can be guessed from
 * it (a slow password hash guards only secrets people choose), and it costs each request a microsecond.
 */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A key name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`; anything else is refused with the rule. */
export function checkKeyName(name: string): string {
  if (!/^[\w.@-]{1,64}$/.test(name))
    throw new InvalidInputError(`"${name}" is not a key name`, {
      code: "invalid_key_name",
      param: "name",
      hint: "use 1 to 64 letters, digits, '.', '_', '-' or '@' (e.g. --name alice)",
    });
  return name;
}

/** A budget in whole tokens (`5`, `0.25`, `5 MYC`) in the token's smallest unit. */
export function parseBudget(text: string): bigint {
  const amount = text.trim().replace(/\s*MYC$/i, "");
  if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(amount) || (amount.split(".")[1] ?? "").length > tokenDecimals)
    throw new InvalidInputError(`"${text}" is not a budget`, {
      code: "invalid_amount",
      param: "budget",
      hint: "write an amount of tokens such as 5, 0.5 or 5 MYC",
    });
  return parseUnits(amount, tokenDecimals);
}

/** An amount in the smallest unit as whole tokens (`5`, `0.25`). */
export function formatBudget(amount: bigint): string {
  return formatUnits(amount, tokenDecimals);
}
