/**
 * API keys of a remote gateway, end to end: `mycel gateway keys` in real processes, a gateway refused on 0.0.0.0
 * without keys, and a real paying gateway (anvil, a priced provider process, the gateway process) whose requests
 * need a key: 401 without or with a wrong or revoked one, 429 past a key's rate, 402 past its budget counted from
 * the receipts it paid, usage per key, and the explorer's key form in Debian's chromium.
 */
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Ollama } from "ollama";
import { parseEther } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { fundDevAccounts, writeDeployments } from "../../src/chain/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { apiKeyStorePath } from "../../src/store/index.ts";
import { openExplorerPage, sharedChromium } from "../fixtures/browser.ts";
import { type LocalChain, startLocalChain } from "../fixtures/chain/localChain.ts";
import {
  mycelBin,
  paidGatewayArgs,
  type RoleProcess,
  runMycel,
  startMycelServer,
  startRole,
  temporaryHome,
  waitFor,
} from "../helpers.ts";

const password = "api-keys-test";
const env = { MYCEL_PASSWORD: password };
/** Price per 1M tokens: 10^6 units per token. */
const price = 1_000_000_000_000n;

type ErrorBody = { error: { message: string; type: string; code: string | null } };
type KeyUsage = { id: string; name: string; requests: number; spent: string; budget_left: string | null };

describe("API keys of a gateway (real gateway, provider and anvil processes)", () => {
  let chain: LocalChain;
  let home: string;
  let modelName: string;
  let gatewayUrl: string;
  const keys: Record<string, string> = {};
  const roles: RoleProcess[] = [];
  const homes: { remove: () => Promise<void> }[] = [];
  const browser = sharedChromium();

  const keysCli = async (args: string[], inHome = home) =>
    runMycel(["gateway", "keys", ...args], { home: inHome, env });
  const createKey = async (name: string, extra: string[] = []) => {
    const result = await keysCli(["create", "--name", name, ...extra]);
    assert.equal(result.code, 0, result.stderr);
    const key = result.stdout.trim();
    assert.match(key, /^mycel_sk_[A-Za-z0-9_-]{43}$/);
    keys[name] = key;
    return key;
  };
  const chat = (key: string | undefined, extraHeaders: Record<string, string> = {}) =>
    fetch(`${gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
        ...extraHeaders,
      },
      body: JSON.stringify({ model: modelName, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
    });
  const usageOf = async (key: string) => {
    const response = await fetch(`${gatewayUrl}/mycel/v1/usage`, {
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(response.status, 200);
    return ((await response.json()) as { keys: KeyUsage[] }).keys;
  };

  before(async () => {
    chain = await startLocalChain();
    const directory = await temporaryHome("mycel-keys-");
    homes.push(directory);
    home = directory.home;
    const made = generateTestModel({ size: "tiny", seed: 1 });
    modelName = made.name;
    const { model } = await openModelStore({ home }).addBytes({
      bytes: made.bytes,
      name: made.name,
      source: "test",
    });
    const deploymentsPath = join(home, "deployments.json");
    writeDeployments(deploymentsPath, chain.deployments);
    const privateKeys = { provider: devPrivateKey("keys-provider"), gateway: devPrivateKey("keys-gateway") };
    for (const [name, privateKey] of Object.entries(privateKeys))
      await createKeystore({ home, name, password, privateKey });
    await fundDevAccounts(chain.deployer, {
      deployments: chain.deployments,
      accounts: Object.values(privateKeys).map((key) => privateKeyToAccount(key).address),
      tokens: parseEther("1000"),
    });
    const chainArgs = ["--rpc-url", chain.anvil.rpcUrl, "--deployments", deploymentsPath];
    await createKey("alice", ["--rate", "2"]);
    // 1 unit: the first answer spends more than that, the second is refused.
    await createKey("bob", ["--budget", "0.000000000000000001 MYC"]);
    await createKey("carol");
    await createKey("dave");
    await createKey("ollie");
    const provider = await startRole(
      [
        mycelBin,
        "--home",
        home,
        "provider",
        "--model",
        model.hash,
        "--key",
        "provider",
        "--price",
        String(price),
        ...chainArgs,
      ],
      { env },
    );
    roles.push(provider);
    const gateway = await startRole(
      paidGatewayArgs({
        home,
        bootstrap: provider.ready.multiaddrs?.[0] ?? "",
        chainArgs,
        allowUnstaked: true,
      }),
      { env },
    );
    roles.push(gateway);
    gatewayUrl = String(gateway.ready.url);
    await waitFor("the gateway to see the provider", async () => {
      const response = await fetch(`${gatewayUrl}/mycel/v1/providers`, {
        headers: { authorization: `Bearer ${keys.carol}` },
      });
      const body = (await response.json()) as { data: unknown[] };
      return body.data.length > 0 ? true : undefined;
    });
  });

  after(async () => {
    await browser.close();
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await chain?.stop();
    await Promise.all(homes.map((directory) => directory.remove()));
  });

  it("keys create prints the key once; the store holds only its hash, 0600 in a 0700 folder; list shows them", async () => {
    const path = apiKeyStorePath({ home });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(path)).mode & 0o777, 0o700);
    for (const file of [path, `${path}-wal`]) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        continue;
      }
      for (const key of Object.values(keys)) {
        assert.equal(bytes.includes(key), false, `${file} holds a key in clear`);
        assert.equal(
          bytes.includes(key.slice("mycel_sk_".length)),
          false,
          `${file} holds a key's secret part`,
        );
      }
    }
    const listed = await keysCli(["list"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      /^NAME\s+ID\s+PREFIX\s+CREATED\s+REQUESTS\s+SPENT\s+BUDGET\s+RATE\/MIN\s+REVOKED/,
    );
    assert.match(listed.stdout, /\nalice\s+key_[0-9a-f]{12}\s+mycel_sk_\S{4}\.\.\.\s.*\s-\s+2\s+-\n/);
    assert.match(listed.stdout, /\nbob\s+.*\s0\.000000000000000001\s+-\s+-\n/);
    for (const key of Object.values(keys)) assert.equal(listed.stdout.includes(key), false);
    const duplicate = await keysCli(["create", "--name", "alice"]);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /an API key named "alice" exists[\s\S]*mycel gateway keys revoke alice/);
    const badBudget = await keysCli(["create", "--name", "erin", "--budget", "5 ETH"]);
    assert.equal(badBudget.code, 1);
    assert.match(badBudget.stderr, /"5 ETH" is not a budget/);
    const unknown = await keysCli(["revoke", "nobody"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no active API key is named or has the id "nobody"[\s\S]*alice \(key_/);
  });

  it("answers 401 in OpenAI's shape without a key, with a wrong one and with a malformed header", async () => {
    for (const [key, message] of [
      [undefined, /needs an API key/],
      [`mycel_sk_${"A".repeat(43)}`, /not valid here/],
    ] as const) {
      const response = await chat(key);
      assert.equal(response.status, 401);
      assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="mycel"');
      const body = (await response.json()) as ErrorBody;
      assert.equal(body.error.code, "invalid_api_key");
      assert.match(body.error.message, message);
    }
    const malformed = await chat(undefined, { authorization: `Basic ${keys.carol}` });
    assert.equal(malformed.status, 401);
    // The explorer's views and the live feed need a key too; /health and the web app's page do not.
    for (const path of ["/v1/models", "/mycel/v1/usage", "/mycel/v1/providers", "/mycel/v1/events"])
      assert.equal((await fetch(`${gatewayUrl}${path}`)).status, 401, path);
    assert.equal((await fetch(`${gatewayUrl}/health`)).status, 200);
  });

  it("answers 429 with Retry-After past a key's rate, and other keys are not held back", async () => {
    for (let index = 0; index < 2; index++) assert.equal((await chat(keys.alice)).status, 200);
    const limited = await chat(keys.alice);
    assert.equal(limited.status, 429);
    const retryAfter = Number(limited.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 30, `Retry-After ${retryAfter}`);
    const body = (await limited.json()) as ErrorBody;
    assert.equal(body.error.code, "rate_limit_exceeded");
    // Views do not count against the rate.
    assert.equal(
      (await fetch(`${gatewayUrl}/v1/models`, { headers: { authorization: `Bearer ${keys.alice}` } })).status,
      200,
    );
    assert.equal((await chat(keys.carol)).status, 200);
  });

  it("answers 402 past a key's budget, counted from the receipts the gateway paid, and keeps the spend", async () => {
    const first = await chat(keys.bob);
    assert.equal(first.status, 200);
    const answer = (await first.json()) as { mycel: { receipts: { message: { price: string } }[] } };
    const cost = answer.mycel.receipts.reduce((sum, receipt) => sum + BigInt(receipt.message.price), 0n);
    assert.ok(cost > 1n, `the answer cost ${cost} units`);
    const refused = await chat(keys.bob);
    assert.equal(refused.status, 402);
    const body = (await refused.json()) as ErrorBody;
    assert.equal(body.error.code, "insufficient_quota");
    const [usage] = await usageOf(keys.bob as string);
    assert.equal(usage?.name, "bob");
    assert.equal(usage?.requests, 1);
    assert.equal(usage?.spent, cost.toString());
    assert.equal(usage?.budget_left, "0");
    // What the next start of the gateway reads: the store, not the process's memory.
    const listed = await keysCli(["list", "--json"]);
    const stored = (JSON.parse(listed.stdout) as KeyUsage[]).find((key) => key.name === "bob");
    assert.equal(stored?.spent, cost.toString());
  });

  it("shows a key only its own usage", async () => {
    const usage = await usageOf(keys.alice as string);
    assert.deepEqual(
      usage.map((key) => key.name),
      ["alice"],
    );
    assert.equal(usage[0]?.requests, 2);
  });

  it("serves Ollama's API through the gateway, with the key as Ollama's client sends it", async () => {
    const refused = await fetch(`${gatewayUrl}/api/tags`);
    assert.equal(refused.status, 401);
    assert.match(((await refused.json()) as { error: string }).error, /needs an API key/);
    const ollama = new Ollama({ host: gatewayUrl, headers: { Authorization: `Bearer ${keys.ollie}` } });
    const { models } = await ollama.list();
    assert.deepEqual(
      models.map((model) => model.name),
      [modelName],
    );
    const request = {
      model: modelName,
      messages: [{ role: "user", content: "hi" }],
      options: { num_predict: 4 },
    };
    const answer = await ollama.chat(request);
    assert.equal(answer.done_reason, "length");
    assert.equal(answer.eval_count, 4);
    let streamed = "";
    let final: (typeof answer & { mycel?: { receipts?: unknown[] } }) | undefined;
    for await (const chunk of await ollama.chat({ ...request, stream: true })) {
      streamed += chunk.message.content;
      final = chunk;
    }
    assert.ok(streamed.length > 0);
    assert.equal(final?.done, true);
    assert.equal(final?.mycel?.receipts?.length, 1, "the provider's receipt rides on the final object");
    const [usage] = await usageOf(keys.ollie as string);
    assert.equal(usage?.requests, 2, "both answers count against the key");
    assert.ok(BigInt(usage?.spent ?? "0") > 0n);
    // Ollama's embeddings spend like /v1/embeddings: the provider's receipt, counted against the key.
    const embedded = (await ollama.embed({ model: modelName, input: ["hi", "there"] })) as Awaited<
      ReturnType<Ollama["embed"]>
    > & { mycel?: { receipts?: unknown[] } };
    assert.equal(embedded.embeddings.length, 2);
    assert.equal(embedded.mycel?.receipts?.length, 1);
    const [afterEmbed] = await usageOf(keys.ollie as string);
    assert.equal(afterEmbed?.requests, 3, "the embeddings count against the key");
    assert.ok(BigInt(afterEmbed?.spent ?? "0") > BigInt(usage?.spent ?? "0"), "and their price");
  });

  it("the explorer asks for the key, keeps it for the tab and loads with it", async (t) => {
    const errors: string[] = [];
    const page = await openExplorerPage({
      browser: await browser.get(),
      url: gatewayUrl,
      hash: "network",
      errors,
    });
    t.after(() => page.close());
    const form = page.getByRole("form", { name: "This gateway needs an API key" });
    await form.waitFor({ timeout: 15_000 });
    await form.getByLabel("API key").fill(keys.dave as string);
    await form.getByRole("button", { name: "Use this key" }).click();
    await page.locator(".live-connected").waitFor({ timeout: 15_000 });
    assert.equal(await form.count(), 0, "the form is gone once the key works");
    await page.locator(".gateway").filter({ hasText: /0x/ }).waitFor({ timeout: 15_000 });
    assert.equal(
      await page.evaluate(() =>
        (
          globalThis as unknown as { sessionStorage: { getItem(key: string): string | null } }
        ).sessionStorage.getItem("mycel.apiKey"),
      ),
      keys.dave,
    );
    assert.equal(page.url().includes("mycel_sk_"), false, "the key is never in the URL");
  });

  it("a revoked key stops working at once while the gateway runs", async () => {
    assert.equal((await chat(keys.carol)).status, 200);
    const revoked = await keysCli(["revoke", "carol"]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const response = await chat(keys.carol);
    assert.equal(response.status, 401);
    assert.match(((await response.json()) as ErrorBody).error.message, /"carol" was revoked/);
    const listed = await keysCli(["list"]);
    assert.match(listed.stdout, /\ncarol\s+.*\d{4}-\d\d-\d\d \d\d:\d\dZ\n/);
  });
});

describe("a gateway beyond loopback", () => {
  let home: { home: string; remove: () => Promise<void> };

  before(async () => {
    home = await temporaryHome("mycel-keys-bind-");
    await createKeystore({
      home: home.home,
      name: "gateway",
      password,
      privateKey: devPrivateKey("keys-bind"),
    });
  });
  after(() => home.remove());

  it("refuses to start on 0.0.0.0 without API keys, naming the fix", async () => {
    const result = await runMycel(["gateway", "--key", "gateway", "--host", "0.0.0.0", "--port", "0"], {
      home: home.home,
      env,
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /a gateway listening on 0\.0\.0\.0 needs API keys, and it has none/);
    assert.match(result.stderr, /mycel gateway keys create --name <name>/);
    assert.match(result.stderr, /--insecure-no-auth/);
  });

  it("starts with --insecure-no-auth, warning on every start, and serves without a key", async () => {
    // ::ffff:127.0.0.1 is not a loopback name to the gateway, yet only this machine reaches it.
    const server = await startMycelServer(
      ["gateway", "--key", "gateway", "--host", "::ffff:127.0.0.1", "--port", "0", "--insecure-no-auth"],
      { home: home.home, env },
    );
    try {
      assert.match(
        server.output(),
        /no API keys \(--insecure-no-auth\): anyone who can reach it spends your funds/,
      );
      const port = new URL(server.url).port;
      assert.equal((await fetch(`http://127.0.0.1:${port}/v1/models`)).status, 200);
    } finally {
      await server.stop();
    }
  });
});
