/**
 * Evidence of an answer: the tokens a provider read and wrote, a fingerprint of the distributions it sampled
 * from and the hash of the text it streamed, committed to in the receipt. Pure: schemas, fingerprints, hashes and
 * the commitment.
 */
import { type Hex, keccak256, stringToBytes } from "viem";
import { z } from "zod";
import { auditSampleFrameSchema } from "./auditSample.ts";
import { canonicalJson } from "./canonicalJson.ts";
import { streamLimits } from "./constants.ts";
import { inferenceRequestSchema, wireFieldSchemas } from "./frames.ts";
import { signedReceiptSchema } from "./receipt.ts";

/** Output positions per fingerprint chunk. */
export const fingerprintChunkTokens = 32;
/** Most likely tokens a fingerprint keeps per position. */
export const fingerprintTopTokens = 4;
/** Fingerprint gaps are in thousandths of a nat (integers, so that commitments are exact). */
export const fingerprintGapScale = 1000;

/**
 * The fingerprint of one chunk of output: per position, the most likely token ids (most likely first) and how far
 * (in thousandths of a nat of raw logit) each one after the first lies below the first.
 */
export type FingerprintChunk = { ids: number[][]; gaps: number[][] };

/** The top logits the engine recorded at one generated position (see the engine's TopLogits). */
export type PositionTopLogits = { ids: readonly number[]; gaps: readonly number[] };

const { bytes32, tokenId, version } = wireFieldSchemas;
const gap = z.number().int().min(0).max(1_000_000_000);

/** A chunk of a fingerprint. */
export const fingerprintChunkSchema = z
  .object({
    ids: z.array(z.array(tokenId).min(1).max(fingerprintTopTokens)).min(1).max(fingerprintChunkTokens),
    gaps: z
      .array(z.array(gap).max(fingerprintTopTokens - 1))
      .min(1)
      .max(fingerprintChunkTokens),
  })
  .strict()
  .refine((chunk) => chunk.ids.length === chunk.gaps.length, {
    message: "ids and gaps must have one entry per position",
  })
  .refine((chunk) => chunk.ids.every((ids, index) => chunk.gaps[index]?.length === ids.length - 1), {
    message: "each position needs one gap per id after the first",
  });

/** Fingerprints of a whole answer: one chunk per {@link fingerprintChunkTokens} output tokens. */
export const fingerprintsSchema = z
  .array(fingerprintChunkSchema)
  .max(Math.ceil(streamLimits.maxPromptTokens / fingerprintChunkTokens) + 1);

/** Why generation ended, as the evidence (and the commitment) states it. */
export const evidenceFinishReasonSchema = z.enum(["stop", "length"]);

/**
 * keccak256 of the text a segment streamed ({@link hashStreamedText}). Absent only from evidence made before
 * receipts bound the text (their commitment is the legacy one, see {@link evidenceCommitment}).
 */
const textHashField = bytes32.optional();

/**
 * How a provider's engine decoded an answer: llama.cpp's batch size (its prompt went in batches of that many tokens)
 * and its threads per sequence. A validator re-evaluates the prompt in the same batches, where llama.cpp's
 * arithmetic is the provider's (docs/VERIFICATION.md "Re-evaluation"). Not committed: a provider that misstates it
 * only makes its own audit drift more.
 */
export const decodingSettingsSchema = z
  .object({ batchSize: z.number().int().min(1).max(65_536), threads: z.number().int().min(1).max(1024) })
  .strict();

/** How a provider decoded an answer (see {@link decodingSettingsSchema}). */
export type DecodingSettings = z.infer<typeof decodingSettingsSchema>;

/** Evidence of one answer (one provider segment), as `mycel.evidence` and the evidence protocol carry it. */
export const evidenceSchema = z
  .object({
    modelHash: bytes32,
    promptTokens: z.array(tokenId).min(1).max(streamLimits.maxPromptTokens),
    outputTokens: z.array(tokenId).max(streamLimits.maxPromptTokens),
    fingerprints: fingerprintsSchema,
    finishReason: evidenceFinishReasonSchema,
    textHash: textHashField,
    /** Absent from evidence made before providers stated it (the audit then assumes batch 512, 1 thread). */
    decoding: decodingSettingsSchema.optional(),
  })
  .strict();

/** Evidence of one answer. */
export type Evidence = z.infer<typeof evidenceSchema>;

/** What `mycel audit --input` reads: the evidence, the request it answered and optionally its receipt. */
export const auditInputSchema = z
  .object({
    modelHash: bytes32,
    request: inferenceRequestSchema,
    promptTokens: z.array(tokenId).min(1).max(streamLimits.maxPromptTokens),
    outputTokens: z.array(tokenId).max(streamLimits.maxPromptTokens),
    fingerprints: fingerprintsSchema,
    /** The finish reason the provider claimed (required by the commitment; "stop" or "length"). */
    finishReason: evidenceFinishReasonSchema,
    /** The hash of the text the provider streamed (required by a text-bound commitment). */
    textHash: textHashField,
    /** How the provider decoded (its batch size and threads), for re-evaluating its prompt the same way. */
    decoding: decodingSettingsSchema.optional(),
    receipt: signedReceiptSchema.optional(),
  })
  .strict();

/** An audit's input. */
export type AuditInput = z.infer<typeof auditInputSchema>;

/** Builds the fingerprint chunks of an answer from the top logits recorded at each position. */
export function buildFingerprints(positions: readonly PositionTopLogits[]): FingerprintChunk[] {
  const chunks: FingerprintChunk[] = [];
  for (let start = 0; start < positions.length; start += fingerprintChunkTokens) {
    const slice = positions.slice(start, start + fingerprintChunkTokens);
    chunks.push({
      ids: slice.map((position) => position.ids.slice(0, fingerprintTopTokens)),
      gaps: slice.map((position) =>
        position.gaps
          .slice(0, Math.max(0, Math.min(position.ids.length, fingerprintTopTokens) - 1))
          .map((value) => Math.max(0, Math.round(value * fingerprintGapScale))),
      ),
    });
  }
  return chunks;
}

/** The fingerprint entry of output position `index` (undefined past the end). */
export function fingerprintAt(
  fingerprints: readonly FingerprintChunk[],
  index: number,
): { ids: number[]; gaps: number[] } | undefined {
  const chunk = fingerprints[Math.floor(index / fingerprintChunkTokens)];
  const offset = index % fingerprintChunkTokens;
  const ids = chunk?.ids[offset];
  const gaps = chunk?.gaps[offset];
  return ids && gaps ? { ids, gaps } : undefined;
}

/** Positions a fingerprint covers. */
export function fingerprintPositions(fingerprints: readonly FingerprintChunk[]): number {
  return fingerprints.reduce((total, chunk) => total + chunk.ids.length, 0);
}

/**
 * The hash of the text a segment streamed: keccak256 of the UTF-8 of its chunks' `text` joined (chunk boundaries
 * do not matter). The text is what the engine streams for the output tokens (Engine.streamedText), so an audit can
 * recompute it from the tokens.
 */
export function hashStreamedText(text: string): Hex {
  return keccak256(stringToBytes(text));
}

/** keccak256 of the canonical JSON of an answer's fingerprints (what the `end` frame's `fingerprints_hash` holds). */
export function hashFingerprints(fingerprints: readonly FingerprintChunk[]): Hex {
  return keccak256(stringToBytes(canonicalJson(fingerprints)));
}

/**
 * A receipt's `commitment`: keccak256 of the canonical JSON `{finishReason, fingerprintsHash, textHash}`. It binds
 * the fingerprints, the finish reason and the streamed text, so none can change after the receipt is signed; a
 * gateway checks it against the text it relayed with only the `fingerprints_hash` of the `end` frame.
 */
export function textBoundCommitment(parameters: {
  finishReason: "stop" | "length";
  fingerprintsHash: Hex;
  textHash: Hex;
}): Hex {
  return keccak256(
    stringToBytes(
      canonicalJson({
        finishReason: parameters.finishReason,
        fingerprintsHash: parameters.fingerprintsHash,
        textHash: parameters.textHash,
      }),
    ),
  );
}

/**
 * The commitment of evidence: {@link textBoundCommitment} when it has a `textHash`; without one (evidence made before
 * receipts bound the text) the legacy commitment, keccak256 of the canonical JSON `{finishReason, fingerprints}`.
 */
export function evidenceCommitment(parameters: {
  fingerprints: readonly FingerprintChunk[];
  finishReason: "stop" | "length";
  textHash?: string | undefined;
}): Hex {
  if (parameters.textHash !== undefined)
    return textBoundCommitment({
      finishReason: parameters.finishReason,
      fingerprintsHash: hashFingerprints(parameters.fingerprints),
      textHash: parameters.textHash as Hex,
    });
  return keccak256(
    stringToBytes(
      canonicalJson({ finishReason: parameters.finishReason, fingerprints: parameters.fingerprints }),
    ),
  );
}

/**
 * Client or validator -> provider, on `/mycel/evidence/1.0.0`: the evidence of a request. The provider hands it to
 * the request's client (the stream's authenticated peer is the receipt's `client`), or to whoever shows an audit
 * sample of this request and receipt signed by that client (a validator the client chose).
 */
export const evidenceRequestFrameSchema = z
  .object({
    v: version,
    type: z.literal("evidence_request"),
    request_id: bytes32,
    /** The audit sample the client signed, as the validator received it. */
    sample: auditSampleFrameSchema.optional(),
  })
  .strict();

/** Provider -> asker: the evidence, with the request and the signed receipt it belongs to. */
export const evidenceFrameSchema = z
  .object({
    v: version,
    type: z.literal("evidence"),
    request: inferenceRequestSchema,
    evidence: evidenceSchema,
    receipt: signedReceiptSchema,
  })
  .strict();

export type EvidenceRequestFrame = z.infer<typeof evidenceRequestFrameSchema>;
export type EvidenceFrame = z.infer<typeof evidenceFrameSchema>;
