/**
 * The validator in one process, without a chain: real llama.cpp engines and libp2p nodes on loopback. An honest
 * provider, a cheating one (announces the tiny seed-1 model, answers with seed 2), a validator that knows providers
 * from its own node and starts a challenge gateway (a node of its own key) only while a challenge runs, and a gateway
 * that samples every answer to the validator.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import type { BackendGenerateResult } from "../../src/api/index.ts";
import { createEngine, type Engine } from "../../src/engine/index.ts";
import { type Gateway, startGateway } from "../../src/gateway/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { type ChallengeNetwork, challengeNetworkOf } from "../../src/node/index.ts";
import {
  createFrameChannel,
  createMycelNode,
  libp2pKeyFromSecp256k1,
  type MycelNode,
  peerIdOfSecp256k1Key,
} from "../../src/p2p/index.ts";
import {
  auditProtocolId,
  type Evidence,
  errorFrameSchema,
  hashRequest,
  hashStreamedText,
  hashTokenIds,
  type InferenceRequest,
  modelHashToBytes32,
  receiptDomain,
  type SignedReceipt,
  signAuditSample,
  signAuditVerdict,
  signReceipt,
  streamLimits,
  verdictProtocolId,
  wireVersion,
} from "../../src/protocol/index.ts";
import { type Provider, startProvider } from "../../src/provider/index.ts";
import {
  type AuditStore,
  openAuditStore,
  openReceiptStore,
  type ReceiptStore,
  type StoredAudit,
  validatorStorePath,
} from "../../src/store/index.ts";
import { isSlashable, startValidator, type Validator } from "../../src/validator/index.ts";
import { type Auditor, createAuditor } from "../../src/verify/index.ts";
import { temporaryHome, waitFor } from "../helpers.ts";

type MycelFields = { request_id: Hex; seed: number; receipts: SignedReceipt[]; evidence?: unknown };

/** Audits and verdicts land in stores that nothing announces: polled every 100 ms for up to 20 s. */
const storePolling = { timeoutMs: 20_000, intervalMs: 100 };

describe("validator (in process: real engines, libp2p on loopback, no chain)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let engine: Engine;
  let auditor: Auditor;
  let store: AuditStore;
  const receiptStores: ReceiptStore[] = [];
  const nodes: MycelNode[] = [];
  const providers: Provider[] = [];
  const gateways: Gateway[] = [];
  let validator: Validator;
  let validatorNode: MycelNode;
  let validatorAddress: Hex;
  let challengeNetwork: ChallengeNetwork;
  let challengerKey: Hex;
  /** The challenge gateways started (one per challenge), and whether each was closed. */
  const challengeGateways: { peerId: string; closed: boolean }[] = [];
  /** The sampling gateway's receipts store, where the verdicts handed back are kept. */
  let gatewayReceipts: ReceiptStore;
  let gatewayNode: MycelNode;
  let gateway: Gateway;
  let gatewayKey: Hex;
  let honest: Provider;
  let honestKey: Hex;
  let cheater: Provider;
  let model: { name: string; hash: string };
  /** What every provider of this file is started with (engine, the claimed model, free). */
  let providerBase: Pick<Parameters<typeof startProvider>[0], "engine" | "models" | "price" | "version">;

  const node = async (privateKey: Hex, bootstrap: string[] = []) => {
    const created = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(privateKey), bootstrap });
    nodes.push(created);
    return created;
  };
  const gatewayOn = (parameters: {
    node: MycelNode;
    privateKey: Hex;
    name: string;
    validators?: string[];
  }) => {
    const receipts = openReceiptStore({ path: join(directory.home, parameters.name, "receipts.sqlite") });
    receiptStores.push(receipts);
    const started = startGateway({
      node: parameters.node,
      privateKey: parameters.privateKey,
      receipts,
      ...(parameters.validators ? { audit: { rate: 1, validators: parameters.validators } } : {}),
    });
    gateways.push(started);
    return started;
  };

  before(async () => {
    directory = await temporaryHome("mycel-validator-");
    const models = openModelStore({ home: directory.home });
    const claimed = generateTestModel({ size: "tiny", seed: 1 });
    const other = generateTestModel({ size: "tiny", seed: 2 });
    const claimedRecord = (
      await models.addBytes({ bytes: claimed.bytes, name: claimed.name, source: "test" })
    ).model;
    const otherRecord = (await models.addBytes({ bytes: other.bytes, name: other.name, source: "test" }))
      .model;
    model = { name: claimedRecord.name, hash: claimedRecord.hash };

    // One engine serves both providers: the cheater's generate answers with the other model.
    engine = createEngine({ options: { parallelism: 2, threadsPerSequence: 1, maxQueue: 16 } });
    const claimedInfo = await engine.loadModel({
      hash: claimedRecord.hash,
      path: models.pathOf(claimedRecord.hash),
      name: claimedRecord.name,
    });
    await engine.loadModel({ hash: otherRecord.hash, path: models.pathOf(otherRecord.hash), name: "other" });

    honestKey = generatePrivateKey();
    const honestNode = await node(honestKey);
    const bootstrap = [honestNode.multiaddrs()[0] as string];
    providerBase = { engine, models: [claimedInfo], price: { input: 0n, output: 0n }, version: "test" };
    honest = await startProvider({ ...providerBase, node: honestNode, privateKey: honestKey });
    providers.push(honest);
    const cheaterKey = generatePrivateKey();
    cheater = await startProvider({
      ...providerBase,
      node: await node(cheaterKey, bootstrap),
      privateKey: cheaterKey,
      components: {
        generate: ({ request: _request, ...parameters }) =>
          engine.generate({ ...parameters, modelHash: otherRecord.hash }),
      },
    });
    providers.push(cheater);

    const validatorKey = generatePrivateKey();
    auditor = createAuditor({ home: directory.home, engineOptions: { threadsPerSequence: 1 } });
    store = openAuditStore({
      path: validatorStorePath(directory.home, privateKeyToAccount(validatorKey).address),
    });
    challengerKey = generatePrivateKey();
    validatorNode = await node(validatorKey, bootstrap);
    validatorAddress = privateKeyToAccount(validatorKey).address;
    const view = gatewayOn({ node: validatorNode, privateKey: validatorKey, name: "providers" });
    challengeNetwork = challengeNetworkOf({
      view: {
        url: "",
        peerId: validatorNode.peerId,
        gateway: view,
        node: validatorNode,
        close: async () => {},
      },
      startChallengeGateway: async () => {
        const challengeNode = await createMycelNode({
          privateKey: libp2pKeyFromSecp256k1(challengerKey),
          bootstrap,
        });
        const receipts = openReceiptStore({ path: join(directory.home, "challenges", "receipts.sqlite") });
        const challenger = startGateway({ node: challengeNode, privateKey: challengerKey, receipts });
        const started = { peerId: challengeNode.peerId, closed: false };
        challengeGateways.push(started);
        return {
          url: "",
          peerId: challengeNode.peerId,
          gateway: challenger,
          node: challengeNode,
          async close() {
            await challenger.stop();
            await challengeNode.stop();
            receipts.close();
            started.closed = true;
          },
        };
      },
      logger: silentLogger,
    });
    validator = await startValidator({
      node: validatorNode,
      auditor,
      store,
      privateKey: validatorKey,
      network: challengeNetwork,
      challengeKey: challengerKey,
      challengeModels: () => [model],
      options: { challengeIntervalMs: 0, epochCheckMs: 3_600_000 },
    });

    gatewayKey = generatePrivateKey();
    gatewayNode = await node(gatewayKey, bootstrap);
    gateway = gatewayOn({
      node: gatewayNode,
      privateKey: gatewayKey,
      name: "gateway",
      validators: [validatorNode.multiaddrs()[0] as string],
    });
    gatewayReceipts = receiptStores.at(-1) as ReceiptStore;
    await Promise.all(
      [gateway, view].map((entry) =>
        entry.waitForProviders({ count: 2, modelHash: model.hash, timeoutMs: 20_000 }),
      ),
    );
  });

  after(async () => {
    await validator?.stop();
    await Promise.all(gateways.map((entry) => entry.stop()));
    await Promise.all(providers.map((entry) => entry.stop()));
    await Promise.all(nodes.map((entry) => entry.stop().catch(() => undefined)));
    await engine?.close();
    await auditor?.close();
    store?.close();
    for (const receipts of receiptStores) receipts.close();
    await directory?.remove();
  });

  const ask = async (provider: Provider, content: string, includeEvidence = false) => {
    const result = await gateway.backend.generate({
      model,
      prompt: { kind: "chat", messages: [{ role: "user", content }] },
      sampling: { maxTokens: 16, temperature: 0, topP: 1, topK: 0, stop: [] },
      includeEvidence,
      onlyProvider: provider.peerId,
      signal: AbortSignal.timeout(30_000),
    });
    return { result, mycel: result.mycel as MycelFields };
  };
  const auditOf = (requestId: Hex) =>
    waitFor(
      `the audit of ${requestId.slice(0, 10)}`,
      () => store.recentAudits(100).find((entry) => entry.requestId === requestId),
      storePolling,
    );
  const codes = (audit: StoredAudit) => audit.reasons.map((reason) => reason.code);

  it("audits sampled answers: the honest one passes, the cheater's fails, and both are stored", async () => {
    const fair = await ask(honest, "What is a mushroom?");
    const cheat = await ask(cheater, "What is a mushroom?");
    assert.equal(fair.mycel.receipts[0]?.message.provider, honest.address, "the honest provider answered");
    assert.equal(cheat.mycel.receipts[0]?.message.provider, cheater.address, "the cheater answered");

    const passed = await auditOf(fair.mycel.request_id);
    assert.equal(passed.verdict, "pass", `the honest answer passes: ${JSON.stringify(passed.reasons)}`);
    assert.equal(passed.source, "sample");
    assert.equal(passed.provider, honest.address.toLowerCase());
    assert.equal(passed.modelHash, modelHashToBytes32(model.hash));
    assert.deepEqual(
      (passed.input as { receipt: SignedReceipt }).receipt,
      fair.mycel.receipts[0],
      "the stored input holds the receipt the gateway got",
    );

    const failed = await auditOf(cheat.mycel.request_id);
    assert.equal(failed.verdict, "fail", "the cheater's answer fails");
    assert.equal(failed.provider, cheater.address.toLowerCase());
    assert.ok(
      codes(failed).some((code) => code === "fingerprint_mismatch" || code === "not_argmax"),
      `the other weights show: ${codes(failed).join(",")}`,
    );
    assert.ok(
      !codes(failed).includes("receipt_invalid"),
      "the cheater's receipt itself is sound: only the audit catches it",
    );
  });

  it("hands each verdict back to the gateway that sent the sample, signed; the gateway refuses any other", async () => {
    const seen: string[] = [];
    const unsubscribe = gateway.subscribe((activity) => {
      if (activity.type === "audit") seen.push(`${activity.requestId}:${activity.verdict.verdict}`);
    });
    try {
      const fair = await ask(honest, "Where do mushrooms grow?");
      const cheat = await ask(cheater, "Where do mushrooms grow?");
      assert.deepEqual((fair.mycel as { audit?: unknown }).audit, { validators: [validatorNode.peerId] });
      const handedBack = (requestId: Hex) =>
        waitFor(
          `the verdict on ${requestId.slice(0, 10)} at the gateway`,
          () => {
            const verdicts = gatewayReceipts.auditVerdicts(requestId);
            return verdicts.length > 0 ? verdicts : undefined;
          },
          storePolling,
        );
      const [passed] = await handedBack(fair.mycel.request_id);
      const [failed] = await handedBack(cheat.mycel.request_id);
      assert.equal(passed?.verdict, "pass");
      assert.equal(passed?.validator, validatorAddress);
      assert.equal(passed?.provider, honest.address);
      assert.equal(failed?.verdict, "fail");
      assert.equal(failed?.provider, cheater.address);
      const stored = await auditOf(cheat.mycel.request_id);
      assert.deepEqual(
        failed?.reasons.map((reason) => reason.code),
        codes(stored),
        "the gateway has the validator's reasons",
      );
      assert.equal(failed?.metrics.outputTokens, stored.metrics.outputTokens);
      assert.ok(
        seen.includes(`${cheat.mycel.request_id}:fail`),
        "the gateway announces the verdict to its views",
      );

      // The same verdict frame from another peer, or a verdict on a request never sampled, changes nothing.
      const intruderKey = generatePrivateKey();
      const intruder = await node(intruderKey, [gatewayNode.multiaddrs()[0] as string]);
      const forge = async (requestId: Hex, verdict: "pass" | "fail") => {
        const frame = await signAuditVerdict({
          privateKey: intruderKey,
          verdict: {
            request_id: requestId,
            provider: cheater.address,
            verdict,
            reasons: [],
            metrics: {},
            audited_at: Date.now(),
          },
        });
        const stream = await intruder.openStream(gatewayNode.peerId, verdictProtocolId, {
          signal: AbortSignal.timeout(10_000),
        });
        const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
        await channel.write(frame);
        // The gateway has handled the frame once it answers: with an error frame when it refuses it.
        const reply = await channel.read({ timeoutMs: 10_000 });
        await channel.close().catch(() => undefined);
        return reply as { type?: string; code?: string } | undefined;
      };
      const refusedPeer = await forge(cheat.mycel.request_id, "pass");
      const refusedRequest = await forge(`0x${"ab".repeat(32)}` as Hex, "pass");
      assert.equal(refusedPeer?.type, "error", "the verdict from another peer is refused");
      assert.equal(refusedRequest?.type, "error", "the verdict on a request never sampled is refused");
      assert.deepEqual(
        gatewayReceipts.auditVerdicts(cheat.mycel.request_id).map((entry) => entry.verdict),
        ["fail"],
        "only the sampled validator's verdict is kept",
      );
      assert.deepEqual(gatewayReceipts.auditVerdicts(`0x${"ab".repeat(32)}` as Hex), []);
    } finally {
      unsubscribe();
    }
  });

  it("challenges providers itself: the honest one passes, the cheater fails, stored as challenges", async () => {
    await validator.idle();
    // Between challenges the challenge identity has no node: no provider holds a connection from it.
    const challengePeer = peerIdOfSecp256k1Key(challengerKey);
    const providerNodes = nodes.slice(0, 2);
    const connectedToChallenger = () =>
      providerNodes.filter((entry) => entry.isConnected(challengePeer)).length;
    assert.equal(challengeNetwork.running(), false, "no challenge gateway before the first challenge");
    assert.equal(challengeGateways.length, 0, "no challenge gateway was started yet");
    assert.equal(connectedToChallenger(), 0, "no provider is connected to the challenge identity");
    const seen = new Map<string, StoredAudit>();
    for (let attempt = 0; attempt < 16 && seen.size < 2; attempt++) {
      const verdict = await validator.challenge();
      assert.ok(verdict, `challenge ${attempt} returns a verdict`);
      assert.equal(challengeGateways.length, attempt + 1, "each challenge starts a challenge gateway");
      assert.ok(
        challengeGateways.every((started) => started.closed && started.peerId === challengePeer),
        "each challenge gateway is the challenge identity's, and is closed once its answer is in",
      );
      assert.equal(challengeNetwork.running(), false, "no challenge gateway between challenges");
      await waitFor(
        "the providers to drop the challenge identity's connection",
        () => (connectedToChallenger() === 0 ? true : undefined),
        { timeoutMs: 5_000, intervalMs: 50 },
      );
      const [latest] = store.recentAudits(1);
      assert.ok(latest, "the challenge's audit is stored");
      assert.equal(latest.source, "challenge");
      assert.equal(latest.verdict, verdict.verdict, "the stored verdict is the returned one");
      seen.set(latest.provider, latest);
    }
    const fair = seen.get(honest.address.toLowerCase());
    const cheat = seen.get(cheater.address.toLowerCase());
    assert.ok(fair && cheat, `both providers were challenged: ${[...seen.keys()].join(",")}`);
    assert.equal(fair.verdict, "pass", `the honest provider passes its challenge: ${codes(fair).join(",")}`);
    assert.equal(cheat.verdict, "fail", "the cheater fails its challenge");
    assert.ok(
      codes(cheat).some((code) => code === "fingerprint_mismatch" || code === "not_argmax"),
      `the cheat shows: ${codes(cheat).join(",")}`,
    );
    const request = (fair.input as { request: InferenceRequest }).request;
    assert.ok(
      request.kind === "chat" && request.messages?.length === 1,
      "a challenge looks like a user's chat request",
    );
  });

  /** Samples sent to the validator by hand, from a node of their own. */
  let probe: MycelNode | undefined;
  /** A request of the claimed model that no provider answered. */
  const unanswered = (): InferenceRequest => ({
    model_hash: modelHashToBytes32(model.hash),
    kind: "chat",
    messages: [{ role: "user", content: "never asked" }],
    max_tokens: 8,
    temperature: 0,
    top_p: 1,
    top_k: 0,
    seed: 1,
    stop: [],
  });
  /** A receipt of {@link unanswered} for the gateway's key, signed by a key no provider uses. */
  const receiptFor = (requestId: Hex, signer: Hex = honestKey, named: Hex = honestKey) =>
    signReceipt({
      privateKey: signer,
      domain: receiptDomain(),
      message: {
        requestId,
        client: privateKeyToAccount(gatewayKey).address,
        provider: privateKeyToAccount(named).address,
        modelHash: modelHashToBytes32(model.hash),
        requestHash: hashRequest(unanswered()),
        promptHash: hashTokenIds([1, 2]),
        outputHash: hashTokenIds([3]),
        commitment: `0x${"cd".repeat(32)}`,
        promptTokens: 2,
        completionTokens: 1,
        price: 0n,
        timestamp: BigInt(Math.floor(Date.now() / 1000)),
      },
    });
  const send = async (frame: unknown) => {
    probe ??= await node(generatePrivateKey(), [validatorNode.multiaddrs()[0] as string]);
    const stream = await probe.openStream(validatorNode.peerId, auditProtocolId, {
      signal: AbortSignal.timeout(10_000),
    });
    const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
    try {
      await channel.write(frame);
      return await channel.read({ timeoutMs: 10_000 });
    } finally {
      await channel.close().catch(() => undefined);
    }
  };
  const refusal = (value: unknown) => {
    const parsed = errorFrameSchema.safeParse(value);
    assert.ok(parsed.success, `an error frame: ${JSON.stringify(value)}`);
    return parsed.data.code;
  };

  it("refuses samples not signed by the receipt's client, or for another request, and stores nothing", async () => {
    const forgedId = `0x${"f1".repeat(32)}` as Hex;
    const forged = await signAuditSample({
      privateKey: generatePrivateKey(),
      sample: {
        request_id: forgedId,
        provider_peer_id: honest.peerId,
        request: unanswered(),
        receipt: await receiptFor(forgedId),
      },
    });
    assert.equal(refusal(await send(forged)), "bad_signature", "signed by someone other than the client");

    const mixedId = `0x${"f2".repeat(32)}` as Hex;
    const mixed = await signAuditSample({
      privateKey: gatewayKey,
      sample: {
        request_id: mixedId,
        provider_peer_id: honest.peerId,
        request: unanswered(),
        receipt: await receiptFor(`0x${"f3".repeat(32)}`),
      },
    });
    assert.equal(refusal(await send(mixed)), "invalid_request", "a receipt of another request");
    assert.ok(refusal(await send({ v: wireVersion, type: "audit_sample" })), "a malformed frame is refused");

    await validator.idle();
    const stored = store.recentAudits(1_000).map((entry) => entry.requestId);
    for (const requestId of [forgedId, mixedId, `0x${"f3".repeat(32)}` as Hex])
      assert.ok(!stored.includes(requestId), `nothing stored for ${requestId.slice(0, 10)}`);
  });

  it("records a client-signed sample whose provider has no evidence as evidence_unavailable (not slashable)", async () => {
    const requestId = `0x${"e1".repeat(32)}` as Hex;
    const sample = await signAuditSample({
      privateKey: gatewayKey,
      sample: {
        request_id: requestId,
        provider_peer_id: honest.peerId,
        request: unanswered(),
        receipt: await receiptFor(requestId),
      },
    });
    assert.deepEqual(await send(sample), { v: wireVersion, type: "audit_accepted" }, "the sample is taken");
    const audit = await auditOf(requestId);
    assert.equal(audit.verdict, "fail");
    assert.deepEqual(codes(audit), ["evidence_unavailable"]);
    assert.match(audit.reasons[0]?.message ?? "", /evidence_not_found/, "the provider's refusal is kept");
    assert.ok(!isSlashable(audit.reasons), "missing evidence alone is not proof of cheating");
  });

  it("refuses a sample whose receipt the named provider did not sign, or whose peer is not that provider", async () => {
    const forgedId = `0x${"e2".repeat(32)}` as Hex;
    const forged = await signAuditSample({
      privateKey: gatewayKey,
      sample: {
        request_id: forgedId,
        provider_peer_id: honest.peerId,
        request: unanswered(),
        receipt: await receiptFor(forgedId, generatePrivateKey(), honestKey),
      },
    });
    const refusedForged = (await send(forged)) as { type: string; code?: string };
    assert.equal(refusedForged.code, "bad_signature", "a receipt not signed by its provider is refused");
    const elsewhereId = `0x${"e3".repeat(32)}` as Hex;
    const elsewhere = await signAuditSample({
      privateKey: gatewayKey,
      sample: {
        request_id: elsewhereId,
        provider_peer_id: cheater.peerId,
        request: unanswered(),
        receipt: await receiptFor(elsewhereId),
      },
    });
    const refusedPeer = (await send(elsewhere)) as { type: string; code?: string };
    assert.equal(
      refusedPeer.code,
      "unknown_provider",
      "evidence must come from the named provider's own peer",
    );
    await validator.idle();
    const stored = store.recentAudits(100).map((audit) => audit.requestId);
    assert.ok(
      !stored.includes(forgedId) && !stored.includes(elsewhereId),
      "nothing counts against the provider",
    );
  });

  it("returns the provider's evidence with includeEvidence, and it passes the audit with the wire request", async () => {
    const content = "Name three kinds of fungi.";
    const { result, mycel } = await ask(honest, content, true);
    const evidence = mycel.evidence as Evidence;
    assert.ok(evidence && !("error" in evidence), `evidence came back: ${JSON.stringify(mycel.evidence)}`);
    assert.deepEqual(Object.keys(evidence).sort(), [
      "decoding",
      "fingerprints",
      "finishReason",
      "modelHash",
      "outputTokens",
      "promptTokens",
      "request",
      "textHash",
    ]);
    assert.equal(evidence.textHash, hashStreamedText(result.text), "the hash of the text the client got");
    assert.deepEqual(
      evidence.decoding,
      { batchSize: engine.options.batchSize, threads: 1 },
      "how it decoded",
    );
    const receipt = mycel.receipts[0] as SignedReceipt;
    assert.equal(evidence.modelHash, modelHashToBytes32(model.hash));
    assert.equal(evidence.promptTokens.length, result.usage.promptTokens);
    assert.equal(evidence.outputTokens.length, receipt.message.completionTokens);
    assert.equal(hashTokenIds(evidence.outputTokens), receipt.message.outputHash);
    assert.ok(evidence.fingerprints.length >= 1, "fingerprints of the output");
    assert.equal(evidence.finishReason, result.finishReason as BackendGenerateResult["finishReason"]);

    // The request exactly as the gateway sent it (the receipt's requestHash binds it).
    const request: InferenceRequest = {
      model_hash: modelHashToBytes32(model.hash),
      kind: "chat",
      messages: [{ role: "user", content }],
      max_tokens: 16,
      temperature: 0,
      top_p: 1,
      top_k: 0,
      seed: mycel.seed,
      stop: [],
    };
    assert.equal(hashRequest(request), receipt.message.requestHash, "the wire request is rebuilt exactly");
    assert.deepEqual(
      (evidence as Evidence & { request: InferenceRequest }).request,
      request,
      "the evidence carries the request as sent",
    );
    await validator.idle();
    const verdict = await auditor.audit({ ...evidence, request, receipt });
    assert.equal(verdict.verdict, "pass", `the evidence passes: ${JSON.stringify(verdict.reasons)}`);
    assert.equal(verdict.metrics.outputTokens, evidence.outputTokens.length);
    // The gateway sampled this answer too: the validator reaches the same verdict.
    assert.equal((await auditOf(mycel.request_id)).verdict, "pass");
  });

  it("fails a provider that streams an ad and commits to it (the gateway relays it): text_mismatch, slashable", async () => {
    // It samples honestly; the text it streams, and signs the hash of, has an ad put in. The receipt binds that
    // text, so the gateway takes it; the validator decodes the tokens and finds another text.
    const ad = "[Sponsored: buy MycelCoin] ";
    const key = generatePrivateKey();
    const alterer = await startProvider({
      ...providerBase,
      node: await node(key, [nodes[0]?.multiaddrs()[0] as string]),
      privateKey: key,
      components: {
        generate: async ({ request: _request, onDelta, ...parameters }) => {
          let first = true;
          const result = await engine.generate({
            ...parameters,
            onDelta: (delta) => {
              onDelta?.(first && delta.text ? { ...delta, text: ad + delta.text } : delta);
              if (delta.text) first = false;
            },
          });
          return { ...result, text: ad + result.text };
        },
      },
    });
    providers.push(alterer);
    await gateway.waitForProviders({ count: 3, modelHash: model.hash, timeoutMs: 20_000 });
    const { result, mycel } = await ask(alterer, "What is a mushroom?");
    assert.equal(mycel.receipts[0]?.message.provider, alterer.address, "its receipt was accepted");
    assert.ok(result.text.startsWith(ad), `the client got the ad: ${JSON.stringify(result.text)}`);
    const audit = await auditOf(mycel.request_id);
    assert.equal(audit.verdict, "fail");
    assert.deepEqual(codes(audit), ["text_mismatch"], JSON.stringify(audit.reasons));
    assert.ok(isSlashable(audit.reasons), "the signed commitment proves it");
  });
});
