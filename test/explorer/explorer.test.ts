/**
 * The explorer against a running devnet (anvil, 2 provider processes, a validator, the gateway): its JSON views
 * and event stream with real data, its refusals, and the web app in Debian's chromium driven by playwright-core.
 * Screenshots go to test-artifacts/explorer/.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Locator, Page } from "playwright-core";
import type {
  ExplorerInfo,
  ExplorerProvider,
  PaymentsView,
  ReceiptDetail,
  ReceiptList,
  RegistryList,
  ValidatorsView,
} from "../../src/explorer/index.ts";
import { holdRequests, openExplorerPage, sharedChromium } from "../fixtures/browser.ts";
import { repositoryRoot, type ServeProcess, startMycelServer, temporaryHome, waitFor } from "../helpers.ts";

const artifacts = join(repositoryRoot, "test-artifacts", "explorer");
const modelName = "mycel-test-tiny-s1-f32";

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}: ${response.status} ${await response.clone().text()}`);
  return (await response.json()) as T;
}

/** A raw GET (no URL normalization, any Host header), for what fetch would not send. */
function rawGet(url: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>(
    (resolve, reject) => {
      const target = new URL(url);
      const request = httpRequest(
        { host: target.hostname, port: target.port, path, method: "GET", headers },
        (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk) => {
            body += chunk;
          });
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, body, headers: response.headers }),
          );
        },
      );
      request.on("error", reject);
      request.end();
    },
  );
}

/** Asks the gateway for an answer sent for audit; returns its request id. */
async function chat(url: string, content: string): Promise<string> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: modelName,
      messages: [{ role: "user", content }],
      max_tokens: 24,
      mycel: { audit: true },
    }),
  });
  assert.equal(response.status, 200);
  const body = (await response.json()) as { mycel: { request_id: string; audit?: { validators: string[] } } };
  assert.equal(body.mycel.audit?.validators.length, 1, "mycel.audit names the validator it went to");
  return body.mycel.request_id;
}

/** What the explorer shows for a provider validators have not scored yet (the Network and Validators pages). */
const notScored = "not scored";

/** A provider's cell in a column of `table`, found by the column's header. */
async function cellOf(table: Locator, address: string, header: string): Promise<Locator> {
  const headers = (await table.locator("thead th").allTextContents()).map((text) => text.trim());
  const column = headers.indexOf(header);
  assert.ok(column >= 0, `a "${header}" column in ${JSON.stringify(headers)}`);
  return table
    .locator("tbody tr", { has: table.page().locator(`[title="${address}"]`) })
    .locator("th, td")
    .nth(column);
}

/** The right edge of each cell's content (not the cell's box, which a table aligns anyway), by column header. */
async function contentRightEdges(page: Page): Promise<Record<string, number[]>> {
  return (await page.evaluate(`(() => {
    const table = document.querySelector("main table");
    const headers = [...table.querySelectorAll("thead th")].map((cell) => cell.textContent.trim());
    const edges = {};
    for (const row of table.querySelectorAll("tbody tr"))
      [...row.cells].forEach((cell, column) => {
        if (!cell.classList.contains("num")) return;
        const range = document.createRange();
        range.selectNodeContents(cell);
        const rights = [...range.getClientRects()].map((rect) => rect.right);
        if (rights.length > 0) (edges[headers[column]] ??= []).push(Math.max(...rights));
      });
    return edges;
  })()`)) as Record<string, number[]>;
}

/** Asserts that every numeric column's content lines up on the right, within 1 px. */
function assertColumnsAligned(edges: Record<string, number[]>, where: string) {
  assert.ok(edges["In / 1M tokens"]?.length && edges["Out / 1M tokens"]?.length, JSON.stringify(edges));
  for (const [header, rights] of Object.entries(edges))
    assert.ok(
      Math.max(...rights) - Math.min(...rights) <= 1,
      `${where}: the "${header}" column's numbers line up on the right: ${JSON.stringify(rights)}`,
    );
}

describe("explorer on a devnet", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let devnet: ServeProcess;
  // Launched by the first browser test: without chromium each browser test fails saying how to install it.
  const chromium = sharedChromium();
  let url: string;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(
      existsSync(join(repositoryRoot, "web", "dist", "index.html")),
      "the explorer is not built: run `npm run build:web`",
    );
    mkdirSync(artifacts, { recursive: true });
    directory = await temporaryHome("mycel-explorer-");
    devnet = await startMycelServer(["devnet", "--providers", "2", "--port", "0", "--rpc-port", "0"], {
      home: directory.home,
      timeoutMs: 120_000,
    });
    url = devnet.url;
  });

  after(async () => {
    await chromium.close();
    const code = await devnet?.stop();
    await directory?.remove();
    assert.equal(code, 0, "the devnet stops cleanly");
  });

  const openPage = async (hash: string, prepare?: (page: Page) => Promise<void>) =>
    openExplorerPage({ browser: await chromium.get(), url, hash, errors: pageErrors, prepare });

  async function screenshot(page: Page, name: string) {
    await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
    assert.ok(existsSync(join(artifacts, `${name}.png`)));
  }

  describe("web app in chromium, before validators have scored any provider", () => {
    it("Network calls providers not scored yet 'not scored', as Validators does", async () => {
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      assert.equal(providers.data.length, 2);
      for (const provider of providers.data)
        assert.equal(provider.reputation, null, "no epoch is finalized yet: no provider is scored");
      const page = await openPage("network");
      const table = page.locator("main table").first();
      for (const provider of providers.data) {
        await page.locator(`[title="${provider.address}"]`).first().waitFor({ timeout: 15_000 });
        const cell = await cellOf(table, provider.address, "Reputation");
        assert.equal((await cell.textContent())?.trim(), notScored, provider.address);
      }
      await page.close();

      const validators = await openPage("validators");
      const standings = validators.getByRole("table", { name: "Provider standings on chain" });
      await standings.waitFor({ timeout: 15_000 });
      for (const provider of providers.data) {
        const cell = await cellOf(standings, provider.address, "Reputation");
        assert.equal((await cell.textContent())?.trim(), notScored, `the same words on Validators`);
      }
      await validators.close();
    });
  });

  describe("JSON views", () => {
    it("describe the gateway, its chain and the providers with their stake", async () => {
      const info = await getJson<ExplorerInfo>(`${url}/mycel/v1/explorer`);
      assert.equal(info.chain?.chain_id, 31337);
      assert.equal(info.chain?.token.symbol, "MYC");
      assert.equal(info.audit.validators.length, 1);
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      assert.equal(providers.data.length, 2);
      for (const provider of providers.data) {
        assert.equal(provider.stake, "100000000000000000000", "100 MYC staked on the devnet");
        assert.equal(provider.status, "online");
        assert.equal(provider.parallelism > 0, true);
        assert.equal(provider.models[0]?.name, modelName);
      }
    });

    it("list the registry with lineage and who serves each model", async () => {
      const registry = await getJson<RegistryList>(`${url}/mycel/v1/registry`);
      assert.equal(registry.chain, true);
      const base = registry.data.find((model) => model.name === modelName);
      assert.ok(base, JSON.stringify(registry.data));
      assert.equal(base.registered, true);
      assert.equal(base.served_by.length, 2);
      assert.equal(base.children.length, 2, "the f16 and q8_0 quantizations");
      for (const child of registry.data.filter((model) => base.children.includes(model.model_hash))) {
        assert.deepEqual(child.parents, [{ model_hash: base.model_hash, relation: "quantize" }]);
        assert.equal(child.served_by.length, 0);
      }
    });

    it("stream a receipt and its audit verdict as events, and find both in receipts and payments", async () => {
      const controller = new AbortController();
      const events = await fetch(`${url}/mycel/v1/events`, { signal: controller.signal });
      assert.equal(events.headers.get("content-type"), "text/event-stream; charset=utf-8");
      const reader = (events.body as ReadableStream<Uint8Array>).getReader();
      let text = "";
      let requestId: string | undefined;
      // Resolved by the reader as soon as both events are in (the stream may bring them before chat() returns).
      let sawBoth!: () => void;
      const bothSeen = new Promise<void>((resolve) => {
        sawBoth = resolve;
      });
      const check = () => {
        if (
          requestId &&
          text.includes("event: receipt") &&
          text.includes(`"request_id":"${requestId}","segment":0,"audit"`)
        )
          sawBoth();
      };
      const reading = (async () => {
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
          if (done) return;
          text += decoder.decode(value, { stream: true });
          check();
        }
      })();
      requestId = await chat(url, "What is a mycelium?");
      check();
      const timeout = AbortSignal.timeout(30_000);
      try {
        await new Promise<void>((resolve, reject) => {
          bothSeen.then(resolve);
          const names = () => [...text.matchAll(/^event: (\w+)$/gm)].map((match) => match[1]).join(", ");
          timeout.addEventListener("abort", () =>
            reject(new Error(`no receipt and audit events for ${requestId} in 30 s; got: ${names()}`)),
          );
        });
        assert.match(text, /event: providers\ndata: \[/);
      } finally {
        controller.abort();
        await reading;
      }

      const list = await getJson<ReceiptList>(`${url}/mycel/v1/receipts?q=${requestId.slice(0, 14)}`);
      assert.equal(list.total, 1);
      assert.equal(list.data[0]?.audit?.verdict, "pass");
      assert.equal(list.data[0]?.model_name, modelName);
      const audited = await getJson<ReceiptList>(`${url}/mycel/v1/receipts?audited=true`);
      assert.ok(audited.data.every((receipt) => receipt.audit !== null));
      const detail = await getJson<ReceiptDetail>(`${url}/mycel/v1/receipts/${requestId}`);
      assert.deepEqual(
        detail.verification.map((entry) => entry.valid),
        [true],
      );
      assert.equal(detail.cost, list.data[0]?.price);
      const evidence = await getJson<{ evidence: { outputTokens: number[] }[] }>(
        `${url}/mycel/v1/receipts/${requestId}/evidence`,
      );
      assert.equal(evidence.evidence[0]?.outputTokens.length, list.data[0]?.completion_tokens);

      const payments = await getJson<PaymentsView>(`${url}/mycel/v1/payments`);
      // The first paid answer opened a channel to its provider, and maybe one to the standby it would fail over to.
      const opened = payments.gateway?.channels.length ?? 0;
      assert.ok(opened >= 1 && opened <= 2, `the first paid answer opened ${opened} channels, not 1 or 2`);
      const mine = payments.channels.filter((channel) => channel.mine);
      assert.equal(mine.length, opened);
      assert.equal(payments.providers.length, 2);
    });

    it("show validators, the epoch their scores are committed in, and standings", async () => {
      // The validator opens the epoch with its first commitment (its loop looks at the chain every few seconds).
      const view = await waitFor(
        "the validator's commitment",
        async () => {
          const current = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
          return current.epochs[0]?.committers.length ? current : undefined;
        },
        60_000,
      );
      assert.equal(view.chain, true);
      assert.equal(view.validators.length, 1);
      assert.equal(view.validators[0]?.stake, "1000000000000000000000");
      assert.deepEqual(view.epochs[0]?.committers, [view.validators[0]?.address]);
      assert.equal(view.epochs[0]?.epoch, view.current_epoch);
      assert.equal(view.epochs[0]?.phase, "committing");
      assert.equal(view.epochs[0]?.providers.length, 2);
      assert.equal(view.standings.length, 2);
      assert.equal(view.max_score, 10_000);
    });

    it("show an epoch revealed and finalized with its consensus once the chain's clock has passed it", async () => {
      // Anvil's clock is moved past the epoch (10 min on the devnet) and then past its reveal period (2 min);
      // the validator reveals and finalizes on its own, as it would after real time.
      const rpcUrl = /Chain \(anvil\): (http:\/\/127\.0\.0\.1:\d+)/.exec(devnet.output())?.[1];
      assert.ok(rpcUrl, "the devnet prints its anvil URL");
      const rpc = async (method: string, params: unknown[]) => {
        const response = await fetch(rpcUrl, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
        });
        assert.equal(response.status, 200);
      };
      const before = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
      const epoch = before.current_epoch ?? 0;
      const epochOf = (view: ValidatorsView) => view.epochs.find((entry) => entry.epoch === epoch);
      const advance = async (seconds: number) => {
        await rpc("evm_increaseTime", [seconds]);
        await rpc("evm_mine", []);
      };
      const target = epochOf(before);
      assert.ok(target);
      await advance(Math.ceil((target.ends_at - Date.now()) / 1000) + 5);
      await waitFor(
        "the validator's reveal",
        async () => {
          const view = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
          return epochOf(view)?.revealed === 1 ? view : undefined;
        },
        60_000,
      );
      const revealing = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
      await advance(
        Math.ceil(((epochOf(revealing)?.reveals_until ?? 0) - (epochOf(revealing)?.ends_at ?? 0)) / 1000) + 5,
      );
      const finalized = await waitFor(
        "the epoch's finalization",
        async () => {
          const view = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
          return epochOf(view)?.finalized ? view : undefined;
        },
        60_000,
      );
      const done = epochOf(finalized);
      assert.equal(done?.phase, "finalized");
      assert.equal(finalized.current_epoch, epoch + 1, "a new epoch is current");
      assert.deepEqual(
        done?.scores.map((entry) => entry.validator),
        [finalized.validators[0]?.address],
      );
      // Every audited answer passed: every provider scores 10,000, and so does the consensus.
      assert.deepEqual(done?.scores[0]?.scores, [10_000, 10_000]);
      assert.deepEqual(done?.consensus, [10_000, 10_000]);
      for (const standing of finalized.standings) {
        assert.equal(standing.scored, true);
        assert.equal(standing.last_score, 10_000);
        assert.equal(standing.last_epoch, epoch);
      }
    });

    it("refuse bad input with a clear error and serve only the built files", async () => {
      const badLimit = await fetch(`${url}/mycel/v1/receipts?limit=0`);
      assert.equal(badLimit.status, 400);
      assert.match(
        ((await badLimit.json()) as { error: { message: string } }).error.message,
        /limit must be/,
      );
      assert.equal((await fetch(`${url}/mycel/v1/receipts?audited=maybe`)).status, 400);
      assert.equal((await fetch(`${url}/mycel/v1/receipts/0x1234`)).status, 400);
      assert.equal((await fetch(`${url}/mycel/v1/receipts/0x${"0".repeat(64)}`)).status, 404);
      const traversal = await rawGet(url, "/assets/../../package.json");
      assert.equal(traversal.status, 404);
      assert.doesNotMatch(traversal.body, /"name": "mycel"/);
      const rebinding = await rawGet(url, "/mycel/v1/providers", { host: "attacker.example" });
      assert.equal(rebinding.status, 421);
      const index = await fetch(`${url}/`);
      assert.equal(index.status, 200);
      assert.match(index.headers.get("content-security-policy") ?? "", /script-src 'self'/);
      const html = await index.text();
      assert.doesNotMatch(html, /https?:\/\//, "no CDN or external URL in the page");
    });
  });

  describe("web app in chromium", () => {
    it("Network shows every provider with stake and status, live, and charts", async () => {
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      const page = await openPage("network");
      for (const provider of providers.data)
        await page.locator(`[title="${provider.address}"]`).first().waitFor({ timeout: 15_000 });
      // Amounts show once the token's details are in (a placeholder until then), so wait for one.
      await page.locator("main").getByText("100 MYC", { exact: true }).first().waitFor({ timeout: 15_000 });
      const text = (await page.locator("main").textContent()) ?? "";
      assert.match(text, /100(\.0+)? MYC/, "stake in tokens");
      assert.match(text, /online/i);
      assert.ok((await page.locator("main svg").count()) >= 3, "latency, throughput and price charts");
      await screenshot(page, "network");
      await page.close();
    });

    it("Network shows the reputation validators gave once they have scored the providers", async () => {
      // The epoch was finalized above; the gateway reads reputations from the chain every 5 s.
      const providers = await waitFor("the providers' reputation", async () => {
        const current = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
        return current.data.every((provider) => provider.reputation !== null) ? current.data : undefined;
      });
      const page = await openPage("network");
      const table = page.locator("main table").first();
      for (const provider of providers) {
        await page.locator(`[title="${provider.address}"]`).first().waitFor({ timeout: 15_000 });
        const shown = `${((provider.reputation ?? 0) * 100).toFixed(1)}%`;
        const cell = await cellOf(table, provider.address, "Reputation");
        await cell.filter({ hasText: shown }).waitFor({ timeout: 15_000 });
        assert.doesNotMatch((await cell.textContent()) ?? "", /not scored/);
      }
      await page.close();
    });

    it("Network draws each provider in the same colour in every chart and legend", async () => {
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      const page = await openPage("network");
      const charts = page.locator("main figure.chart");
      await charts.nth(2).waitFor({ timeout: 15_000 });
      assert.equal(await charts.count(), 3, "latency, throughput and price");
      // A chart's legend lists its series in the order the plot draws their lines; each legend entry's title
      // is the series' full name (a provider's address).
      const strokes = async (chart: Locator) => {
        const legend = chart.locator(".legend li");
        await legend.first().waitFor({ timeout: 15_000 });
        const byName = new Map<string, { line: string | null; legend: string | null }>();
        for (let index = 0; index < (await legend.count()); index++)
          byName.set((await legend.nth(index).getAttribute("title")) ?? "", {
            line: await chart.locator(".chart-plot svg path").nth(index).getAttribute("stroke"),
            legend: await legend.nth(index).locator("line").getAttribute("stroke"),
          });
        return byName;
      };
      const all = [await strokes(charts.nth(0)), await strokes(charts.nth(1)), await strokes(charts.nth(2))];
      const colours: string[] = [];
      for (const provider of providers.data) {
        const seen = new Set(
          all.flatMap((chart) => {
            const entry = chart.get(provider.address);
            return entry ? [entry.line, entry.legend] : ["(not in this chart)"];
          }),
        );
        assert.equal(seen.size, 1, `${provider.address}: one colour in all 3 charts: ${[...seen]}`);
        colours.push([...seen][0] ?? "");
      }
      assert.equal(new Set(colours).size, colours.length, `each provider its own colour: ${colours}`);
      const network = all[1]?.get("Network, all providers")?.line;
      assert.ok(network && !colours.includes(network), "the network's line has a colour of its own");
      await page.close();
    });

    it("Network's numeric columns line up on the right, prices included", async () => {
      const page = await openPage("network");
      await page.locator("main").getByText("100 MYC", { exact: true }).first().waitFor({ timeout: 15_000 });
      assertColumnsAligned(await contentRightEdges(page), "1280 px");
      await page.close();
    });

    it("Network fits a 420 px wide screen: the provider table scrolls in its own box, addresses in view", async () => {
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      const page = await openPage("network");
      await page.setViewportSize({ width: 420, height: 900 });
      await page.locator("main").getByText("100 MYC", { exact: true }).first().waitFor({ timeout: 15_000 });
      const pageWidth = (await page.evaluate("document.documentElement.scrollWidth")) as number;
      assert.ok(pageWidth <= 420, `the page does not scroll sideways: ${pageWidth} px wide`);
      assertColumnsAligned(await contentRightEdges(page), "420 px");
      await screenshot(page, "network-420px");
      // The table scrolls inside its box; scrolled to its last column, each row still shows its provider.
      const box = (await page.evaluate(`(() => {
        const box = document.querySelector("main .table-scroll");
        box.scrollLeft = box.scrollWidth;
        return { scrollWidth: box.scrollWidth, clientWidth: box.clientWidth, scrollLeft: box.scrollLeft };
      })()`)) as { scrollWidth: number; clientWidth: number; scrollLeft: number };
      assert.ok(box.scrollWidth > box.clientWidth && box.scrollLeft > 0, JSON.stringify(box));
      const visible = await page.locator("main .table-scroll").first().boundingBox();
      assert.ok(visible);
      for (const provider of providers.data) {
        const address = await page.locator(`main table [title="${provider.address}"]`).first().boundingBox();
        assert.ok(
          address && address.x >= visible.x && address.x + address.width <= visible.x + visible.width,
          `${provider.address} stays in view: ${JSON.stringify({ address, visible })}`,
        );
      }
      await screenshot(page, "network-420px-scrolled");
      await page.close();
    });

    it("Models shows the registry and the lineage graph", async () => {
      const page = await openPage("models");
      await page.getByText(modelName).first().waitFor({ timeout: 15_000 });
      await page.getByText("mycel-test-tiny-s1-f16").first().waitFor();
      const graph = await page.locator("main svg").first().textContent();
      assert.match(graph ?? "", /quantize/, "edges name their relation");
      await screenshot(page, "models");
      await page.close();
    });

    it("Playground streams an answer and shows the verified receipt, provider, cost and audit verdict", async () => {
      const page = await openPage("playground");
      const model = page.getByLabel("Model");
      await model.waitFor({ timeout: 15_000 });
      await page.locator("#pg-model option").first().waitFor({ state: "attached" });
      await page.getByLabel("Max tokens").fill("160");
      await page.getByLabel("Message").fill("Tell me about fungi networks.");
      // Record the assistant message's length at every change: streaming shows it growing.
      await page.evaluate(`
        window.lengths = [];
        new MutationObserver(() => {
          const message = document.querySelector('[data-testid="assistant-message"][data-streaming="true"]');
          if (message?.textContent) window.lengths.push(message.textContent.length);
        }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
      `);
      await page.getByLabel("Message").press("Control+Enter");
      const receiptStatus = page.getByTestId("receipt-status");
      await receiptStatus.waitFor({ timeout: 60_000 });
      // Locators poll without evaluating strings in the page, which its CSP (no unsafe-eval) would refuse.
      await receiptStatus.filter({ hasText: /verified/i }).waitFor({ timeout: 30_000 });
      assert.doesNotMatch((await receiptStatus.textContent()) ?? "", /not verified/i);
      const lengths = (await page.evaluate("window.lengths")) as number[];
      assert.ok(
        new Set(lengths).size >= 2,
        `tokens arrived in more than one piece: ${JSON.stringify(lengths)}`,
      );
      const answer = (await page.getByTestId("assistant-message").last().textContent()) ?? "";
      assert.ok(answer.length > 0);
      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      const shown = await page.getByTestId("answer-provider").innerHTML();
      assert.ok(
        providers.data.some((provider) => shown.includes(provider.address)),
        `the answering provider is named: ${shown}`,
      );
      assert.match((await page.getByTestId("answer-cost").textContent()) ?? "", /\d/);
      await page.getByTestId("audit-status").filter({ hasText: /pass/i }).waitFor({ timeout: 60_000 });
      await screenshot(page, "playground");
      // Another page and back: the conversation, the receipt check and the verdict are still there.
      await page.locator('nav a[href="#/network"]').click();
      await page.getByRole("heading", { level: 1, name: "Network" }).waitFor();
      await page.locator('nav a[href="#/playground"]').click();
      await page.getByTestId("audit-status").filter({ hasText: /pass/i }).waitFor({ timeout: 15_000 });
      await page
        .getByTestId("receipt-status")
        .filter({ hasText: /verified/i })
        .waitFor({ timeout: 15_000 });
      assert.equal((await page.getByTestId("assistant-message").last().textContent()) ?? "", answer);
      await page.close();
    });

    it("Receipts finds receipts, opens one with its audit and loads its evidence", async () => {
      const requestId = await chat(url, "Receipts page check");
      await waitFor("the verdict", async () => {
        const list = await getJson<ReceiptList>(`${url}/mycel/v1/receipts?q=${requestId}`);
        return list.data[0]?.audit ? true : undefined;
      });
      const page = await openPage("receipts");
      const search = page.getByLabel("Search");
      await search.fill(requestId.slice(0, 16));
      await search.press("Enter");
      const link = page.locator(`a[href="#/receipts/${requestId}"]`).first();
      await link.waitFor({ timeout: 15_000 });
      await screenshot(page, "receipts");
      await link.focus();
      await page.keyboard.press("Enter");
      await page.getByText(/pass/i).first().waitFor({ timeout: 15_000 });
      await page.getByRole("button", { name: /load evidence/i }).click();
      await page
        .getByText(/fingerprint/i)
        .first()
        .waitFor({ timeout: 15_000 });
      await screenshot(page, "receipt-detail");
      await page.close();
    });

    it("Payments shows the gateway's channel, a settlement on chain and the provider's earnings", async () => {
      // Devnet providers settle what they earned every 60 s (--settle-interval 60).
      const view = await waitFor(
        "a settlement on chain",
        async () => {
          const current = await getJson<PaymentsView>(`${url}/mycel/v1/payments`);
          return current.settlements.length > 0 ? current : undefined;
        },
        120_000,
      );
      const settlement = view.settlements[0];
      assert.ok(settlement && BigInt(settlement.paid) > 0n);
      assert.equal(settlement.client, view.channels.find((channel) => channel.mine)?.client);
      const earner = view.providers.find((provider) => provider.address === settlement.provider);
      assert.ok(earner, "the settling provider is listed");
      assert.ok(BigInt(earner.earned) >= BigInt(settlement.paid), "earnings include the settlement");
      const settledOnChannel = view.channels
        .filter((channel) => channel.provider === settlement.provider)
        .reduce((sum, channel) => sum + BigInt(channel.settled), 0n);
      assert.equal(
        BigInt(earner.earned),
        settledOnChannel,
        "earnings are what the provider's channels settled",
      );
      const page = await openPage("payments");
      const channel = view.gateway?.channels[0];
      assert.ok(channel);
      await page.locator(`[title="${channel.channel_id}"]`).first().waitFor({ timeout: 15_000 });
      await page.locator(`[title="${settlement.transaction}"]`).first().waitFor({ timeout: 15_000 });
      for (const provider of view.providers)
        await page.locator(`[title="${provider.address}"]`).first().waitFor({ timeout: 15_000 });
      await screenshot(page, "payments");
      await page.close();
    });

    it("Validators and Network show amounts only once the token is known, never raw units", async () => {
      // The gateway's details (token symbol and decimals) are held back while the pages' own data arrives.
      let release = () => {};
      const hold = async (page: Page) => {
        release = await holdRequests(page, "**/mycel/v1/explorer");
      };
      const view = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
      const validators = await openPage("validators", hold);
      await validators
        .locator(`[title="${view.validators[0]?.address}"]`)
        .first()
        .waitFor({ timeout: 15_000 });
      assert.doesNotMatch((await validators.locator("main").textContent()) ?? "", /units/, "no raw amounts");
      await validators.locator("main .amount-loading").first().waitFor();
      release();
      await validators
        .locator("main")
        .getByText("1,000 MYC", { exact: true })
        .first()
        .waitFor({ timeout: 15_000 });
      assert.equal(await validators.locator("main .amount-loading").count(), 0);
      await validators.close();

      const providers = await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`);
      const network = await openPage("network", hold);
      await network.locator(`[title="${providers.data[0]?.address}"]`).first().waitFor({ timeout: 15_000 });
      const loading = (await network.locator("main").textContent()) ?? "";
      assert.doesNotMatch(loading, /units/, "no raw amounts");
      assert.doesNotMatch(loading, /No chain/, "nor a note that there is no chain");
      await network.locator("main .amount-loading").first().waitFor();
      release();
      await network
        .locator("main")
        .getByText("100 MYC", { exact: true })
        .first()
        .waitFor({ timeout: 15_000 });
      await network
        .locator("main figcaption", { hasText: "Output price per million tokens (MYC)" })
        .waitFor();
      assert.equal(await network.locator("main .amount-loading").count(), 0);
      await network.close();
    });

    it("Validators shows the validator's stake and the epoch", async () => {
      const view = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
      const page = await openPage("validators");
      await page.locator(`[title="${view.validators[0]?.address}"]`).first().waitFor({ timeout: 15_000 });
      // The stake in tokens, once the token's details are in (until then the page shows a placeholder).
      await page.locator("main").getByText("1,000 MYC", { exact: true }).first().waitFor({ timeout: 15_000 });
      const text = (await page.locator("main").textContent()) ?? "";
      assert.match(text, /1,?000(\.0+)? MYC/, "validator stake in tokens");
      assert.match(text, /finalized/, "the finalized epoch");
      const finalizedEpoch =
        (await page.locator("details[open]").filter({ hasText: "finalized" }).textContent()) ?? "";
      assert.match(
        finalizedEpoch,
        /Consensus\s*100(\.0)?%\s*100(\.0)?%/,
        "the consensus row, open: both providers at 100%",
      );
      await screenshot(page, "validators");
      await page.close();
    });

    it("works with the keyboard alone, and every control has a label", async () => {
      // What shows that each page has its data, and so all of its controls.
      const loaded: Record<string, (page: Page) => Locator> = {
        network: (page) => page.locator("main tbody tr").first(),
        models: (page) => page.locator("main").getByText(modelName).first(),
        playground: (page) => page.locator("#pg-model option", { hasText: modelName }).first(),
        receipts: (page) => page.locator('main a[href^="#/receipts/0x"]').first(),
        payments: (page) => page.locator("main table").first(),
        validators: (page) => page.locator("main table").first(),
      };
      for (const [hash, data] of Object.entries(loaded)) {
        const page = await openPage(hash);
        await page.locator("main").waitFor();
        await data(page).waitFor({ state: "attached", timeout: 15_000 });
        const unlabelled = (await page.evaluate(`
          [...document.querySelectorAll("input, select, textarea, button")]
            .filter((control) => control.type !== "hidden" && !(
              control.labels?.length > 0 ||
              control.getAttribute("aria-label") ||
              control.getAttribute("aria-labelledby") ||
              (control.tagName === "BUTTON" && control.textContent.trim())
            ))
            .map((control) => control.outerHTML.slice(0, 120))
        `)) as string[];
        assert.deepEqual(unlabelled, [], `${hash}: controls without a label`);
        await page.close();
      }
      const page = await openPage("network");
      await page.keyboard.press("Tab");
      assert.match(
        (await page.evaluate('document.activeElement?.textContent ?? ""')) as string,
        /skip to content/i,
        "the first Tab reaches the skip link",
      );
      // Tab to the Playground link in the main navigation and follow it with Enter.
      let onPlayground = false;
      for (let step = 0; step < 20 && !onPlayground; step++) {
        await page.keyboard.press("Tab");
        onPlayground = (await page.evaluate(
          `document.activeElement?.getAttribute("href") === "#/playground"`,
        )) as boolean;
      }
      assert.ok(onPlayground, "the Playground link is reachable with Tab");
      await page.keyboard.press("Enter");
      await page.waitForURL(/#\/playground$/);
      await page.getByLabel("Message").waitFor();
      await page.close();
      assert.deepEqual(pageErrors, [], "no console errors or CSP violations on any page");
    });
  });
});
