/** Typed errors of the identity part: keystores and passwords. None of them ever carries a secret. */
import { MycelError, type MycelErrorParameters } from "../errors/index.ts";

/** No keystore file under the given name. */
export class KeystoreNotFoundError extends MycelError {
  override name = "KeystoreNotFoundError";
  readonly path: string;
  constructor(parameters: { path: string; keyName: string } & MycelErrorParameters) {
    const { path, keyName, ...rest } = parameters;
    super(`no keystore "${keyName}" at ${path}`, {
      code: "keystore_not_found",
      hint:
        keyName === "default"
          ? "create one with `mycel init` (or point MYCEL_HOME at the folder that holds keys/)"
          : `create one with \`mycel init --key ${keyName}\` (or point MYCEL_HOME at the folder that holds keys/)`,
      ...rest,
    });
    this.path = path;
  }
}

/** A keystore already exists under the name; it was left as it was. */
export class KeystoreExistsError extends MycelError {
  override name = "KeystoreExistsError";
  readonly path: string;
  constructor(parameters: { path: string; keyName: string } & MycelErrorParameters) {
    const { path, keyName, ...rest } = parameters;
    super(`a keystore "${keyName}" already exists at ${path}; it was not overwritten`, {
      code: "keystore_exists",
      hint: "use the existing key (it is loaded automatically with MYCEL_PASSWORD), or create another one with a different --key",
      ...rest,
    });
    this.path = path;
  }
}

/** The password does not decrypt the keystore (or the encrypted part of the file was modified). */
export class WrongPasswordError extends MycelError {
  override name = "WrongPasswordError";
  readonly path: string;
  constructor(parameters: { path: string } & MycelErrorParameters) {
    const { path, ...rest } = parameters;
    super(`wrong password for the keystore at ${path}`, {
      code: "wrong_password",
      details:
        "AES-256-GCM authentication failed: the password is wrong, or the file's salt, iv, tag or ciphertext was modified",
      hint: "check MYCEL_PASSWORD (or the password you typed); if it is right, restore the keystore file from a backup",
      ...rest,
    });
    this.path = path;
  }
}

/** A keystore file that is not a valid Mycel keystore (truncated, edited or from another tool). */
export class InvalidKeystoreError extends MycelError {
  override name = "InvalidKeystoreError";
  readonly path: string;
  constructor(parameters: { path: string; reason: string } & MycelErrorParameters) {
    const { path, reason, ...rest } = parameters;
    super(`the keystore at ${path} is corrupt: ${reason}`, {
      code: "invalid_keystore",
      hint: "restore the file from a backup, or move it away and create a new key with `mycel init`",
      ...rest,
    });
    this.path = path;
  }
}

/** No password is available: MYCEL_PASSWORD is unset and there is no terminal to ask on. */
export class PasswordRequiredError extends MycelError {
  override name = "PasswordRequiredError";
  constructor(parameters: MycelErrorParameters = {}) {
    super("a keystore password is needed, but MYCEL_PASSWORD is unset and stdin is not a terminal", {
      code: "password_required",
      hint: "set MYCEL_PASSWORD in the environment, or run the command in an interactive terminal",
      ...parameters,
    });
  }
}

/** The user pressed Ctrl-C at the password prompt. */
export class PromptCancelledError extends MycelError {
  override name = "PromptCancelledError";
  constructor() {
    super("the password prompt was cancelled", {
      code: "prompt_cancelled",
      hint: "run the command again, or set MYCEL_PASSWORD",
    });
  }
}
