import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { type Hex, verifyTypedData } from "viem";
import { generatePrivateKey } from "viem/accounts";
import { exactReplayMaxTokens } from "../../src/engine/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import {
  createFrameChannel,
  createMycelNode,
  libp2pKeyFromSecp256k1,
  type MycelNode,
} from "../../src/p2p/index.ts";
import { inferenceProtocolId, receiptMessageFromJson, type SignedReceipt } from "../../src/protocol/index.ts";
import { openReceiptStore } from "../../src/store/index.ts";
import { mycelBin, type RoleProcess, repositoryRoot, startRole, temporaryHome, waitFor } from "../helpers.ts";

const password = "network-test";
const env = { MYCEL_PASSWORD: password };

type MycelFields = { request_id: Hex; providers: string[]; failovers: number; receipts: SignedReceipt[] };

async function verifyReceiptSignature(receipt: SignedReceipt, address: string) {
  return verifyTypedData({
    address: address as Hex,
    domain: receipt.domain,
    types: receipt.types,
    primaryType: "Receipt",
    message: receiptMessageFromJson(receipt.message),
    signature: receipt.signature,
  });
}

describe("network (real provider and gateway processes over libp2p)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let modelHash: string;
  let modelName: string;
  const providers: RoleProcess[] = [];
  const extras: RoleProcess[] = [];
  let gateway: RoleProcess;
  let url: string;
  let client: OpenAI;
  let probe: MycelNode | undefined;

  const listProviders = async () =>
    (
      (await (await fetch(`${url}/mycel/v1/providers`)).json()) as {
        data: { address: string; untrusted: boolean }[];
      }
    ).data;

  before(async () => {
    directory = await temporaryHome("mycel-network-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelHash = model.hash;
    modelName = model.name;
    for (const name of ["p1", "p2", "p3", "gw"])
      await createKeystore({
        home: directory.home,
        name,
        password,
        privateKey: devPrivateKey(`network-test-${name}`),
      });
    const providerArgs = (name: string, price: number) => [
      mycelBin,
      "--home",
      directory.home,
      "provider",
      "--model",
      modelHash,
      "--key",
      name,
      "--price",
      String(price),
      "--first-frame-timeout",
      "1000",
    ];
    providers.push(await startRole(providerArgs("p1", 1000), { env }));
    const seed = providers[0]?.ready.multiaddrs?.[0] ?? "";
    providers.push(
      ...(await Promise.all([
        startRole([...providerArgs("p2", 2000), "--bootstrap", seed], { env }),
        startRole([...providerArgs("p3", 3000), "--bootstrap", seed], { env }),
      ])),
    );
    gateway = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "gateway",
        "--key",
        "gw",
        "--port",
        "0",
        "--stall-timeout",
        "3000",
        ...providers.flatMap((provider) => ["--bootstrap", provider.ready.multiaddrs?.[0] ?? ""]),
      ],
      { env },
    );
    url = String(gateway.ready.url);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
    await waitFor("the gateway to see 3 providers", async () =>
      (await listProviders()).length >= 3 ? true : undefined,
    );
  });

  after(async () => {
    await probe?.stop();
    await Promise.all([...providers, ...extras, gateway].filter(Boolean).map((role) => role.stop()));
    await directory.remove();
  });

  it("lists the network's models with their providers and lowest price", async () => {
    const models = await client.models.list();
    const entry = models.data.find((model) => model.id === modelName) as unknown as {
      mycel: { hash: string; providers: number; lowest_price_per_million: { input: string } };
    };
    assert.ok(entry, "the model is listed");
    assert.equal(entry.mycel.hash, modelHash);
    assert.equal(entry.mycel.providers, 3);
    assert.equal(entry.mycel.lowest_price_per_million.input, "1000");
  });

  it("streams through the network with the openai client, and the receipt verifies with viem", async () => {
    const stream = await client.chat.completions.create({
      model: modelName,
      messages: [{ role: "user", content: "Hello, network!" }],
      max_tokens: 24,
      temperature: 0,
      seed: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let mycel: MycelFields | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish ??= chunk.choices[0]?.finish_reason;
      mycel ??= (chunk as unknown as { mycel?: MycelFields }).mycel;
    }
    assert.ok(text.length > 0);
    assert.equal(finish, "length");
    assert.ok(mycel, "the last event carries mycel fields");
    assert.equal(mycel.receipts.length, 1);
    const receipt = mycel.receipts[0] as SignedReceipt;
    const providerAddresses = providers.map((provider) => String(provider.ready.address));
    assert.ok(providerAddresses.includes(receipt.message.provider));
    assert.equal(await verifyReceiptSignature(receipt, receipt.message.provider), true);
    assert.equal(
      await verifyReceiptSignature(receipt, String(providers[2]?.ready.address)),
      receipt.message.provider === providers[2]?.ready.address,
    );
    assert.equal(receipt.message.completionTokens, 24);
    assert.equal(receipt.message.modelHash, `0x${modelHash}`);
    const stored = (await (await fetch(`${url}/mycel/v1/receipts/${mycel.request_id}`)).json()) as {
      receipts: SignedReceipt[];
    };
    assert.deepEqual(stored.receipts, mycel.receipts);
    const unknown = await fetch(`${url}/mycel/v1/receipts/0x${"0".repeat(64)}`);
    assert.equal(unknown.status, 404);
  });

  it("fails over mid-stream when the serving provider is killed (-9): the answer equals an uninterrupted greedy run", async () => {
    const request = {
      model: modelName,
      messages: [{ role: "user" as const, content: "Tell me a long story." }],
      max_tokens: 1200,
      temperature: 0,
      seed: 1,
    };
    const uninterrupted = await client.chat.completions.create(request);
    const expected = uninterrupted.choices[0]?.message.content ?? "";
    assert.ok(
      (uninterrupted.usage?.completion_tokens ?? 0) > 200,
      "a long enough answer to cut in the middle",
    );

    const stream = await client.chat.completions.create({ ...request, stream: true });
    let text = "";
    let chunks = 0;
    let mycel: MycelFields | undefined;
    let killed: RoleProcess | undefined;
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content ?? "";
      text += piece;
      if (piece) chunks++;
      if (chunks === 3 && !killed) {
        const table = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as {
          data: { peer_id: string; in_flight: number }[];
        };
        const serving = table.data.find((entry) => entry.in_flight > 0);
        killed = providers.find((provider) => provider.ready.peerId === serving?.peer_id);
        assert.ok(killed, "the gateway reports which provider is streaming");
        killed.child.kill("SIGKILL");
      }
      mycel ??= (chunk as unknown as { mycel?: MycelFields }).mycel;
    }
    assert.ok(mycel);
    assert.ok(mycel.failovers >= 1, "the gateway failed over");
    const promptTokens = uninterrupted.usage?.prompt_tokens ?? 0;
    const continued = mycel.receipts.at(-1) as SignedReceipt;
    const prefix = continued.message.promptTokens - promptTokens;
    assert.ok(prefix > 0 && prefix < 1200, `the kill landed mid-stream (after ${prefix} tokens)`);
    assert.ok(prefix <= exactReplayMaxTokens, "a prefix short enough to be replayed exactly");
    assert.equal(text, expected, "no token missing or repeated");
    assert.ok(mycel.receipts.length >= 1);
    for (const receipt of mycel.receipts) {
      assert.notEqual(receipt.message.provider, killed?.ready.address);
      assert.equal(await verifyReceiptSignature(receipt, receipt.message.provider), true);
    }
  });

  it("a client that goes away mid-stream cancels the generation on the provider", async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      {
        model: modelName,
        messages: [{ role: "user", content: "Go on and on." }],
        max_tokens: 1500,
        temperature: 0,
        stream: true,
      },
      { signal: controller.signal },
    );
    let chunks = 0;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) chunks++;
        if (chunks === 5) controller.abort();
      }
    } catch (error) {
      assert.ok(controller.signal.aborted, `only the abort ends the stream early: ${error}`);
    }
    assert.ok(chunks < 100, "the stream stopped when the client went away");
    await Promise.any(
      providers.map((provider) => provider.waitForOutput(/request cancelled/, { timeoutMs: 10_000 })),
    ).catch(() => {
      throw new Error("no provider reported the cancellation (`request cancelled`) within 10 s");
    });
  });

  it("rejects forged and mismatched receipts, and text other than the receipt binds, and stops routing to their providers", async () => {
    const alive = providers.filter(
      (provider) => provider.child.exitCode === null && provider.child.signalCode === null,
    );
    const bootstrap = alive[0]?.ready.multiaddrs?.[0] ?? "";
    const fixture = `${repositoryRoot}/test/fixtures/rogueProvider.ts`;
    for (const mode of ["forge", "mismatch", "alter-text"])
      extras.push(await startRole(["--import", "tsx", fixture, directory.home, modelHash, mode, bootstrap]));
    const rogueIds = new Set(extras.map((rogue) => rogue.ready.peerId));
    await waitFor("the gateway to see the rogue providers", async () => {
      const seen = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as {
        data: { peer_id: string }[];
      };
      return seen.data.filter((entry) => rogueIds.has(entry.peer_id)).length === 3 ? true : undefined;
    });
    const storedUntrusted = () => {
      const stored = openReceiptStore({ path: join(directory.home, "gateway", "receipts.sqlite") });
      try {
        return new Map(stored.untrustedProviders().map((entry) => [entry.peerId, entry.reason]));
      } finally {
        stored.close();
      }
    };
    // Each rogue is tried (untried providers score optimistically) and caught on its first answer. A rogue
    // whose dial fails on a loaded machine is banned for 30 s instead, so keep asking until all are caught.
    const deadline = Date.now() + 45_000;
    for (let round = 0; round < 3 || Date.now() < deadline; round++) {
      const caught = storedUntrusted();
      if (round >= 3 && [...rogueIds].every((rogue) => caught.has(rogue))) break;
      const answer = (await client.chat.completions.create({
        model: modelName,
        messages: [{ role: "user", content: `Round ${round}` }],
        max_tokens: 8,
        temperature: 0,
      })) as unknown as { mycel: MycelFields; choices: { message: { content: string } }[] };
      assert.ok(answer.choices[0]?.message.content);
      // alter-text's ad never reaches the client: its text is dropped with its rejected receipt.
      assert.doesNotMatch(answer.choices[0]?.message.content ?? "", /Sponsored/);
      const receipt = answer.mycel.receipts[0] as SignedReceipt;
      assert.equal(await verifyReceiptSignature(receipt, receipt.message.provider), true);
      assert.ok(
        providers.some((provider) => provider.ready.address === receipt.message.provider),
        "served by an honest provider",
      );
      // Paces the rounds after the first three: a banned rogue comes back only when its 30 s ban ends, which nothing
      // announces, so the loop asks again every second until all are caught or the 45 s deadline passes.
      if (round >= 3) await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    const table = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as {
      data: { peer_id: string; untrusted: boolean; successes: number }[];
    };
    const rogues = table.data.filter((row) => rogueIds.has(row.peer_id));
    assert.equal(rogues.length, 3);
    // Remembered on disk, so a restarted gateway does not trust them again.
    const remembered = storedUntrusted();
    for (const rogue of rogueIds)
      assert.ok(remembered.has(rogue), `the cheat is stored as untrusted: ${JSON.stringify(table.data)}`);
    assert.match(
      remembered.get(extras[2]?.ready.peerId as string) ?? "",
      /commitment does not bind the text streamed/,
      "the alter-text rogue is caught by the text its receipt binds",
    );
    for (const entry of rogues) {
      assert.equal(entry.untrusted, true);
      assert.equal(entry.successes, 0);
    }
  });

  it("drops malformed, oversized and never-finishing streams, and the provider keeps serving", async () => {
    const target = providers.find(
      (provider) => provider.child.exitCode === null && provider.child.signalCode === null,
    ) as RoleProcess;
    const node = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(generatePrivateKey()) });
    probe = node;
    await node.addPeerAddresses(target.ready.peerId, target.ready.multiaddrs ?? []);
    const open = async () =>
      createFrameChannel(await node.openStream(target.ready.peerId, inferenceProtocolId), {
        maxFrameBytes: 4 << 20,
      });

    const malformed = await open();
    await malformed.write({ v: 1, type: "request", id: "not-an-id" });
    const refusal = (await malformed.read({ timeoutMs: 5_000 })) as { type: string; code: string };
    assert.equal(refusal.type, "error");
    assert.equal(refusal.code, "malformed_frame");
    assert.equal(await malformed.read({ timeoutMs: 5_000 }), undefined, "then the stream ends");

    const oversized = await open();
    await oversized.write({ v: 1, type: "request", padding: "x".repeat(2 << 20) });
    const tooLarge = (await oversized.read({ timeoutMs: 5_000 }).catch(() => undefined)) as
      | { type: string; code: string }
      | undefined;
    if (tooLarge !== undefined) {
      assert.equal(tooLarge.type, "error");
      assert.equal(tooLarge.code, "frame_too_large");
    }

    const silent = await open();
    const started = Date.now();
    const dropped = (await silent.read({ timeoutMs: 10_000 })) as { type: string; code: string } | undefined;
    assert.ok(Date.now() - started < 9_000, "a silent stream is dropped after the provider's idle timeout");
    assert.equal(dropped?.code, "frame_timeout");

    const answer = await client.chat.completions.create({
      model: modelName,
      messages: [{ role: "user", content: "still there?" }],
      max_tokens: 4,
    });
    assert.ok(answer.choices[0]?.message.content);
  });

  it("refuses bad input itself with a 400, blaming no provider", async () => {
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: modelName, prompt: "" }),
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { param: string } };
    assert.equal(body.error.param, "prompt");
    const table = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as {
      data: { address: string; untrusted: boolean; banned: boolean }[];
    };
    const honest = new Set(providers.map((provider) => provider.ready.address));
    for (const entry of table.data.filter((row) => honest.has(row.address)))
      assert.equal(entry.untrusted, false);
    const answer = await client.completions.create({ model: modelName, prompt: "fine", max_tokens: 3 });
    assert.ok(answer.choices[0]?.text);
  });

  it("answers a model no provider serves with a 404 naming the model and the models that are served", async () => {
    const ask = async (model: string) => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal(response.status, 404);
      const body = (await response.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "model_not_found");
      return body.error.message;
    };
    const unknown = await ask("ghost-model");
    assert.match(unknown, /ghost-model/);
    assert.ok(unknown.includes(`served on the network now: ${modelName}`), unknown);
    assert.doesNotMatch(unknown, /--model ghost-model/, "no advice to serve a model that does not exist");
    const typo = await ask(modelName.slice(0, -1));
    assert.ok(typo.includes(`did you mean "${modelName}"?`), typo);
  });
});
