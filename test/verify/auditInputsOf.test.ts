import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { InvalidInputError } from "../../src/errors/index.ts";
import {
  type AuditInput,
  buildFingerprints,
  evidenceCommitment,
  hashRequest,
  hashTokenIds,
  type InferenceRequest,
  priceOfTokens,
  receiptDomain,
  type SignedReceipt,
  signReceipt,
} from "../../src/protocol/index.ts";
import { auditInputsOf } from "../../src/verify/index.ts";

const modelHash: Hex = `0x${"ab".repeat(32)}`;
const providerKeys: Hex[] = [`0x${"5a".repeat(32)}`, `0x${"6b".repeat(32)}`];

/** Evidence as `mycel.evidence` carries it: the evidence fields plus `request`, the wire request. */
type AnsweredEvidence = Omit<AuditInput, "receipt">;

const chatRequest: InferenceRequest = {
  model_hash: modelHash,
  kind: "chat",
  messages: [{ role: "user", content: "Hello!" }],
  max_tokens: 6,
  temperature: 1,
  top_p: 1,
  top_k: 0,
  seed: 1076023144,
  stop: [],
};

const textRequest: InferenceRequest = {
  model_hash: modelHash,
  kind: "text",
  prompt: "Once upon a time",
  max_tokens: 4,
  temperature: 0,
  top_p: 1,
  top_k: 0,
  seed: 42,
  stop: [],
};

/** Evidence of an answer of `outputTokens` tokens to `request` (made-up but well-formed fingerprints). */
function evidenceOf(request: InferenceRequest, outputTokens: number[]): AnsweredEvidence {
  const prefix = request.prefix_tokens ?? [];
  return {
    modelHash,
    request,
    promptTokens: [1, 15, 27, 99, ...prefix],
    outputTokens,
    fingerprints: buildFingerprints(
      outputTokens.map((token) => ({ ids: [token, token + 1, token + 2, token + 3], gaps: [0.5, 1.25, 2] })),
    ),
    finishReason: "length",
  };
}

/** The receipt a provider signs for `evidence`. */
async function receiptOf(evidence: AnsweredEvidence, providerKey: Hex): Promise<SignedReceipt> {
  return signReceipt({
    privateKey: providerKey,
    domain: receiptDomain(),
    message: {
      requestId: `0x${"11".repeat(32)}`,
      client: `0x${"22".repeat(20)}`,
      provider: privateKeyToAccount(providerKey).address,
      modelHash,
      requestHash: hashRequest(evidence.request),
      promptHash: hashTokenIds(evidence.promptTokens),
      outputHash: hashTokenIds(evidence.outputTokens),
      commitment: evidenceCommitment(evidence),
      promptTokens: evidence.promptTokens.length,
      completionTokens: evidence.outputTokens.length,
      price: priceOfTokens({
        promptTokens: evidence.promptTokens.length,
        completionTokens: evidence.outputTokens.length,
        pricePerMillion: { input: 1_000_000n, output: 1_000_000n },
      }),
      timestamp: 1_700_000_000n,
    },
  });
}

/** A gateway's chat answer (non-streamed) with `mycel` as given. */
const chatAnswer = (mycel: Record<string, unknown> | undefined) => ({
  id: "chatcmpl-0123456789abcdef",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "mycel-test-tiny-s1-f32",
  system_fingerprint: "mycel-abababababab",
  choices: [
    { index: 0, message: { role: "assistant", content: "noise" }, logprobs: null, finish_reason: "length" },
  ],
  usage: { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 },
  ...(mycel === undefined ? {} : { mycel }),
});

/** Asserts that `auditInputsOf(value)` throws InvalidInputError `invalid_audit_input` with this message and hint. */
function assertRefused(value: unknown, expected: { message: RegExp; hint: RegExp; param?: string | null }) {
  assert.throws(
    () => auditInputsOf(value),
    (error: unknown) => {
      assert.ok(error instanceof InvalidInputError, `an InvalidInputError: ${String(error)}`);
      assert.equal(error.code, "invalid_audit_input");
      assert.match(error.shortMessage, expected.message);
      assert.match(error.hint ?? "", expected.hint, "the hint names the fix");
      if (expected.param !== undefined) assert.equal(error.param, expected.param);
      return true;
    },
  );
}

describe("auditInputsOf", () => {
  const chatEvidence = evidenceOf(chatRequest, [200, 201, 202, 203, 204, 205]);
  const textEvidence = evidenceOf(textRequest, [300, 301, 302, 303]);
  // A failover: the first provider wrote 3 tokens, the second continued from them with the rest of max_tokens.
  const firstSegment = evidenceOf({ ...chatRequest }, [200, 201, 202]);
  const secondSegment = evidenceOf(
    { ...chatRequest, prefix_tokens: [200, 201, 202], max_tokens: 3 },
    [203, 204, 205],
  );
  let chatReceipt: SignedReceipt;
  let firstReceipt: SignedReceipt;
  let secondReceipt: SignedReceipt;

  before(async () => {
    chatReceipt = await receiptOf(chatEvidence, providerKeys[0] as Hex);
    firstReceipt = await receiptOf(firstSegment, providerKeys[0] as Hex);
    secondReceipt = await receiptOf(secondSegment, providerKeys[1] as Hex);
  });

  describe("accepts", () => {
    it("the flat audit input, as it is", () => {
      const flat: AuditInput = { ...chatEvidence, receipt: chatReceipt };
      assert.deepEqual(auditInputsOf(flat), [flat]);
      assert.deepEqual(
        auditInputsOf(chatEvidence),
        [chatEvidence],
        "mycel.evidence alone, without a receipt",
      );
    });

    it("a gateway's chat answer: its evidence with its receipt", () => {
      const answer = chatAnswer({
        request_id: `0x${"11".repeat(32)}`,
        model_hash: modelHash.slice(2),
        seed: chatRequest.seed,
        providers: [chatReceipt.message.provider],
        failovers: 0,
        receipts: [chatReceipt],
        evidence: chatEvidence,
      });
      assert.deepEqual(auditInputsOf(answer), [{ ...chatEvidence, receipt: chatReceipt }]);
    });

    it("`mycel serve`'s chat answer: its evidence, without receipts", () => {
      const answer = chatAnswer({ model_hash: modelHash.slice(2), seed: 1, evidence: chatEvidence });
      assert.deepEqual(auditInputsOf(answer), [chatEvidence]);
    });

    it("a text completion answer", () => {
      const answer = {
        id: "cmpl-0123456789abcdef",
        object: "text_completion",
        created: 1_700_000_000,
        model: "mycel-test-tiny-s1-f32",
        choices: [{ index: 0, text: " there was", logprobs: null, finish_reason: "length" }],
        usage: { prompt_tokens: 4, completion_tokens: 4, total_tokens: 8 },
        mycel: { model_hash: modelHash.slice(2), seed: 42, evidence: textEvidence },
      };
      const inputs = auditInputsOf(answer);
      assert.deepEqual(inputs, [textEvidence]);
      assert.equal(inputs[0]?.request.kind, "text");
    });

    it("the last event of a stream, the one that carries `mycel`", () => {
      const event = {
        id: "chatcmpl-0123456789abcdef",
        object: "chat.completion.chunk",
        created: 1_700_000_000,
        model: "mycel-test-tiny-s1-f32",
        choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "length" }],
        mycel: { seed: chatRequest.seed, receipts: [chatReceipt], evidence: chatEvidence },
      };
      assert.deepEqual(auditInputsOf(event), [{ ...chatEvidence, receipt: chatReceipt }]);
    });

    it("an answer served in two segments after a failover: one input per segment, receipts in order", () => {
      const answer = chatAnswer({
        failovers: 1,
        receipts: [firstReceipt, secondReceipt],
        evidence: [firstSegment, secondSegment],
      });
      const inputs = auditInputsOf(answer);
      assert.equal(inputs.length, 2);
      assert.deepEqual(inputs[0], { ...firstSegment, receipt: firstReceipt });
      assert.deepEqual(inputs[1], { ...secondSegment, receipt: secondReceipt });
      assert.deepEqual(
        inputs[1]?.request.prefix_tokens,
        [200, 201, 202],
        "the continuation keeps its prefix",
      );
      assert.notEqual(
        inputs[0]?.receipt?.message.provider,
        inputs[1]?.receipt?.message.provider,
        "each segment has its own provider's receipt",
      );
    });

    it("a one-element evidence array like an object", () => {
      const answer = chatAnswer({ receipts: [chatReceipt], evidence: [chatEvidence] });
      assert.deepEqual(auditInputsOf(answer), [{ ...chatEvidence, receipt: chatReceipt }]);
    });
  });

  describe("refuses, naming the fix", () => {
    it("an answer without a `mycel` object", () => {
      assertRefused(chatAnswer(undefined), {
        message: /no `mycel` object/,
        hint: /include_evidence.*last event/,
        param: "mycel",
      });
    });

    it("an answer without `mycel.evidence`: ask for it with include_evidence", () => {
      assertRefused(chatAnswer({ model_hash: modelHash.slice(2), seed: 1, receipts: [chatReceipt] }), {
        message: /no `mycel\.evidence`/,
        hint: /"mycel": \{"include_evidence": true\}/,
        param: "mycel.evidence",
      });
    });

    it("evidence the gateway could not get from the provider, with its error", () => {
      const error = "provider 0x1234: cannot reach provider 16Uiu2abc for evidence";
      assertRefused(chatAnswer({ receipts: [chatReceipt], evidence: { error } }), {
        message:
          /^the gateway could not get the answer's evidence from the provider: provider 0x1234: cannot reach/,
        hint: /only the provider that served an answer holds its evidence/,
        param: "mycel.evidence",
      });
    });

    it("evidence and receipts that do not pair up", () => {
      assertRefused(chatAnswer({ receipts: [firstReceipt], evidence: [firstSegment, secondSegment] }), {
        message: /2 evidence segments but 1 receipt$/,
        hint: /one entry per segment, in the same order/,
        param: "mycel.receipts",
      });
      assertRefused(chatAnswer({ receipts: [chatReceipt, secondReceipt], evidence: chatEvidence }), {
        message: /1 evidence segment but 2 receipts$/,
        hint: /same order/,
      });
      assertRefused(chatAnswer({ receipts: chatReceipt, evidence: chatEvidence }), {
        message: /mycel\.receipts is an object, not an array/,
        hint: /one receipt per segment/,
      });
    });

    it("an empty evidence array", () => {
      assertRefused(chatAnswer({ receipts: [], evidence: [] }), {
        message: /empty array/,
        hint: /include_evidence/,
      });
    });

    it("a bad field in a segment, named by where it sits in the answer", () => {
      const { fingerprints: _, ...withoutFingerprints } = secondSegment;
      assertRefused(
        chatAnswer({
          receipts: [firstReceipt, secondReceipt],
          evidence: [firstSegment, withoutFingerprints],
        }),
        { message: /^bad audit input: mycel\.evidence\[1\]\.fingerprints /, hint: /exactly as/ },
      );
      assertRefused(
        chatAnswer({
          receipts: [{ ...chatReceipt, signature: "not a signature" }],
          evidence: chatEvidence,
        }),
        { message: /^bad audit input: mycel\.receipts\[0\]\.signature /, hint: /exactly as/ },
      );
      assertRefused(chatAnswer({ evidence: [chatEvidence, "segment two"] }), {
        message: /^bad audit input: mycel\.evidence\[1\] is a string/,
        hint: /\{modelHash, request/,
      });
    });

    it("evidence without its request (the wire request), naming it", () => {
      const { request: _, ...withoutRequest } = chatEvidence;
      assertRefused(chatAnswer({ receipts: [chatReceipt], evidence: withoutRequest }), {
        message: /^bad audit input: mycel\.evidence\.request /,
        hint: /lacks `request`/,
        param: "mycel.evidence.request",
      });
    });

    it("a flat input with a bad field, as before", () => {
      const { fingerprints: _, ...withoutFingerprints } = chatEvidence;
      assertRefused(withoutFingerprints, {
        message: /^bad audit input: fingerprints /,
        hint: /whole saved answer/,
      });
    });

    it("input of neither shape", () => {
      for (const value of ["an answer", 42, null, [chatEvidence]])
        assertRefused(value, {
          message: /neither an API answer nor an audit input/,
          hint: /include_evidence/,
        });
      assertRefused(
        { hello: "world" },
        {
          message: /^the audit input is neither an API answer nor an audit input$/,
          hint: /\{modelHash, request, promptTokens/,
        },
      );
    });

    it("an API error saved instead of an answer, with its message", () => {
      const error = {
        message: 'model "nope" not found',
        type: "invalid_request_error",
        code: "model_not_found",
      };
      assertRefused(
        { error },
        { message: /is an API error, not an answer: model "nope" not found/, hint: /include_evidence/ },
      );
    });
  });
});
