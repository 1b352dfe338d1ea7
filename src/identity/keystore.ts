/** Encrypted keystores: one secp256k1 key per file under `<MYCEL_HOME>/keys/`, sealed with scrypt + AES-256-GCM. */
import { createCipheriv, createDecipheriv, randomBytes, type ScryptOptions, scrypt } from "node:crypto";
import { access, chmod, link, mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Address, Hex } from "viem";
import { bytesToHex, getAddress, isAddressEqual } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { z } from "zod";
import { resolveMycelHome } from "../config/index.ts";
import { InvalidInputError } from "../errors/index.ts";
import {
  InvalidKeystoreError,
  KeystoreExistsError,
  KeystoreNotFoundError,
  WrongPasswordError,
} from "./errors.ts";

/** scrypt cost used for new keystores: N = 2^15, r = 8, p = 1 (about 32 MiB and 0.1 s per derivation). */
export const keystoreScryptParameters = { n: 2 ** 15, r: 8, p: 1 } as const;

const keyLength = 32;
const saltLength = 16;
const ivLength = 12;
const tagLength = 16;
/** Refuse kdf parameters that would need more memory than this (a hostile or corrupt file). */
const maxScryptMemory = 256 * 1024 * 1024;

const keyNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const privateKeyPattern = /^0x[0-9a-fA-F]{64}$/;

/** The JSON stored in a keystore file (all binary fields are lowercase hex without 0x). */
export type KeystoreFile = {
  version: 1;
  address: Address;
  kdf: { name: "scrypt"; n: number; r: number; p: number; salt: string };
  cipher: { name: "aes-256-gcm"; iv: string; tag: string };
  ciphertext: string;
};

const hexBytes = (bytes?: number) =>
  z
    .string()
    .regex(/^([0-9a-f]{2})+$/, "expected lowercase hex")
    .refine((value) => bytes === undefined || value.length === bytes * 2, `expected ${bytes} bytes`);

const keystoreFileSchema = z.object({
  version: z.literal(1),
  address: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "expected a 20-byte 0x address"),
  kdf: z.object({
    name: z.literal("scrypt"),
    n: z
      .number()
      .int()
      .min(2)
      .refine((n) => (n & (n - 1)) === 0, "n must be a power of two"),
    r: z.number().int().min(1).max(64),
    p: z.number().int().min(1).max(16),
    salt: hexBytes(),
  }),
  cipher: z.object({ name: z.literal("aes-256-gcm"), iv: hexBytes(ivLength), tag: hexBytes(tagLength) }),
  ciphertext: hexBytes(keyLength),
});

/** Parameters of {@link keystorePath}. */
export type KeystorePathParameters = {
  /** MYCEL_HOME; defaults to {@link resolveMycelHome}. */
  home?: string;
  /** The key's name (letters, digits, `.`, `_`, `-`); defaults to `default`. */
  name?: string;
};

/** Returns where the keystore of that name lives: `<home>/keys/<name>.json`. */
export function keystorePath(parameters: KeystorePathParameters = {}): string {
  const name = parameters.name ?? "default";
  if (!keyNamePattern.test(name)) {
    throw new InvalidInputError(`invalid key name ${JSON.stringify(name)}`, {
      param: "name",
      hint: "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    });
  }
  return join(resolveMycelHome(parameters.home), "keys", `${name}.json`);
}

function deriveKey(
  password: string,
  salt: Buffer,
  kdf: { n: number; r: number; p: number },
): Promise<Buffer> {
  const memory = 128 * kdf.n * kdf.r;
  const options: ScryptOptions = { N: kdf.n, r: kdf.r, p: kdf.p, maxmem: 2 * memory + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(Buffer.from(password.normalize("NFKC"), "utf8"), salt, keyLength, options, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== "string" || password.length === 0) {
    throw new InvalidInputError("the keystore password is empty", {
      param: "password",
      hint: "set MYCEL_PASSWORD to a non-empty password (or type one when asked)",
    });
  }
}

function isErrorCode(error: unknown, ...codes: string[]): boolean {
  return (
    typeof error === "object" && error !== null && codes.includes((error as { code?: string }).code ?? "")
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function syncDirectory(directory: string) {
  try {
    const handle = await open(directory, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Not every platform can fsync a directory (Windows); the rename itself is still atomic.
  }
}

/** Parameters of {@link createKeystore}. */
export type CreateKeystoreParameters = KeystorePathParameters & {
  /** The password that seals the key; never stored or logged. */
  password: string;
  /** Import this key instead of generating a new one. */
  privateKey?: Hex;
};

/** What {@link createKeystore} returns. */
export type CreateKeystoreReturnType = { address: Address; path: string };

/**
 * Generates a secp256k1 key (or imports `privateKey`) and writes it encrypted to `<home>/keys/<name>.json`
 * (mode 0600, folder 0700); refuses to overwrite an existing keystore.
 */
export async function createKeystore(
  parameters: CreateKeystoreParameters,
): Promise<CreateKeystoreReturnType> {
  const name = parameters.name ?? "default";
  const path = keystorePath({ home: parameters.home, name });
  checkPassword(parameters.password);
  const privateKey = parameters.privateKey ?? generatePrivateKey();
  let address: Address;
  try {
    if (!privateKeyPattern.test(privateKey)) throw new Error("not 32 bytes of hex");
    address = privateKeyToAccount(privateKey).address;
  } catch {
    throw new InvalidInputError("the private key to import is not a valid secp256k1 key", {
      param: "privateKey",
      hint: "pass 32 bytes as 0x-prefixed hex (66 characters), in range for secp256k1",
    });
  }
  if (await exists(path)) throw new KeystoreExistsError({ path, keyName: name });

  const home = resolveMycelHome(parameters.home);
  const directory = join(home, "keys");
  await mkdir(home, { recursive: true });
  await mkdir(directory, { recursive: true, mode: 0o700 });
  if (process.platform !== "win32") await chmod(directory, 0o700);

  const salt = randomBytes(saltLength);
  const iv = randomBytes(ivLength);
  const key = await deriveKey(parameters.password, salt, keystoreScryptParameters);
  const plaintext = Buffer.from(privateKey.slice(2), "hex");
  let ciphertext: Buffer;
  let tag: Buffer;
  try {
    const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: tagLength });
    ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    tag = cipher.getAuthTag();
  } finally {
    key.fill(0);
    plaintext.fill(0);
  }
  const file: KeystoreFile = {
    version: 1,
    address,
    kdf: { name: "scrypt", ...keystoreScryptParameters, salt: salt.toString("hex") },
    cipher: { name: "aes-256-gcm", iv: iv.toString("hex"), tag: tag.toString("hex") },
    ciphertext: ciphertext.toString("hex"),
  };

  // Write a temporary file, flush it, then link it into place: link fails if the target exists, so a
  // keystore that appeared meanwhile is never replaced, and readers never see a half-written file.
  const temporary = join(directory, `.${name}.json.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const handle = await open(temporary, "wx", 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, path);
    } catch (error) {
      if (isErrorCode(error, "EEXIST")) throw new KeystoreExistsError({ path, keyName: name });
      if (!isErrorCode(error, "EPERM", "ENOTSUP", "ENOSYS", "EOPNOTSUPP", "EXDEV")) throw error;
      // A filesystem without hard links: check, then rename (atomic, though no longer exclusive).
      if (await exists(path)) throw new KeystoreExistsError({ path, keyName: name });
      await rename(temporary, path);
    }
  } finally {
    await rm(temporary, { force: true });
  }
  await syncDirectory(directory);
  return { address, path };
}

/** Parameters of {@link loadKeystore}. */
export type LoadKeystoreParameters = KeystorePathParameters & {
  /** The password the keystore was created with. */
  password: string;
};

/** What {@link loadKeystore} returns: keep `privateKey` in memory only, never log it. */
export type LoadKeystoreReturnType = { address: Address; privateKey: Hex };

/** Reads and checks a keystore file (not its secret). */
async function readKeystoreFile(parameters: KeystorePathParameters) {
  const name = parameters.name ?? "default";
  const path = keystorePath({ home: parameters.home, name });
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (isErrorCode(error, "ENOENT")) throw new KeystoreNotFoundError({ path, keyName: name });
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new InvalidKeystoreError({ path, reason: "it is not valid JSON", cause });
  }
  const version = (json as { version?: unknown } | null)?.version;
  if (typeof version === "number" && version !== 1) {
    throw new InvalidKeystoreError({
      path,
      reason: `unsupported keystore version ${version}`,
      hint: "this keystore was written by a newer Mycel: upgrade Mycel to read it",
    });
  }
  const parsed = keystoreFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "(root)";
    throw new InvalidKeystoreError({ path, reason: `${where}: ${issue?.message ?? "invalid"}` });
  }
  await tightenKeystoreModes(path);
  return { path, file: parsed.data };
}

/**
 * Makes a keystore written by an older Mycel, or copied in by hand, its owner's only again: the file 0600, its
 * folder 0700. Best effort: a file this user may not change (read-only mount, another owner) is read as it is.
 */
async function tightenKeystoreModes(path: string) {
  if (process.platform === "win32") return;
  await chmod(path, 0o600).catch(() => undefined);
  await chmod(dirname(path), 0o700).catch(() => undefined);
}

/** The names of the keystores in `<home>/keys/`, sorted (none when the folder does not exist). */
export async function listKeystores(parameters: { home?: string } = {}): Promise<string[]> {
  const directory = join(resolveMycelHome(parameters.home), "keys");
  let entries: string[];
  try {
    entries = await readdir(directory);
  } catch {
    return [];
  }
  return entries
    .filter((entry) => entry.endsWith(".json"))
    .map((entry) => entry.slice(0, -".json".length))
    .filter((name) => keyNamePattern.test(name))
    .sort();
}

/** The address a keystore holds the key of, read without its password (the address is stored in clear). */
export async function readKeystoreAddress(parameters: KeystorePathParameters = {}): Promise<Address> {
  const { file } = await readKeystoreFile(parameters);
  return getAddress(file.address);
}

/** Reads and decrypts the keystore `<home>/keys/<name>.json`, checking that the key matches its stored address. */
export async function loadKeystore(parameters: LoadKeystoreParameters): Promise<LoadKeystoreReturnType> {
  checkPassword(parameters.password);
  const { path, file } = await readKeystoreFile(parameters);
  if (128 * file.kdf.n * file.kdf.r > maxScryptMemory) {
    throw new InvalidKeystoreError({ path, reason: "its scrypt parameters need too much memory" });
  }

  const key = await deriveKey(parameters.password, Buffer.from(file.kdf.salt, "hex"), file.kdf);
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(file.cipher.iv, "hex"), {
      authTagLength: tagLength,
    });
    decipher.setAuthTag(Buffer.from(file.cipher.tag, "hex"));
    plaintext = Buffer.concat([decipher.update(Buffer.from(file.ciphertext, "hex")), decipher.final()]);
  } catch {
    throw new WrongPasswordError({ path });
  } finally {
    key.fill(0);
  }

  const privateKey = bytesToHex(plaintext);
  plaintext.fill(0);
  let address: Address;
  try {
    address = privateKeyToAccount(privateKey).address;
  } catch {
    throw new InvalidKeystoreError({ path, reason: "the decrypted key is not a valid secp256k1 key" });
  }
  if (!isAddressEqual(address, file.address as Address)) {
    throw new InvalidKeystoreError({
      path,
      reason: `the decrypted key belongs to ${address}, not to the stored address ${file.address}`,
    });
  }
  return { address, privateKey };
}
