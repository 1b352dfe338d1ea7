/** The identity part: encrypted keystores, the keystore password, dev keys and peer-id bindings. */
export { devPrivateKey } from "./devKey.ts";
export {
  InvalidKeystoreError,
  KeystoreExistsError,
  KeystoreNotFoundError,
  PasswordRequiredError,
  PromptCancelledError,
  WrongPasswordError,
} from "./errors.ts";
export {
  type CreateKeystoreParameters,
  type CreateKeystoreReturnType,
  createKeystore,
  type KeystoreFile,
  type KeystorePathParameters,
  keystorePath,
  keystoreScryptParameters,
  type LoadKeystoreParameters,
  type LoadKeystoreReturnType,
  listKeystores,
  loadKeystore,
  readKeystoreAddress,
} from "./keystore.ts";
export {
  type PromptPasswordOptions,
  promptPassword,
  type ResolvePasswordParameters,
  resolvePassword,
} from "./password.ts";
export {
  type PeerBinding,
  peerBindingMessage,
  type SignPeerBindingParameters,
  signPeerBinding,
  verifyPeerBinding,
} from "./peerBinding.ts";
