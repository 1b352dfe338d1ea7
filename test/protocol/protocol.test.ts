import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keccak256, stringToBytes, verifyTypedData } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  canonicalJson,
  encodeTokenIds,
  hashRequest,
  hashTokenIds,
  type InferenceRequest,
  inferenceRequestSchema,
  ProtocolError,
  parseFrame,
  priceOfTokens,
  providerFrameSchema,
  type ReceiptMessage,
  receiptDomain,
  receiptMessageFromJson,
  recoverReceiptSigner,
  requestFrameSchema,
  signAnnouncement,
  signReceipt,
  verifyAnnouncement,
} from "../../src/protocol/index.ts";

const modelHash = `0x${"ab".repeat(32)}` as const;

function sampleRequest(): InferenceRequest {
  return {
    model_hash: modelHash,
    kind: "chat",
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 16,
    temperature: 0,
    top_p: 1,
    top_k: 0,
    seed: 7,
    stop: [],
  };
}

describe("protocol: canonical JSON and hashes", () => {
  it("serializes as RFC 8785: sorted keys, no whitespace, ECMAScript numbers", () => {
    assert.equal(
      canonicalJson({ b: 1, a: [true, null, "x"], c: { z: 1e21, y: 0.5 } }),
      '{"a":[true,null,"x"],"b":1,"c":{"y":0.5,"z":1e+21}}',
    );
    assert.equal(canonicalJson({ "\u00e9": 1, z: 2, A: 3 }), '{"A":3,"z":2,"\u00e9":1}');
    assert.equal(canonicalJson({ a: undefined, b: -0 }), '{"b":0}');
    assert.throws(() => canonicalJson({ a: Number.NaN }), /not a finite number/);
    assert.throws(() => canonicalJson({ a: 1n }), /bigint/);
  });

  it("hashes token ids as uint32 big-endian and requests independent of key order", () => {
    assert.deepEqual([...encodeTokenIds([1, 256, 0xffffffff])], [0, 0, 0, 1, 0, 0, 1, 0, 255, 255, 255, 255]);
    assert.equal(hashTokenIds([1, 2]), keccak256(new Uint8Array([0, 0, 0, 1, 0, 0, 0, 2])));
    assert.throws(() => hashTokenIds([-1]), /uint32/);
    const request = sampleRequest();
    const reordered = Object.fromEntries(Object.entries(request).reverse());
    assert.equal(hashRequest(request), hashRequest(reordered));
    assert.equal(hashRequest(request), keccak256(stringToBytes(canonicalJson(request))));
    assert.notEqual(hashRequest(request), hashRequest({ ...request, seed: 8 }));
  });
});

describe("protocol: frames", () => {
  it("accepts a well-formed request frame and refuses malformed ones with ProtocolError", () => {
    const frame = {
      v: 1,
      type: "request",
      id: modelHash,
      client: privateKeyToAccount(generatePrivateKey()).address,
      request: sampleRequest(),
    };
    assert.deepEqual(parseFrame(requestFrameSchema, frame), frame);
    assert.throws(() => parseFrame(requestFrameSchema, { ...frame, v: 2 }), ProtocolError);
    assert.throws(() => parseFrame(requestFrameSchema, { ...frame, extra: 1 }), ProtocolError);
    assert.throws(
      () => parseFrame(requestFrameSchema, { ...frame, request: { ...sampleRequest(), prompt: "x" } }),
      /text requests carry a prompt/,
    );
    assert.throws(
      () => parseFrame(providerFrameSchema, { v: 1, type: "chunk", tokens: [-1], text: "" }),
      ProtocolError,
    );
    assert.throws(() => parseFrame(providerFrameSchema, "not an object"), ProtocolError);
    assert.equal(inferenceRequestSchema.safeParse({ ...sampleRequest(), temperature: 3 }).success, false);
  });
});

describe("protocol: EIP-712 receipts", () => {
  it("signs a receipt that viem's verifyTypedData accepts for the provider, and not for another address", async () => {
    const providerKey = generatePrivateKey();
    const provider = privateKeyToAccount(providerKey).address;
    const message: ReceiptMessage = {
      requestId: `0x${"01".repeat(32)}`,
      client: privateKeyToAccount(generatePrivateKey()).address,
      provider,
      modelHash,
      requestHash: hashRequest(sampleRequest()),
      promptHash: hashTokenIds([1, 2, 3]),
      outputHash: hashTokenIds([4, 5]),
      commitment: `0x${"ab".repeat(32)}`,
      promptTokens: 3,
      completionTokens: 2,
      price: priceOfTokens({
        promptTokens: 3,
        completionTokens: 2,
        pricePerMillion: { input: 1_000_000n, output: 2_000_000n },
      }),
      timestamp: 1_700_000_000n,
    };
    assert.equal(message.price, 7n);
    const receipt = await signReceipt({ privateKey: providerKey, domain: receiptDomain(), message });
    const json = JSON.parse(JSON.stringify(receipt));
    assert.equal(json.domain.chainId, 31337);
    assert.equal(json.message.price, "7");
    const typed = {
      domain: json.domain,
      types: json.types,
      primaryType: "Receipt" as const,
      message: receiptMessageFromJson(json.message),
      signature: json.signature,
    };
    assert.equal(await verifyTypedData({ address: provider, ...typed }), true);
    assert.equal(await verifyTypedData({ address: message.client, ...typed }), false);
    assert.equal(await recoverReceiptSigner(json), provider);
    const tampered = { ...json, message: { ...json.message, completionTokens: 3 } };
    assert.notEqual(await recoverReceiptSigner(tampered), provider);
  });
});

describe("protocol: announcements", () => {
  it("verifies a signed announcement and refuses a forged, mismatched or expired one", async () => {
    const key = generatePrivateKey();
    const now = Date.now();
    const announcement = await signAnnouncement({
      privateKey: key,
      announcement: {
        peer_id: "12D3KooWpeer",
        multiaddrs: ["/ip4/127.0.0.1/tcp/1"],
        models: [{ hash: modelHash, name: "m", context_size: 512 }],
        price: { input: "100", output: "200" },
        capacity: { parallelism: 2, max_queue: 4, busy: 0, waiting: 0 },
        version: "0.1.0",
        issued_at: now,
        expires_at: now + 20_000,
      },
    });
    const verified = await verifyAnnouncement({ value: announcement, from: "12D3KooWpeer", now });
    assert.equal(verified.address, privateKeyToAccount(key).address);
    await assert.rejects(
      verifyAnnouncement({ value: announcement, from: "12D3KooWother", now }),
      /another peer/,
    );
    await assert.rejects(
      verifyAnnouncement({
        value: { ...announcement, price: { input: "1", output: "1" } },
        from: "12D3KooWpeer",
        now,
      }),
      /signature does not match/,
    );
    await assert.rejects(
      verifyAnnouncement({ value: announcement, from: "12D3KooWpeer", now: now + 60_000 }),
      /expired/,
    );
    await assert.rejects(
      verifyAnnouncement({ value: { ...announcement, models: [] }, from: "12D3KooWpeer", now }),
      ProtocolError,
    );
  });
});
