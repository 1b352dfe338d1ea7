/**
 * The gateway's door: which requests need an API key, whether the one sent is good (compared in constant time),
 * 402 past its budget and 429 past its rate, and what each key's answers cost (their receipts' prices).
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { type ApiAccess, type ApiCaller, HttpError } from "../api/index.ts";
import type { Logger } from "../log/index.ts";
import type { ApiKeyStore, StoredApiKey } from "../store/index.ts";
import { hashApiKey } from "./keys.ts";
import { createRateLimiter } from "./rateLimiter.ts";

/** Parameters of {@link createKeyAccess}. */
export type CreateKeyAccessParameters = {
  store: ApiKeyStore;
  /**
   * Every request needs a key, even while no key is active (a gateway bound beyond loopback). When false (loopback),
   * requests need a key only while at least one active key exists.
   */
  required: boolean;
  logger: Logger;
  /** The clock (tests). */
  now?: () => number;
};

/** A gateway's key checks, and each key's usage for /mycel/v1/usage. */
export type KeyAccess = ApiAccess & {
  /** The usage of one key (the caller's), or of every key when `caller` is undefined. */
  usage(caller: ApiCaller | undefined): KeyUsage[];
};

/** One key's usage as /mycel/v1/usage shows it (amounts in the token's smallest unit, as decimal strings). */
export type KeyUsage = {
  id: string;
  name: string;
  prefix: string;
  created_at: number;
  revoked: boolean;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  spent: string;
  budget: string | null;
  budget_left: string | null;
  rate_per_minute: number | null;
};

/** A key's usage in the shape of {@link KeyUsage}. */
export function keyUsageOf(key: StoredApiKey): KeyUsage {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    created_at: key.createdAt,
    revoked: key.revokedAt !== undefined,
    requests: key.requests,
    prompt_tokens: key.promptTokens,
    completion_tokens: key.completionTokens,
    spent: key.spent.toString(),
    budget: key.budget === undefined ? null : key.budget.toString(),
    budget_left:
      key.budget === undefined ? null : (key.budget > key.spent ? key.budget - key.spent : 0n).toString(),
    rate_per_minute: key.ratePerMinute ?? null,
  };
}

const unauthorized = (message: string, hint: string) =>
  new HttpError(401, message, {
    code: "invalid_api_key",
    hint,
    headers: { "www-authenticate": 'Bearer realm="mycel"' },
  });

/** The key a request sent as `Authorization: Bearer <key>`; undefined when it sent none. */
function bearerOf(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!match?.[1])
    throw unauthorized(
      "the Authorization header is not `Bearer <key>`",
      "send the key as `Authorization: Bearer mycel_sk_...`",
    );
  return match[1];
}

/** The stored key whose hash is `hash`: every key is compared, in constant time, whatever matches. */
function findByHash(keys: readonly StoredApiKey[], hash: string): StoredApiKey | undefined {
  const wanted = Buffer.from(hash, "hex");
  let found: StoredApiKey | undefined;
  for (const key of keys) {
    const stored = Buffer.from(key.keyHash, "hex");
    if (stored.length === wanted.length && timingSafeEqual(stored, wanted) && found === undefined)
      found = key;
  }
  return found;
}

/** The sum of the receipts' prices in an answer's `mycel` fields (0 for an answer without receipts). */
function costOf(mycel: Record<string, unknown>): bigint {
  const receipts = Array.isArray(mycel.receipts) ? mycel.receipts : [];
  let cost = 0n;
  for (const receipt of receipts) {
    const price = (receipt as { message?: { price?: unknown } } | null)?.message?.price;
    if (typeof price === "string" && /^[0-9]{1,78}$/.test(price)) cost += BigInt(price);
  }
  // Output paid for in segments that ended without a receipt (a provider failed, or the client went away).
  const unreceipted = mycel.unreceipted_cost;
  if (typeof unreceipted === "string" && /^[0-9]{1,78}$/.test(unreceipted)) cost += BigInt(unreceipted);
  return cost;
}

/** Creates the key checks of a gateway over its key store (read again whenever the CLI changed it). */
export function createKeyAccess(parameters: CreateKeyAccessParameters): KeyAccess {
  const { store, required, logger } = parameters;
  const now = parameters.now ?? Date.now;
  const limiter = createRateLimiter();
  let keys: StoredApiKey[] | undefined;
  const current = () => {
    // A revoke or a new key from `mycel gateway keys` counts from the next request on.
    if (store.changed() || keys === undefined) keys = store.list();
    return keys;
  };
  return {
    admit({ request, spends }) {
      const all = current();
      if (!required && !all.some((key) => key.revokedAt === undefined)) return undefined;
      const sent = bearerOf(request);
      if (sent === undefined)
        throw unauthorized(
          "this gateway needs an API key",
          "send `Authorization: Bearer <key>`; the gateway's operator makes keys with `mycel gateway keys create --name <name>`",
        );
      const key = findByHash(all, hashApiKey(sent));
      if (!key)
        throw unauthorized(
          "the API key is not valid here",
          "check the key you were given (it begins with mycel_sk_), or ask the gateway's operator for one",
        );
      if (key.revokedAt !== undefined)
        throw unauthorized(
          `the API key "${key.name}" was revoked`,
          "ask the gateway's operator for a new key",
        );
      if (spends && key.budget !== undefined && key.spent >= key.budget)
        throw new HttpError(402, `the API key "${key.name}" has spent its budget of ${key.budget} units`, {
          code: "insufficient_quota",
          type: "insufficient_quota",
          hint: "ask the gateway's operator for a key with more budget (mycel gateway keys create --budget)",
        });
      const retryAfter =
        spends && key.ratePerMinute !== undefined
          ? limiter.take({ keyId: key.id, perMinute: key.ratePerMinute, now: now() })
          : undefined;
      if (retryAfter !== undefined)
        throw new HttpError(
          429,
          `the API key "${key.name}" is past its rate of ${key.ratePerMinute} requests per minute`,
          {
            code: "rate_limit_exceeded",
            type: "requests",
            hint: `retry after ${retryAfter} s`,
            headers: { "retry-after": String(retryAfter) },
          },
        );
      return { keyId: key.id, name: key.name };
    },
    recordAnswer({ caller, result }) {
      const cost = costOf(result.mycel);
      store.recordUsage({
        id: caller.keyId,
        promptTokens: result.usage.promptTokens,
        completionTokens: result.usage.completionTokens,
        cost,
      });
      // This connection's own writes do not show in `changed()`: read the keys again at the next request.
      keys = undefined;
      logger.debug("answer counted", { key: caller.keyId, cost: cost.toString() });
    },
    usage(caller) {
      const all = current();
      return (caller ? all.filter((key) => key.id === caller.keyId) : all).map(keyUsageOf);
    },
  };
}
