/**
 * Relay benchmark: the same stream from one provider at home (behind a NAT router) through a circuit relay,
 * after DCUtR upgraded a relayed connection to a direct one, and over a direct connection from the start, in
 * interleaved rounds, with real `mycel` processes in Linux network namespaces (root needed; it skips clearly
 * otherwise). Run alone with `npm run bench:relay`; `npm run bench:network` runs it last. See
 * bench/network/README.md.
 *
 * Namespaces (mycel-rb-<pid>-*), nothing routes out of them:
 *   net     the "internet" bridge, 11.78.<x>.0/24 (public-looking: libp2p's DCUtR dials only public addresses)
 *   relay   11.78.<x>.1    `mycel relay` (limits raised so that they never cut a measured stream)
 *   up      11.78.<x>.2    gateway "upgraded": public (it announces its address), so the provider's DCUtR dials it
 *                          directly
 *   r1      11.78.<x>.11   NAT router of home 1 (MASQUERADE), 192.168.1.1 on the home LAN; gateway "direct"
 *                          runs here and dials the provider's LAN address
 *   h1      192.168.1.2    the provider (`--parallelism 1 --threads 1`)
 *   r2/h2   11.78.<x>.12 / 192.168.2.2   a second home; gateway "relayed" at h2: both ends behind NAT, so the
 *                          connection stays relayed (js-libp2p cannot hole-punch TCP between two NATs)
 * Each gateway's API is on 127.0.0.1 inside its namespace, so a small stream client (this file with
 * `--stream-client <url>`) runs beside each one and times the streams there, the same way for all three.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { formatTable, roundDown, summarizeSamples, verdict } from "../shared/report.ts";
import { benchSeed, type Sample, streamChat } from "../shared/streamChat.ts";
import { addTestModel } from "../shared/testModels.ts";
import {
  type MycelProcess,
  onAbruptExit,
  spawnMycel,
  stopProcesses,
  watchOtherProcessesCpu,
  whenReady,
} from "./processes.ts";

const rounds = 5;
const maxTokens = 256;
const password = "mycel-bench-relay";
const targets = { relayedRatio: 0.8, upgradedRatio: 0.95 };
/** Relay limits far above what the bench sends, so that only the path is measured. */
const relayDataLimit = String(1 << 30);
const relayDurationLimitSeconds = "3600";
/** Longest wait for a gateway to list the provider, and for a connection to reach the expected kind. */
const waitMs = 60_000;
const repositoryRoot = resolve(import.meta.dirname, "..", "..");

type PathName = "direct" | "relayed" | "upgraded";

/** Runs `ip` and returns its output; throws with its stderr on failure. */
function ip(...args: string[]) {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
function inNamespace(namespace: string, ...command: string[]) {
  return ip("netns", "exec", namespace, ...command);
}

/** The namespaces, bridges, veth pairs and NAT rules of the topology above; `remove()` deletes them all. */
function buildNetwork() {
  const prefix = `mycel-rb-${process.pid}`;
  const x = (process.pid % 250) + 1;
  const net = `11.78.${x}`;
  const names = ["net", "relay", "up", "r1", "h1", "r2", "h2"] as const;
  const ns = Object.fromEntries(names.map((name) => [name, `${prefix}-${name}`])) as Record<
    (typeof names)[number],
    string
  >;
  const created: string[] = [];
  const remove = () => {
    for (const namespace of created.splice(0).reverse()) {
      try {
        const pids = ip("netns", "pids", namespace).split("\n").filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), "SIGKILL");
      } catch {
        // Already gone.
      }
      try {
        ip("netns", "del", namespace);
      } catch {
        // Best effort: deleting the namespace also deletes its links and rules.
      }
    }
  };
  onAbruptExit(remove);
  const iptables = pickIptables();
  try {
    for (const name of names) {
      ip("netns", "add", ns[name]);
      created.push(ns[name]);
      ip("-n", ns[name], "link", "set", "lo", "up");
    }
    ip("-n", ns.net, "link", "add", "br0", "type", "bridge");
    ip("-n", ns.net, "link", "set", "br0", "up");
    const plug = (host: string, port: string, address: string) => {
      ip("-n", ns.net, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host);
      ip("-n", ns.net, "link", "set", port, "master", "br0");
      ip("-n", ns.net, "link", "set", port, "up");
      ip("-n", host, "addr", "add", `${address}/24`, "dev", "eth0");
      ip("-n", host, "link", "set", "eth0", "up");
    };
    plug(ns.relay, "v-relay", `${net}.1`);
    plug(ns.up, "v-up", `${net}.2`);
    for (const [router, home, n] of [
      [ns.r1, ns.h1, 1],
      [ns.r2, ns.h2, 2],
    ] as const) {
      plug(router, `v-r${n}`, `${net}.${10 + n}`);
      ip("-n", router, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", home);
      ip("-n", router, "addr", "add", `192.168.${n}.1/24`, "dev", "lan0");
      ip("-n", router, "link", "set", "lan0", "up");
      ip("-n", home, "addr", "add", `192.168.${n}.2/24`, "dev", "eth0");
      ip("-n", home, "link", "set", "eth0", "up");
      ip("-n", home, "route", "add", "default", "via", `192.168.${n}.1`);
      inNamespace(router, "sysctl", "-qw", "net.ipv4.ip_forward=1");
      inNamespace(router, iptables, "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE");
      inNamespace(router, iptables, "-P", "FORWARD", "DROP");
      inNamespace(router, iptables, "-A", "FORWARD", "-i", "lan0", "-o", "eth0", "-j", "ACCEPT");
      inNamespace(
        router,
        iptables,
        ...["-A", "FORWARD", "-i", "eth0", "-o", "lan0", "-m", "conntrack"],
        ...["--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
      );
    }
  } catch (error) {
    remove();
    throw error;
  }
  return { ns, net, iptables, remove };
}

/** The iptables that can add a NAT rule in a namespace: nf_tables where the kernel has it, else legacy. */
function pickIptables() {
  const probe = `mycel-rb-${process.pid}-probe`;
  ip("netns", "add", probe);
  try {
    for (const candidate of ["iptables", "iptables-nft", "iptables-legacy"]) {
      try {
        inNamespace(probe, candidate, "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE");
        return candidate;
      } catch {
        // Not installed, or no kernel support for this backend.
      }
    }
  } finally {
    ip("netns", "del", probe);
  }
  throw new Error("no iptables can add a NAT rule in a namespace (apt-get install iptables)");
}

/** Why the bench cannot run here, or undefined when it can. */
function whyNotRunnable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root for network namespaces (run it with sudo)";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "iproute2's `ip` command is not installed";
  }
  return undefined;
}

/** A stream client inside a gateway's namespace: one JSON request per stdin line, one Sample per stdout line. */
function startStreamClient(namespace: string, url: string) {
  const child: ChildProcess = spawn(
    "ip",
    [
      "netns",
      "exec",
      namespace,
      process.execPath,
      "--import",
      "tsx",
      import.meta.filename,
      "--stream-client",
      url,
    ],
    { cwd: repositoryRoot, stdio: ["pipe", "pipe", "inherit"] },
  );
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) =>
    waiting.shift()?.(line),
  );
  return {
    stream(model: string): Promise<Sample> {
      return new Promise((resolveSample, reject) => {
        waiting.push((line) => {
          const answer = JSON.parse(line) as { sample?: Sample; error?: string };
          if (answer.sample) resolveSample(answer.sample);
          else reject(new Error(`stream client in ${namespace}: ${answer.error}`));
        });
        child.stdin?.write(`${JSON.stringify({ model, maxTokens })}\n`);
      });
    },
    stop: () => child.kill("SIGKILL"),
  };
}

/** The `--stream-client` mode: streams each requested chat from the gateway at `url` and reports the Sample. */
async function runStreamClient(url: string) {
  for await (const line of createInterface({ input: process.stdin })) {
    const request = JSON.parse(line) as { model: string; maxTokens: number };
    try {
      const sample = await streamChat({ url, model: request.model, maxTokens: request.maxTokens });
      process.stdout.write(`${JSON.stringify({ sample })}\n`);
    } catch (error) {
      process.stdout.write(
        `${JSON.stringify({ error: error instanceof Error ? error.message : String(error) })}\n`,
      );
    }
  }
}

/** The `connection` of a provider in a gateway's /mycel/v1/providers, polled through a one-off client. */
function connectionOf(namespace: string, url: string, peerId: string) {
  const script =
    `const r = await fetch(${JSON.stringify(`${url}/mycel/v1/providers`)});` +
    `const e = (await r.json()).data.find((p) => p.peer_id === ${JSON.stringify(peerId)});` +
    "console.log(e ? String(e.connection) : 'unlisted');";
  try {
    return inNamespace(namespace, process.execPath, "--input-type=module", "-e", script).trim();
  } catch {
    return "unreachable";
  }
}

/** Polls a gateway until the provider's `connection` is `wanted` ("listed": any, once it is listed). */
async function waitForConnection(parameters: {
  namespace: string;
  url: string;
  peerId: string;
  wanted: "direct" | "relayed" | "listed";
}) {
  const deadline = performance.now() + waitMs;
  let seen = "";
  while (performance.now() < deadline) {
    seen = connectionOf(parameters.namespace, parameters.url, parameters.peerId);
    if (seen === parameters.wanted) return;
    if (parameters.wanted === "listed" && seen !== "unlisted" && seen !== "unreachable") return;
    await new Promise((resolveWait) => setTimeout(resolveWait, 500));
  }
  throw new Error(
    `the gateway in ${parameters.namespace} shows the provider as '${seen}', not '${parameters.wanted}', ` +
      `after ${waitMs / 1000} s`,
  );
}

/** Waits until a process printed a line matching `pattern` (among its last lines), at most {@link waitMs}. */
async function waitForLine(entry: MycelProcess, pattern: RegExp) {
  const deadline = performance.now() + waitMs;
  while (!pattern.test(entry.tail())) {
    if (performance.now() > deadline || !entry.alive())
      throw new Error(`${entry.name} printed no line matching ${pattern}:\n${entry.tail()}`);
    await new Promise((resolveWait) => setTimeout(resolveWait, 200));
  }
}

/** Starts the relay, the provider at home and the three gateways; resolves when every path is as named. */
async function startNodes(parameters: {
  home: string;
  network: ReturnType<typeof buildNetwork>;
  modelHash: string;
  /** Every process started is added here, so that the caller stops them even if this throws. */
  started: MycelProcess[];
}) {
  const { home, started, modelHash } = parameters;
  const { ns, net } = parameters.network;
  const env = { MYCEL_PASSWORD: password, MYCEL_LOG_LEVEL: "info" };
  const start = (name: string, namespace: string, args: string[]) => {
    const entry = spawnMycel({ name, home, env, namespace, args });
    started.push(entry);
    return entry;
  };
  const relay = start("relay", ns.relay, [
    ...[
      "relay",
      "--key",
      "relay",
      "--listen",
      `/ip4/${net}.1/tcp/4001`,
      "--announce",
      `/ip4/${net}.1/tcp/4001`,
    ],
    ...["--relay-data-limit", relayDataLimit, "--relay-duration-limit", relayDurationLimitSeconds],
  ]);
  const relayReady = await whenReady(relay);
  const relayAddress = (relayReady.multiaddrs as string[]).find((address) =>
    address.startsWith(`/ip4/${net}.1/tcp/4001/`),
  );
  if (!relayAddress)
    throw new Error(`the relay announces no address on ${net}.1: ${JSON.stringify(relayReady)}`);
  const provider = start("provider (home 1)", ns.h1, [
    ...["provider", "--key", "provider", "--model", modelHash, "--parallelism", "1", "--threads", "1"],
    ...["--listen", "/ip4/192.168.1.2/tcp/4001", "--bootstrap", relayAddress],
  ]);
  const providerReady = await whenReady(provider);
  const peerId = providerReady.peerId as string;
  const gateway = (name: PathName, namespace: string, listen: string, extra: string[] = []) =>
    start(`gateway (${name})`, namespace, [
      ...["gateway", "--key", `gateway-${name}`, "--host", "127.0.0.1", "--port", "0"],
      ...["--listen", listen, "--bootstrap", relayAddress, ...extra],
    ]);
  const gateways = {
    direct: gateway("direct", ns.r1, "/ip4/192.168.1.1/tcp/4001", [
      "--bootstrap",
      `/ip4/192.168.1.2/tcp/4001/p2p/${peerId}`,
    ]),
    relayed: gateway("relayed", ns.h2, "/ip4/192.168.2.2/tcp/4001"),
    // Announced: AutoNAT v2 wants dial-backs from 4 different /8 networks, more than these namespaces hold.
    upgraded: gateway("upgraded", ns.up, `/ip4/${net}.2/tcp/4001`, ["--announce", `/ip4/${net}.2/tcp/4001`]),
  };
  const namespaceOf: Record<PathName, string> = { direct: ns.r1, relayed: ns.h2, upgraded: ns.up };
  const urls = {} as Record<PathName, string>;
  for (const name of ["direct", "relayed", "upgraded"] as const)
    urls[name] = (await whenReady(gateways[name])).url as string;
  // DCUtR sends only confirmed public addresses: the public gateway dials the provider once AutoNAT (the relay
  // dialling it back) has confirmed its address, or the relayed connection would stay relayed.
  await waitForLine(gateways.upgraded, /reachability .*status=public/).catch((error) => {
    throw new Error(`${error.message}\n--- relay ---\n${relay.tail()}\n--- provider ---\n${provider.tail()}`);
  });
  return { peerId, gateways, urls, namespaceOf };
}

type RelayFigures = { relayedRatio: number; upgradedRatio: number } | undefined;

/**
 * Measures the three paths and prints the table and the target lines; returns the ratios, or undefined when
 * it cannot run here (it says why). `section` numbers its heading inside bench:network.
 */
export async function measureRelay(parameters: { section?: string } = {}): Promise<RelayFigures> {
  const label = parameters.section ? `${parameters.section}. ` : "";
  const notRunnable = whyNotRunnable();
  if (notRunnable) {
    console.log(`${label}relay: SKIPPED, cannot run here: ${notRunnable}`);
    console.log(`relayed/direct tokens/s: skipped (target >= ${targets.relayedRatio})`);
    console.log(`upgraded/direct tokens/s: skipped (target >= ${targets.upgradedRatio})`);
    return undefined;
  }
  const setupStarted = performance.now();
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-relay-"));
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  const network = buildNetwork();
  const clients: ReturnType<typeof startStreamClient>[] = [];
  const started: MycelProcess[] = [];
  try {
    const { model, made } = await addTestModel({ home, size: "small", source: "bench/network/relay" });
    await Promise.all(
      ["relay", "provider", "gateway-direct", "gateway-relayed", "gateway-upgraded"].map((name) =>
        createKeystore({ home, name, password, privateKey: devPrivateKey(`bench-relay:${name}`) }),
      ),
    );
    const nodes = await startNodes({ home, network, modelHash: model.hash, started });
    const paths = (["direct", "relayed", "upgraded"] as const).map((name) => {
      const client = startStreamClient(nodes.namespaceOf[name], nodes.urls[name]);
      clients.push(client);
      return { name, client, namespace: nodes.namespaceOf[name], url: nodes.urls[name] };
    });
    for (const path of paths)
      await waitForConnection({
        namespace: path.namespace,
        url: path.url,
        peerId: nodes.peerId,
        wanted: "listed",
      });
    // One warm-up stream per path: it dials (through the relay for two of them) and lets DCUtR act.
    const texts = new Set<string>();
    for (const path of paths) {
      const sample = await path.client.stream(model.name);
      process.stderr.write(
        `   warm-up ${path.name}: ${sample.completionTokens} tokens in ${sample.totalMs.toFixed(0)} ms\n`,
      );
      texts.add(sample.text);
    }
    const expected: Record<PathName, "direct" | "relayed"> = {
      direct: "direct",
      relayed: "relayed",
      upgraded: "direct",
    };
    for (const path of paths)
      await waitForConnection({
        namespace: path.namespace,
        url: path.url,
        peerId: nodes.peerId,
        wanted: expected[path.name],
      });
    console.log(
      `${label}relay: model ${model.name} (${(made.parameterCount / 1e6).toFixed(1)}M params, ${made.quant}), ` +
        `max_tokens ${maxTokens}, temperature 0, seed ${benchSeed}; one provider at home behind a NAT router ` +
        "(--parallelism 1 --threads 1), three gateways in their own network namespaces",
    );
    console.log(
      `   setup ${((performance.now() - setupStarted) / 1000).toFixed(1)} s; relay limits raised to ` +
        `${relayDataLimit} bytes and ${relayDurationLimitSeconds} s so that they never cut a measured stream`,
    );
    const cpuWatch = watchOtherProcessesCpu();
    const samples = paths.map(() => [] as Sample[]);
    for (let round = 0; round < rounds; round++) {
      // A different order every round, so that no path always runs first or last.
      const order = [0, 1, 2].map((offset) => (round + offset) % 3);
      for (const index of round % 2 === 0 ? order : order.reverse()) {
        const path = paths[index] as (typeof paths)[number];
        const sample = await path.client.stream(model.name);
        process.stderr.write(
          `   round ${round + 1} ${path.name}: ${sample.completionTokens} tokens in ${sample.totalMs.toFixed(0)} ms\n`,
        );
        samples[index]?.push(sample);
        texts.add(sample.text);
      }
    }
    const otherCpu = cpuWatch.stop();
    // The connections must still be what they were measured as.
    const finalConnections = paths.map((path) => connectionOf(path.namespace, path.url, nodes.peerId));
    const summaries = samples.map(summarizeSamples);
    const direct = summaries[0] as ReturnType<typeof summarizeSamples>;
    console.log(
      formatTable(
        ["path", "connection", "first token (ms)", "tokens/s", "completion tokens", "total (ms)"],
        paths.map((path, index) => {
          const figures = summaries[index] as ReturnType<typeof summarizeSamples>;
          return [
            { direct: "direct", relayed: "through the relay", upgraded: "relayed, then DCUtR upgrade" }[
              path.name
            ],
            finalConnections[index] ?? "?",
            figures.firstTokenMs.toFixed(1),
            figures.tokensPerSecond.toFixed(1),
            String(figures.completionTokens),
            figures.totalMs.toFixed(0),
          ];
        }),
      ),
    );
    const relayed = summaries[1] as ReturnType<typeof summarizeSamples>;
    const upgraded = summaries[2] as ReturnType<typeof summarizeSamples>;
    const relayedRatio = relayed.tokensPerSecond / direct.tokensPerSecond;
    const upgradedRatio = upgraded.tokensPerSecond / direct.tokensPerSecond;
    console.log(
      `(medians of ${rounds} rounds after 1 warm-up each, order rotating; same greedy text on all paths: ` +
        `${texts.size === 1 ? "yes" : "NO"}; first token relayed / direct ` +
        `${(relayed.firstTokenMs / direct.firstTokenMs).toFixed(3)}, upgraded / direct ` +
        `${(upgraded.firstTokenMs / direct.firstTokenMs).toFixed(3)})`,
    );
    console.log(
      otherCpu === undefined
        ? "other processes' CPU: unknown (no /proc)"
        : `other processes used ${(otherCpu * 100).toFixed(0)}% of the machine's CPU meanwhile` +
            (otherCpu > 0.05 ? ": noisier than on an idle machine" : ""),
    );
    const wrong = paths.filter((path, index) => finalConnections[index] !== expected[path.name]);
    if (wrong.length > 0)
      throw new Error(`connections changed while measuring: ${wrong.map((path) => path.name).join(", ")}`);
    console.log(
      `relayed/direct tokens/s: ${roundDown(relayedRatio, 2).toFixed(2)} (target >= ${targets.relayedRatio}) ` +
        verdict(relayedRatio >= targets.relayedRatio),
    );
    console.log(
      `upgraded/direct tokens/s: ${roundDown(upgradedRatio, 2).toFixed(2)} (target >= ${targets.upgradedRatio}) ` +
        verdict(upgradedRatio >= targets.upgradedRatio),
    );
    return { relayedRatio, upgradedRatio };
  } catch (error) {
    // What the nodes said is what explains a failed path.
    for (const entry of started) console.error(`--- last output of ${entry.name} ---\n${entry.tail()}`);
    throw error;
  } finally {
    for (const client of clients) client.stop();
    await stopProcesses(started);
    network.remove();
    await rm(home, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const clientIndex = process.argv.indexOf("--stream-client");
  if (clientIndex >= 0) await runStreamClient(process.argv[clientIndex + 1] as string);
  else await measureRelay();
}
