import { privateKeyFromRaw } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { peerIdFromPrivateKey, peerIdFromString } from "@libp2p/peer-id";
import { type Address, getAddress, keccak256 } from "viem";
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

/** The field prime of secp256k1. */
const secp256k1Prime = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;

function powMod(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let factor = base % modulus;
  for (let rest = exponent; rest > 0n; rest >>= 1n) {
    if (rest & 1n) result = (result * factor) % modulus;
    factor = (factor * factor) % modulus;
  }
  return result;
}

/** The 64 bytes (x, y) of a 33-byte compressed secp256k1 public key; undefined when it is not a point of the curve. */
function uncompressSecp256k1(compressed: Uint8Array): Uint8Array | undefined {
  const prefix = compressed[0];
  if (compressed.length !== 33 || (prefix !== 2 && prefix !== 3)) return undefined;
  const x = BigInt(`0x${Buffer.from(compressed.subarray(1)).toString("hex")}`);
  if (x >= secp256k1Prime) return undefined;
  const ySquared = (powMod(x, 3n, secp256k1Prime) + 7n) % secp256k1Prime;
  // p = 3 mod 4, so a square root is y^((p+1)/4).
  let y = powMod(ySquared, (secp256k1Prime + 1n) / 4n, secp256k1Prime);
  if ((y * y) % secp256k1Prime !== ySquared) return undefined;
  if ((y & 1n) !== BigInt(prefix & 1)) y = secp256k1Prime - y;
  return Buffer.from(x.toString(16).padStart(64, "0") + y.toString(16).padStart(64, "0"), "hex");
}

/**
 * The Ethereum address that operates a peer, proven by the peer id itself: a Mycel node's libp2p key is its
 * Ethereum key, so a secp256k1 peer id carries the public key the address is the hash of. The stream's remote
 * peer is authenticated by Noise, so this is who is on the other end. Undefined for a peer id of another key type
 * (such a peer cannot speak for any address).
 */
export function ethereumAddressOfPeerId(peerId: string): Address | undefined {
  let publicKey: Uint8Array;
  try {
    const parsed = peerIdFromString(peerId);
    if (parsed.type !== "secp256k1") return undefined;
    publicKey = parsed.publicKey.raw;
  } catch {
    return undefined;
  }
  const point = uncompressSecp256k1(publicKey);
  if (!point) return undefined;
  return getAddress(`0x${keccak256(point).slice(-40)}`);
}
