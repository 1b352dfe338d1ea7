/**
 * Discovery benchmark: seconds from spawning `mycel gateway --rpc-url <url> --deployments <file>` (no --bootstrap)
 * until it lists N providers as routable, for N = 20 and N = 100 providers already running and staked on a local
 * chain. The providers are lightweight nodes in one process (bench/network/lightProviders.ts: real libp2p nodes
 * with real keys, stake and signed announcements, no model loaded). Part of `npm run bench:network`; alone:
 * `node scripts/build.mjs && node --import tsx bench/network/discovery.ts`. See bench/network/README.md.
 */
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type Hex, parseEther } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  anvilDeployerKey,
  connectChain,
  type Deployments,
  deployMycel,
  devnetDeployParameters,
  fundDevAccounts,
  registerModel,
  registerProvider,
  startAnvil,
  withSigner,
  writeDeployments,
} from "../../src/chain/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { formatTable, median, roundUp, verdict } from "../shared/report.ts";
import {
  onAbruptExit,
  spawnMycel,
  stopAll,
  stopProcesses,
  watchOtherProcessesCpu,
  whenReady,
} from "./processes.ts";

/** Swarm sizes measured. */
export const discoverySizes: readonly number[] = process.env.MYCEL_BENCH_DISCOVERY_SIZES
  ? process.env.MYCEL_BENCH_DISCOVERY_SIZES.split(",").map(Number)
  : [20, 100];
/** Gateways started (one after another) per swarm size. */
const trials = Number(process.env.MYCEL_BENCH_DISCOVERY_TRIALS ?? 3);
/** The target: seconds from the gateway's spawn until it lists every provider. */
export const discoveryTargetSeconds = 5;
/** Longest wait for one gateway to list the swarm. */
const listTimeoutMs = 60_000;
/** Light providers per swarm process. */
const swarmPartSize = 25;
/** Longest wait for a swarm of light providers to start. */
const swarmReadyTimeoutMs = 300_000;
const password = "mycel-bench-discovery";
const price = 1_000_000_000_000n;
const lightProvidersScript = resolve(import.meta.dirname, "lightProviders.ts");

/** The key of light provider `index` (1-based) of a swarm: the formula lightProviders.ts uses. */
function lightProviderKey(keyPrefix: string, index: number): Hex {
  return devPrivateKey(`${keyPrefix}-${index}`);
}

/** The keystore entry of trial `trial`'s gateway. */
const gatewayKeyName = (trial: number) => `gateway-${trial}`;

type ListedProvider = { peer_id: string; not_routed: string | null; models: { hash: string }[] };

/** Providers of `modelHash` (0x, 64 hex digits) the gateway lists as routable now. */
async function countRoutable(gatewayUrl: string, modelHash: string): Promise<number> {
  const response = await fetch(`${gatewayUrl}/mycel/v1/providers`);
  if (!response.ok) throw new Error(`GET /mycel/v1/providers answered ${response.status}`);
  const listed = ((await response.json()) as { data: ListedProvider[] }).data;
  return listed.filter(
    (entry) => entry.not_routed === null && entry.models.some((model) => model.hash === modelHash),
  ).length;
}

type Chain = { rpcUrl: string; deployments: Deployments; deployer: Awaited<ReturnType<typeof connectChain>> };

/** Funds and stakes the swarm's keys on chain, each offering `modelHash` at `price`. */
async function stakeSwarm(chain: Chain, parameters: { keyPrefix: string; count: number; modelHash: Hex }) {
  const keys = Array.from({ length: parameters.count }, (_, index) =>
    lightProviderKey(parameters.keyPrefix, index + 1),
  );
  await fundDevAccounts(chain.deployer, {
    deployments: chain.deployments,
    accounts: keys.map((key) => privateKeyToAccount(key).address),
    tokens: parseEther("1000"),
  });
  await registerModel(chain.deployer, {
    deployments: chain.deployments,
    modelHash: parameters.modelHash,
    name: parameters.keyPrefix,
    license: "NOASSERTION",
    metadataUri: "mycel:bench-discovery",
  });
  const stake = BigInt(chain.deployments.parameters.minimumProviderStake);
  const batch = 20;
  for (let start = 0; start < keys.length; start += batch)
    await Promise.all(
      keys.slice(start, start + batch).map((privateKey) =>
        registerProvider(withSigner(chain.deployer, privateKey), {
          deployments: chain.deployments,
          peerId: peerIdOfSecp256k1Key(privateKey),
          offers: [
            { modelHash: parameters.modelHash, inputPricePerMillion: price, outputPricePerMillion: price },
          ],
          stake,
        }),
      ),
    );
}

type Trial = {
  readyMs: number | undefined;
  firstMs: number | undefined;
  allMs: number | undefined;
  seen: number;
};

/** Spawns a gateway with only --rpc-url and --deployments; ms from the spawn to its ready line and to N listed. */
async function timeOneGateway(parameters: {
  home: string;
  rpcUrl: string;
  deploymentsPath: string;
  modelHash: string;
  count: number;
  name: string;
  /** The keystore entry the gateway runs with. */
  key: string;
}): Promise<Trial> {
  const gateway = spawnMycel({
    name: parameters.name,
    home: parameters.home,
    env: { MYCEL_PASSWORD: password, MYCEL_LOG_LEVEL: process.env.MYCEL_BENCH_VERBOSE ? "debug" : "info" },
    args: [
      "gateway",
      "--key",
      parameters.key,
      "--port",
      "0",
      "--rpc-url",
      parameters.rpcUrl,
      "--deployments",
      parameters.deploymentsPath,
    ],
  });
  const since = gateway.spawnedAt;
  try {
    const url = (await whenReady(gateway)).url as string;
    if (process.env.MYCEL_BENCH_VERBOSE) console.error(`${parameters.name} ready`);
    const trial: Trial = {
      readyMs: (gateway.readyAt ?? Number.NaN) - since,
      firstMs: undefined,
      allMs: undefined,
      seen: 0,
    };
    for (;;) {
      const seen = await countRoutable(url, parameters.modelHash);
      const now = performance.now();
      trial.seen = Math.max(trial.seen, seen);
      if (seen > 0) trial.firstMs ??= now - since;
      if (seen >= parameters.count) {
        trial.allMs = now - since;
        if (process.env.MYCEL_BENCH_VERBOSE) console.error(gateway.tail());
        return trial;
      }
      if (now - since > listTimeoutMs) {
        if (process.env.MYCEL_BENCH_VERBOSE) console.error(gateway.tail());
        return trial;
      }
      await new Promise((resolveWait) => setTimeout(resolveWait, 50));
    }
  } finally {
    await stopProcesses([gateway]);
  }
}

const seconds = (ms: number | undefined) => (ms === undefined ? "-" : (ms / 1000).toFixed(2));

/** Measures one swarm size: stakes and starts the swarm, then times `trials` fresh gateways. */
async function measureSize(chain: Chain, parameters: { home: string; count: number }) {
  const keyPrefix = `bench-discovery-${parameters.count}`;
  const modelHash = `0x${createHash("sha256").update(keyPrefix).digest("hex")}` as Hex;
  const setupStarted = performance.now();
  await stakeSwarm(chain, { keyPrefix, count: parameters.count, modelHash });
  // The swarm in processes of at most `swarmPartSize` nodes (one event loop lags behind 100 nodes' DHT and gossip
  // traffic): the first runs the seeds, the others bootstrap through them, one after another; the last one waits
  // until the seeds hold every node's announcement.
  const parts: ReturnType<typeof spawnMycel>[] = [];
  const startPart = async (first: number, seeds: string[] | undefined) => {
    const count = Math.min(swarmPartSize, parameters.count - first + 1);
    const part = spawnMycel({
      name: `light providers ${first}-${first + count - 1} of ${parameters.count}`,
      home: parameters.home,
      args: [],
      nodeArgs: [
        "--import",
        "tsx",
        lightProvidersScript,
        JSON.stringify({
          count,
          first,
          seeds,
          awaitSeedsHold: first + count - 1 === parameters.count ? parameters.count : undefined,
          keyPrefix,
          modelHash: modelHash.slice(2),
          modelName: `bench-discovery-${parameters.count}`,
          price: price.toString(),
        }),
      ],
      readyTimeoutMs: swarmReadyTimeoutMs,
    });
    parts.push(part);
    return whenReady(part);
  };
  try {
    let ready = await startPart(1, undefined);
    const seeds = ready.multiaddrs as string[];
    for (let first = swarmPartSize + 1; first <= parameters.count; first += swarmPartSize)
      ready = await startPart(first, seeds);
    ready.multiaddrs = seeds;
    // What `mycel devnet` does for its nodes: the deployment names where to join.
    const deploymentsPath = join(parameters.home, `deployments-${parameters.count}.json`);
    writeDeployments(deploymentsPath, {
      ...chain.deployments,
      rpcUrl: chain.rpcUrl,
      bootstrap: ready.multiaddrs as string[],
    });
    console.log(
      `   N=${parameters.count}: staked and started in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s ` +
        `(bootstrap list: ${(ready.multiaddrs as string[]).length} of them, holding ` +
        `${JSON.stringify(ready.seedsHold)} announcements; ${parts.length} swarm process(es))`,
    );
    const cpuWatch = watchOtherProcessesCpu();
    const results: Trial[] = [];
    for (let trial = 1; trial <= trials; trial++)
      results.push(
        await timeOneGateway({
          key: gatewayKeyName(trial),
          home: parameters.home,
          rpcUrl: chain.rpcUrl,
          deploymentsPath,
          modelHash,
          count: parameters.count,
          name: `gateway N=${parameters.count} #${trial}`,
        }),
      );
    return { results, otherCpu: cpuWatch.stop() };
  } finally {
    await stopProcesses(parts);
  }
}

/** Runs the discovery section: prints its table and returns the worst seconds per size (undefined: not all listed). */
export async function runDiscoveryBench(parameters: { home: string; heading: string }) {
  console.log(
    `${parameters.heading}: seconds from spawning \`mycel gateway --rpc-url <url> --deployments <file>\` (no ` +
      `--bootstrap) until GET /mycel/v1/providers lists N providers as routable; providers already running, staked ` +
      `on a local anvil; ${trials} fresh gateways per N`,
  );
  const anvil = await startAnvil({ port: 0 });
  try {
    const deployer = await connectChain({ rpcUrl: anvil.rpcUrl, privateKey: anvilDeployerKey });
    const deployments = await deployMycel(deployer, { parameters: devnetDeployParameters });
    // A key per trial: each trial is a gateway the network has not seen (a snapshot server answers one peer once
    // per 10 s, so the same gateway restarted at once would be refused it and learn the swarm from gossip instead).
    for (let trial = 1; trial <= trials; trial++)
      await createKeystore({
        home: parameters.home,
        name: gatewayKeyName(trial),
        password,
        privateKey: devPrivateKey(`bench-discovery:gateway-${trial}`),
      });
    const chain: Chain = { rpcUrl: anvil.rpcUrl, deployments, deployer };
    const rows: string[][] = [];
    const worst = new Map<number, number | undefined>();
    const otherCpu: (number | undefined)[] = [];
    for (const count of discoverySizes) {
      const measured = await measureSize(chain, { home: parameters.home, count });
      otherCpu.push(measured.otherCpu);
      for (const [index, trial] of measured.results.entries())
        rows.push([
          String(count),
          String(index + 1),
          seconds(trial.readyMs),
          seconds(trial.firstMs),
          trial.allMs === undefined
            ? `not within ${listTimeoutMs / 1000} s (${trial.seen})`
            : seconds(trial.allMs),
        ]);
      const all = measured.results.map((trial) => trial.allMs);
      worst.set(count, all.some((ms) => ms === undefined) ? undefined : Math.max(...(all as number[])));
      console.log(
        `   N=${count}: median ${seconds(median(all.filter((ms): ms is number => ms !== undefined)))} s`,
      );
    }
    console.log(formatTable(["N", "trial", "gateway ready (s)", "lists 1 (s)", "lists all N (s)"], rows));
    const busiest = Math.max(...otherCpu.map((share) => share ?? 0));
    console.log(
      "(seconds after spawning the gateway process; its provider list polled every 50 ms from its ready line; " +
        `other processes used up to ${(busiest * 100).toFixed(0)}% of the machine's CPU meanwhile)\n`,
    );
    return worst;
  } finally {
    await anvil.stop();
  }
}

/** The verdict lines of the discovery section. */
export function discoveryVerdicts(worst: Map<number, number | undefined>): string[] {
  return discoverySizes.map((count) => {
    const ms = worst.get(count);
    const value =
      ms === undefined ? `not within ${listTimeoutMs / 1000} s` : `${roundUp(ms / 1000, 2).toFixed(2)} s`;
    return (
      `discovery N=${count} (worst of ${trials}): ${value} (target <= ${discoveryTargetSeconds} s) ` +
      verdict(ms !== undefined && ms <= discoveryTargetSeconds * 1000)
    );
  });
}

async function main() {
  const started = performance.now();
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-discovery-"));
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  try {
    const worst = await runDiscoveryBench({ home, heading: "discovery" });
    for (const line of discoveryVerdicts(worst)) console.log(line);
  } finally {
    await stopAll();
    await rm(home, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
