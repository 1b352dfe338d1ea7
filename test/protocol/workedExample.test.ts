/** docs/PROTOCOL.md's worked example stays true: its receipt, end frame and evidence agree as the protocol requires. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { privateKeyToAccount } from "viem/accounts";
import { devPrivateKey } from "../../src/identity/devKey.ts";
import {
  evidenceCommitment,
  hashFingerprints,
  hashRequest,
  hashStreamedText,
  recoverReceiptSigner,
} from "../../src/protocol/index.ts";

const protocolDoc = readFileSync(join(import.meta.dirname, "../../docs/PROTOCOL.md"), "utf8");
const example = protocolDoc.slice(
  protocolDoc.indexOf("## Worked example"),
  protocolDoc.indexOf("## Payment vouchers"),
);
const [requestFrame, endFrame, evidence] = [...example.matchAll(/```json\n([\s\S]*?)```/g)].map((match) =>
  JSON.parse(match[1] as string),
);

describe("docs/PROTOCOL.md's worked example", () => {
  it("has a receipt signed by provider 1's devnet key for the request shown", async () => {
    assert.equal(
      await recoverReceiptSigner(endFrame.receipt),
      privateKeyToAccount(devPrivateKey("devnet-provider-1")).address,
    );
    assert.equal(endFrame.receipt.message.requestHash, hashRequest(requestFrame.request));
  });
  it("commits to its evidence, the fingerprints_hash of its end frame and the streamed text", () => {
    assert.equal(evidence.textHash, hashStreamedText("0%Im}vF*"));
    assert.equal(endFrame.fingerprints_hash, hashFingerprints(evidence.fingerprints));
    assert.equal(endFrame.receipt.message.commitment, evidenceCommitment(evidence));
  });
});
