/**
 * Who the provider hands evidence to, over the real evidence protocol (in memory, peers named by real secp256k1
 * peer ids): the request's client, and a validator showing an audit sample the client signed for this request and
 * receipt; anyone else gets the answer a request without evidence gets.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { type AuditSampleFrame, signAuditSample } from "../../src/protocol/index.ts";
import {
  EvidenceUnavailableError,
  fetchEvidence,
  type KeptEvidence,
  serveEvidence,
} from "../../src/protocols/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";
import { signedReceipt, textRequest } from "../fixtures/signedReceipts.ts";

const modelHash = `0x${"5e".repeat(32)}` as Hex;
const providerKey = generatePrivateKey();
const clientKey = generatePrivateKey();
const otherClientKey = generatePrivateKey();
const keptId = `0x${"01".repeat(32)}` as Hex;
const otherId = `0x${"02".repeat(32)}` as Hex;
const unknownId = `0x${"03".repeat(32)}` as Hex;

async function keptEvidence(requestId: Hex, client: Hex): Promise<KeptEvidence> {
  const request = textRequest(modelHash);
  return {
    request,
    receipt: await signedReceipt({ providerKey, client, requestId, request }),
    evidence: {
      modelHash,
      promptTokens: [1, 2],
      outputTokens: [3, 4],
      fingerprints: [{ ids: [[3], [4]], gaps: [[], []] }],
      finishReason: "length",
    },
  };
}

function sampleOf(kept: KeptEvidence, requestId: Hex, signer: Hex): Promise<AuditSampleFrame> {
  return signAuditSample({
    privateKey: signer,
    sample: {
      request_id: requestId,
      provider_peer_id: peerIdOfSecp256k1Key(providerKey),
      request: kept.request,
      receipt: kept.receipt,
    },
  });
}

describe("evidence protocol: who is handed evidence", async () => {
  const network = createMemoryNetwork();
  const kept = new Map<Hex, KeptEvidence>([
    [keptId, await keptEvidence(keptId, privateKeyToAccount(clientKey).address)],
    [otherId, await keptEvidence(otherId, privateKeyToAccount(otherClientKey).address)],
  ]);
  const providerPeer = peerIdOfSecp256k1Key(providerKey);
  await serveEvidence(
    { node: network.node(providerPeer) },
    { lookup: (requestId) => kept.get(requestId), retentionMs: 7 * 24 * 3600_000 },
  );
  const asker = (key: Hex) => ({ node: network.node(peerIdOfSecp256k1Key(key)) });
  const validator = asker(generatePrivateKey());
  /** The provider's refusal as the asker sees it. */
  const refusal = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => assert.fail("evidence was handed over"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof EvidenceUnavailableError, String(error));
    return String(error.details).replace(/0x[0-9a-f]{64}/g, "<id>");
  };

  it("hands the evidence to the request's client, recognised by the stream's peer", async () => {
    const frame = await fetchEvidence(asker(clientKey), { providerPeerId: providerPeer, requestId: keptId });
    assert.deepEqual(frame.receipt, kept.get(keptId)?.receipt);
    assert.deepEqual(frame.request, kept.get(keptId)?.request);
  });

  it("hands it to a validator showing the sample the client signed", async () => {
    const sample = await sampleOf(kept.get(keptId) as KeptEvidence, keptId, clientKey);
    const frame = await fetchEvidence(validator, { providerPeerId: providerPeer, requestId: keptId, sample });
    assert.equal(frame.receipt.message.requestId, keptId);
  });

  it("refuses anyone else with the answer a request without evidence gets", async () => {
    const stranger = asker(generatePrivateKey());
    const never = await refusal(
      fetchEvidence(stranger, { providerPeerId: providerPeer, requestId: unknownId }),
    );
    assert.match(never, /evidence_not_found/);
    const cases: [string, Promise<unknown>][] = [
      ["no sample", fetchEvidence(stranger, { providerPeerId: providerPeer, requestId: keptId })],
      [
        "another client's peer",
        fetchEvidence(asker(otherClientKey), { providerPeerId: providerPeer, requestId: keptId }),
      ],
      [
        "a sample signed by someone else",
        sampleOf(kept.get(keptId) as KeptEvidence, keptId, generatePrivateKey()).then((sample) =>
          fetchEvidence(stranger, { providerPeerId: providerPeer, requestId: keptId, sample }),
        ),
      ],
      [
        "another request's sample, signed by its own client",
        sampleOf(kept.get(otherId) as KeptEvidence, otherId, otherClientKey).then((sample) =>
          fetchEvidence(stranger, { providerPeerId: providerPeer, requestId: keptId, sample }),
        ),
      ],
      [
        "the client's sample of this request with another receipt",
        sampleOf(
          { ...(kept.get(keptId) as KeptEvidence), receipt: (kept.get(otherId) as KeptEvidence).receipt },
          keptId,
          clientKey,
        ).then((sample) =>
          fetchEvidence(stranger, { providerPeerId: providerPeer, requestId: keptId, sample }),
        ),
      ],
      [
        "a sample whose signature was reused on changed fields",
        sampleOf(kept.get(keptId) as KeptEvidence, keptId, clientKey).then((sample) =>
          fetchEvidence(stranger, {
            providerPeerId: providerPeer,
            requestId: keptId,
            sample: { ...sample, provider_peer_id: "someone-else" },
          }),
        ),
      ],
    ];
    // Every attempt runs at once: each gets its handler now, so one that fails while an earlier one is awaited is no
    // unhandled rejection.
    const refusals = cases.map(([what, attempt]) => [what, refusal(attempt)] as const);
    for (const [what, answer] of refusals) assert.equal(await answer, never, `${what}: same answer`);
  });
});
