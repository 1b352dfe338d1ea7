/** Keys of the roles: keystores opened with their password, dev keys of the devnet, and which key a command uses. */
import type { Hex } from "viem";
import {
  createKeystore,
  devPrivateKey,
  KeystoreExistsError,
  KeystoreNotFoundError,
  keystorePath,
  listKeystores,
  loadKeystore,
  promptPassword,
  resolvePassword,
} from "../identity/index.ts";
import { devnetGatewayKeyName, devnetPassword } from "./constants.ts";

/** Loads a keystore's private key, asking for the password unless MYCEL_PASSWORD is set. */
export async function loadKey(parameters: { home: string; name: string }): Promise<Hex> {
  const password = await resolvePassword({
    prompt: () => promptPassword(`password for key "${parameters.name}": `),
  });
  const { privateKey } = await loadKeystore({ home: parameters.home, name: parameters.name, password });
  return privateKey;
}

/** Creates the dev keystore `name` (deterministic key, devnet password) if it does not exist; returns its key. */
export async function ensureDevKey(home: string, name: string): Promise<Hex> {
  const privateKey = devPrivateKey(name);
  try {
    await createKeystore({ home, name, password: devnetPassword, privateKey });
  } catch (error) {
    if (!(error instanceof KeystoreExistsError)) throw error;
  }
  return privateKey;
}

/** Which key a read-only command uses, and a note for the user when it was not the one they named. */
export type ChosenKey = { name: string; note?: string };

/**
 * The key a command that only reads (wallet, channel list) uses: the one named; else `default`; else, on a machine
 * that ran `mycel devnet`, the devnet's gateway key (said in `note`). Throws KeystoreNotFoundError listing the keys
 * that exist otherwise.
 */
export async function chooseViewKey(parameters: { home: string; requested?: string }): Promise<ChosenKey> {
  if (parameters.requested) return { name: parameters.requested };
  const names = await listKeystores({ home: parameters.home });
  if (names.includes("default")) return { name: "default" };
  if (names.includes(devnetGatewayKeyName))
    return {
      name: devnetGatewayKeyName,
      note: `no key named "default": showing the devnet's gateway key "${devnetGatewayKeyName}" (pass --key <name> for another: ${names.join(", ")})`,
    };
  throw new KeystoreNotFoundError({
    path: keystorePath({ home: parameters.home, name: "default" }),
    keyName: "default",
    ...(names.length > 0
      ? {
          hint: `pass --key <name>: the keys here are ${names.join(", ")} (or create "default" with \`mycel init\`)`,
        }
      : {}),
  });
}
