import { CID } from "multiformats/cid";
import * as raw from "multiformats/codecs/raw";
import { create as createDigest } from "multiformats/hashes/digest";
import { sha256 } from "multiformats/hashes/sha2";
import { InvalidInputError } from "../errors/index.ts";

/** Returns the lowercase 64-digit sha256 of a model (its GGUF hash), accepting an optional 0x prefix. */
export function normalizeModelHash(modelHashHex: string): string {
  const digits = modelHashHex.startsWith("0x") ? modelHashHex.slice(2) : modelHashHex;
  if (!/^[0-9a-fA-F]{64}$/.test(digits)) {
    throw new InvalidInputError(`"${modelHashHex}" is not a model sha256`, {
      details: "expected 64 hex digits (the sha256 of the GGUF file)",
      hint: "list the models and their hashes with `mycel model list`",
      param: "modelHash",
    });
  }
  return digits.toLowerCase();
}

/** The DHT key of a model: a CIDv1 (raw codec) whose multihash is the model's GGUF sha256. */
export function modelCidFromHash(modelHashHex: string): CID {
  const digestBytes = Uint8Array.from(Buffer.from(normalizeModelHash(modelHashHex), "hex"));
  return CID.createV1(raw.code, createDigest(sha256.code, digestBytes));
}
