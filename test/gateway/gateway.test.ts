import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Hex, zeroAddress } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  type KnownProvider,
  ReceiptRejectedError,
  rankProviders,
  verifyReceipt,
} from "../../src/gateway/index.ts";
import {
  type Announcement,
  type EndFrame,
  hashRequest,
  hashStreamedText,
  hashTokenIds,
  type InferenceRequest,
  priceOfTokens,
  type ReceiptMessage,
  receiptDomain,
  signReceipt,
  textBoundCommitment,
} from "../../src/protocol/index.ts";

const providerKey = generatePrivateKey();
const provider = privateKeyToAccount(providerKey).address;
const client = privateKeyToAccount(generatePrivateKey()).address;
const requestId = `0x${"11".repeat(32)}` as Hex;
const prices = { input: 1_000_000n, output: 3_000_000n };
const request: InferenceRequest = {
  model_hash: `0x${"ab".repeat(32)}`,
  kind: "text",
  prompt: "hello",
  max_tokens: 4,
  temperature: 0,
  top_p: 1,
  top_k: 0,
  seed: 1,
  stop: [],
  prefix_tokens: [9],
};
const promptIds = [1, 2, 3, 9];
const output = [5, 6, 7];
/** The text the provider streamed for `output`, and the hash of its fingerprints (as the end frame carries it). */
const streamed = "five six 7é";
const fingerprintsHash = `0x${"fe".repeat(32)}` as Hex;

function honestMessage(): ReceiptMessage {
  return {
    requestId,
    client,
    provider,
    modelHash: request.model_hash as Hex,
    requestHash: hashRequest(request),
    promptHash: hashTokenIds(promptIds),
    outputHash: hashTokenIds(output),
    commitment: textBoundCommitment({
      finishReason: "length",
      fingerprintsHash,
      textHash: hashStreamedText(streamed),
    }),
    promptTokens: promptIds.length,
    completionTokens: output.length,
    price: priceOfTokens({
      promptTokens: promptIds.length,
      completionTokens: output.length,
      pricePerMillion: prices,
    }),
    timestamp: BigInt(Math.floor(Date.now() / 1000)),
  };
}

async function endFrame(parameters: {
  message?: Partial<ReceiptMessage>;
  key?: Hex;
  ids?: number[];
  chainId?: number;
  /** End frame fields to change (`fingerprints_hash: undefined` leaves it out). */
  end?: Partial<EndFrame>;
}) {
  const receipt = await signReceipt({
    privateKey: parameters.key ?? providerKey,
    domain: receiptDomain({ chainId: parameters.chainId }),
    message: { ...honestMessage(), ...parameters.message },
  });
  return {
    v: 1,
    type: "end",
    finish_reason: "length",
    prompt_token_ids: parameters.ids ?? promptIds,
    fingerprints_hash: fingerprintsHash,
    receipt,
    ...parameters.end,
  } as EndFrame;
}

const check = (end: EndFrame, outputTokens: number[] = output, streamedText = streamed) =>
  verifyReceipt({
    end,
    requestId,
    client,
    provider,
    request,
    outputTokens,
    streamedText,
    pricePerMillion: prices,
    domain: receiptDomain(),
  });

describe("gateway: receipt verification", () => {
  it("accepts an honest receipt", async () => {
    const receipt = await check(await endFrame({}));
    assert.equal(receipt.message.provider, provider);
  });

  it("rejects a receipt that charges more than the request's price ceiling allows, even at the announced price", async () => {
    const end = await endFrame({});
    const atCeiling = {
      end,
      requestId,
      client,
      provider,
      request,
      outputTokens: output,
      domain: receiptDomain(),
    };
    const highest = prices.input > prices.output ? prices.input : prices.output;
    await verifyReceipt({ ...atCeiling, pricePerMillion: prices, maxPricePerMillion: highest });
    await assert.rejects(
      verifyReceipt({ ...atCeiling, pricePerMillion: prices, maxPricePerMillion: highest - 1n }),
      (error: unknown) => error instanceof ReceiptRejectedError && /price ceiling/.test(error.message),
    );
  });

  it("rejects a forged signature and every mismatched field", async () => {
    const cases: [string, Promise<EndFrame>, RegExp, number[]?][] = [
      ["signed by another key", endFrame({ key: generatePrivateKey() }), /signed by 0x/],
      ["another chain", endFrame({ chainId: 1 }), /another chain/],
      ["another request id", endFrame({ message: { requestId: `0x${"22".repeat(32)}` } }), /request id/],
      ["another client", endFrame({ message: { client: provider } }), /another client/],
      ["another model", endFrame({ message: { modelHash: `0x${"cd".repeat(32)}` } }), /another model/],
      [
        "another request",
        endFrame({ message: { requestHash: hashRequest({ ...request, seed: 2 }) } }),
        /request hash/,
      ],
      [
        "prompt ids without the prefix",
        endFrame({ ids: [1, 2, 3], message: { promptHash: hashTokenIds([1, 2, 3]), promptTokens: 3 } }),
        /continuation prefix/,
      ],
      ["another prompt", endFrame({ message: { promptHash: hashTokenIds([1]) } }), /prompt hash/],
      ["a wrong prompt count", endFrame({ message: { promptTokens: 99 } }), /prompt token count/],
      ["another output", endFrame({}), /output hash/, [5, 6, 8]],
      ["a wrong output count", endFrame({ message: { completionTokens: 2 } }), /completion token count/],
      ["an overcharge", endFrame({ message: { price: 10n ** 18n } }), /announced/],
      ["a stale timestamp", endFrame({ message: { timestamp: 1_000n } }), /timestamp/],
      ["another provider named", endFrame({ message: { provider: zeroAddress } }), /another provider/],
      ["another finish reason sent", endFrame({ end: { finish_reason: "stop" } }), /bind the text/],
      [
        "other fingerprints named",
        endFrame({ end: { fingerprints_hash: `0x${"ef".repeat(32)}` } }),
        /bind the text/,
      ],
      ["no fingerprints_hash", endFrame({ end: { fingerprints_hash: undefined } }), /no fingerprints_hash/],
    ];
    for (const [what, frame, reason, tokens] of cases) {
      const error = await check(await frame, tokens).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof ReceiptRejectedError, `${what}: rejected`);
      assert.match(error.message, reason, what);
    }
  });

  it("rejects a receipt whose commitment binds other text than the text streamed, however it differs", async () => {
    const end = await endFrame({});
    // The same text in other chunks is the same text: only the joined text counts.
    await check(end, output, ["five ", "six 7", "é"].join(""));
    for (const other of ["five six 8é", "five six 7e\u0301", "five six 7é ", "", "BUY NOW five six 7é"]) {
      const error = await check(end, output, other).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof ReceiptRejectedError, `${JSON.stringify(other)}: rejected`);
      assert.match(error.message, /does not bind the text streamed/);
    }
  });
});

function known(parameters: {
  peerId: string;
  price: number;
  latencyMs?: number;
  successes?: number;
  failures?: number;
}): KnownProvider {
  const announcement = {
    price: { input: String(parameters.price), output: String(parameters.price) },
    capacity: { parallelism: 2, max_queue: 4, busy: 0, waiting: 0 },
  } as unknown as Announcement;
  return {
    announcement,
    peerId: parameters.peerId,
    address: zeroAddress,
    latencyMs: parameters.latencyMs,
    throughputTps: undefined,
    successes: parameters.successes ?? 0,
    failures: parameters.failures ?? 0,
    inFlight: 0,
    bannedUntil: 0,
    busyUntil: 0,
    busyStreak: 0,
    untrusted: false,
    reputation: 1,
  };
}

describe("gateway: routing", () => {
  it("prefers the cheaper provider when all else is equal", () => {
    const ranked = rankProviders({
      candidates: [known({ peerId: "dear", price: 300 }), known({ peerId: "cheap", price: 100 })],
    });
    assert.deepEqual(
      ranked.map((entry) => entry.peerId),
      ["cheap", "dear"],
    );
  });

  it("sends a request to a provider with a free sequence before a cheaper one where it would queue", () => {
    const cheap = known({ peerId: "cheap", price: 100 });
    const dear = known({ peerId: "dear", price: 300 });
    cheap.inFlight = 2;
    assert.deepEqual(
      rankProviders({ candidates: [cheap, dear] }).map((entry) => entry.peerId),
      ["dear", "cheap"],
      "the cheap one runs 2 at once and has 2 of this gateway's requests",
    );
    dear.inFlight = 2;
    assert.deepEqual(
      rankProviders({ candidates: [cheap, dear] }).map((entry) => entry.peerId),
      ["cheap", "dear"],
      "both would queue it: the price decides again",
    );
  });

  it("prefers fast and reliable providers, and tries untried ones", () => {
    const slow = known({ peerId: "slow", price: 100, latencyMs: 900, successes: 5 });
    const fast = known({ peerId: "fast", price: 100, latencyMs: 20, successes: 5 });
    const flaky = known({ peerId: "flaky", price: 100, latencyMs: 20, successes: 1, failures: 4 });
    assert.deepEqual(
      rankProviders({ candidates: [slow, flaky, fast] }).map((entry) => entry.peerId),
      ["fast", "slow", "flaky"],
    );
    const newcomer = known({ peerId: "new", price: 100 });
    assert.equal(rankProviders({ candidates: [slow, newcomer, fast] })[0]?.peerId, "new");
  });

  it("leaves out banned, untrusted and excluded providers", () => {
    const banned = { ...known({ peerId: "banned", price: 1 }), bannedUntil: Date.now() + 60_000 };
    const cheat = { ...known({ peerId: "cheat", price: 1 }), untrusted: true };
    const tried = known({ peerId: "tried", price: 1 });
    const fine = known({ peerId: "fine", price: 500 });
    const ranked = rankProviders({ candidates: [banned, cheat, tried, fine], exclude: new Set(["tried"]) });
    assert.deepEqual(
      ranked.map((entry) => entry.peerId),
      ["fine"],
    );
  });
});
