/**
 * Embeddings through a gateway, in process: only providers whose announcement lists "embeddings" for the model are
 * sent them; a model none of whose providers embeds is refused at once (400); a receipt whose outputHash is not the
 * hash of the vectors received is rejected, its provider untrusted, and the request goes to another provider; the wire
 * request keeps embed and generation fields apart. Scripted providers over the real inference protocol on a memory
 * network (the real engine and processes: test/api/embeddings.test.ts and test/payments/paidNetwork.test.ts).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import type { BackendEmbedParameters } from "../../src/api/index.ts";
import { embeddingLimits } from "../../src/engine/index.ts";
import { InvalidInputError } from "../../src/errors/index.ts";
import {
  answerEmbeddings,
  createActivityFeed,
  createAuditSampler,
  createCapacityQueue,
  createProviderTable,
  defaultRoutingPolicy,
  embedRequestOf,
  type FailoverContext,
} from "../../src/gateway/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import {
  type Announcement,
  announcementSchema,
  buildEmbedRequest,
  embedLimits,
  hashVectors,
  inferenceRequestSchema,
  type ModelCapability,
  receiptDomain,
} from "../../src/protocol/index.ts";
import { openReceiptStore, type ReceiptStore } from "../../src/store/index.ts";
import { createMemoryNetwork } from "../fixtures/memoryNetwork.ts";
import { type Script, scriptedModel, startScriptedProvider } from "../fixtures/scriptedProviders.ts";
import { temporaryHome } from "../helpers.ts";

const gatewayKey = generatePrivateKey();
const vectors = [
  [0.6, 0.8],
  [1, 0],
].map((vector) => vector.map(Math.fround));

function request(overrides: Partial<BackendEmbedParameters> = {}): BackendEmbedParameters {
  return {
    model: { name: scriptedModel.name, hash: scriptedModel.hash.slice(2) },
    inputs: ["first", "second"],
    signal: new AbortController().signal,
    ...overrides,
  };
}

describe("embeddings through a gateway (in process, scripted providers)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const stores: ReceiptStore[] = [];
  let count = 0;

  before(async () => {
    directory = await temporaryHome("mycel-gateway-embeddings-");
  });
  after(async () => {
    for (const store of stores) store.close();
    await directory.remove();
  });

  /** Providers running `scripts`, each announcing `capabilities` (undefined: the field left out, as before issue 18). */
  async function setUp(providers: { scripts: Script[]; capabilities?: ModelCapability[]; price?: string }[]) {
    const network = createMemoryNetwork();
    count++;
    const node = network.node(`gateway-${count}`);
    const table = createProviderTable({ node, logger: silentLogger });
    const started = [];
    for (const [index, entry] of providers.entries()) {
      const provider = await startScriptedProvider({
        network,
        peerId: `provider-${count}-${index}`,
        scripts: entry.scripts,
      });
      const price = entry.price ?? "0";
      table.accept({
        ...provider.announcement,
        price: { input: price, output: price },
        models: [{ ...scriptedModel, ...(entry.capabilities ? { capabilities: entry.capabilities } : {}) }],
      } as Announcement);
      started.push(provider);
    }
    const receipts = openReceiptStore({ path: join(directory.home, `receipts-${count}.sqlite`) });
    stores.push(receipts);
    const context: FailoverContext = {
      components: { node, logger: silentLogger },
      table,
      client: privateKeyToAccount(gatewayKey).address,
      domain: receiptDomain(),
      timeouts: { firstTokenMs: 2_000, stallMs: 1_000, banMs: 30_000 },
      maxAttempts: 4,
      payments: undefined,
      reputation: undefined,
      policy: defaultRoutingPolicy,
      queue: createCapacityQueue(),
      receipts,
      sampler: createAuditSampler({
        node,
        privateKey: gatewayKey,
        receipts,
        validators: [],
        rate: 0,
        logger: silentLogger,
      }),
      activity: createActivityFeed({ logger: silentLogger }),
      settling: new Set(),
      logger: silentLogger,
    };
    return { providers: started, context, table };
  }

  it("sends embeddings only to a provider that announces them, even when another is cheaper", async () => {
    const { providers, context } = await setUp([
      { scripts: [{ kind: "embed", vectors }] },
      { scripts: [{ kind: "embed", vectors }], capabilities: ["chat", "completion", "grammar"] },
      {
        scripts: [{ kind: "embed", vectors }],
        capabilities: ["chat", "completion", "embeddings"],
        price: "100",
      },
    ]);
    for (let round = 0; round < 3; round++) {
      const answer = await answerEmbeddings(request(), context);
      assert.deepEqual(answer.vectors, vectors);
      assert.equal(answer.provider, providers[2]?.address);
      assert.equal(answer.receipt.message.outputHash, hashVectors(vectors));
      assert.equal(answer.receipt.message.completionTokens, 0);
      assert.equal(answer.usage.promptTokens, 6, "three tokens per input, as the script tokenizes");
    }
    assert.equal(
      providers[0]?.requests.length,
      0,
      "an announcement without capabilities: chat and completion only",
    );
    assert.equal(providers[1]?.requests.length, 0);
    const sent = providers[2]?.requests[0]?.request;
    assert.equal(sent?.kind, "embed");
    assert.deepEqual(sent?.inputs, ["first", "second"], "the inputs travel in the hashed request");
  });

  it("refuses at once (400 naming the model) when no provider of the model makes embeddings", async () => {
    const { providers, context } = await setUp([
      { scripts: [{ kind: "embed", vectors }] },
      { scripts: [{ kind: "embed", vectors }], capabilities: ["chat"] },
    ]);
    await assert.rejects(
      answerEmbeddings(request(), context),
      (error: unknown) =>
        error instanceof InvalidInputError && error.code === "model_not_supported" && error.param === "model",
    );
    assert.equal(providers[0]?.requests.length, 0);
  });

  it("rejects a receipt that is not over the vectors received, untrusts its provider, and asks another", async () => {
    const other = [vectors[1] ?? [], vectors[0] ?? []];
    const { providers, context, table } = await setUp([
      { scripts: [{ kind: "embed", vectors, receiptVectors: other }], capabilities: ["embeddings"] },
      { scripts: [{ kind: "embed", vectors }], capabilities: ["embeddings"], price: "100" },
    ]);
    const answer = await answerEmbeddings(request(), context);
    assert.equal(answer.provider, providers[1]?.address, "answered by the honest provider");
    assert.equal(answer.failovers, 1);
    assert.equal(providers[0]?.requests.length, 1, "the cheaper provider was asked first");
    assert.equal(table.get(providers[0]?.node.peerId ?? "")?.untrusted, true, "and is never asked again");
  });

  it("a provider that sends more vectors than inputs broke the protocol", async () => {
    const { providers, context, table } = await setUp([
      { scripts: [{ kind: "embed", vectors: [...vectors, [0, 1]] }], capabilities: ["embeddings"] },
      { scripts: [{ kind: "embed", vectors }], capabilities: ["embeddings"], price: "100" },
    ]);
    const answer = await answerEmbeddings(request(), context);
    assert.equal(answer.provider, providers[1]?.address);
    assert.equal(table.get(providers[0]?.node.peerId ?? "")?.untrusted, true);
  });

  it("keeps embed and generation requests apart on the wire, and old announcements valid", () => {
    const embed = buildEmbedRequest({ modelHash: scriptedModel.hash, inputs: ["a", [1, 2]], dimensions: 64 });
    assert.equal(inferenceRequestSchema.safeParse(embed).success, true);
    assert.equal(
      inferenceRequestSchema.safeParse({ ...embed, temperature: 1 }).success,
      false,
      "sampling is fixed",
    );
    assert.equal(inferenceRequestSchema.safeParse({ ...embed, inputs: undefined }).success, false);
    assert.equal(inferenceRequestSchema.safeParse({ ...embed, prompt: "x" }).success, false);
    assert.equal(
      inferenceRequestSchema.safeParse({ ...embed, kind: "text", prompt: "x" }).success,
      false,
      "inputs only on embed requests",
    );
    assert.throws(() => embedRequestOf(request({ inputs: Array(257).fill("x") })), InvalidInputError);
    // The API's limits (engine) and the wire's (protocol) are the same numbers: what one accepts the other carries.
    assert.equal(embedLimits.maxInputs, embeddingLimits.maxInputs);
    assert.equal(embedLimits.maxTokensPerInput, embeddingLimits.maxTokensPerInput);
    const model = { hash: scriptedModel.hash, name: "m", context_size: 8 };
    const entry = (extra: object) =>
      announcementSchema.shape.models.safeParse([{ ...model, ...extra }]).success;
    assert.equal(entry({}), true, "an announcement from before capabilities");
    assert.equal(entry({ capabilities: ["chat", "embeddings", "tools", "grammar", "completion"] }), true);
    assert.equal(entry({ capabilities: ["vision"] }), false);
  });
});
