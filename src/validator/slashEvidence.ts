/** Slashing evidence on chain: the audit input (receipt, request, tokens, fingerprints), gzipped JSON. */
import { gunzipSync, gzipSync } from "node:zlib";
import { bytesToHex, type Hex, hexToBytes } from "viem";

/** EpochConsensus.MAX_EVIDENCE_BYTES. */
export const maxEvidenceBytes = 16_384;

/** Encodes an audit input as evidence bytes; undefined when it does not fit {@link maxEvidenceBytes}. */
export function encodeSlashEvidence(input: unknown): Hex | undefined {
  const bytes = gzipSync(Buffer.from(JSON.stringify(input), "utf8"), { level: 9 });
  return bytes.length <= maxEvidenceBytes ? bytesToHex(bytes) : undefined;
}

/** Decodes evidence bytes back to the audit input (throws on anything else). */
export function decodeSlashEvidence(evidence: Hex): unknown {
  const bytes = hexToBytes(evidence);
  const text = gunzipSync(bytes, { maxOutputLength: 8 * 1024 * 1024 }).toString("utf8");
  return JSON.parse(text);
}
