/** What `mycel gateway keys` does: create a key (shown once), list keys with their usage, revoke one. */
import { InvalidInputError } from "../errors/index.ts";
import { apiKeyStorePath, openApiKeyStore, type StoredApiKey } from "../store/index.ts";
import { checkKeyName, generateApiKey } from "./keys.ts";

/** Where the keys live: a gateway's home (and its store folder, default MYCEL_HOME/gateway). */
export type KeyStoreLocation = { home: string; storeDirectory?: string };

function withStore<T>(location: KeyStoreLocation, use: (store: ReturnType<typeof openApiKeyStore>) => T): T {
  const store = openApiKeyStore({ path: apiKeyStorePath(location) });
  try {
    return use(store);
  } finally {
    store.close();
  }
}

/** Creates a key; the key itself is in the answer only (the store keeps its hash). */
export function createApiKey(
  parameters: KeyStoreLocation & { name: string; budget?: bigint; ratePerMinute?: number },
): { key: string; stored: StoredApiKey } {
  const name = checkKeyName(parameters.name);
  if (
    parameters.ratePerMinute !== undefined &&
    !(Number.isInteger(parameters.ratePerMinute) && parameters.ratePerMinute >= 1)
  )
    throw new InvalidInputError(`a rate of ${parameters.ratePerMinute} requests per minute is not possible`, {
      code: "invalid_value",
      param: "rate",
      hint: "give --rate a whole number of requests per minute, 1 or more",
    });
  const made = generateApiKey();
  const stored = withStore(parameters, (store) =>
    store.create({
      id: made.id,
      name,
      keyHash: made.keyHash,
      prefix: made.prefix,
      budget: parameters.budget,
      ratePerMinute: parameters.ratePerMinute,
    }),
  );
  return { key: made.key, stored };
}

/** Every key, revoked ones too, with its usage. */
export function listApiKeys(location: KeyStoreLocation): StoredApiKey[] {
  return withStore(location, (store) => store.list());
}

/** Revokes the active key of this name, or the key of this id; 400 naming the keys there are when none matches. */
export function revokeApiKey(parameters: KeyStoreLocation & { nameOrId: string }): StoredApiKey {
  return withStore(parameters, (store) => {
    const revoked = store.revoke(parameters.nameOrId);
    if (revoked) return revoked;
    const active = store.list().filter((key) => key.revokedAt === undefined);
    throw new InvalidInputError(`no active API key is named or has the id "${parameters.nameOrId}"`, {
      code: "unknown_key",
      param: "key",
      hint:
        active.length > 0
          ? `active keys: ${active.map((key) => `${key.name} (${key.id})`).join(", ")}`
          : "there is no active key; `mycel gateway keys list` shows them all",
    });
  });
}

/** Whether the gateway has an active key (a gateway bound beyond loopback needs one to start). */
export function hasActiveApiKey(location: KeyStoreLocation): boolean {
  return listApiKeys(location).some((key) => key.revokedAt === undefined);
}
