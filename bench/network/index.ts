/**
 * Network benchmark: what the Mycel network costs over serving a model locally, in one run with real processes
 * on 127.0.0.1. (1) a stream through gateway -> libp2p -> provider vs the same model from `mycel serve`;
 * (2) discovery: seconds from spawning a gateway with only --rpc-url and --deployments until it lists N = 20 and
 * N = 100 staked providers (bench/network/discovery.ts); (3) failover: a provider killed mid-stream,
 * seconds until the client gets the next token from another one; (4) through a relay and after the DCUtR
 * upgrade, beside direct (bench/network/relay.ts, in network namespaces). Run with `npm run bench:network`;
 * see bench/network/README.md.
 */
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { formatTable, median, roundDown, roundUp, summarizeSamples, verdict } from "../shared/report.ts";
import { benchSeed, type Sample, streamChat } from "../shared/streamChat.ts";
import { discoveryVerdicts, runDiscoveryBench } from "./discovery.ts";
import {
  type MycelProcess,
  onAbruptExit,
  processCpuMs,
  spawnMycel,
  stopAll,
  stopProcesses,
  watchOtherProcessesCpu,
  whenReady,
} from "./processes.ts";
import { measureRelay } from "./relay.ts";

const rounds = 5;
const maxTokens = 256;
const failoverTrials = 10;
const failoverMaxTokens = 2000;
/** Content chunks the client reads before the serving provider is killed. */
const killAfterChunks = 10;
const password = "mycel-bench-network";
/** Prices per 1M tokens: the cheaper provider of a failover pair is the one the gateway routes to. */
const cheapPrice = 1_000_000_000_000n;
const dearPrice = 2_000_000_000_000n;
/** A short prompt for the failover streams, so that prompt + 2000 tokens fit the tiny model's 2048 context. */
const failoverMessages: { role: "user"; content: string }[] = [
  { role: "user", content: "Tell me a long story." },
];
const targets = { throughputRatio: 0.9, firstTokenOverheadMs: 10, failoverSeconds: 1 };

type ListedProvider = { peer_id: string; address: string; models: { hash: string }[] };

/** The gateway's provider table (GET /mycel/v1/providers). */
async function listProviders(gatewayUrl: string): Promise<ListedProvider[]> {
  const response = await fetch(`${gatewayUrl}/mycel/v1/providers`);
  if (!response.ok) throw new Error(`GET /mycel/v1/providers answered ${response.status}`);
  return ((await response.json()) as { data: ListedProvider[] }).data;
}

/** Providers of a model (64 hex digits) the gateway lists. */
async function countServing(gatewayUrl: string, modelHash: string) {
  const wanted = `0x${modelHash}`.toLowerCase();
  const listed = await listProviders(gatewayUrl);
  return listed.filter((entry) => entry.models.some((model) => model.hash.toLowerCase() === wanted)).length;
}

/**
 * Polls until the gateway lists `count` providers of a model, or `timeoutMs` passed: returns the ms (since
 * `since`) at which each count was first seen, and the most seen.
 */
async function waitForServing(parameters: {
  gatewayUrl: string;
  modelHash: string;
  count: number;
  timeoutMs: number;
  since?: number;
}) {
  const since = parameters.since ?? performance.now();
  const reachedAt = new Map<number, number>();
  let seen = 0;
  for (;;) {
    seen = Math.max(seen, await countServing(parameters.gatewayUrl, parameters.modelHash));
    const now = performance.now();
    for (let count = 1; count <= seen; count++) if (!reachedAt.has(count)) reachedAt.set(count, now - since);
    if (seen >= parameters.count || now - since > parameters.timeoutMs) return { reachedAt, seen };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** {@link waitForServing}, failing if the count is not reached (for setup, where it must be). */
async function requireServing(parameters: { gatewayUrl: string; modelHash: string; count: number }) {
  const timeoutMs = 30_000;
  const { seen } = await waitForServing({ ...parameters, timeoutMs });
  if (seen < parameters.count)
    throw new Error(
      `the gateway lists ${seen} of ${parameters.count} providers of ${parameters.modelHash.slice(0, 12)} ` +
        `after ${timeoutMs / 1000} s`,
    );
}

type Summary = ReturnType<typeof summarizeSamples>;

/** Milliseconds as seconds with two decimals, or "-" when not measured. */
const seconds = (ms: number | undefined) => (ms === undefined ? "-" : (ms / 1000).toFixed(2));

function describeOtherCpu(share: number | undefined) {
  if (share === undefined) return "other processes' CPU: unknown (no /proc)";
  return (
    `other processes used ${(share * 100).toFixed(0)}% of the machine's CPU meanwhile` +
    (share > 0.05 ? ": noisier than on an idle machine" : "")
  );
}

type Model = Awaited<ReturnType<ReturnType<typeof openModelStore>["addBytes"]>>["model"];

/** Starts `mycel provider` with 1 sequence x 1 thread. */
function startProvider(parameters: { home: string; name: string; key: string; args: string[] }) {
  return spawnMycel({
    name: parameters.name,
    home: parameters.home,
    env: childEnv,
    args: ["provider", "--key", parameters.key, "--parallelism", "1", "--threads", "1", ...parameters.args],
  });
}
const childEnv = { MYCEL_PASSWORD: password, MYCEL_LOG_LEVEL: "info" };

/** Section 1: the same stream from `mycel serve` and through gateway -> libp2p -> provider, interleaved. */
async function measureRouting(parameters: {
  model: Model;
  made: ReturnType<typeof generateTestModel>;
  local: MycelProcess;
  localUrl: string;
  gateway: MycelProcess;
  gatewayUrl: string;
  provider: MycelProcess;
  providerAddress: string;
}) {
  const { model } = parameters;
  console.log(
    `1. gateway -> libp2p -> provider vs local engine: model ${model.name} ` +
      `(${(parameters.made.parameterCount / 1e6).toFixed(1)}M params, ${parameters.made.quant}), ` +
      `max_tokens ${maxTokens}, temperature 0, seed ${benchSeed}`,
  );
  console.log(
    "   both: 1 sequence x 1 thread in their own process, streamed with the openai client from this process",
  );
  const pidsOf = (entries: MycelProcess[]) =>
    entries.flatMap((entry) => (entry.child.pid === undefined ? [] : [entry.child.pid]));
  const paths = [
    {
      label: "local: mycel serve",
      url: parameters.localUrl,
      pids: pidsOf([parameters.local]),
    },
    {
      label: "network: gateway -> libp2p -> provider",
      url: parameters.gatewayUrl,
      pids: pidsOf([parameters.gateway, parameters.provider]),
    },
  ];
  const cpuOf = (pids: number[]) => pids.reduce((sum, pid) => sum + (processCpuMs(pid) ?? Number.NaN), 0);
  const texts = new Set<string>();
  for (const path of paths)
    texts.add((await streamChat({ url: path.url, model: model.name, maxTokens })).text);
  const cpuWatch = watchOtherProcessesCpu();
  const samples = paths.map(() => [] as Sample[]);
  const serverCpuMs = paths.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    for (const index of round % 2 === 0 ? [0, 1] : [1, 0]) {
      const path = paths[index] as (typeof paths)[number];
      const cpuBefore = cpuOf(path.pids);
      const sample = await streamChat({ url: path.url, model: model.name, maxTokens });
      serverCpuMs[index]?.push(cpuOf(path.pids) - cpuBefore);
      if (index === 1 && sample.mycel?.providers?.[0]?.toLowerCase() !== parameters.providerAddress)
        throw new Error(`the gateway's answer names other providers: ${sample.mycel?.providers?.join(",")}`);
      samples[index]?.push(sample);
      texts.add(sample.text);
    }
  }
  const otherCpu = cpuWatch.stop();
  const [local, network] = samples.map(summarizeSamples) as [Summary, Summary];
  console.log(
    formatTable(
      ["path", "first token (ms)", "tokens/s", "completion tokens", "total (ms)", "server CPU (ms)"],
      [local, network].map((figures, index) => [
        paths[index]?.label ?? "",
        figures.firstTokenMs.toFixed(1),
        figures.tokensPerSecond.toFixed(1),
        String(figures.completionTokens),
        figures.totalMs.toFixed(0),
        median(serverCpuMs[index] ?? []).toFixed(0),
      ]),
    ),
  );
  const throughputRatio = network.tokensPerSecond / local.tokensPerSecond;
  const firstTokenOverheadMs = network.firstTokenMs - local.firstTokenMs;
  console.log(
    `(medians of ${rounds} rounds after 1 warm-up each, order alternating; server CPU: user + system time of ` +
      `serve, or of gateway + provider, per request; same greedy text on both paths: ${texts.size === 1 ? "yes" : "NO"})`,
  );
  console.log(
    `ratios: tokens/s network / local ${throughputRatio.toFixed(3)}, ` +
      `first token network / local ${(network.firstTokenMs / local.firstTokenMs).toFixed(3)}`,
  );
  console.log(`${describeOtherCpu(otherCpu)}\n`);
  return { throughputRatio, firstTokenOverheadMs };
}

/** One failover trial on a started pair: its table row; the time from the kill to the other's first token is pushed. */
async function runFailoverTrial(input: {
  gatewayUrl: string;
  pair: { model: Model; cheap: MycelProcess; dear: MycelProcess };
  trial: number;
  cpuWatch: ReturnType<typeof watchOtherProcessesCpu>;
  failoverMs: number[];
  /** Called once the failover is measured, before the reference request. */
  measured: () => void;
}): Promise<string[]> {
  const { gatewayUrl, pair, trial, cpuWatch, failoverMs } = input;
  // Both providers are untried, so the cheaper one wins the routing score (a request to it first would
  // change that: the gateway ranks untried providers optimistically, above measured ones).
  const dearAddress = ((await pair.dear.ready).address as string).toLowerCase();
  let killedAt: number | undefined;
  cpuWatch.sample();
  const sample = await streamChat({
    url: gatewayUrl,
    model: pair.model.name,
    maxTokens: failoverMaxTokens,
    messages: failoverMessages,
    onChunk: (count) => {
      if (count !== killAfterChunks) return;
      cpuWatch.sample();
      killedAt = performance.now();
      pair.cheap.child.kill("SIGKILL");
    },
  });
  if (killedAt === undefined)
    throw new Error(`trial ${trial + 1}: the stream ended after ${sample.chunkTimes.length} chunks`);
  const signers = (sample.mycel?.providers ?? []).map((address) => address.toLowerCase());
  if (signers.length !== 1 || signers[0] !== dearAddress || sample.mycel?.failovers !== 1)
    throw new Error(
      `trial ${trial + 1}: expected one failover to the other provider, got providers ` +
        `${signers.join(",")} after ${sample.mycel?.failovers} failovers`,
    );
  input.measured();
  // The same request again, now served by the other provider alone: the answer without failover.
  const reference = await streamChat({
    url: gatewayUrl,
    model: pair.model.name,
    maxTokens: failoverMaxTokens,
    messages: failoverMessages,
  });
  // The killed provider signs nothing: the other one's receipt says how many tokens it made; the rest came
  // from the killed one, some of them still in flight when it died. One token per content chunk is checked.
  const fromOther = sample.mycel?.receipts?.[0]?.message.completionTokens ?? Number.NaN;
  const fromKilled = sample.completionTokens - fromOther;
  // Chunks carry several tokens (a provider gathers them per 16 ms). On the test models' byte-level
  // tokenizer a token is one byte of text, so the chunk holding token number fromKilled + 1 is the first
  // one from the other provider; checked by the byte total matching the completion tokens.
  const perToken = sample.chunkBytes.reduce((sum, bytes) => sum + bytes, 0) === sample.completionTokens;
  const afterKill = sample.chunkTimes.findIndex((time) => time > (killedAt as number));
  let firstOther = afterKill;
  if (perToken) {
    let seen = 0;
    firstOther = sample.chunkBytes.findIndex((bytes) => {
      seen += bytes;
      return seen > fromKilled;
    });
  }
  const nextTokenMs = (sample.chunkTimes[firstOther] as number) - killedAt;
  failoverMs.push(nextTokenMs);
  return [
    String(trial + 1),
    String(fromKilled),
    String(
      fromKilled -
        sample.chunkBytes.reduce(
          (sum, bytes, index) =>
            (sample.chunkTimes[index] as number) <= (killedAt as number) ? sum + bytes : sum,
          0,
        ),
    ),
    afterKill < 0 ? "-" : ((sample.chunkTimes[afterKill] as number) - killedAt).toFixed(1),
    `${nextTokenMs.toFixed(1)}${perToken ? "" : " (first chunk after the kill)"}`,
    String(sample.completionTokens),
    sample.text === reference.text ? "yes" : "NO",
  ];
}

/** Section 3: per trial, a pair of providers of its own model; the cheaper is killed mid-stream. */
async function measureFailover(parameters: {
  home: string;
  models: Model[];
  seedAddress: string;
  gatewayUrl: string;
}) {
  const { gatewayUrl } = parameters;
  console.log(
    `3. failover: ${failoverTrials} trials, each 2 providers of its own tiny model (prices ${cheapPrice} and ` +
      `${dearPrice}: the gateway routes to the cheaper), max_tokens ${failoverMaxTokens}; the cheaper is ` +
      `SIGKILLed when the client has read ${killAfterChunks} content chunks`,
  );
  const startPair = (model: Model, trial: number) => {
    const pairProvider = (kind: "cheap" | "dear") =>
      startProvider({
        home: parameters.home,
        name: `failover ${trial + 1} ${kind}`,
        key: `failover-${trial + 1}-${kind}`,
        args: [
          "--model",
          model.hash,
          "--price",
          String(kind === "cheap" ? cheapPrice : dearPrice),
          "--bootstrap",
          parameters.seedAddress,
        ],
      });
    return { model, cheap: pairProvider("cheap"), dear: pairProvider("dear") };
  };
  const cpuWatch = watchOtherProcessesCpu();
  const rows: string[][] = [];
  const failoverMs: number[] = [];
  const listedMs: number[] = [];
  // One pair at a time, stopped after its trial: 20 providers starting at once on a small machine took minutes
  // to be ready, and idle ones only add noise to the trials that follow.
  // The next pair starts once a trial's failover is measured, while its reference request runs.
  let next: { pair: ReturnType<typeof startPair>; startedAt: number } | undefined;
  const startNext = (trial: number) => {
    const model = parameters.models[trial];
    if (model) next = { pair: startPair(model, trial), startedAt: performance.now() };
  };
  startNext(0);
  try {
    for (let trial = 0; next; trial++) {
      const { pair, startedAt } = next;
      next = undefined;
      try {
        await Promise.all([whenReady(pair.cheap), whenReady(pair.dear)]);
        await requireServing({ gatewayUrl, modelHash: pair.model.hash, count: 2 });
        listedMs.push(performance.now() - startedAt);
        const measured = () => startNext(trial + 1);
        rows.push(await runFailoverTrial({ gatewayUrl, pair, trial, cpuWatch, failoverMs, measured }));
      } finally {
        await stopProcesses([pair.cheap, pair.dear], 0);
      }
    }
  } finally {
    if (next) await stopProcesses([next.pair.cheap, next.pair.dear], 0);
  }
  const otherCpu = cpuWatch.stop();
  console.log(
    formatTable(
      [
        "trial",
        "tokens from killed",
        "of them after kill",
        "kill -> any chunk (ms)",
        "kill -> other's 1st (ms)",
        "completion tokens",
        "same text",
      ],
      [
        ...rows,
        ["median", "", "", "", median(failoverMs).toFixed(1), "", ""],
        ["worst", "", "", "", Math.max(...failoverMs).toFixed(1), "", ""],
      ],
    ),
  );
  console.log(
    "(tokens from killed: completion tokens minus the other provider's receipt; same text: as the same " +
      "request served by the other provider alone; each pair was started just before its trial and listed by " +
      `the gateway in median ${seconds(median(listedMs))} s)`,
  );
  console.log(`${describeOtherCpu(otherCpu)}\n`);
  return { worstSeconds: Math.max(...failoverMs) / 1000, medianSeconds: median(failoverMs) / 1000 };
}

async function main() {
  const runStarted = performance.now();
  const home = await mkdtemp(join(tmpdir(), "mycel-bench-network-"));
  // On Ctrl-C or SIGTERM the children are killed and this folder removed even though `finally` does not run.
  onAbruptExit(() => rmSync(home, { recursive: true, force: true }));
  try {
    // Models and keys, before anything is measured.
    const store = openModelStore({ home });
    const addModel = async (made: ReturnType<typeof generateTestModel>) =>
      (await store.addBytes({ bytes: made.bytes, name: made.name, source: "bench/network" })).model;
    const smallMade = generateTestModel({ size: "small" });
    const small = await addModel(smallMade);
    const failoverModels: Model[] = [];
    for (let trial = 0; trial < failoverTrials; trial++)
      failoverModels.push(await addModel(generateTestModel({ size: "tiny", seed: 2 + trial })));
    const keyNames = [
      "gateway",
      "seed",
      ...failoverModels.flatMap((_, trial) => [`failover-${trial + 1}-cheap`, `failover-${trial + 1}-dear`]),
    ];
    await Promise.all(
      keyNames.map((name) =>
        createKeystore({ home, name, password, privateKey: devPrivateKey(`bench-network:${name}`) }),
      ),
    );

    // The seed provider (the small model: the provider of section 1) and `mycel serve`, then the gateway.
    const preparedAt = performance.now();
    const seedProvider = startProvider({
      home,
      name: "provider (small)",
      key: "seed",
      args: ["--model", small.hash],
    });
    const local = spawnMycel({
      name: "serve (small)",
      home,
      env: childEnv,
      args: ["serve", "--model", small.hash, "--port", "0", "--parallelism", "1", "--threads", "1"],
    });
    const seedReady = await whenReady(seedProvider);
    const seedAddress = (seedReady.multiaddrs as string[])[0];
    if (!seedAddress) throw new Error("the seed provider printed no multiaddr");
    const gateway = spawnMycel({
      name: "gateway",
      home,
      env: childEnv,
      args: ["gateway", "--key", "gateway", "--port", "0", "--bootstrap", seedAddress],
    });
    const localUrl = (await whenReady(local)).url as string;
    const gatewayUrl = (await whenReady(gateway)).url as string;
    await requireServing({ gatewayUrl, modelHash: small.hash, count: 1 });
    console.log(
      `setup: ${((performance.now() - runStarted) / 1000).toFixed(1)} s (models and ${keyNames.length} ` +
        `keystores ${((preparedAt - runStarted) / 1000).toFixed(1)} s, then provider, serve and gateway up ` +
        `${((performance.now() - preparedAt) / 1000).toFixed(1)} s); every process on 127.0.0.1\n`,
    );

    const routing = await measureRouting({
      model: small,
      made: smallMade,
      local,
      localUrl,
      gateway,
      gatewayUrl,
      provider: seedProvider,
      providerAddress: (seedReady.address as string).toLowerCase(),
    });
    await stopProcesses([local]);
    const discoveryHome = join(home, "discovery");
    await mkdir(discoveryHome, { recursive: true });
    const discovery = await runDiscoveryBench({ home: discoveryHome, heading: "2. discovery" });
    const failover = await measureFailover({
      home,
      models: failoverModels,
      seedAddress,
      gatewayUrl,
    });

    console.log(
      `tokens/s ratio (network / local): ${roundDown(routing.throughputRatio, 2).toFixed(2)} ` +
        `(target >= ${targets.throughputRatio}) ${verdict(routing.throughputRatio >= targets.throughputRatio)}`,
    );
    console.log(
      `first-token overhead (network - local): ${roundUp(routing.firstTokenOverheadMs, 1).toFixed(1)} ms ` +
        `(target <= ${targets.firstTokenOverheadMs} ms) ` +
        verdict(routing.firstTokenOverheadMs <= targets.firstTokenOverheadMs),
    );
    for (const line of discoveryVerdicts(discovery)) console.log(line);
    console.log(
      `failover, provider killed -> next token from the other (worst of ${failoverTrials}, median ` +
        `${roundUp(failover.medianSeconds, 2).toFixed(2)} s): ${roundUp(failover.worstSeconds, 2).toFixed(2)} s ` +
        `(target <= ${targets.failoverSeconds} s) ${verdict(failover.worstSeconds <= targets.failoverSeconds)}`,
    );
  } finally {
    await stopAll();
    await rm(home, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
// 4. Through a relay and after the DCUtR upgrade, beside direct (network namespaces; skipped without root).
await measureRelay({ section: "4" });
