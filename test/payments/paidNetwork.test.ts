/**
 * Pay per token, end to end: real provider and gateway processes over libp2p, paying through PaymentChannels on
 * a real anvil. Each scenario gets its own provider key (so its own channel) and its own MYCEL_HOME.
 */
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { type Address, type Hex, parseEther } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  deploymentVoucherDomain,
  fundDevAccounts,
  getChannel,
  getTokenBalance,
  listChannels,
  openChannel,
  readChainBinding,
  requestChannelClose,
  withSigner,
  writeDeployments,
} from "../../src/chain/index.ts";
import { createEngine } from "../../src/engine/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import {
  createFrameChannel,
  createMycelNode,
  libp2pKeyFromSecp256k1,
  type MycelNode,
} from "../../src/p2p/index.ts";
import {
  hashVectors,
  inferenceProtocolId,
  modelHashToBytes32,
  signVoucher,
  wireVersion,
} from "../../src/protocol/index.ts";
import { openPaymentStore, providerPaymentStorePath } from "../../src/store/index.ts";
import { type LocalChain, startLocalChain } from "../fixtures/chain/localChain.ts";
import {
  mycelBin,
  paidGatewayArgs,
  type RoleProcess,
  repositoryRoot,
  startRole,
  temporaryHome,
  waitFor,
  withDeadline,
} from "../helpers.ts";

const password = "paid-network-test";
const env = { MYCEL_PASSWORD: password };
/** Price per 1M tokens: 10^6 units per token, so token counts and amounts divide exactly. */
const price = 1_000_000_000_000n;
const creditTokens = 64;

type Usage = {
  total: { cost: string };
  payments: { channels: { channel_id: Hex; provider: string; paid: string; acknowledged: string }[] } | null;
};
type ReceiptJson = { message: { price: string; provider: string } };

/** A TCP relay to the chain's RPC that a test can take down and bring back on the same port. */
async function startRelay(target: URL) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer((socket) => {
        sockets.add(socket);
        const upstream = connect(Number(target.port), target.hostname);
        sockets.add(upstream);
        socket.on("close", () => sockets.delete(socket));
        upstream.on("close", () => sockets.delete(upstream));
        socket.pipe(upstream).pipe(socket);
        upstream.on("error", () => socket.destroy());
        socket.on("error", () => upstream.destroy());
      });
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        const address = server?.address();
        if (address && typeof address === "object") port = address.port;
        resolve();
      });
    });
  await listen();
  return {
    url: () => `http://127.0.0.1:${port}`,
    async down() {
      await new Promise<void>((resolve) => {
        server?.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
    up: listen,
  };
}

describe("pay per token (real provider and gateway processes, real anvil)", () => {
  let chain: LocalChain;
  let modelHash: string;
  let modelName: string;
  let modelBytes: Uint8Array;
  const roles: RoleProcess[] = [];
  const homes: { remove: () => Promise<void> }[] = [];
  const probes: MycelNode[] = [];

  before(async () => {
    chain = await startLocalChain();
    const made = generateTestModel({ size: "tiny", seed: 1 });
    modelBytes = made.bytes;
    modelName = made.name;
  });

  after(async () => {
    await Promise.all(probes.map((probe) => probe.stop().catch(() => undefined)));
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await chain?.stop();
    await Promise.all(homes.map((home) => home.remove()));
  });

  /** A MYCEL_HOME with the test model, the deployments and funded keys `provider` and `gateway`. */
  async function scenario(name: string) {
    const directory = await temporaryHome(`mycel-paid-${name}-`);
    homes.push(directory);
    const store = openModelStore({ home: directory.home });
    const { model } = await store.addBytes({ bytes: modelBytes, name: modelName, source: "test" });
    modelHash = model.hash;
    const deploymentsPath = join(directory.home, "deployments.json");
    writeDeployments(deploymentsPath, chain.deployments);
    const keys = {
      provider: devPrivateKey(`paid-${name}-provider`),
      gateway: devPrivateKey(`paid-${name}-gateway`),
    };
    for (const [role, privateKey] of Object.entries(keys))
      await createKeystore({ home: directory.home, name: role, password, privateKey });
    const addresses = {
      provider: privateKeyToAccount(keys.provider).address,
      gateway: privateKeyToAccount(keys.gateway).address,
    };
    await fundDevAccounts(chain.deployer, {
      deployments: chain.deployments,
      accounts: [addresses.provider, addresses.gateway],
      tokens: parseEther("1000"),
    });
    const chainArgs = (rpcUrl: string) => ["--rpc-url", rpcUrl, "--deployments", deploymentsPath];
    const startProvider = async (parameters: { rpcUrl?: string; extra?: string[] } = {}) => {
      const role = await startRole(
        [
          mycelBin,
          "--home",
          directory.home,
          "provider",
          "--model",
          modelHash,
          "--key",
          "provider",
          "--price",
          String(price),
          "--credit-tokens",
          String(creditTokens),
          ...chainArgs(parameters.rpcUrl ?? chain.anvil.rpcUrl),
          ...(parameters.extra ?? [
            "--settle-threshold",
            String(parseEther("1000")),
            "--settle-interval",
            "3600",
          ]),
        ],
        { env },
      );
      roles.push(role);
      return role;
    };
    const startGateway = async (parameters: { provider: RoleProcess; rpcUrl?: string }) => {
      const role = await startRole(
        paidGatewayArgs({
          home: directory.home,
          bootstrap: parameters.provider.ready.multiaddrs?.[0] ?? "",
          chainArgs: chainArgs(parameters.rpcUrl ?? chain.anvil.rpcUrl),
          // These providers are not registered on chain (this file tests payments, not stake).
          allowUnstaked: true,
        }),
        { env },
      );
      roles.push(role);
      const url = String(role.ready.url);
      await waitFor("the gateway to see the provider", async () => {
        const body = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as { data: unknown[] };
        return body.data.length > 0 ? true : undefined;
      });
      return { role, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 }) };
    };
    const usage = async (url: string) => (await (await fetch(`${url}/mycel/v1/usage`)).json()) as Usage;
    /** Sends requests (`concurrency` at a time) and returns the sum of their receipts' prices. */
    const sendRequests = async (input: {
      client: OpenAI;
      count: number;
      concurrency?: number;
      maxTokens?: (index: number) => number;
    }) => {
      let total = 0n;
      let next = 0;
      const worker = async () => {
        while (next < input.count) {
          const index = next++;
          const answer = (await input.client.chat.completions.create({
            model: modelName,
            messages: [{ role: "user", content: `request ${index}` }],
            max_tokens: input.maxTokens?.(index) ?? 12,
            temperature: 0,
          })) as unknown as { mycel: { receipts: ReceiptJson[] }; usage: { completion_tokens: number } };
          assert.ok(answer.mycel.receipts.length >= 1, `request ${index} carries a receipt`);
          for (const receipt of answer.mycel.receipts) total += BigInt(receipt.message.price);
        }
      };
      await Promise.all(Array.from({ length: input.concurrency ?? 1 }, worker));
      return total;
    };
    /** Waits until the gateway's channel to the provider is paid and acknowledged up to `amount`. */
    const waitPaid = (url: string, amount: bigint) =>
      waitFor(`vouchers acknowledged up to ${amount}`, async () => {
        const body = await usage(url);
        const channel = body.payments?.channels[0];
        return channel && BigInt(channel.acknowledged) === amount && BigInt(channel.paid) === amount
          ? channel
          : undefined;
      });
    const { key: boundTo } = await readChainBinding(chain.deployer, { deployments: chain.deployments });
    const providerStore = () =>
      openPaymentStore({
        path: providerPaymentStorePath(directory.home, addresses.provider),
        chain: boundTo,
      });
    return {
      home: directory.home,
      keys,
      addresses,
      startProvider,
      startGateway,
      usage,
      sendRequests,
      waitPaid,
      providerStore,
    };
  }

  it("pays 100 requests: vouchers cover exactly the receipts, and the provider settles exactly their sum", async () => {
    const setup = await scenario("hundred");
    const provider = await setup.startProvider();
    const gateway = await setup.startGateway({ provider });
    const balanceBefore = await getTokenBalance(chain.deployer, {
      token: chain.deployments.contracts.token,
      owner: setup.addresses.provider,
    });
    // Two at a time on one channel; every tenth answer is long enough to be paid for mid-stream (credit window 64).
    const total = await setup.sendRequests({
      client: gateway.client,
      count: 100,
      concurrency: 2,
      maxTokens: (index) => (index % 10 === 0 ? 160 : 12),
    });
    assert.ok(total > 0n, "the receipts have prices");
    const usage = await setup.usage(gateway.url);
    assert.equal(BigInt(usage.total.cost), total, "GET /mycel/v1/usage adds up the receipts");
    const channel = await setup.waitPaid(gateway.url, total);
    assert.equal(channel.provider, setup.addresses.provider, "the channel pays the provider");

    // Settlement happens at shutdown here (threshold and interval are out of reach).
    assert.equal(
      (await getChannel(chain.deployer, { deployments: chain.deployments, channelId: channel.channel_id }))
        .settled,
      0n,
      "nothing settled while serving",
    );
    const exited = new Promise((resolve) => provider.child.once("exit", resolve));
    provider.child.kill("SIGTERM");
    await withDeadline("the provider to exit after SIGTERM", exited, 30_000);
    assert.notEqual(
      provider.child.exitCode,
      null,
      "the provider exits by itself (settling first), not by the signal",
    );
    const onChain = await getChannel(chain.deployer, {
      deployments: chain.deployments,
      channelId: channel.channel_id,
    });
    assert.equal(onChain.settled, total, "settled on chain: exactly the sum of the receipts' prices");
    const balanceAfter = await getTokenBalance(chain.deployer, {
      token: chain.deployments.contracts.token,
      owner: setup.addresses.provider,
    });
    assert.equal(balanceAfter - balanceBefore, total, "the provider's balance rose by exactly that");
    const store = setup.providerStore();
    try {
      const [voucher] = store.vouchersOf(setup.addresses.provider);
      assert.equal(voucher?.cumulativeAmount, total, "the stored voucher is the sum");
      assert.equal(voucher?.settledAmount, total, "and recorded as settled");
    } finally {
      store.close();
    }
  });

  it("embeddings through the gateway: the provider's vectors, a receipt over them, paid per input token; a provider without embeddings is never chosen", async () => {
    const setup = await scenario("embed");
    const provider = await setup.startProvider();
    const chatOnly = await startRole(
      [
        "--import",
        "tsx",
        join(repositoryRoot, "test", "fixtures", "chatOnlyProvider.ts"),
        setup.home,
        modelHash,
        devPrivateKey("paid-embed-chat-only"),
        provider.ready.multiaddrs?.[0] ?? "",
        join(setup.home, "deployments.json"),
      ],
      { env },
    );
    roles.push(chatOnly);
    const gateway = await setup.startGateway({ provider });
    const url = gateway.url;
    await waitFor("the gateway to see both providers", async () => {
      const body = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as { data: unknown[] };
      return body.data.length === 2 ? true : undefined;
    });
    // The chat-only provider is free, so it is the gateway's pick for chat...
    const chat = (await gateway.client.chat.completions.create({
      model: modelName,
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 4,
    })) as unknown as { mycel: { providers: string[] } };
    const chatOnlyAddress = privateKeyToAccount(devPrivateKey("paid-embed-chat-only")).address;
    assert.deepEqual(chat.mycel.providers, [chatOnlyAddress], "chat goes to the free provider");
    // ...and never for embeddings: only the provider that announces them is.
    const inputs = ["Mycelium connects trees.", "Spores travel far."];
    const engine = createEngine({ options: { parallelism: 1, threadsPerSequence: 1, maxQueue: 1 } });
    let local: number[][];
    try {
      await engine.loadModel({
        hash: modelHash,
        path: openModelStore({ home: setup.home }).pathOf(modelHash),
      });
      local = (
        await engine.embed({
          modelHash,
          inputs: inputs.map((input) => engine.embeddingTokens({ modelHash, input })),
        })
      ).vectors;
    } finally {
      await engine.close();
    }
    let paid = 0n;
    for (let round = 0; round < 3; round++) {
      const answer = (await gateway.client.embeddings.create({
        model: modelName,
        input: inputs,
      })) as unknown as OpenAI.CreateEmbeddingResponse & {
        mycel: { providers: string[]; receipts: ReceiptJson[] };
      };
      assert.deepEqual(answer.mycel.providers, [setup.addresses.provider], "only the provider that embeds");
      const vectors = answer.data.map((entry) => entry.embedding);
      assert.equal(vectors.length, 2);
      for (const [index, vector] of vectors.entries()) {
        const expected = local[index] ?? [];
        assert.equal(vector.length, expected.length);
        assert.ok(
          vector.every((value, position) => Math.abs(value - (expected[position] ?? Number.NaN)) < 1e-6),
          `input ${index}: the gateway's vector equals the engine's`,
        );
      }
      const [receipt] = answer.mycel.receipts as unknown as {
        message: { outputHash: string; promptTokens: number; completionTokens: number; price: string };
      }[];
      assert.equal(
        receipt?.message.outputHash,
        hashVectors(vectors),
        "the receipt binds exactly these vectors",
      );
      assert.equal(receipt?.message.completionTokens, 0);
      assert.equal(receipt?.message.promptTokens, answer.usage.prompt_tokens);
      assert.equal(
        BigInt(receipt?.message.price ?? "0"),
        (BigInt(answer.usage.prompt_tokens) * price) / 1_000_000n,
        "paid per input token at the input price",
      );
      paid += BigInt(receipt?.message.price ?? "0");
    }
    await setup.waitPaid(url, paid);
    const models = (await (await fetch(`${url}/v1/models`)).json()) as {
      data: { mycel: { capabilities: string[] } }[];
    };
    assert.deepEqual(
      [...(models.data[0]?.mycel.capabilities ?? [])].sort(),
      ["chat", "completion", "embeddings", "grammar"],
      "what some provider of the model can do",
    );
    // A dimension the model does not have is the client's error: the provider refuses it, the gateway answers 400
    // naming the field and blames nobody.
    const refused = await fetch(`${url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: modelName, input: "x", dimensions: 8 }),
    });
    assert.equal(refused.status, 400);
    const error = ((await refused.json()) as { error: { message: string; param: string } }).error;
    assert.match(error.message, /64 dimensions/);
    assert.equal(error.param, "dimensions");
  });

  it("survives kill -9: a restarted provider settles exactly what it earned", async () => {
    const setup = await scenario("kill");
    const provider = await setup.startProvider();
    const gateway = await setup.startGateway({ provider });
    const total = await setup.sendRequests({ client: gateway.client, count: 12, maxTokens: (i) => 8 + i });
    const channel = await setup.waitPaid(gateway.url, total);
    await provider.stop(); // SIGKILL: no shutdown settlement
    assert.equal(
      (await getChannel(chain.deployer, { deployments: chain.deployments, channelId: channel.channel_id }))
        .settled,
      0n,
      "nothing was settled before the kill",
    );
    // Restarted with the default settlement policy: it settles what the store holds at start.
    await setup.startProvider({ extra: [] });
    const settled = await waitFor("the restarted provider to settle", async () => {
      const record = await getChannel(chain.deployer, {
        deployments: chain.deployments,
        channelId: channel.channel_id,
      });
      return record.settled > 0n ? record.settled : undefined;
    });
    assert.equal(settled, total, "exactly what it earned");
  });

  it("cuts off a client that stops paying after the credit window, with a clear error, and refuses it more", async () => {
    const setup = await scenario("unpaid");
    const provider = await setup.startProvider();
    const client = withSigner(chain.deployer, setup.keys.gateway);
    const { channelId } = await openChannel(client, {
      deployments: chain.deployments,
      provider: setup.addresses.provider,
      amount: parseEther("1"),
    });
    const probe = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(setup.keys.gateway) });
    probes.push(probe);
    await probe.addPeerAddresses(provider.ready.peerId, provider.ready.multiaddrs ?? []);
    const request = async () => {
      const stream = createFrameChannel(await probe.openStream(provider.ready.peerId, inferenceProtocolId), {
        maxFrameBytes: 4 << 20,
      });
      await stream.write({
        v: wireVersion,
        type: "request",
        id: `0x${"ab".repeat(32)}`,
        client: setup.addresses.gateway,
        request: {
          model_hash: modelHashToBytes32(modelHash),
          kind: "text",
          prompt: "never paid",
          max_tokens: 400,
          temperature: 0,
          top_p: 1,
          top_k: 0,
          seed: 1,
          stop: [],
        },
        payment: { channel_id: channelId },
      });
      let tokens = 0;
      for (;;) {
        const frame = (await stream.read({ timeoutMs: 20_000 })) as
          | { type: string; tokens?: number[]; code?: string; message?: string }
          | undefined;
        if (frame === undefined) return { tokens, frame };
        if (frame.type === "chunk") tokens += frame.tokens?.length ?? 0;
        else return { tokens, frame };
      }
    };
    const first = await request();
    assert.equal(first.frame?.type, "error", "the stream ends with an error frame, not a receipt");
    assert.equal(first.frame?.code, "payment_required", "it says payment is required");
    assert.match(String(first.frame?.message), /credit window/, "and names the credit window");
    assert.ok(first.tokens > 0, "tokens were served on credit first");
    assert.ok(first.tokens <= creditTokens, `at most the credit window (${first.tokens} <= ${creditTokens})`);
    const second = await request();
    assert.ok(
      first.tokens + second.tokens <= creditTokens,
      `no more than the credit window over both requests (${first.tokens} + ${second.tokens})`,
    );
    assert.equal(
      second.frame?.code,
      "payment_required",
      "the next request is refused until the debt is paid",
    );
    assert.match(String(second.frame?.message), /credit window/, "naming the credit window");
    const third = await request();
    assert.equal(third.tokens, 0, "then no token more");
    assert.match(String(third.frame?.message), /owes \d+, as much as this provider's credit window/);
  });

  it("rejects replayed, forged and underfunded vouchers, and stores nothing for them", async () => {
    const setup = await scenario("vouchers");
    const provider = await setup.startProvider();
    const client = withSigner(chain.deployer, setup.keys.gateway);
    const deposit = parseEther("1");
    const { channelId } = await openChannel(client, {
      deployments: chain.deployments,
      provider: setup.addresses.provider,
      amount: deposit,
    });
    const probe = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(setup.keys.gateway) });
    probes.push(probe);
    await probe.addPeerAddresses(provider.ready.peerId, provider.ready.multiaddrs ?? []);
    const domain = deploymentVoucherDomain(chain.deployments);
    const voucher = async (amount: bigint, key: Hex = setup.keys.gateway) => ({
      v: wireVersion,
      type: "voucher",
      channel_id: channelId,
      cumulative_amount: amount.toString(),
      signature: await signVoucher({
        privateKey: key,
        domain,
        message: { channelId, cumulativeAmount: amount },
      }),
    });
    /** Runs a short paid request and sends `frame` after its receipt; returns the provider's reply to it. */
    const afterReceipt = async (frame: unknown) => {
      const stream = createFrameChannel(await probe.openStream(provider.ready.peerId, inferenceProtocolId), {
        maxFrameBytes: 4 << 20,
      });
      await stream.write({
        v: wireVersion,
        type: "request",
        id: `0x${"cd".repeat(32)}`,
        client: setup.addresses.gateway,
        request: {
          model_hash: modelHashToBytes32(modelHash),
          kind: "text",
          prompt: "paid",
          max_tokens: 4,
          temperature: 0,
          top_p: 1,
          top_k: 0,
          seed: 1,
          stop: [],
        },
        payment: { channel_id: channelId },
      });
      let receiptPrice: bigint | undefined;
      for (;;) {
        const next = (await stream.read({ timeoutMs: 20_000 })) as {
          type: string;
          receipt?: ReceiptJson;
        };
        if (next.type === "end") {
          receiptPrice = BigInt(next.receipt?.message.price ?? "0");
          break;
        }
        assert.equal(next.type, "chunk", "chunks, then the receipt");
      }
      await stream.write(typeof frame === "function" ? await frame(receiptPrice) : frame);
      const reply = (await stream.read({ timeoutMs: 20_000 })) as {
        type: string;
        code?: string;
        message?: string;
        cumulative_amount?: string;
      };
      await stream.close().catch(() => undefined);
      return { reply, receiptPrice };
    };
    const stored = () => {
      const store = setup.providerStore();
      try {
        return store.latestVoucher(channelId);
      } finally {
        store.close();
      }
    };

    let paid = 0n;
    const good = await afterReceipt(async (receiptPrice: bigint) => {
      paid = receiptPrice;
      return voucher(receiptPrice);
    });
    assert.equal(good.reply.type, "paid", "a valid voucher is acknowledged");
    assert.equal(good.reply.cumulative_amount, paid.toString(), "for its amount");
    assert.equal(stored()?.cumulativeAmount, paid, "and stored");
    const before = stored();

    const replayed = await afterReceipt(await voucher(paid));
    assert.equal(
      replayed.reply.code,
      "voucher_stale",
      `a replayed voucher is refused: ${replayed.reply.message}`,
    );
    assert.deepEqual(stored(), before, "nothing changed");

    const forged = await afterReceipt(await voucher(paid * 3n, devPrivateKey("someone else")));
    assert.equal(forged.reply.code, "voucher_forged", `a forged voucher is refused: ${forged.reply.message}`);
    assert.deepEqual(stored(), before, "nothing changed");

    const underfunded = await afterReceipt(await voucher(deposit + 1n));
    assert.equal(
      underfunded.reply.code,
      "voucher_underfunded",
      `a voucher above the deposit is refused: ${underfunded.reply.message}`,
    );
    assert.deepEqual(stored(), before, "nothing changed");

    const onChain = await getChannel(chain.deployer, { deployments: chain.deployments, channelId });
    assert.equal(onChain.settled, 0n, "nothing was settled from a bad voucher");
  });

  it("keeps serving while the chain's RPC is down, and settlement catches up when it is back", async () => {
    const setup = await scenario("rpc");
    const relay = await startRelay(new URL(chain.anvil.rpcUrl));
    try {
      // Settle after every voucher (threshold 1), checking every second.
      const provider = await setup.startProvider({
        rpcUrl: relay.url(),
        extra: ["--settle-threshold", "1", "--settle-interval", "3600", "--settle-check", "1"],
      });
      const gateway = await setup.startGateway({ provider, rpcUrl: relay.url() });
      const first = await setup.sendRequests({ client: gateway.client, count: 3 });
      const channel = await setup.waitPaid(gateway.url, first);
      const settledOnChain = () =>
        getChannel(chain.deployer, { deployments: chain.deployments, channelId: channel.channel_id }).then(
          (record) => record.settled,
        );
      await waitFor("the first settlement", async () =>
        (await settledOnChain()) === first ? true : undefined,
      );

      await relay.down();
      const second = await setup.sendRequests({ client: gateway.client, count: 8 });
      await setup.waitPaid(gateway.url, first + second);
      // The provider tries (and fails) to settle the new vouchers: two failures from here on, so the second try
      // started after every voucher was acknowledged.
      await provider.waitForOutput(/settlement failed[\s\S]*settlement failed/, {
        from: provider.output().length,
        timeoutMs: 30_000,
      });
      assert.equal(await settledOnChain(), first, "nothing more settles while the RPC is down");

      await relay.up();
      await waitFor(
        "settlement to catch up",
        async () => ((await settledOnChain()) === first + second ? true : undefined),
        30_000,
      );
      const third = await setup.sendRequests({ client: gateway.client, count: 2 });
      await waitFor("and to go on", async () =>
        (await settledOnChain()) === first + second + third ? true : undefined,
      );
    } finally {
      await relay.down().catch(() => undefined);
    }
  });

  it("settles before the challenge period ends when the client closes the channel", async () => {
    const setup = await scenario("close");
    const provider = await setup.startProvider({
      extra: [
        "--settle-threshold",
        String(parseEther("1000")),
        "--settle-interval",
        "3600",
        "--settle-check",
        "1",
      ],
    });
    const gateway = await setup.startGateway({ provider });
    const total = await setup.sendRequests({ client: gateway.client, count: 4 });
    const channel = await setup.waitPaid(gateway.url, total);
    const client = withSigner(chain.deployer, setup.keys.gateway);
    await requestChannelClose(client, { deployments: chain.deployments, channelId: channel.channel_id });
    const closing = await getChannel(chain.deployer, {
      deployments: chain.deployments,
      channelId: channel.channel_id,
    });
    assert.equal(closing.state, "closing", "the client asked to close");
    const settled = await waitFor("the provider to settle the closing channel", async () => {
      const record = await getChannel(chain.deployer, {
        deployments: chain.deployments,
        channelId: channel.channel_id,
      });
      return record.settled > 0n ? record : undefined;
    });
    assert.equal(settled.settled, total, "everything earned is settled");
    assert.ok(
      (settled.closesAt?.getTime() ?? 0) / 1000 > Number(await chain.now()),
      "before the challenge period ended",
    );
    const { asProvider } = await listChannels(chain.deployer, {
      deployments: chain.deployments,
      account: setup.addresses.provider as Address,
    });
    assert.equal(asProvider.length, 1, "the provider has the one channel");
  });
});
