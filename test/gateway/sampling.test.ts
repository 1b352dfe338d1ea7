/** Audit sampling in process: which answers go to a validator, signed, and that a failed sample never fails an answer. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { MycelError } from "../../src/errors/index.ts";
import { createAuditSampler } from "../../src/gateway/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { type AuditSampleFrame, recoverAuditSampleSigner } from "../../src/protocol/index.ts";
import { serveAuditSamples } from "../../src/protocols/index.ts";
import { openReceiptStore, type ReceiptStore } from "../../src/store/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";
import { signedReceipt, textRequest } from "../fixtures/signedReceipts.ts";
import { temporaryHome } from "../helpers.ts";

const gatewayKey = generatePrivateKey();
const gatewayAddress = privateKeyToAccount(gatewayKey).address;
const modelHash = `0x${"5e".repeat(32)}`;

describe("gateway audit sampling (in process)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let store: ReceiptStore;
  let count = 0;
  before(async () => {
    directory = await temporaryHome("mycel-sampling-");
    store = openReceiptStore({ path: join(directory.home, "receipts.sqlite") });
  });
  after(async () => {
    store.close();
    await directory.remove();
  });

  /** A sampler with one validator on a memory network; the validator keeps what it takes, or refuses with `refuse`. */
  async function setUp(options: {
    rate: number;
    random: number;
    refuse?: MycelError;
    receipts?: ReceiptStore;
  }) {
    const network = createMemoryNetwork();
    const taken: { sample: AuditSampleFrame; peerId: string }[] = [];
    const validator = network.node(`validator-${++count}`);
    await serveAuditSamples(
      { node: validator },
      {
        accept: async (sample, peerId) => {
          if (options.refuse) throw options.refuse;
          taken.push({ sample, peerId });
        },
      },
    );
    const node = network.node(`gateway-${count}`);
    const sampler = createAuditSampler({
      node,
      privateKey: gatewayKey,
      receipts: options.receipts ?? store,
      validators: [`/ip4/127.0.0.1/tcp/1/p2p/${validator.peerId}`],
      rate: options.rate,
      logger: silentLogger,
      random: () => options.random,
    });
    const requestId = `0x${count.toString(16).padStart(64, "0")}` as Hex;
    const request = textRequest(modelHash);
    const receipt = await signedReceipt({
      providerKey: generatePrivateKey(),
      client: gatewayAddress,
      requestId,
      request,
    });
    const candidate = {
      requestId,
      segment: 0,
      providerPeerId: "provider-peer",
      request,
      receipt,
      force: false,
    };
    return { sampler, taken, candidate, validator };
  }

  it("sends an answer only when drawn: the draw under the rate", async () => {
    const drawn = await setUp({ rate: 0.5, random: 0.3 });
    assert.equal(await drawn.sampler.maybeSample(drawn.candidate), drawn.validator.peerId);
    const missed = await setUp({ rate: 0.2, random: 0.3 });
    assert.equal(await missed.sampler.maybeSample(missed.candidate), undefined);
    await Promise.all([drawn.sampler.drain(), missed.sampler.drain()]);
    assert.equal(drawn.taken.length, 1);
    assert.equal(missed.taken.length, 0);
    assert.equal(store.sampledTo({ requestId: missed.candidate.requestId, segment: 0 }), undefined);
  });

  it("sends every answer the client asked to audit, signed by the gateway, and records where it went", async () => {
    const { sampler, taken, candidate, validator } = await setUp({ rate: 0, random: 0.99 });
    assert.equal(await sampler.maybeSample(candidate), undefined, "rate 0: not drawn");
    assert.equal(await sampler.maybeSample({ ...candidate, force: true }), validator.peerId);
    await sampler.drain();
    assert.equal(taken.length, 1);
    const { sample } = taken[0] as { sample: AuditSampleFrame };
    assert.equal(sample.request_id, candidate.requestId);
    assert.equal(sample.provider_peer_id, "provider-peer");
    assert.equal(await recoverAuditSampleSigner(sample), gatewayAddress, "signed by the receipt's client");
    assert.equal(store.sampledTo({ requestId: candidate.requestId, segment: 0 }), validator.peerId);
  });

  it("never fails the answer when the validator refuses the sample or cannot be reached", async () => {
    const refusing = await setUp({ rate: 1, random: 0, refuse: new MycelError("full", { code: "busy" }) });
    assert.equal(await refusing.sampler.maybeSample(refusing.candidate), undefined, "nobody took it");
    await refusing.sampler.drain();
    assert.equal(refusing.taken.length, 0);
    assert.equal(store.sampledTo({ requestId: refusing.candidate.requestId, segment: 0 }), undefined);
    assert.equal(refusing.sampler.resting().size, 0, "a validator that refused is alive: not left out");
    const network = createMemoryNetwork();
    const lonely = createAuditSampler({
      node: network.node("gateway-alone"),
      privateKey: gatewayKey,
      receipts: store,
      validators: ["/ip4/127.0.0.1/tcp/1/p2p/nobody-home"],
      rate: 1,
      logger: silentLogger,
    });
    assert.equal(
      await lonely.maybeSample({ ...refusing.candidate, requestId: `0x${"ee".repeat(32)}` }),
      undefined,
    );
    await lonely.drain();
    assert.deepEqual([...lonely.resting().keys()], ["nobody-home"], "an unreachable validator is left out");
  });

  it("does not send a sample it cannot record (its verdict could not be kept)", async () => {
    const failing = {
      ...store,
      markSampled: () => {
        throw new Error("SQLITE_FULL: database or disk is full");
      },
    };
    const { sampler, taken, candidate } = await setUp({ rate: 1, random: 0, receipts: failing });
    assert.equal(await sampler.maybeSample(candidate), undefined);
    await sampler.drain();
    assert.equal(taken.length, 0);
  });

  it("gives a sample its validator cannot take to another, names that one, and leaves the dead one out a while", async () => {
    const { taken, candidate } = await setUp({ rate: 1, random: 0 });
    const network = createMemoryNetwork();
    // The live validator serves on this network too; the dead one has no node at all.
    const live = network.node("validator-live");
    const takenLive: string[] = [];
    await serveAuditSamples(
      { node: live },
      {
        accept: async (sample) => {
          takenLive.push(sample.request_id);
        },
      },
    );
    const sampler = createAuditSampler({
      node: network.node("gateway-two-validators"),
      privateKey: gatewayKey,
      receipts: store,
      validators: ["/ip4/127.0.0.1/tcp/1/p2p/validator-dead", `/ip4/127.0.0.1/tcp/2/p2p/${live.peerId}`],
      rate: 1,
      logger: silentLogger,
      validatorRestMs: 60_000,
    });
    // Until the dead one was drawn first once (bounded: each sample has even odds of trying it first).
    let sent = 0;
    while (sampler.resting().size === 0 && sent < 30) {
      const requestId = `0x${(0xaa00 + sent++).toString(16).padStart(64, "0")}` as Hex;
      assert.equal(
        await sampler.maybeSample({ ...candidate, requestId }),
        live.peerId,
        "the live one took it",
      );
      assert.equal(store.sampledTo({ requestId, segment: 0 }), live.peerId, "and is the one stored");
    }
    assert.deepEqual([...sampler.resting().keys()], ["validator-dead"], "the dead one is left out");
    assert.equal(takenLive.length, sent, "every sample reached the live validator");
    // Left out: the next samples go straight to the live one, without trying the dead one first.
    const requestId = `0x${"ab".repeat(32)}` as Hex;
    assert.equal(await sampler.maybeSample({ ...candidate, requestId }), live.peerId);
    assert.equal(taken.length, 0, "the first validator of setUp was not involved");
  });
});
