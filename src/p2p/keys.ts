import { privateKeyFromRaw } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { InvalidInputError } from "../errors/index.ts";

/** Builds the secp256k1 libp2p key of a 32-byte Ethereum private key, so a node's peer id follows from its wallet key. */
export function libp2pKeyFromSecp256k1(privateKeyHex: `0x${string}`): PrivateKey {
  if (!/^0x[0-9a-fA-F]{64}$/.test(privateKeyHex)) {
    throw new InvalidInputError("the private key is not 32 bytes of hex", {
      details: "expected 0x followed by 64 hex digits",
      hint: "pass the Ethereum private key as 0x-prefixed hex, e.g. from `mycel wallet`",
      param: "privateKey",
    });
  }
  const bytes = Uint8Array.from(Buffer.from(privateKeyHex.slice(2), "hex"));
  try {
    const key = privateKeyFromRaw(bytes);
    if (key.type !== "secp256k1") throw new Error(`expected a secp256k1 key, got ${key.type}`);
    // Derive the public key now, so an out-of-range scalar fails here and not on first use.
    void key.publicKey.raw;
    return key;
  } catch (error) {
    throw new InvalidInputError("the private key is not a valid secp256k1 key", {
      details: "it must be a number between 1 and the curve order minus 1",
      hint: "use a key made by an Ethereum wallet",
      param: "privateKey",
      cause: error,
    });
  }
}

/** The libp2p peer id (as a string) that a node started with this Ethereum private key has. */
export function peerIdOfSecp256k1Key(privateKeyHex: `0x${string}`): string {
  return peerIdFromPrivateKey(libp2pKeyFromSecp256k1(privateKeyHex)).toString();
}
