/**
 * Explorer benchmark: what the explorer web app costs the person using it, against a real devnet.
 * (1) the bundle's size, raw and gzipped; (2) each page's time to data on a cold load in chromium, next to the
 * time its JSON takes fetched directly from Node; (3) how soon a receipt event reaches an open page after the
 * answer; (4) the Network page's JS heap over a minute of live updates. Run with `npm run bench:explorer`;
 * see bench/explorer/README.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { gzipSync } from "node:zlib";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import type {
  ExplorerProvider,
  PaymentsView,
  ReceiptList,
  ValidatorsView,
} from "../../src/explorer/index.ts";
import { launchChromium } from "../../test/fixtures/browser.ts";
import { onAbruptExit } from "../network/processes.ts";
import { formatTable, machineBusyMs, median, roundUp, verdict } from "../shared/report.ts";

const repositoryRoot = resolve(import.meta.dirname, "..", "..");
const mycelBin = join(repositoryRoot, "bin", "mycel.js");
const webDist = join(repositoryRoot, "web", "dist");
/** The model `mycel devnet` serves. */
const modelName = "mycel-test-tiny-s1-f32";
/** Cold loads of each page in section 2 (after one warm-up round that is not counted). */
const rounds = 15;
/** Chats of section 3 (after one warm-up that is not counted). */
const liveChats = 5;
/** Section 4: how long the Network page stays open, and how often a chat is sent meanwhile. */
const memoryMs = 60_000;
const memoryChatEveryMs = 2_000;
/** Longest wait for one page's data, one event or one count on a page. */
const waitLimitMs = 15_000;
const megabyte = 1024 * 1024;
const targets = {
  jsGzipBytes: 51_200,
  timeToDataMs: 1_000,
  overheadMs: 300,
  liveDelayMs: 250,
  heapGrowthBytes: 5 * megabyte,
};

const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[explorer ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

const sleep = (ms: number) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
const bytes = (value: number) => value.toLocaleString("en-US");
/** Whole ms, rounded up: figures held to an upper target agree with their verdict. */
const ms = (value: number) => roundUp(value, 0).toFixed(0);
/** Nearest-rank percentile: with 15 loads, p95 is the slowest one. */
function percentile(values: readonly number[], share: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(share * sorted.length) - 1)] ?? Number.NaN;
}

/** Polls `check` every `intervalMs` until it returns a value (not undefined); throws naming `what` after `timeoutMs`. */
async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  parameters: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = performance.now() + (parameters.timeoutMs ?? waitLimitMs);
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline)
      throw new Error(
        `timed out after ${(parameters.timeoutMs ?? waitLimitMs) / 1000} s waiting for ${what}`,
      );
    await sleep(parameters.intervalMs ?? 100);
  }
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

// ---- the devnet ----

/** A running `mycel devnet`, with its gateway's URL. */
type Devnet = { url: string; child: ChildProcess; tail(): string; stop(): Promise<void> };

const isAlive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/**
 * Starts `mycel devnet --providers 2 --port 0 --rpc-port 0` in `home` and resolves once it prints its endpoint.
 * If the bench dies abruptly the devnet is SIGKILLed; its providers and validator exit with it (they run with
 * MYCEL_EXIT_WITH_PARENT) and so does its anvil (its watcher's pipe closes).
 */
async function startDevnet(home: string): Promise<Devnet> {
  const child = spawn(
    process.execPath,
    [mycelBin, "devnet", "--providers", "2", "--port", "0", "--rpc-port", "0"],
    { env: { ...process.env, MYCEL_HOME: home, MYCEL_LOG_LEVEL: "info" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  onAbruptExit(() => {
    if (isAlive(child)) child.kill("SIGKILL");
    rmSync(home, { recursive: true, force: true });
  });
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 40) lines.shift();
  };
  const tail = () => lines.join("\n");
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  const stop = async () => {
    if (!isAlive(child)) return;
    // Its providers settle their vouchers before they exit (15 s at most): give them the time.
    const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.kill("SIGTERM");
    await exited;
    clearTimeout(kill);
  };
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", keep);
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error("the devnet printed no endpoint in 120 s")), 120_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      keep(line);
      const match = /OpenAI-compatible endpoint: (http:\/\/\S+)\/v1/.exec(line);
      if (match?.[1]) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the devnet exited (${signal ?? code}) before it was ready`));
    });
    child.once("error", reject);
  }).catch(async (error: unknown) => {
    await stop();
    throw new Error(
      `${error instanceof Error ? error.message : String(error)}\n--- last output of the devnet ---\n${tail()}`,
    );
  });
  return { url, child, tail, stop };
}

/** One chat answer: its request id, the provider that answered, and when its body was read (Date.now()). */
type ChatAnswer = { requestId: string; provider: string; endedAt: number; durationMs: number };

/** Asks the gateway for a 16-token answer (non-streaming); with `audit`, the answer is sent for audit. */
async function chat(url: string, parameters: { content: string; audit?: boolean }): Promise<ChatAnswer> {
  const started = performance.now();
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: modelName,
      messages: [{ role: "user", content: parameters.content }],
      max_tokens: 16,
      ...(parameters.audit ? { mycel: { audit: true } } : {}),
    }),
  });
  const text = await response.text();
  const endedAt = Date.now();
  const durationMs = performance.now() - started;
  if (!response.ok) throw new Error(`a chat request answered ${response.status}: ${text}`);
  const body = JSON.parse(text) as { mycel?: { request_id?: string; providers?: string[] } };
  const requestId = body.mycel?.request_id;
  const provider = body.mycel?.providers?.[0];
  if (!requestId || !provider) throw new Error(`a chat answer has no mycel.request_id or provider: ${text}`);
  return { requestId: requestId.toLowerCase(), provider: provider.toLowerCase(), endedAt, durationMs };
}

// ---- CPU of the bench's own process tree, for the share other processes took ----

/**
 * CPU time (ms) of this process and every descendant alive now, each with the children it reaped (chromium's
 * renderers of closed contexts, the devnet's roles): from /proc, undefined without it.
 */
function ownTreeCpuMs(): number | undefined {
  let names: string[];
  try {
    names = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  const parents = new Map<number, number>();
  const used = new Map<number, number>();
  for (const name of names) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // The fields after the command name: ppid is the 2nd; utime, stime, cutime, cstime the 12th to 15th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(name), Number(fields[1]));
      // The kernel's USER_HZ is 100 on every Linux build in use.
      used.set(
        Number(name),
        (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 10,
      );
    } catch {
      // The process ended meanwhile.
    }
  }
  const tree = new Set([process.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of parents)
      if (!tree.has(pid) && tree.has(parent)) {
        tree.add(pid);
        grew = true;
      }
  }
  let total = 0;
  for (const pid of tree) total += used.get(pid) ?? 0;
  return total;
}

/** Starts watching the machine; `stop()` gives the share of all cores that other processes and the bench used. */
function watchCpu() {
  const started = performance.now();
  const busyAtStart = machineBusyMs();
  const ownAtStart = ownTreeCpuMs();
  return () => {
    const ownNow = ownTreeCpuMs();
    const capacityMs = (performance.now() - started) * cpus().length;
    if (ownAtStart === undefined || ownNow === undefined) return undefined;
    const ownMs = ownNow - ownAtStart;
    return {
      own: ownMs / capacityMs,
      other: Math.max(0, machineBusyMs() - busyAtStart - ownMs) / capacityMs,
    };
  };
}

// ---- 1. bundle size ----

type BundleFile = { name: string; kind: "JS" | "CSS"; raw: number; gzip: number };

/** Sizes of the JS and CSS under web/dist/assets, raw and gzipped (level 9). */
function measureBundle(): BundleFile[] {
  const assets = join(webDist, "assets");
  if (!existsSync(join(webDist, "index.html")) || !existsSync(assets))
    throw new Error(
      "the explorer is not built (no web/dist/index.html or web/dist/assets): run `npm run build:web` first",
    );
  const files = readdirSync(assets)
    .filter((name) => /\.(js|css)$/.test(name))
    .sort()
    .map((name): BundleFile => {
      const content = readFileSync(join(assets, name));
      return {
        name,
        kind: name.endsWith(".js") ? "JS" : "CSS",
        raw: content.length,
        gzip: gzipSync(content, { level: 9 }).length,
      };
    });
  if (!files.some((file) => file.kind === "JS"))
    throw new Error("web/dist/assets holds no .js file: run `npm run build:web` first");
  return files;
}

/** The newest modification time (ms) of the files under a folder. */
function newestMtimeMs(folder: string): number {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function reportBundle(files: BundleFile[]) {
  const total = (kind: BundleFile["kind"]) =>
    files
      .filter((file) => file.kind === kind)
      .reduce((sum, file) => ({ raw: sum.raw + file.raw, gzip: sum.gzip + file.gzip }), { raw: 0, gzip: 0 });
  const js = total("JS");
  const css = total("CSS");
  console.log(
    "1. bundle size: the JS and CSS files under web/dist/assets, gzipped with node:zlib at level 9",
  );
  console.log(
    formatTable(
      ["file", "raw bytes", "gzip bytes"],
      [
        ...files.map((file) => [`assets/${file.name}`, bytes(file.raw), bytes(file.gzip)]),
        ["all JS", bytes(js.raw), bytes(js.gzip)],
        ["all CSS", bytes(css.raw), bytes(css.gzip)],
      ],
    ),
  );
  const sourceDir = join(repositoryRoot, "web", "src");
  if (existsSync(sourceDir) && newestMtimeMs(sourceDir) > newestMtimeMs(webDist))
    console.log("note: web/src has files newer than web/dist: run `npm run build:web` to measure them");
  console.log("");
  return js.gzip;
}

// ---- 2. time to data ----

/** One page of the app, what it loads and what says its data is on screen. */
type PageSpec = {
  id: string;
  /** The JSON the page itself loads for its data, fetched at once as the page does. */
  endpoints: string[];
  /** The data is shown once an element matching `css` (holding a text node with `text`, if given) is there. */
  css: string;
  text?: string;
  state: "visible" | "attached";
  /** The same condition as a Playwright locator, checked once after the page's own detector fired. */
  locator(page: Page): Locator;
  /** What the condition is, for the table. */
  shows: string;
};

function pageSpecs(parameters: { providerAddress: string; channelId: string; validatorAddress: string }) {
  const titled = (value: string) => `[title="${value}"]`;
  const specs: PageSpec[] = [
    {
      id: "network",
      endpoints: ["/mycel/v1/providers", "/mycel/v1/network/history", "/mycel/v1/explorer"],
      css: titled(parameters.providerAddress),
      state: "visible",
      locator: (page) => page.locator(titled(parameters.providerAddress)).first(),
      shows: "a provider's address",
    },
    {
      id: "models",
      endpoints: ["/mycel/v1/registry"],
      css: "body",
      text: modelName,
      state: "visible",
      locator: (page) => page.getByText(modelName).first(),
      shows: "the model's name",
    },
    {
      id: "playground",
      endpoints: ["/v1/models"],
      css: "#pg-model option",
      text: modelName,
      state: "attached",
      locator: (page) => page.locator("#pg-model option", { hasText: modelName }).first(),
      shows: "the model in the select",
    },
    {
      id: "receipts",
      endpoints: ["/mycel/v1/receipts?limit=25&offset=0"],
      css: 'a[href^="#/receipts/0x"]',
      state: "visible",
      locator: (page) => page.locator('a[href^="#/receipts/0x"]').first(),
      shows: "a receipt's link",
    },
    {
      id: "payments",
      endpoints: ["/mycel/v1/payments"],
      css: titled(parameters.channelId),
      state: "visible",
      locator: (page) => page.locator(titled(parameters.channelId)).first(),
      shows: "the gateway's channel id",
    },
    {
      id: "validators",
      endpoints: ["/mycel/v1/validators"],
      css: titled(parameters.validatorAddress),
      state: "visible",
      locator: (page) => page.locator(titled(parameters.validatorAddress)).first(),
      shows: "the validator's address",
    },
  ];
  return specs;
}

/**
 * A script run in the page before the app (an init script: the page's CSP does not apply to it) that records
 * `performance.timeOrigin + performance.now()` in `window.__benchShownAt` at the first DOM change after which the
 * page's data is there. It watches the page itself, so the time does not depend on how often Playwright polls.
 */
function shownAtScript(spec: PageSpec) {
  return `(() => {
    const css = ${JSON.stringify(spec.css)};
    const text = ${JSON.stringify(spec.text ?? null)};
    const mustBeVisible = ${spec.state === "visible"};
    const shown = (element) =>
      !mustBeVisible || (element.getClientRects().length > 0 && getComputedStyle(element).visibility !== "hidden");
    const holder = (element) => {
      if (text === null) return element;
      const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode())
        if (node.data.includes(text) && node.parentElement) return node.parentElement;
      return null;
    };
    const found = () => {
      for (const element of document.querySelectorAll(css)) {
        const candidate = holder(element);
        if (candidate && shown(candidate)) return true;
      }
      return false;
    };
    const observer = new MutationObserver(() => {
      if (window.__benchShownAt === undefined && found()) {
        window.__benchShownAt = performance.timeOrigin + performance.now();
        observer.disconnect();
      }
    });
    observer.observe(document, { childList: true, subtree: true, characterData: true, attributes: true });
  })();`;
}

/** The timings of one cold load, in ms from the start of page.goto. */
type LoadTiming = { shownMs: number; assetsMs: number; jsonAskedMs: number; jsonMs: number };

/** What the page's Resource Timing entries say (read after its data is shown). */
const resourceTimingScript = `({
  origin: performance.timeOrigin,
  entries: performance.getEntriesByType("resource").map((entry) => ({
    name: entry.name,
    start: entry.startTime,
    end: entry.responseEnd,
  })),
})`;

async function newContext(browser: Browser): Promise<BrowserContext> {
  return browser.newContext({ viewport: { width: 1280, height: 900 } });
}

/** Records console errors and uncaught exceptions of a page. */
function watchErrors(page: Page) {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(error.message));
  return errors;
}

/** One cold load: a fresh context (no cache, no cookies), page.goto, until the page's data is shown. */
async function loadCold(browser: Browser, url: string, spec: PageSpec): Promise<LoadTiming> {
  const context = await newContext(browser);
  try {
    await context.addInitScript(shownAtScript(spec));
    const page = await context.newPage();
    const errors = watchErrors(page);
    const startedAt = Date.now();
    await page.goto(`${url}/#/${spec.id}`, { waitUntil: "commit" });
    const shownAt = await waitUntil(
      `the ${spec.id} page to show ${spec.shows}`,
      async () => {
        if (errors.length > 0) throw new Error(`the ${spec.id} page logged errors: ${errors.join("; ")}`);
        // Right after the commit the page's context may still be changing: a failed read is tried again.
        const shown = await page.evaluate("window.__benchShownAt ?? null").catch(() => null);
        return typeof shown === "number" ? shown : undefined;
      },
      { intervalMs: 25 },
    ).catch(async (error: unknown) => {
      const text = await page
        .locator("body")
        .textContent()
        .catch(() => "");
      throw new Error(`${error instanceof Error ? error.message : String(error)}; the page shows: ${text}`);
    });
    const locator = spec.locator(page);
    const agrees = spec.state === "visible" ? await locator.isVisible() : (await locator.count()) > 0;
    if (!agrees)
      throw new Error(`the ${spec.id} page's own check saw ${spec.shows} but Playwright's locator does not`);
    type Timing = { origin: number; entries: { name: string; start: number; end: number }[] };
    const pageJson = (timing: Timing) =>
      timing.entries.filter((entry) => {
        const address = new URL(entry.name);
        return spec.endpoints.includes(address.pathname + address.search);
      });
    // The data can show before every request of the page has finished (the Network page draws its table
    // from /providers while /network/history may still be on its way): wait for all of them, briefly.
    let timing: Timing = { origin: 0, entries: [] };
    await waitUntil(
      `the ${spec.id} page's requests to finish`,
      async () => {
        timing = (await page.evaluate(resourceTimingScript)) as Timing;
        return pageJson(timing).length === spec.endpoints.length ? true : undefined;
      },
      { intervalMs: 25, timeoutMs: 5_000 },
    ).catch(() => {
      throw new Error(
        `the ${spec.id} page fetched ${
          pageJson(timing)
            .map((entry) => entry.name)
            .join(", ") || "none"
        }, ` + `not ${spec.endpoints.join(", ")}`,
      );
    });
    const since = (relative: number) => timing.origin + relative - startedAt;
    const assets = timing.entries.filter((entry) => new URL(entry.name).pathname.startsWith("/assets/"));
    if (assets.length === 0) throw new Error(`the ${spec.id} page has no Resource Timing entry for its JS`);
    const json = pageJson(timing);
    if (errors.length > 0) throw new Error(`the ${spec.id} page logged errors: ${errors.join("; ")}`);
    return {
      shownMs: shownAt - startedAt,
      assetsMs: since(Math.max(...assets.map((entry) => entry.end))),
      jsonAskedMs: since(Math.min(...json.map((entry) => entry.start))),
      jsonMs: since(Math.max(...json.map((entry) => entry.end))),
    };
  } finally {
    await context.close();
  }
}

/** The page's JSON fetched from Node, in parallel as the page does, bodies read and parsed: ms. */
async function fetchPageData(url: string, spec: PageSpec): Promise<number> {
  const started = performance.now();
  await Promise.all(spec.endpoints.map((path) => getJson(`${url}${path}`)));
  return performance.now() - started;
}

type PageFigures = { loads: LoadTiming[]; dataMs: number[] };

async function measureTimeToData(browser: Browser, url: string, specs: PageSpec[]) {
  progress("section 2: one warm-up load of each page (not counted)");
  for (const spec of specs) {
    await fetchPageData(url, spec);
    await loadCold(browser, url, spec);
  }
  const figures = new Map<string, PageFigures>(specs.map((spec) => [spec.id, { loads: [], dataMs: [] }]));
  const cpu = watchCpu();
  for (let round = 0; round < rounds; round++) {
    progress(`section 2: round ${round + 1} of ${rounds}`);
    // Every page once a round, the order rotating: no page always goes first or follows the same one.
    for (let index = 0; index < specs.length; index++) {
      const spec = specs[(index + round) % specs.length] as PageSpec;
      const figure = figures.get(spec.id) as PageFigures;
      // The gateway caches its chain reads for 2-5 s, and whichever of the two asks first may pay for the read:
      // the direct fetch goes first in even rounds, the page in odd ones.
      if (round % 2 === 0) {
        figure.dataMs.push(await fetchPageData(url, spec));
        figure.loads.push(await loadCold(browser, url, spec));
      } else {
        figure.loads.push(await loadCold(browser, url, spec));
        figure.dataMs.push(await fetchPageData(url, spec));
      }
    }
  }
  const share = cpu();

  console.log(
    `2. time to data: ${rounds} cold loads of each page in headless chromium (a fresh browser context each, ` +
      "the order rotating every round), ms from page.goto to the page's data on screen; data direct: the " +
      "page's own JSON fetched from Node in parallel, in the same rounds",
  );
  const rows = specs.map((spec) => {
    const figure = figures.get(spec.id) as PageFigures;
    const shown = figure.loads.map((load) => load.shownMs);
    const shownMedian = median(shown);
    const dataMedian = median(figure.dataMs);
    return {
      spec,
      shownMedian,
      overhead: shownMedian - dataMedian,
      cells: [
        `#/${spec.id}`,
        ms(shownMedian),
        ms(percentile(shown, 0.95)),
        dataMedian.toFixed(1),
        percentile(figure.dataMs, 0.95).toFixed(1),
        ms(shownMedian - dataMedian),
        ms(median(figure.loads.map((load) => load.assetsMs))),
        ms(median(figure.loads.map((load) => load.jsonAskedMs))),
        ms(median(figure.loads.map((load) => load.jsonMs))),
        `${spec.shows} (${spec.endpoints.join(" + ")})`,
      ],
    };
  });
  console.log(
    formatTable(
      [
        "page",
        "to data median",
        "p95",
        "data direct median",
        "p95",
        "overhead",
        "app files in",
        "JSON asked",
        "JSON in",
        "waits for (JSON)",
      ],
      rows.map((row) => row.cells),
    ),
  );
  console.log(
    "(ms; p95 is nearest-rank: with 15 loads, the slowest; overhead = to-data median - data-direct median; " +
      "app files in, JSON asked, JSON in: medians of when the page had its JS and CSS, asked for its JSON and " +
      "had it, from its Resource Timing entries, on the same clock)",
  );
  if (share)
    console.log(
      `the bench (this process, chromium, the devnet) used ${(share.own * 100).toFixed(0)}% of the machine's ` +
        `CPU meanwhile, other processes ${(share.other * 100).toFixed(0)}%` +
        (share.other > 0.05 ? ": noisier than on an idle machine" : ""),
    );
  console.log("");
  const slowest = rows.reduce((worst, row) => (row.shownMedian > worst.shownMedian ? row : worst));
  const heaviest = rows.reduce((worst, row) => (row.overhead > worst.overhead ? row : worst));
  return { slowest, heaviest };
}

// ---- 3. live update delay ----

/** Receipt events seen by a Node subscriber of GET /mycel/v1/events: request id -> arrival (Date.now()). */
async function subscribeReceipts(url: string) {
  const controller = new AbortController();
  const response = await fetch(`${url}/mycel/v1/events`, {
    headers: { accept: "text/event-stream" },
    signal: controller.signal,
  });
  if (!response.ok || !response.body) throw new Error(`GET /mycel/v1/events answered ${response.status}`);
  const reader = response.body.getReader();
  const arrivals = new Map<string, number>();
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
      if (done) return;
      const at = Date.now();
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end < 0) break;
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (/^event: receipt$/m.test(block) && data) {
          const requestId = (JSON.parse(data) as { request_id: string }).request_id.toLowerCase();
          if (!arrivals.has(requestId)) arrivals.set(requestId, at);
        }
      }
    }
  })();
  return {
    arrivals,
    async close() {
      controller.abort();
      await reading;
    },
  };
}

/**
 * Opens, in the page, an EventSource of its own on /mycel/v1/events that records each receipt event's request id
 * and time, and a MutationObserver that records each change of a provider's "N ok" count in the Network page's
 * table (which the app updates from its own feed's "providers" events).
 */
const liveRecorderScript = `(() => {
  const live = { open: false, receipts: [], counts: [] };
  window.__benchLive = live;
  const now = () => performance.timeOrigin + performance.now();
  const source = new EventSource("/mycel/v1/events");
  source.onopen = () => { live.open = true; };
  source.addEventListener("receipt", (event) => {
    live.receipts.push({ id: JSON.parse(event.data).request_id.toLowerCase(), at: now() });
  });
  const seen = new Map();
  const look = () => {
    for (const row of document.querySelectorAll("main tbody tr")) {
      const address = row.querySelector("th [title]")?.getAttribute("title")?.toLowerCase();
      let count;
      for (const cell of row.cells) count ??= /^([\\d,]+) ok/.exec((cell.textContent ?? "").trim())?.[1];
      if (!address || count === undefined) continue;
      const value = Number(count.replaceAll(",", ""));
      if (seen.get(address) !== value) {
        seen.set(address, value);
        live.counts.push({ address, count: value, at: now() });
      }
    }
  };
  look();
  new MutationObserver(look).observe(document.querySelector("main"), {
    childList: true, subtree: true, characterData: true,
  });
})()`;

type LiveRecord = { open: boolean; receipts: { id: string; at: number }[]; counts: ProviderCount[] };
type ProviderCount = { address: string; count: number; at: number };

async function readLive(page: Page): Promise<LiveRecord> {
  return (await page.evaluate("window.__benchLive")) as LiveRecord;
}

async function measureLiveDelay(parameters: { browser: Browser; url: string; providerAddress: string }) {
  const { url } = parameters;
  const context = await newContext(parameters.browser);
  const subscription = await subscribeReceipts(url);
  try {
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(`${url}/#/network`);
    await page.locator(`[title="${parameters.providerAddress}"]`).first().waitFor({ timeout: waitLimitMs });
    await page.evaluate(liveRecorderScript);
    await waitUntil("the page's EventSource to open", async () =>
      (await readLive(page)).open ? true : undefined,
    );
    const rows: { answer: ChatAnswer; nodeMs: number; pageMs: number; countMs: number }[] = [];
    for (let index = 0; index <= liveChats; index++) {
      const answer = await chat(url, { content: `Live update ${index}: what is a mycelium?` });
      const successes = (await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`)).data.find(
        (provider) => provider.address.toLowerCase() === answer.provider,
      )?.successes;
      if (successes === undefined) throw new Error(`the gateway does not list ${answer.provider}`);
      const pageAt = await waitUntil(
        "the receipt event in the page",
        async () => (await readLive(page)).receipts.find((entry) => entry.id === answer.requestId)?.at,
        { intervalMs: 20 },
      );
      const nodeAt = await waitUntil("the receipt event in Node", async () =>
        subscription.arrivals.get(answer.requestId),
      );
      const countAt = await waitUntil(
        `the Network page to show ${successes} ok for ${answer.provider}`,
        async () =>
          (await readLive(page)).counts.find(
            (entry) => entry.address === answer.provider && entry.count >= successes,
          )?.at,
        { intervalMs: 50 },
      );
      // The first chat warms up; it is not counted.
      if (index > 0)
        rows.push({
          answer,
          nodeMs: nodeAt - answer.endedAt,
          pageMs: pageAt - answer.endedAt,
          countMs: countAt - answer.endedAt,
        });
      // The page's table follows the 2-s "providers" events: varied pauses spread the answers over that cycle.
      await sleep(200 + 400 * (index % 5));
    }
    if (errors.length > 0) throw new Error(`the Network page logged errors: ${errors.join("; ")}`);

    console.log(
      `3. live update delay: ${liveChats} chats (16 tokens, one at a time) with the Network page open; ms from ` +
        "the end of each answer's body (in Node) to its receipt event, read by a subscriber in Node and by an " +
        "EventSource opened in the page; and to the page's table showing the answering provider's new count",
    );
    const tenths = (value: number) => roundUp(value, 1).toFixed(1);
    const summary = (values: number[]) => [tenths(median(values)), tenths(Math.max(...values))];
    console.log(
      formatTable(
        ["chat", "answer ms", "event in Node", "event in page", "page shows count"],
        [
          ...rows.map((row, index) => [
            `${index + 1} (${row.answer.requestId.slice(0, 10)})`,
            ms(row.answer.durationMs),
            tenths(row.nodeMs),
            tenths(row.pageMs),
            ms(row.countMs),
          ]),
          [
            "median / max",
            "",
            summary(rows.map((row) => row.nodeMs)).join(" / "),
            summary(rows.map((row) => row.pageMs)).join(" / "),
            summary(rows.map((row) => row.countMs)).join(" / "),
          ],
        ],
      ),
    );
    console.log(
      "(negative: the event came before the answer's body was read; the gateway publishes a receipt when it " +
        "stores it, before it sends the answer. The table's count comes from the app's own feed, which " +
        "carries the providers every 2 s)\n",
    );
    return median(rows.map((row) => row.pageMs));
  } finally {
    await subscription.close();
    await context.close();
  }
}

// ---- 4. memory ----

type HeapSample = { usedBytes: number; nodes: number; listeners: number; memoryApi: number | null };

async function measureMemory(parameters: { browser: Browser; url: string; providerAddress: string }) {
  const { url } = parameters;
  const context = await newContext(parameters.browser);
  try {
    const page = await context.newPage();
    const errors = watchErrors(page);
    await page.goto(`${url}/#/network`);
    await page.locator(`[title="${parameters.providerAddress}"]`).first().waitFor({ timeout: waitLimitMs });
    await page.locator(".live-connected").waitFor({ timeout: waitLimitMs });
    await page.locator("main svg").first().waitFor({ timeout: waitLimitMs });
    const cdp = await context.newCDPSession(page);
    await cdp.send("Performance.enable");
    const sample = async (collect: boolean): Promise<HeapSample> => {
      if (collect) await cdp.send("HeapProfiler.collectGarbage");
      const { metrics } = await cdp.send("Performance.getMetrics");
      const metric = (name: string) => metrics.find((entry) => entry.name === name)?.value ?? Number.NaN;
      return {
        usedBytes: metric("JSHeapUsedSize"),
        nodes: metric("Nodes"),
        listeners: metric("JSEventListeners"),
        memoryApi: (await page.evaluate("performance.memory?.usedJSHeapSize ?? null")) as number | null,
      };
    };
    const startRaw = await sample(false);
    const start = await sample(true);
    const started = performance.now();
    let chats = 0;
    progress(
      `section 4: the Network page open for ${memoryMs / 1000} s, a chat every ${memoryChatEveryMs} ms`,
    );
    while (performance.now() - started < memoryMs) {
      await chat(url, { content: `Memory ${chats}: tell me about fungi.` });
      chats++;
      const next = started + chats * memoryChatEveryMs;
      await sleep(Math.max(0, Math.min(next, started + memoryMs) - performance.now()));
    }
    const openMs = performance.now() - started;
    // The page's table must have caught up with every answer: live updates really arrived.
    const providers = (await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`)).data;
    for (const provider of providers)
      await page
        .locator("main tbody tr", { has: page.locator(`[title="${provider.address}"]`) })
        .locator("td", { hasText: new RegExp(`^\\s*${provider.successes.toLocaleString("en-US")} ok`) })
        .first()
        .waitFor({ timeout: waitLimitMs });
    const endRaw = await sample(false);
    const end = await sample(true);
    if (errors.length > 0) throw new Error(`the Network page logged errors: ${errors.join("; ")}`);

    console.log(
      `4. memory: the Network page open ${(openMs / 1000).toFixed(0)} s with live updates while ${chats} chats ` +
        `ran (one every ${memoryChatEveryMs / 1000} s); its JS heap from the DevTools protocol ` +
        "(Performance.getMetrics), before and after a forced GC (HeapProfiler.collectGarbage)",
    );
    const mb = (value: number) => (value / megabyte).toFixed(2);
    const signedMb = (value: number) => `${value >= 0 ? "+" : ""}${roundUp(value / megabyte, 2).toFixed(2)}`;
    console.log(
      formatTable(
        [
          "",
          "heap after GC (MB)",
          "heap before GC (MB)",
          "DOM nodes",
          "listeners",
          "performance.memory (MB)",
        ],
        [
          [
            "start (after first render)",
            mb(start.usedBytes),
            mb(startRaw.usedBytes),
            String(start.nodes),
            String(start.listeners),
            start.memoryApi === null ? "-" : mb(start.memoryApi),
          ],
          [
            `end (${(openMs / 1000).toFixed(0)} s later)`,
            mb(end.usedBytes),
            mb(endRaw.usedBytes),
            String(end.nodes),
            String(end.listeners),
            end.memoryApi === null ? "-" : mb(end.memoryApi),
          ],
          [
            "growth",
            signedMb(end.usedBytes - start.usedBytes),
            signedMb(endRaw.usedBytes - startRaw.usedBytes),
            String(end.nodes - start.nodes),
            String(end.listeners - start.listeners),
            start.memoryApi === null || end.memoryApi === null
              ? "-"
              : signedMb(end.memoryApi - start.memoryApi),
          ],
        ],
      ),
    );
    console.log(
      "(1 MB = 1,048,576 bytes; performance.memory is chromium's coarse page-side figure, shown for comparison: " +
        "it is not refreshed by a forced GC)\n",
    );
    return end.usedBytes - start.usedBytes;
  } finally {
    await context.close();
  }
}

// ---- main ----

async function main() {
  // Before the long part: a missing chromium fails here, naming the fix.
  await (await launchChromium()).close();
  const bundle = measureBundle();
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-explorer-"));
  let devnet: Devnet | undefined;
  let browser: Browser | undefined;
  try {
    progress("starting `mycel devnet --providers 2` (anvil, 2 providers, a validator, the gateway)");
    const devnetStarted = performance.now();
    devnet = await startDevnet(home);
    const { url } = devnet;
    const devnetSeconds = (performance.now() - devnetStarted) / 1000;
    browser = await launchChromium();

    // One answer sent for audit, so that every page has real data: a receipt, a payment channel.
    progress("one chat request (sent for audit), then waiting for the gateway's payment channel");
    await chat(url, { content: "What is a mycelium?", audit: true });
    const providers = (await getJson<{ data: ExplorerProvider[] }>(`${url}/mycel/v1/providers`)).data;
    const channelId = await waitUntil("the gateway's payment channel", async () => {
      const view = await getJson<PaymentsView>(`${url}/mycel/v1/payments`);
      return view.gateway?.channels[0]?.channel_id;
    });
    const validators = await getJson<ValidatorsView>(`${url}/mycel/v1/validators`);
    const receipts = await getJson<ReceiptList>(`${url}/mycel/v1/receipts?limit=25&offset=0`);
    const providerAddress = providers[0]?.address;
    const validatorAddress = validators.validators[0]?.address;
    if (providers.length !== 2 || !providerAddress)
      throw new Error(`the gateway lists ${providers.length} providers`);
    if (!validatorAddress) throw new Error("the devnet lists no validator");
    if (receipts.total < 1) throw new Error("the gateway holds no receipt after a chat");

    console.log(
      `setup: mycel devnet (anvil, 2 providers, a validator, the gateway, model ${modelName}) up in ` +
        `${devnetSeconds.toFixed(1)} s, chromium ${browser.version()} headless, all on 127.0.0.1; one chat ` +
        "(audit: true) sent first, so every page has data\n",
    );
    const jsGzip = reportBundle(bundle);
    const specs = pageSpecs({ providerAddress, channelId, validatorAddress });
    const pages = await measureTimeToData(browser, url, specs);
    progress("section 3: live update delay");
    const liveDelayMs = await measureLiveDelay({ browser, url, providerAddress });
    const heapGrowth = await measureMemory({ browser, url, providerAddress });

    console.log(
      `JS gzip bytes (all JS under web/dist/assets): ${bytes(jsGzip)} (target <= ${bytes(targets.jsGzipBytes)}) ` +
        verdict(jsGzip <= targets.jsGzipBytes),
    );
    console.log(
      `slowest page's median time to data (#/${pages.slowest.spec.id}): ` +
        `${roundUp(pages.slowest.shownMedian, 0).toFixed(0)} ms (target <= ${targets.timeToDataMs} ms) ` +
        verdict(pages.slowest.shownMedian <= targets.timeToDataMs),
    );
    console.log(
      `worst page's median overhead over its data (#/${pages.heaviest.spec.id}): ` +
        `${roundUp(pages.heaviest.overhead, 0).toFixed(0)} ms (target <= ${targets.overheadMs} ms) ` +
        verdict(pages.heaviest.overhead <= targets.overheadMs),
    );
    console.log(
      `receipt event in the open page after the answer, median: ${roundUp(liveDelayMs, 1).toFixed(1)} ms ` +
        `(target <= ${targets.liveDelayMs} ms) ${verdict(liveDelayMs <= targets.liveDelayMs)}`,
    );
    console.log(
      `Network page JS heap growth over ${memoryMs / 1000} s of live updates: ` +
        `${roundUp(heapGrowth / megabyte, 2).toFixed(2)} MB ` +
        `(target <= ${targets.heapGrowthBytes / megabyte} MB) ${verdict(heapGrowth <= targets.heapGrowthBytes)}`,
    );
  } finally {
    await browser?.close().catch(() => undefined);
    await devnet?.stop();
    await rm(home, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

try {
  await main();
} catch (error) {
  // What failed, without a stack trace: the message names the fix.
  process.stderr.write(`bench:explorer failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
