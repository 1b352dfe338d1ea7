/**
 * Strangers selling inference to a gateway (issue 15, findings 3 and 4), end to end: real provider and gateway
 * processes over libp2p, a real anvil with the contracts deployed. The attackers are processes of their own: a real
 * provider that is not registered on chain and announces 1e25 per million tokens, a registered provider that
 * announces a price other than its on-chain offer, and two registered providers that flood a segment (far more
 * tokens than max_tokens, or huge chunk texts). The victim is the gateway: it keeps answering through the honest
 * provider, pays the strangers nothing beyond the tokens it asked for, and its memory stays bounded.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseEther } from "viem";
import { registerModel, registerProvider, writeDeployments } from "../../src/chain/index.ts";
import { createKeystore } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { modelHashToBytes32 } from "../../src/protocol/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import {
  mycelBin,
  paidGatewayArgs,
  type RoleProcess,
  repositoryRoot,
  startRole,
  temporaryHome,
  waitFor,
} from "../helpers.ts";

const password = "stranger-providers-test";
const env = { MYCEL_PASSWORD: password };
/** The honest price per 1M tokens: 10^6 units per token. */
const price = 1_000_000_000_000n;
const perToken = price / 1_000_000n;
const greedyPrice = 10n ** 25n;
const requests = 10;

type ModelsBody = { data: { id: string; mycel: { hash: string; providers: number } }[] };
type ProvidersBody = { data: { address: string; untrusted: boolean; not_routed?: string | null }[] };
type UsageBody = {
  payments: {
    deposited: string;
    paid: string;
    channels: { provider: string; paid: string; acknowledged: string }[];
  } | null;
};
type Completion = {
  mycel: { providers: string[]; failovers: number; receipts: unknown[] };
  usage: { completion_tokens: number };
};

/** The resident memory of a process, in bytes (Linux). */
function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(match, "VmRSS is readable");
  return Number(match[1]) * 1024;
}

describe("strangers selling inference: stake, price ceiling and segment caps (real processes, anvil)", () => {
  let chain: LocalChain;
  let directory: { home: string; remove: () => Promise<void> };
  let deploymentsPath: string;
  let shared: { hash: string; name: string };
  let greedyOnly: { hash: string; name: string };
  const accounts: Record<string, TestAccount> = {};
  const roles: RoleProcess[] = [];
  let honest: RoleProcess;
  let gateway: RoleProcess;
  let url: string;

  const json = async <T>(path: string) => (await (await fetch(`${url}${path}`)).json()) as T;
  const chat = (body: Record<string, unknown>) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: shared.name,
        messages: [{ role: "user", content: "tell me about mushrooms" }],
        max_tokens: 16,
        temperature: 0,
        ...body,
      }),
    });
  const providerArgs = (key: string, models: string[], providerPrice: bigint, bootstrap?: string) => [
    mycelBin,
    "--home",
    directory.home,
    "provider",
    ...models.flatMap((model) => ["--model", model]),
    "--key",
    key,
    "--price",
    String(providerPrice),
    "--rpc-url",
    chain.anvil.rpcUrl,
    "--deployments",
    deploymentsPath,
    "--settle-threshold",
    String(parseEther("1000")),
    "--settle-interval",
    "3600",
    ...(bootstrap ? ["--bootstrap", bootstrap] : []),
  ];
  const register = (account: TestAccount, offerPrice: bigint) =>
    registerProvider(account.connection, {
      deployments: chain.deployments,
      peerId: peerIdOfSecp256k1Key(account.privateKey),
      offers: [
        {
          modelHash: modelHashToBytes32(shared.hash),
          inputPricePerMillion: offerPrice,
          outputPricePerMillion: offerPrice,
        },
      ],
      stake: BigInt(chain.deployments.parameters.minimumProviderStake),
    });
  const servingCount = async () =>
    (await json<ModelsBody>("/v1/models")).data.find((model) => model.mycel.hash === shared.hash)?.mycel
      .providers ?? 0;

  before(async () => {
    chain = await startLocalChain();
    directory = await temporaryHome("mycel-strangers-");
    const store = openModelStore({ home: directory.home });
    const first = generateTestModel({ size: "tiny", seed: 1 });
    const second = generateTestModel({ size: "tiny", seed: 2 });
    shared = (await store.addBytes({ bytes: first.bytes, name: first.name, source: "test" })).model;
    greedyOnly = (await store.addBytes({ bytes: second.bytes, name: "greedy-only", source: "test" })).model;
    deploymentsPath = join(directory.home, "deployments.json");
    writeDeployments(deploymentsPath, chain.deployments);
    await registerModel(chain.deployer, {
      deployments: chain.deployments,
      modelHash: modelHashToBytes32(shared.hash),
      name: shared.name,
      license: "NOASSERTION",
      metadataUri: "mycel:test-model",
    });
    for (const label of ["honest", "greedy", "mismatched", "flood-tokens", "flood-text", "gateway"]) {
      accounts[label] = await chain.account(`strangers-${label}`);
      await createKeystore({
        home: directory.home,
        name: label,
        password,
        privateKey: accounts[label]?.privateKey as `0x${string}`,
      });
    }
    // Staked with offers: the honest provider at its price; the mismatched one at `price` though it announces less.
    await register(accounts.honest as TestAccount, price);
    await register(accounts.mismatched as TestAccount, price);
    await register(accounts["flood-tokens"] as TestAccount, price / 4n);
    await register(accounts["flood-text"] as TestAccount, price / 8n);
    honest = await startRole(providerArgs("honest", [shared.hash], price), { env });
    roles.push(honest);
    const bootstrap = honest.ready.multiaddrs?.[0] ?? "";
    const strangers = await Promise.all([
      startRole(providerArgs("greedy", [shared.hash, greedyOnly.hash], greedyPrice, bootstrap), { env }),
      startRole(providerArgs("mismatched", [shared.hash], price / 2n, bootstrap), { env }),
    ]);
    roles.push(...strangers);
    gateway = await startRole(
      paidGatewayArgs({
        home: directory.home,
        bootstrap,
        chainArgs: ["--rpc-url", chain.anvil.rpcUrl, "--deployments", deploymentsPath],
      }),
      { env },
    );
    roles.push(gateway);
    url = String(gateway.ready.url);
    await waitFor("the gateway to know all three providers and route to the honest one", async () => {
      const known = (await json<ProvidersBody>("/mycel/v1/providers")).data;
      return known.length >= 3 && (await servingCount()) === 1 ? true : undefined;
    });
  });

  after(async () => {
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await chain?.stop();
    await directory?.remove();
  });

  it("routes nothing to an unregistered provider at 1e25 per million, nor to one whose price differs from its offer", async () => {
    const honestAddress = accounts.honest?.address.toLowerCase();
    const models = await json<ModelsBody>("/v1/models");
    assert.deepEqual(
      models.data.map((model) => model.mycel.hash),
      [shared.hash],
      "the greedy provider's own model is not listed",
    );
    assert.equal(models.data[0]?.mycel.providers, 1, "only the honest provider counts");
    const missing = await chat({ model: greedyOnly.name });
    assert.equal(missing.status, 404);
    assert.match(
      ((await missing.json()) as { error: { message: string } }).error.message,
      /--allow-unstaked/,
    );
    const known = (await json<ProvidersBody>("/mycel/v1/providers")).data;
    const reasonOf = (label: string) =>
      known.find((entry) => entry.address.toLowerCase() === accounts[label]?.address.toLowerCase())
        ?.not_routed;
    assert.match(String(reasonOf("greedy")), /above the price ceiling|not registered/);
    assert.match(String(reasonOf("mismatched")), /differs from its on-chain offer/);
    assert.equal(reasonOf("honest"), null);
    for (let index = 0; index < requests; index++) {
      const response = await chat({ messages: [{ role: "user", content: `question ${index}` }] });
      assert.equal(response.status, 200, `request ${index} succeeds`);
      const body = (await response.json()) as Completion;
      assert.deepEqual(
        body.mycel.providers.map((address) => address.toLowerCase()),
        [honestAddress],
        `request ${index} was served by the honest provider alone`,
      );
    }
    const usage = await json<UsageBody>("/mycel/v1/usage");
    assert.deepEqual(
      usage.payments?.channels.map((channel) => channel.provider.toLowerCase()),
      [honestAddress],
      "the gateway opened a channel to the honest provider only: nothing deposited with the strangers",
    );
  });

  it("refuses a request whose mycel.max_price is below every provider, naming the ceiling and the fix; nothing is paid", async () => {
    // The earlier answers' last vouchers are paid in the background: wait until they are acknowledged.
    const settled = async () => {
      const usage = await json<UsageBody>("/mycel/v1/usage");
      return usage.payments?.channels.every((channel) => channel.paid === channel.acknowledged)
        ? usage.payments
        : undefined;
    };
    const before = await waitFor("the earlier answers' vouchers to be acknowledged", settled);
    const response = await chat({ mycel: { max_price: String(price - 1n) } });
    assert.equal(response.status, 402);
    const body = (await response.json()) as { error: { message: string; code: string } };
    assert.match(body.error.message, new RegExp(`mycel\\.max_price ${price - 1n}`));
    assert.match(body.error.message, /raise mycel\.max_price/);
    assert.deepEqual(await settled(), before, "no deposit, no voucher");
    const invalid = await chat({ mycel: { max_price: "-1" } });
    assert.equal(invalid.status, 400, "a malformed ceiling is the client's error");
    const enough = await chat({ mycel: { max_price: String(price) } });
    assert.equal(enough.status, 200, "a ceiling at the honest price is served");
  });

  it("cuts flooding segments, fails over to the honest provider, pays at most the requested tokens, and stays bounded in memory", async () => {
    const floodArgs = (label: string, mode: string, floodPrice: bigint) => [
      "--import",
      "tsx",
      join(repositoryRoot, "test", "fixtures", "attackers", "floodingProvider.ts"),
      shared.hash,
      shared.name,
      accounts[label]?.privateKey as string,
      mode,
      String(floodPrice),
      // A credit window of two tokens: the gateway pays as tokens arrive, so its vouchers show what it metered.
      String((floodPrice / 1_000_000n) * 2n),
      honest.ready.multiaddrs?.[0] ?? "",
      deploymentsPath,
    ];
    const pid = gateway.child.pid as number;
    const rssBefore = residentBytes(pid);
    const flooders = await Promise.all([
      startRole(floodArgs("flood-tokens", "tokens", price / 4n), { env }),
      startRole(floodArgs("flood-text", "text", price / 8n), { env }),
    ]);
    roles.push(...flooders);
    await waitFor("the gateway to route to both flooders (staked, cheapest)", async () =>
      (await servingCount()) === 3 ? true : undefined,
    );
    const response = await chat({ messages: [{ role: "user", content: "flood me" }] });
    assert.equal(response.status, 200, "the request completes");
    const body = (await response.json()) as Completion;
    assert.deepEqual(
      body.mycel.providers.map((address) => address.toLowerCase()),
      [accounts.honest?.address.toLowerCase()],
    );
    assert.equal(body.mycel.failovers, 2, "both flooders were tried first and cut");
    assert.ok(body.usage.completion_tokens <= 16);
    const [tokens, text] = await Promise.all(
      flooders.map(async (flooder) => {
        const line = await flooder.waitForOutput(/^MYCEL_FLOOD (.+)$/m, { timeoutMs: 20_000 });
        return JSON.parse(line[1] as string) as {
          chunks: number;
          bytesWritten: number;
          bytesWanted: number;
          voucher: string;
        };
      }),
    );
    const tokenFlood = tokens as NonNullable<typeof tokens>;
    const textFlood = text as NonNullable<typeof text>;
    // The token flooder: cut after max_tokens, paid for at most max_tokens.
    assert.ok(
      tokenFlood.chunks < 1_000,
      `the token flood was cut (${tokenFlood.chunks} of 100000 chunks taken)`,
    );
    const tokenPrice = perToken / 4n;
    assert.ok(
      BigInt(tokenFlood.voucher) <= 16n * tokenPrice,
      `vouchers to the token flooder (${tokenFlood.voucher}) cover at most the 16 requested tokens (${16n * tokenPrice})`,
    );
    assert.ok(
      BigInt(tokenFlood.voucher) > 0n,
      "the gateway did pay as tokens arrived (so the bound is meaningful)",
    );
    // The text flooder pushes ~90 MB at the gateway (libp2p buffers it on the sender's side; the gateway's receive
    // window and its reset at the first chunk keep it out): the gateway's memory must grow far less (checked below).
    assert.ok(textFlood.chunks >= 1, "the text flooder got its flood going");
    const usage = await json<UsageBody>("/mycel/v1/usage");
    for (const [label, most] of [
      ["flood-tokens", 16n * tokenPrice],
      ["flood-text", 16n * (perToken / 8n)],
    ] as const) {
      const channel = usage.payments?.channels.find(
        (entry) => entry.provider.toLowerCase() === accounts[label]?.address.toLowerCase(),
      );
      assert.ok(BigInt(channel?.paid ?? "0") <= most, `${label}: signed ${channel?.paid}, at most ${most}`);
    }
    const known = (await json<ProvidersBody>("/mycel/v1/providers")).data;
    for (const label of ["flood-tokens", "flood-text"])
      assert.equal(
        known.find((entry) => entry.address.toLowerCase() === accounts[label]?.address.toLowerCase())
          ?.untrusted,
        true,
        `${label} broke the protocol: never routed to again`,
      );
    const growth = residentBytes(pid) - rssBefore;
    assert.ok(
      growth < textFlood.bytesWanted / 3,
      `gateway memory grew ${Math.round(growth / 1e6)} MB while ${Math.round(textFlood.bytesWanted / 1e6)} MB were thrown at it`,
    );
    // And honest requests keep succeeding.
    for (let index = 0; index < 3; index++) assert.equal((await chat({})).status, 200);
  });
});
