/** The apikeys part: a remote gateway's API keys (made, hashed, checked per request), budgets, rates and usage. */
export {
  type CreateKeyAccessParameters,
  createKeyAccess,
  type KeyAccess,
  type KeyUsage,
  keyUsageOf,
} from "./access.ts";
export {
  apiKeyPrefix,
  checkKeyName,
  formatBudget,
  generateApiKey,
  hashApiKey,
  parseBudget,
  tokenDecimals,
} from "./keys.ts";
export {
  createApiKey,
  hasActiveApiKey,
  type KeyStoreLocation,
  listApiKeys,
  revokeApiKey,
} from "./manage.ts";
export { createRateLimiter, type RateLimiter } from "./rateLimiter.ts";
