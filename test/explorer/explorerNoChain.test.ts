/**
 * The explorer on a gateway without a chain, in process: a real libp2p node on loopback, a receipt store in a
 * temporary folder, the gateway, the explorer and the API server composed as `mycel gateway` composes them (no
 * providers). Its JSON views answer calmly with chain: false, it re-checks receipt signatures instead of trusting
 * its store, it serves only the built files (or says how to build them), and the built web app shows "no chain"
 * and empty states, not errors, in Debian's chromium. Screenshots go to test-artifacts/explorer/no-chain-*.png.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import type { Page } from "playwright-core";
import { createPublicClient, defineChain, type Hex, http, zeroAddress } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { type ApiServer, startApiServer } from "../../src/api/index.ts";
import {
  type CreateExplorerParameters,
  createExplorer,
  type Explorer,
  type ExplorerInfo,
  type ExplorerProvider,
  explorerContentSecurityPolicy,
  type NetworkHistory,
  type PaymentsView,
  type ReceiptDetail,
  type ReceiptList,
  type RegistryList,
  type ValidatorsView,
} from "../../src/explorer/index.ts";
import { type Gateway, startGateway } from "../../src/gateway/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1, type MycelNode } from "../../src/p2p/index.ts";
import { receiptDomain, signReceipt } from "../../src/protocol/index.ts";
import { openReceiptStore, type ReceiptStore } from "../../src/store/index.ts";
import { openExplorerPage, sharedChromium } from "../fixtures/browser.ts";
import { repositoryRoot, temporaryHome } from "../helpers.ts";

const artifacts = join(repositoryRoot, "test-artifacts", "explorer");
const builtIndex = join(repositoryRoot, "web", "dist", "index.html");

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}: ${response.status} ${await response.clone().text()}`);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  return (await response.json()) as T;
}

/** A raw GET: node:http sends the path as written, with no URL normalization (fetch would resolve the dots). */
function rawGet(url: string, path: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const target = new URL(url);
    const request = httpRequest(
      { host: target.hostname, port: target.port, path, method: "GET" },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => {
          body += chunk;
        });
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.on("error", reject);
    request.end();
  });
}

const randomHex32 = () => `0x${randomBytes(32).toString("hex")}` as Hex;

describe("explorer on a gateway without a chain (in process, no providers)", () => {
  let home: { home: string; remove: () => Promise<void> };
  let node: MycelNode;
  let receipts: ReceiptStore;
  let gateway: Gateway;
  const gatewayKey = generatePrivateKey();
  const explorers: Explorer[] = [];
  const servers: ApiServer[] = [];
  /** The server with the built web app (web/dist, the default directory). */
  let url: string;

  /** An explorer on the shared gateway and an API server for it, composed as src/cli/roles.ts does. */
  async function serveExplorer(
    directory?: string,
    chain?: CreateExplorerParameters["chain"],
  ): Promise<string> {
    const explorer = createExplorer({
      gateway,
      node,
      ...(directory ? { directory } : {}),
      ...(chain ? { chain } : {}),
    });
    explorers.push(explorer);
    const server = await startApiServer({
      backend: {
        ...gateway.backend,
        route: async (input) => (await gateway.backend.route?.(input)) || explorer.route(input),
      },
      host: "127.0.0.1",
      port: 0,
    });
    servers.push(server);
    assert.equal(server.host, "127.0.0.1");
    return server.url;
  }

  before(async () => {
    home = await temporaryHome("mycel-explorer-no-chain-");
    node = await createMycelNode({
      privateKey: libp2pKeyFromSecp256k1(generatePrivateKey()),
      listen: ["/ip4/127.0.0.1/tcp/0"],
    });
    receipts = openReceiptStore({ path: join(home.home, "gateway", "receipts.sqlite") });
    gateway = startGateway({ node, privateKey: gatewayKey, receipts, audit: undefined });
    url = await serveExplorer();
  });

  after(async () => {
    for (const explorer of explorers) explorer.stop();
    for (const server of servers) await server.close();
    await gateway?.stop();
    await node?.stop();
    receipts?.close();
    await home?.remove();
  });

  describe("JSON views", () => {
    it("describe the gateway with no chain, no providers, no registry, payments or validators", async () => {
      const info = await getJson<ExplorerInfo>(`${url}/mycel/v1/explorer`);
      assert.equal(info.object, "mycel.explorer");
      assert.equal(info.chain, null);
      assert.equal(info.gateway.address, privateKeyToAccount(gatewayKey).address);
      assert.equal(info.gateway.peer_id, node.peerId);
      assert.deepEqual(info.audit, { rate: 0, validators: [] });

      const providers = await getJson<{ object: string; data: ExplorerProvider[] }>(
        `${url}/mycel/v1/providers`,
      );
      assert.deepEqual(providers, { object: "list", data: [] });

      const registry = await getJson<RegistryList>(`${url}/mycel/v1/registry`);
      assert.deepEqual(registry, { object: "list", chain: false, data: [] });

      const payments = await getJson<PaymentsView>(`${url}/mycel/v1/payments`);
      assert.deepEqual(payments, {
        object: "mycel.payments",
        chain: false,
        token: null,
        gateway: null,
        channels: [],
        providers: [],
        settlements: [],
      });

      const validators = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
      assert.equal(validators.chain, false);
      assert.equal(validators.current_epoch, null);
      assert.deepEqual(
        [validators.validators, validators.epochs, validators.standings, validators.slashes],
        [[], [], [], []],
      );

      const history = await getJson<NetworkHistory>(`${url}/mycel/v1/network/history`);
      assert.equal(history.interval_ms, 5_000);
      assert.equal(history.capacity, 720);
      assert.ok(Array.isArray(history.points));
      assert.deepEqual(info.history, { interval_ms: 5_000, capacity: 720 });

      const usage = await getJson<{ payments: unknown }>(`${url}/mycel/v1/usage`);
      assert.equal(usage.payments, null, "the gateway's own route still answers before the explorer's");
    });

    it("list stored receipts and check their signatures again instead of trusting the store", async () => {
      const empty = await getJson<ReceiptList>(`${url}/mycel/v1/receipts`);
      assert.equal(empty.total, 0);
      assert.deepEqual(empty.data, []);

      const providerKey = generatePrivateKey();
      const provider = privateKeyToAccount(providerKey).address;
      const modelHash = randomHex32();
      const save = (requestId: Hex, receipt: unknown) =>
        receipts.saveReceipt({ requestId, segment: 0, provider, modelHash, receipt });
      const signed = (requestId: Hex, signer: Hex) =>
        signReceipt({
          privateKey: signer,
          domain: receiptDomain(),
          message: {
            requestId,
            client: privateKeyToAccount(gatewayKey).address,
            provider,
            modelHash,
            requestHash: randomHex32(),
            promptHash: randomHex32(),
            outputHash: randomHex32(),
            commitment: randomHex32(),
            promptTokens: 3,
            completionTokens: 5,
            price: 80n,
            timestamp: BigInt(Math.floor(Date.now() / 1000)),
          },
        });

      // A receipt with a made-up signature, one signed by someone else in the provider's name, and a real one.
      const fakeId = randomHex32();
      save(fakeId, {
        message: { provider, promptTokens: 12, completionTokens: 34, price: "5600" },
        signature: `0x${"11".repeat(65)}`,
      });
      const impostorKey = generatePrivateKey();
      const forgedId = randomHex32();
      const forged = await signed(forgedId, impostorKey);
      save(forgedId, forged);
      const genuineId = randomHex32();
      save(genuineId, await signed(genuineId, providerKey));

      const all = await getJson<ReceiptList>(`${url}/mycel/v1/receipts`);
      assert.equal(all.total, 3);

      const found = await getJson<ReceiptList>(`${url}/mycel/v1/receipts?q=${fakeId.slice(0, 14)}`);
      assert.equal(found.total, 1, "found by request id prefix");
      const summary = found.data[0];
      assert.ok(summary);
      assert.equal(summary.request_id, fakeId);
      assert.equal(summary.provider, provider);
      assert.equal(summary.model_hash, modelHash);
      assert.equal(summary.model_name, null, "no provider serves the model, so it has no name");
      assert.equal(summary.price, "5600");
      assert.equal(summary.prompt_tokens, 12);
      assert.equal(summary.completion_tokens, 34);
      assert.equal(summary.audit, null);
      assert.equal(summary.sampled_to, null);

      const fakeDetail = await getJson<ReceiptDetail>(`${url}/mycel/v1/receipts/${fakeId}`);
      assert.deepEqual(fakeDetail.verification, [{ segment: 0, signer: null, valid: false }]);
      assert.equal(fakeDetail.cost, "5600");

      const forgedDetail = await getJson<ReceiptDetail>(`${url}/mycel/v1/receipts/${forgedId}`);
      assert.deepEqual(forgedDetail.verification, [
        { segment: 0, signer: privateKeyToAccount(impostorKey).address, valid: false },
      ]);

      const genuineDetail = await getJson<ReceiptDetail>(`${url}/mycel/v1/receipts/${genuineId}`);
      assert.deepEqual(genuineDetail.verification, [{ segment: 0, signer: provider, valid: true }]);
      assert.equal(genuineDetail.cost, "80");

      assert.equal((await fetch(`${url}/mycel/v1/receipts/${randomHex32()}`)).status, 404);
      assert.equal((await fetch(`${url}/mycel/v1/receipts/0x1234`)).status, 400);
      // Evidence stays with the provider; with none on the network the explorer says so instead of hanging.
      const evidence = await fetch(`${url}/mycel/v1/receipts/${genuineId}/evidence`);
      assert.equal(evidence.status, 503);
      assert.match(
        ((await evidence.json()) as { error: { message: string } }).error.message,
        /not on the network/,
      );
    });
  });

  describe("with its chain's RPC down", () => {
    let downUrl: string;
    let rpcUrl: string;

    before(async () => {
      // A port that was just free: nothing answers there.
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
      const { port } = probe.address() as { port: number };
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      rpcUrl = `http://127.0.0.1:${port}`;
      const chainDefinition = defineChain({
        id: 31337,
        name: "down",
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        rpcUrls: { default: { http: [rpcUrl] } },
      });
      const contracts = {
        token: zeroAddress,
        modelRegistry: zeroAddress,
        providerRegistry: zeroAddress,
        paymentChannels: zeroAddress,
        epochConsensus: zeroAddress,
      };
      downUrl = await serveExplorer(undefined, {
        connection: {
          rpcUrl,
          chain: chainDefinition,
          publicClient: createPublicClient({
            chain: chainDefinition,
            transport: http(rpcUrl, { retryCount: 0 }),
          }),
        },
        // Only the contract addresses and chain id are read (nothing more: the RPC is down).
        deployments: { contracts, chainId: 31337 } as unknown as NonNullable<
          CreateExplorerParameters["chain"]
        >["deployments"],
      });
    });

    it("answers the chain views with 503 naming the chain, and the rest as usual", async () => {
      for (const path of [
        "/mycel/v1/payments",
        "/mycel/v1/validators",
        "/mycel/v1/registry",
        "/mycel/v1/explorer",
      ]) {
        const response = await fetch(`${downUrl}${path}`);
        assert.equal(response.status, 503, path);
        const { error } = (await response.json()) as { error: { message: string } };
        assert.match(error.message, new RegExp(`from the chain at ${rpcUrl.replace(/[.]/g, "\\.")}`), path);
        assert.match(error.message, /--rpc-url/, `${path}: the message names the fix`);
      }
      const providers = await fetch(`${downUrl}/mycel/v1/providers`);
      assert.equal(providers.status, 200, "providers are listed without their stake");
      const receiptsList = await fetch(`${downUrl}/mycel/v1/receipts`);
      assert.equal(receiptsList.status, 200);
    });
  });

  describe("static files", () => {
    it("say how to build the app when it is not built, while the JSON API still works", async () => {
      const unbuilt = join(home.home, "unbuilt");
      mkdirSync(unbuilt, { recursive: true });
      const unbuiltUrl = await serveExplorer(unbuilt);
      const index = await fetch(`${unbuiltUrl}/`);
      assert.equal(index.status, 503);
      assert.match(index.headers.get("content-type") ?? "", /^text\/plain/);
      assert.match(await index.text(), /npm run build:web/);
      assert.equal((await fetch(`${unbuiltUrl}/assets/app.js`)).status, 404);
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${unbuiltUrl}/mycel/v1/providers`);
      assert.deepEqual(providers.data, []);
    });

    it("serve the page and hashed assets with strict headers, and nothing outside the folder", async () => {
      // <root>/package.json and <root>/secret.txt sit just outside the served folder <root>/site.
      const root = join(home.home, "static");
      const site = join(root, "site");
      mkdirSync(join(site, "assets"), { recursive: true });
      const html =
        "<!doctype html><title>test page</title><script type=module src=/assets/app-abc123.js></script>";
      const script = "console.log('app-abc123');\n";
      writeFileSync(join(site, "index.html"), html);
      writeFileSync(join(site, "assets", "app-abc123.js"), script);
      writeFileSync(join(root, "package.json"), '{ "name": "outside-the-site" }\n');
      writeFileSync(join(root, "secret.txt"), "outside-the-site\n");
      const siteUrl = await serveExplorer(site);

      const index = await fetch(`${siteUrl}/`);
      assert.equal(index.status, 200);
      assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
      const policy = index.headers.get("content-security-policy") ?? "";
      assert.match(policy, /script-src 'self'/);
      assert.equal(policy, explorerContentSecurityPolicy);
      assert.equal(index.headers.get("cache-control"), "no-cache");
      assert.equal(index.headers.get("x-content-type-options"), "nosniff");
      assert.equal(await index.text(), html);

      const asset = await fetch(`${siteUrl}/assets/app-abc123.js`);
      assert.equal(asset.status, 200);
      assert.match(asset.headers.get("content-type") ?? "", /^text\/javascript/);
      assert.match(asset.headers.get("cache-control") ?? "", /immutable/);
      assert.equal(await asset.text(), script);

      // Text goes out gzipped to a client that takes gzip, as it is to one that does not.
      for (const encoding of ["gzip, deflate, br", undefined]) {
        const answer = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>(
          (resolve, reject) => {
            const target = new URL(siteUrl);
            httpRequest(
              {
                host: target.hostname,
                port: target.port,
                path: "/assets/app-abc123.js",
                headers: encoding ? { "accept-encoding": encoding } : {},
              },
              (response) => {
                const chunks: Buffer[] = [];
                response.on("data", (chunk: Buffer) => chunks.push(chunk));
                response.on("end", () => resolve({ headers: response.headers, body: Buffer.concat(chunks) }));
              },
            )
              .on("error", reject)
              .end();
          },
        );
        assert.equal(answer.headers.vary, "accept-encoding");
        assert.equal(Number(answer.headers["content-length"]), answer.body.length);
        if (encoding) {
          assert.equal(answer.headers["content-encoding"], "gzip");
          assert.equal(gunzipSync(answer.body).toString(), script);
        } else {
          assert.equal(answer.headers["content-encoding"], undefined);
          assert.equal(answer.body.toString(), script);
        }
      }

      const head = await fetch(`${siteUrl}/`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.match(head.headers.get("content-type") ?? "", /^text\/html/);
      assert.equal(await head.text(), "");

      for (const path of [
        "/assets/../../package.json",
        "/assets/..%2f..%2fpackage.json",
        "/assets/../../secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%2fsecret.txt",
      ]) {
        const answer = await rawGet(siteUrl, path);
        assert.equal(answer.status, 404, `${path}: ${answer.status} ${answer.body}`);
        assert.doesNotMatch(answer.body, /outside-the-site/, path);
      }
      assert.equal((await fetch(`${siteUrl}/other.html`)).status, 404);
      const post = await fetch(`${siteUrl}/`, { method: "POST", body: "{}" });
      assert.notEqual(post.status, 200);
      assert.doesNotMatch(post.headers.get("content-type") ?? "", /text\/html/);
      assert.doesNotMatch(await post.text(), /test page/);
    });
  });

  describe("web app in chromium", () => {
    // Launched by the first test that opens a page: without chromium (or without the build) each test fails
    // on its own, saying what to do, instead of a failed hook cancelling them all.
    const chromium = sharedChromium();
    const pageErrors: string[] = [];

    after(async () => {
      await chromium.close();
    });

    const openPage = async (hash: string) => {
      assert.ok(existsSync(builtIndex), "the explorer is not built: run npm run build:web");
      mkdirSync(artifacts, { recursive: true });
      return openExplorerPage({ browser: await chromium.get(), url, hash, errors: pageErrors });
    };

    /** Checks a page once its calm state shows: its h1, "no chain" in the header, no alert; then a screenshot. */
    async function checkCalm(page: Page, name: string, heading: string) {
      await page.getByRole("heading", { level: 1, name: heading }).waitFor({ timeout: 10_000 });
      await page.locator(".site-header").getByText("no chain").waitFor({ timeout: 10_000 });
      const alerts = await page.getByRole("alert").allTextContents();
      assert.deepEqual(alerts, [], `${name}: no error is shown`);
      assert.deepEqual(
        pageErrors.filter((error) => error.startsWith(`${page.url().split("#/")[1]}:`)),
        [],
        `${name}: no console or page errors`,
      );
      const file = join(artifacts, `no-chain-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      assert.ok(existsSync(file));
      await page.close();
    }

    it("Network says no provider is known yet", async () => {
      const page = await openPage("network");
      await page.getByText("No provider is known yet").waitFor({ timeout: 10_000 });
      await checkCalm(page, "network", "Network");
    });

    it("Models says there is no registry and no model yet", async () => {
      const page = await openPage("models");
      await page.getByText("No chain: there is no model registry").waitFor({ timeout: 10_000 });
      await page.getByText("No model is registered or served yet.").waitFor();
      await checkCalm(page, "models", "Models");
    });

    it("Playground says no model is served, without an error", async () => {
      const page = await openPage("playground");
      const model = page.getByLabel("Model");
      await model.waitFor({ timeout: 10_000 });
      const options = page.locator("#pg-model option");
      await options.first().waitFor({ state: "attached" });
      assert.deepEqual(await options.allTextContents(), ["No model is served yet"]);
      assert.equal(await model.inputValue(), "");
      await page.getByText("No messages yet.").waitFor();
      await checkCalm(page, "playground", "Playground");
    });

    it("Receipts lists the stored receipts and a forged one shows as NOT verified", async () => {
      const list = await getJson<ReceiptList>(`${url}/mycel/v1/receipts`);
      assert.equal(list.total, 3);
      const page = await openPage("receipts");
      for (const receipt of list.data)
        await page.locator(`a[href="#/receipts/${receipt.request_id}"]`).first().waitFor({ timeout: 10_000 });
      // Without a chain prices are in the smallest unit (no placeholder waiting for a token that will not come),
      // and the price column lines up on the right whatever the length of each price.
      await page.locator(".site-header").getByText("no chain").waitFor({ timeout: 10_000 });
      await page.locator("main").getByText("5,600 units", { exact: true }).waitFor();
      assert.equal(await page.locator("main .amount-loading").count(), 0);
      const prices = await page.locator("main tbody td.num > span.num").all();
      assert.equal(prices.length, 3);
      const rights: number[] = [];
      for (const price of prices) {
        const box = await price.boundingBox();
        assert.ok(box);
        rights.push(box.x + box.width);
      }
      assert.ok(Math.max(...rights) - Math.min(...rights) <= 1, `prices line up: ${JSON.stringify(rights)}`);
      await checkCalm(page, "receipts", "Receipts and audits");

      // The receipt signed in the provider's name by another key: the page shows who really signed it.
      const details = await Promise.all(
        list.data.map((receipt) => getJson<ReceiptDetail>(`${url}/mycel/v1/receipts/${receipt.request_id}`)),
      );
      const forged = details.find(
        (detail) => detail.verification[0]?.signer && !detail.verification[0].valid,
      );
      assert.ok(forged, JSON.stringify(details.map((detail) => detail.verification)));
      const detailPage = await openPage(`receipts/${forged.request_id}`);
      await detailPage.getByText("NOT verified").waitFor({ timeout: 10_000 });
      await detailPage
        .getByText(`NOT valid: signed by ${forged.verification[0]?.signer}`)
        .waitFor({ timeout: 10_000 });
      assert.deepEqual(await detailPage.getByRole("alert").allTextContents(), []);
      await detailPage.screenshot({ path: join(artifacts, "no-chain-receipt-forged.png"), fullPage: true });
      await detailPage.close();
    });

    it("Payments says there is no chain", async () => {
      const page = await openPage("payments");
      await page
        .getByText("No chain: this gateway runs without payments, so there are no channels or settlements.")
        .waitFor({ timeout: 10_000 });
      assert.equal(await page.locator("main table").count(), 0, "no empty channel tables");
      await checkCalm(page, "payments", "Payments");
    });

    it("Validators says there is no chain", async () => {
      const page = await openPage("validators");
      await page
        .getByText("No chain: there is no validator set, epochs or slashing without one.")
        .waitFor({ timeout: 10_000 });
      assert.equal(await page.locator("main table").count(), 0, "no empty validator tables");
      await checkCalm(page, "validators", "Validators");
      assert.deepEqual(pageErrors, [], "no console errors, CSP violations or page errors on any page");
    });
  });
});
