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

/** Vectors as float32 little-endian values, one after another in input order (an embeddings answer's exact bytes). */
export function encodeVectors(vectors: readonly (readonly number[])[]): Uint8Array {
  const bytes = new Uint8Array(vectors.reduce((total, vector) => total + vector.length * 4, 0));
  const view = new DataView(bytes.buffer);
  let offset = 0;
  for (const vector of vectors)
    for (const value of vector) {
      view.setFloat32(offset, value, true);
      offset += 4;
    }
  return bytes;
}

/** Float32 little-endian bytes back to numbers. */
export function decodeVector(bytes: Uint8Array): number[] {
  if (bytes.length % 4 !== 0)
    throw new InvalidInputError(`a vector of ${bytes.length} bytes is not float32 values`, {
      code: "invalid_value",
    });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 4 }, (_, index) => view.getFloat32(index * 4, true));
}

/** keccak256 of the vectors' float32 little-endian bytes in input order: an embeddings receipt's outputHash. */
export function hashVectors(vectors: readonly (readonly number[])[]): Hex {
  return keccak256(encodeVectors(vectors));
}
