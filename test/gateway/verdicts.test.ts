/**
 * Verdicts handed back to the gateway, in process: kept only when signed by the validator they name, sent by the
 * validator peer the segment went to, on a segment of this gateway; over the real verdict protocol too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createVerdictKeeper } from "../../src/gateway/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { ProtocolError, signAuditVerdict } from "../../src/protocol/index.ts";
import { sendVerdict, serveVerdicts } from "../../src/protocols/index.ts";
import { openReceiptStore, type ReceiptStore } from "../../src/store/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";
import { signedReceipt, textRequest } from "../fixtures/signedReceipts.ts";
import { temporaryHome } from "../helpers.ts";

const gatewayKey = generatePrivateKey();
const providerKey = generatePrivateKey();
const validatorKey = generatePrivateKey();
const provider = privateKeyToAccount(providerKey).address;
const modelHash = `0x${"5e".repeat(32)}` as Hex;
const sampledRequest = `0x${"01".repeat(32)}` as Hex;
const unsampledRequest = `0x${"02".repeat(32)}` as Hex;

describe("gateway: verdicts handed back (in process)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let store: ReceiptStore;
  const announced: { requestId: Hex; segment: number; verdict: string }[] = [];
  let keep: ReturnType<typeof createVerdictKeeper>;

  const verdictOn = (requestId: Hex, key = validatorKey, validator?: Hex) =>
    signAuditVerdict({
      privateKey: key,
      verdict: {
        request_id: requestId,
        provider,
        verdict: "fail",
        reasons: [{ code: "fingerprint_mismatch", message: "another model answered" }],
        metrics: { outputTokens: 2 },
        audited_at: Date.now(),
      },
    }).then((frame) => (validator ? { ...frame, validator } : frame));

  before(async () => {
    directory = await temporaryHome("mycel-verdicts-");
    store = openReceiptStore({ path: join(directory.home, "receipts.sqlite") });
    for (const requestId of [sampledRequest, unsampledRequest]) {
      const receipt = await signedReceipt({
        providerKey,
        client: privateKeyToAccount(gatewayKey).address,
        requestId,
        request: textRequest(modelHash),
      });
      store.saveReceipt({ requestId, segment: 0, provider, modelHash, receipt });
    }
    store.markSampled({ requestId: sampledRequest, segment: 0, validatorPeer: "validator-peer" });
    keep = createVerdictKeeper({
      receipts: store,
      logger: silentLogger,
      onVerdict: (kept) =>
        announced.push({ requestId: kept.requestId, segment: kept.segment, verdict: kept.verdict.verdict }),
    });
  });
  after(async () => {
    store.close();
    await directory.remove();
  });

  it("keeps the verdict of the validator the segment was sent to, and announces it once", async () => {
    const frame = await verdictOn(sampledRequest);
    await keep(frame, "validator-peer");
    await keep(frame, "validator-peer");
    const kept = store.auditVerdicts(sampledRequest);
    assert.equal(kept.length, 1);
    assert.equal(kept[0]?.validator, privateKeyToAccount(validatorKey).address);
    assert.deepEqual(kept[0]?.reasons, [{ code: "fingerprint_mismatch", message: "another model answered" }]);
    assert.deepEqual(announced, [{ requestId: sampledRequest, segment: 0, verdict: "fail" }]);
  });

  it("refuses a verdict signed by another key than the validator it names", async () => {
    const impostor = await verdictOn(
      sampledRequest,
      generatePrivateKey(),
      privateKeyToAccount(validatorKey).address,
    );
    await assert.rejects(
      keep(impostor, "validator-peer"),
      (error) => error instanceof ProtocolError && error.code === "bad_signature",
    );
  });

  it("refuses a verdict from another peer, or on a segment never sampled, and keeps nothing", async () => {
    const otherValidator = generatePrivateKey();
    await assert.rejects(
      keep(await verdictOn(sampledRequest, otherValidator), "someone-else"),
      ProtocolError,
    );
    await assert.rejects(keep(await verdictOn(unsampledRequest), "validator-peer"), ProtocolError);
    assert.equal(store.auditVerdicts(unsampledRequest).length, 0);
    assert.equal(
      store
        .auditVerdicts(sampledRequest)
        .filter((entry) => entry.validator === privateKeyToAccount(otherValidator).address).length,
      0,
    );
  });

  it("takes verdicts over /mycel/verdict/1.0.0 from the validator's peer", async () => {
    const network = createMemoryNetwork();
    const gateway = network.node("gateway");
    const requestId = `0x${"03".repeat(32)}` as Hex;
    const receipt = await signedReceipt({
      providerKey,
      client: privateKeyToAccount(gatewayKey).address,
      requestId,
      request: textRequest(modelHash),
    });
    store.saveReceipt({ requestId, segment: 0, provider, modelHash, receipt });
    store.markSampled({ requestId, segment: 0, validatorPeer: "validator-node" });
    const kept = new Promise<void>((resolve) => {
      void serveVerdicts(
        { node: gateway },
        {
          accept: async (frame, peerId) => {
            await keep(frame, peerId);
            resolve();
          },
        },
      );
    });
    await sendVerdict(
      { node: network.node("validator-node") },
      { gatewayPeerId: "gateway", verdict: await verdictOn(requestId) },
    );
    await kept;
    assert.equal(store.auditVerdicts(requestId).length, 1);
  });
});
