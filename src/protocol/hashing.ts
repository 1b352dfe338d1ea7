/** The hashes a receipt binds: token ids as uint32 big-endian, requests as canonical JSON, all keccak256. */
import { type Hex, keccak256, stringToBytes } from "viem";
import { InvalidInputError } from "../errors/index.ts";
import { canonicalJson } from "./canonicalJson.ts";

/** Encodes token ids as consecutive uint32 big-endian values. */
export function encodeTokenIds(tokens: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(tokens.length * 4);
  const view = new DataView(bytes.buffer);
  tokens.forEach((token, index) => {
    if (!Number.isInteger(token) || token < 0 || token > 0xffffffff)
      throw new InvalidInputError(`token id ${token} is not a uint32`, { code: "invalid_value" });
    view.setUint32(index * 4, token, false);
  });
  return bytes;
}

/** keccak256 of token ids as uint32 big-endian (a receipt's promptHash and outputHash). */
export function hashTokenIds(tokens: readonly number[]): Hex {
  return keccak256(encodeTokenIds(tokens));
}

/** keccak256 of a request in RFC 8785 canonical JSON (a receipt's requestHash). */
export function hashRequest(request: unknown): Hex {
  return keccak256(stringToBytes(canonicalJson(request)));
}

/** A GGUF sha256 (64 hex digits, with or without 0x) as bytes32 hex. */
export function modelHashToBytes32(hash: string): Hex {
  const digits = hash.replace(/^(0x|sha256:)/i, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(digits))
    throw new InvalidInputError(`"${hash}" is not a sha256 model hash`, { code: "invalid_value" });
  return `0x${digits}`;
}
