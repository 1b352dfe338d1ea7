/**
 * A chain reset under a gateway and a provider (what `npm start` stopped and started again does): real provider and
 * gateway processes paying on one anvil, stopped, then started again with the same MYCEL_HOME on a fresh anvil. The
 * fresh chain has the same chain id, the same contract addresses and, for the first channel, the same channel id:
 * only the genesis block tells them apart. The gateway opens a new channel at once and answers from the first
 * request; the old chain's channel is never used; the provider never counts or settles the old chain's voucher.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseEther } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  type ChainBinding,
  fundDevAccounts,
  getChannel,
  listChannels,
  readChainBinding,
  writeDeployments,
} from "../../src/chain/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import {
  gatewayPaymentStorePath,
  openPaymentStore,
  providerPaymentStorePath,
} from "../../src/store/index.ts";
import { type LocalChain, startLocalChain } from "../fixtures/chain/localChain.ts";
import {
  mycelBin,
  paidGatewayArgs,
  type RoleProcess,
  startRole,
  temporaryHome,
  waitFor,
} from "../helpers.ts";

const password = "restarted-chain-test";
const env = { MYCEL_PASSWORD: password };
const price = 1_000_000_000_000n;

describe("a chain reset under the gateway and provider (real processes, two anvils)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let modelHash: string;
  let modelName: string;
  const keys = { provider: devPrivateKey("restart-provider"), gateway: devPrivateKey("restart-gateway") };
  const addresses = {
    provider: privateKeyToAccount(keys.provider).address,
    gateway: privateKeyToAccount(keys.gateway).address,
  };
  const roles: RoleProcess[] = [];
  const chains: LocalChain[] = [];
  let deploymentsPath: string;

  /** The chain's deployments in MYCEL_HOME, both keys funded on it. */
  async function useChain(): Promise<{ chain: LocalChain; binding: ChainBinding }> {
    const chain = await startLocalChain();
    chains.push(chain);
    writeDeployments(deploymentsPath, chain.deployments);
    await fundDevAccounts(chain.deployer, {
      deployments: chain.deployments,
      accounts: [addresses.provider, addresses.gateway],
      tokens: parseEther("1000"),
    });
    return { chain, binding: await readChainBinding(chain.deployer, { deployments: chain.deployments }) };
  }

  /** The provider (settling `settle`) and a gateway that sees it, on `chain`. */
  async function startNetwork(chain: LocalChain, settle: string[]) {
    const chainArgs = ["--rpc-url", chain.anvil.rpcUrl, "--deployments", deploymentsPath];
    const provider = await startRole(
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
        ...chainArgs,
        ...settle,
      ],
      { env },
    );
    roles.push(provider);
    const gateway = await startRole(
      paidGatewayArgs({
        home: directory.home,
        bootstrap: provider.ready.multiaddrs?.[0] ?? "",
        chainArgs,
        // The provider is not staked: what is tested here is not whom the gateway may route to.
        allowUnstaked: true,
      }),
      { env },
    );
    roles.push(gateway);
    const url = String(gateway.ready.url);
    await waitFor("the gateway to see the provider", async () => {
      const body = (await (await fetch(`${url}/mycel/v1/providers`)).json()) as { data: unknown[] };
      return body.data.length > 0 ? true : undefined;
    });
    return { provider, gateway, url };
  }

  /** One chat request; resolves with the HTTP status, how long it took and the receipts' total price. */
  async function ask(url: string, maxTokens: number) {
    const started = Date.now();
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: modelName,
        messages: [{ role: "user", content: "Say something." }],
        max_tokens: maxTokens,
        temperature: 0,
      }),
    });
    const body = (await response.json()) as { mycel?: { receipts: { message: { price: string } }[] } };
    const paid = (body.mycel?.receipts ?? []).reduce(
      (sum, receipt) => sum + BigInt(receipt.message.price),
      0n,
    );
    return { status: response.status, ms: Date.now() - started, paid, body };
  }

  /** The gateway's and the provider's stored rows for one chain. */
  function storedOn(binding: ChainBinding) {
    const gatewayStore = openPaymentStore({
      path: gatewayPaymentStorePath(directory.home),
      chain: binding.key,
    });
    const providerStore = openPaymentStore({
      path: providerPaymentStorePath(directory.home, addresses.provider),
      chain: binding.key,
    });
    try {
      return {
        channels: gatewayStore.channelsOf(addresses.gateway),
        vouchers: providerStore.vouchersOf(addresses.provider),
      };
    } finally {
      gatewayStore.close();
      providerStore.close();
    }
  }

  let first: { chain: LocalChain; binding: ChainBinding };
  let earlierRows: ReturnType<typeof storedOn>;

  before(async () => {
    directory = await temporaryHome("mycel-restart-");
    deploymentsPath = join(directory.home, "deployments.json");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelHash = model.hash;
    modelName = model.name;
    for (const [name, privateKey] of Object.entries(keys))
      await createKeystore({ home: directory.home, name, password, privateKey });

    // The earlier run: one paid answer on the first chain, its voucher left unsettled; then everything stops.
    first = await useChain();
    const earlier = await startNetwork(first.chain, [
      "--settle-threshold",
      String(parseEther("1000")),
      "--settle-interval",
      "3600",
    ]);
    const answered = await ask(earlier.url, 200);
    assert.equal(answered.status, 200, "the earlier run was answered");
    await waitFor("the earlier run's voucher stored by the provider", () => {
      const { vouchers } = storedOn(first.binding);
      return vouchers[0] && vouchers[0].cumulativeAmount >= answered.paid ? true : undefined;
    });
    await Promise.all(roles.splice(0).map((role) => role.stop()));
    await first.chain.stop();
    earlierRows = storedOn(first.binding);
  });

  after(async () => {
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await Promise.all(chains.map((chain) => chain.stop().catch(() => undefined)));
    await directory?.remove();
  });

  it("opens a new channel on the fresh chain at once, never uses the old one, and settles only this chain's voucher", async () => {
    const second = await useChain();
    assert.equal(
      second.chain.deployments.contracts.paymentChannels,
      first.chain.deployments.contracts.paymentChannels,
      "the fresh chain has the same contract address (and chain id): only its genesis differs",
    );
    assert.notEqual(second.binding.genesisHash, first.binding.genesisHash);
    const [oldChannel] = earlierRows.channels;
    assert.ok(oldChannel, "the earlier run left a channel in the gateway's store");

    // Settles whatever is unsettled after a second: the old chain's voucher would be settled here if it counted.
    const { url, gateway } = await startNetwork(second.chain, [
      "--settle-interval",
      "1",
      "--settle-check",
      "1",
    ]);
    const answers = [];
    for (let index = 0; index < 3; index++) answers.push(await ask(url, 4));
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 200, 200],
      `answered from the first request: ${JSON.stringify(answers.map((answer) => answer.body)).slice(0, 600)}`,
    );
    assert.ok((answers[0]?.ms ?? Infinity) < 20_000, `the first answer came in ${answers[0]?.ms} ms`);
    assert.match(gateway.output(), /opening a payment channel/, "a new channel was opened");

    const now = storedOn(second.binding);
    assert.equal(now.channels.length, 1, "one channel on this chain");
    const [channel] = now.channels as [(typeof now.channels)[number]];
    // Channel ids restart on a fresh chain: the new channel may carry the old one's id, and is still another.
    const onChain = await getChannel(second.chain.deployer, {
      deployments: second.chain.deployments,
      channelId: channel.channelId,
    });
    assert.equal(onChain.client, addresses.gateway, "the new channel is the gateway's, on the fresh chain");
    assert.equal(onChain.provider, addresses.provider);
    const { asClient } = await listChannels(second.chain.deployer, {
      deployments: second.chain.deployments,
      account: addresses.gateway,
    });
    assert.equal(asClient.length, 1, "the gateway opened exactly one channel on the fresh chain");

    const paidNow = answers.reduce((sum, answer) => sum + answer.paid, 0n);
    await waitFor("the provider to settle this chain's voucher", async () => {
      const record = await getChannel(second.chain.deployer, {
        deployments: second.chain.deployments,
        channelId: channel.channelId,
      });
      return record.settled >= paidNow ? record : undefined;
    });
    const settled = await getChannel(second.chain.deployer, {
      deployments: second.chain.deployments,
      channelId: channel.channelId,
    });
    const [voucher] = storedOn(second.binding).vouchers;
    assert.ok(voucher, "the provider holds this chain's voucher");
    assert.ok(
      settled.settled >= paidNow && settled.settled <= voucher.cumulativeAmount,
      `settled this chain's voucher (${settled.settled} of ${voucher.cumulativeAmount}, ${paidNow} paid)`,
    );
    const [oldVoucher] = earlierRows.vouchers;
    assert.ok(oldVoucher && oldVoucher.cumulativeAmount > settled.settled, "not the old, larger one");

    assert.deepEqual(storedOn(first.binding), earlierRows, "the old chain's rows are untouched");
  });
});
