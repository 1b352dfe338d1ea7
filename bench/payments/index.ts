/**
 * Payments benchmark: what paying per token through payment channels costs, in one run on a real anvil.
 * (1) tokens/s of a gateway -> provider pair that pays with vouchers vs the same pair serving free, streams
 * interleaved; (2) vouchers a provider checks and stores per second on one core (signature recovery plus the
 * durable SQLite write), with recovery alone and the write alone for comparison. Run with
 * `npm run bench:payments`; see bench/payments/README.md.
 */
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { type Address, formatEther, type Hex, isAddressEqual, keccak256, parseEther, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  type AnvilProcess,
  anvilDeployerKey,
  type ChainConnection,
  connectChain,
  type Deployments,
  deployMycel,
  deploymentVoucherDomain,
  devnetDeployParameters,
  fundDevAccounts,
  getChannel,
  openChannel,
  startAnvil,
  withSigner,
  writeDeployments,
} from "../../src/chain/index.ts";
import { roleDefaults } from "../../src/config/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { createProviderPayments } from "../../src/payments/index.ts";
import { priceOfTokens, recoverVoucherSigner, signVoucher } from "../../src/protocol/index.ts";
import { openPaymentStore } from "../../src/store/index.ts";
import {
  type MycelProcess,
  onAbruptExit,
  processCpuMs,
  spawnMycel,
  stopAll,
  stopProcesses,
  watchOtherProcessesCpu,
  whenReady,
} from "../network/processes.ts";
import { formatTable, median, roundDown, verdict } from "../shared/report.ts";

/** Rounds of section 1: one stream per pair each, the order rotating. */
const rounds = 24;
/** Pause after each stream of section 1, for the vouchers sent after the answer. */
const settleMs = 50;
const maxTokens = 256;
/** The smallest credit window `mycel provider --credit-tokens` takes (the informational row of section 1). */
const smallCreditTokens = 32;
const seed = 42;
/** Vouchers checked in section 2 (after one that loads the channel from the chain, not timed). */
const voucherCount = 2_000;
/** Longest wait for the gateway's final vouchers to be acknowledged after the last answer. */
const paymentWaitMs = 10_000;
const password = "mycel-bench-payments";
const targets = { throughputRatio: 0.97, vouchersPerSecond: 200 };
const messages: { role: "user"; content: string }[] = [
  {
    role: "user",
    content:
      "Write a short story about a mycelium network that carries messages between the trees of a forest.",
  },
];

const runStarted = performance.now();
function progress(message: string) {
  process.stderr.write(`[payments ${((performance.now() - runStarted) / 1000).toFixed(1)} s] ${message}\n`);
}

/** The part of Mycel's `mycel` extension (on the last chunk) this bench reads. */
type MycelExtension = {
  providers?: string[];
  receipts?: { message: { price: string; completionTokens: number } }[];
};

type Sample = {
  firstTokenMs: number;
  totalMs: number;
  completionTokens: number;
  mycel: MycelExtension | undefined;
};

/** Streams one chat completion with the openai client: greedy, seed 42, usage included. */
async function streamChat(client: OpenAI, model: string): Promise<Sample> {
  const started = performance.now();
  const stream = await client.chat.completions.create({
    model,
    messages,
    max_tokens: maxTokens,
    temperature: 0,
    seed,
    stream: true,
    stream_options: { include_usage: true },
  });
  let firstTokenMs: number | undefined;
  let completionTokens: number | undefined;
  let mycel: MycelExtension | undefined;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) firstTokenMs ??= performance.now() - started;
    if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    const extension = (chunk as { mycel?: MycelExtension }).mycel;
    if (extension) mycel = extension;
  }
  const totalMs = performance.now() - started;
  if (completionTokens === undefined) throw new Error("the stream ended without a usage chunk");
  return { firstTokenMs: firstTokenMs ?? totalMs, totalMs, completionTokens, mycel };
}

/** The chain: anvil with the contracts deployed, and the deployer's connection. */
type Chain = { anvil: AnvilProcess; deployer: ChainConnection; deployments: Deployments };

/**
 * The pairs of section 1: free; paying with the provider's default credit window (512 tokens: a voucher
 * every 256); and, for information, paying with the smallest window `mycel provider` takes (a voucher every 16).
 */
const modes = [
  { name: "off", label: "off (free)", paid: false, providerArgs: [] },
  { name: "on", label: "on (vouchers)", paid: true, providerArgs: [] },
  {
    name: "on-credit-32",
    label: `on, --credit-tokens ${smallCreditTokens}`,
    paid: true,
    providerArgs: ["--credit-tokens", String(smallCreditTokens)],
  },
] as const;
type Mode = (typeof modes)[number];
type ModeName = Mode["name"];

/** One provider + gateway pair, in its own MYCEL_HOME. */
type Pair = {
  mode: Mode;
  provider: MycelProcess;
  gateway: MycelProcess;
  gatewayUrl: string;
  providerAddress: string;
  client: OpenAI;
};

/** What a gateway's GET /mycel/v1/usage answers (the parts read here). */
type Usage = {
  total: { completion_tokens: number; cost: string };
  payments: {
    deposited: string;
    paid: string;
    channels: { channel_id: Hex; provider: string; paid: string; acknowledged: string }[];
  } | null;
};

async function getUsage(gatewayUrl: string): Promise<Usage> {
  const response = await fetch(`${gatewayUrl}/mycel/v1/usage`);
  if (!response.ok) throw new Error(`GET /mycel/v1/usage answered ${response.status}`);
  return (await response.json()) as Usage;
}

/** Waits until the gateway lists a provider of the model (GET /mycel/v1/providers). */
async function requireServing(gatewayUrl: string, modelHash: string) {
  const wanted = `0x${modelHash}`.toLowerCase();
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const response = await fetch(`${gatewayUrl}/mycel/v1/providers`);
    const listed = ((await response.json()) as { data: { models: { hash: string }[] }[] }).data;
    if (listed.some((entry) => entry.models.some((model) => model.hash.toLowerCase() === wanted))) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the gateway at ${gatewayUrl} lists no provider of the model after 30 s`);
}

/**
 * Starts a provider (1 sequence x 1 thread, default price) and a gateway bootstrapping to it, in `home`; with
 * `chain`, both get --rpc-url and --deployments (the provider asks for vouchers, the gateway pays).
 */
async function startPair(parameters: {
  mode: Mode;
  home: string;
  modelHash: string;
  chain?: { rpcUrl: string; deploymentsPath: string };
}): Promise<Pair> {
  const { mode, home } = parameters;
  // No chain from the environment either: an empty variable counts as unset.
  const env = { MYCEL_PASSWORD: password, MYCEL_LOG_LEVEL: "info", MYCEL_RPC_URL: "", MYCEL_DEPLOYMENTS: "" };
  const chainArgs = parameters.chain
    ? ["--rpc-url", parameters.chain.rpcUrl, "--deployments", parameters.chain.deploymentsPath]
    : [];
  const provider = spawnMycel({
    name: `provider (${mode.label})`,
    home,
    env,
    args: [
      "provider",
      "--key",
      "provider",
      "--model",
      parameters.modelHash,
      "--parallelism",
      "1",
      "--threads",
      "1",
      ...mode.providerArgs,
      ...chainArgs,
    ],
  });
  const providerReady = await whenReady(provider);
  const bootstrap = (providerReady.multiaddrs as string[])[0];
  if (!bootstrap) throw new Error(`the provider (${mode.label}) printed no multiaddr`);
  const gateway = spawnMycel({
    name: `gateway (${mode.label})`,
    home,
    env,
    // The benchmark's provider is not registered on chain: the gateway is told to route to it anyway.
    args: [
      "gateway",
      "--key",
      "gateway",
      "--port",
      "0",
      "--bootstrap",
      bootstrap,
      ...chainArgs,
      ...(parameters.chain ? ["--allow-unstaked"] : []),
    ],
  });
  const gatewayUrl = (await whenReady(gateway)).url as string;
  await requireServing(gatewayUrl, parameters.modelHash);
  return {
    mode,
    provider,
    gateway,
    gatewayUrl,
    providerAddress: (providerReady.address as string).toLowerCase(),
    client: new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: "none", maxRetries: 0 }),
  };
}

/** Checks that an answer came from the pair's own provider, whole, with a priced receipt. */
function checkAnswer(pair: Pair, sample: Sample) {
  const providers = sample.mycel?.providers ?? [];
  if (providers.length !== 1 || providers[0]?.toLowerCase() !== pair.providerAddress)
    throw new Error(
      `the gateway's answer (${pair.mode.label}) names other providers: ${providers.join(",")}`,
    );
  if (sample.completionTokens !== maxTokens)
    throw new Error(`an answer (${pair.mode.label}) has ${sample.completionTokens} tokens, not ${maxTokens}`);
  const price = BigInt(sample.mycel?.receipts?.[0]?.message.price ?? "0");
  if (price <= 0n) throw new Error(`an answer's receipt (${pair.mode.label}) has no price`);
}

type ModeFigures = {
  tokens: number;
  wallMs: number;
  requestTokensPerSecond: number[];
  firstTokenMs: number[];
};

/**
 * Checks that a paying gateway paid for every receipt and its provider acknowledged it (GET /mycel/v1/usage),
 * waiting a little for the final vouchers; returns the channel and what was paid.
 */
async function checkPaid(pair: Pair) {
  const deadline = performance.now() + paymentWaitMs;
  const paidUp = (current: Usage) =>
    current.payments !== null &&
    BigInt(current.payments.paid) === BigInt(current.total.cost) &&
    current.payments.channels.every((channel) => channel.acknowledged === channel.paid);
  let usage = await getUsage(pair.gatewayUrl);
  while (!paidUp(usage) && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    usage = await getUsage(pair.gatewayUrl);
  }
  if (!usage.payments || BigInt(usage.payments.paid) <= 0n)
    throw new Error(`the gateway (${pair.mode.label}) paid nothing: ${JSON.stringify(usage)}`);
  const channel = usage.payments.channels[0];
  if (usage.payments.channels.length !== 1 || !channel)
    throw new Error(`the gateway (${pair.mode.label}) has ${usage.payments.channels.length} channels, not 1`);
  const paid = BigInt(usage.payments.paid);
  const cost = BigInt(usage.total.cost);
  if (paid !== cost || channel.acknowledged !== channel.paid)
    throw new Error(
      `the gateway (${pair.mode.label}) paid ${paid} (${channel.acknowledged} acknowledged), not the ${cost} ` +
        `its receipts cost, ${paymentWaitMs / 1000} s after the last answer`,
    );
  return { channelId: channel.channel_id, paid, deposited: BigInt(usage.payments.deposited) };
}

/** Section 1: the same streams through the free pair and the paying pairs, interleaved. */
async function measureThroughput(parameters: {
  root: string;
  chain: Chain;
  made: ReturnType<typeof generateTestModel>;
}) {
  const { chain, made } = parameters;
  // Each pair has a home of its own: a gateway keeps its receipts and channels in its home.
  const homeOf = (mode: Mode) => join(parameters.root, mode.name);
  let modelHash = "";
  const toFund: Address[] = [];
  for (const mode of modes) {
    const store = openModelStore({ home: homeOf(mode) });
    const added = await store.addBytes({ bytes: made.bytes, name: made.name, source: "bench/payments" });
    modelHash = added.model.hash;
    for (const role of ["provider", "gateway"]) {
      const created = await createKeystore({
        home: homeOf(mode),
        name: role,
        password,
        privateKey: devPrivateKey(`bench-payments:${mode.name}:${role}`),
      });
      if (mode.paid) toFund.push(created.address);
    }
  }
  // The paying gateways need ETH and MYC (they open a channel); the providers ETH for settlement gas.
  await fundDevAccounts(chain.deployer, { deployments: chain.deployments, accounts: toFund });
  progress(`models, keystores and funding done; starting ${modes.length} provider + gateway pairs`);
  const started = await Promise.all(
    modes.map((mode) => {
      if (!mode.paid) return startPair({ mode, home: homeOf(mode), modelHash });
      const deploymentsPath = join(homeOf(mode), "deployments.json");
      writeDeployments(deploymentsPath, chain.deployments);
      return startPair({
        mode,
        home: homeOf(mode),
        modelHash,
        chain: { rpcUrl: chain.anvil.rpcUrl, deploymentsPath },
      });
    }),
  );
  const pairs = new Map(started.map((pair) => [pair.mode.name, pair]));
  progress("all pairs up; warming up (the paying gateways open their channels now)");
  for (const pair of started) checkAnswer(pair, await streamChat(pair.client, made.name));

  console.log(
    `1. tokens/s with payments on vs off: model ${made.name} ` +
      `(${(made.parameterCount / 1e6).toFixed(1)}M params, ${made.quant}), max_tokens ${maxTokens}, ` +
      `temperature 0, seed ${seed}`,
  );
  console.log(
    "   each row: its own provider (--parallelism 1 --threads 1, default price " +
      `${roleDefaults.pricePerMillion} per 1M tokens) and gateway process; on: both with --rpc-url/--deployments`,
  );
  // CPU time of each pair's processes over the whole section (the vouchers paying for an answer are handled
  // just after it), per request.
  const cpuOf = (entry: MycelProcess) =>
    entry.child.pid === undefined ? Number.NaN : (processCpuMs(entry.child.pid) ?? Number.NaN);
  const cpuAtStart = new Map(started.map((pair) => [pair, [cpuOf(pair.gateway), cpuOf(pair.provider)]]));
  const figures = new Map<ModeName, ModeFigures>(
    modes.map((mode) => [mode.name, { tokens: 0, wallMs: 0, requestTokensPerSecond: [], firstTokenMs: [] }]),
  );
  const cpuWatch = watchOtherProcessesCpu();
  for (let round = 0; round < rounds; round++) {
    // One stream per pair a round, the order rotating: no pair always goes first or follows the same one.
    for (let index = 0; index < modes.length; index++) {
      const mode = modes[(index + round) % modes.length] as Mode;
      const pair = pairs.get(mode.name) as Pair;
      const figure = figures.get(mode.name) as ModeFigures;
      const sample = await streamChat(pair.client, made.name);
      checkAnswer(pair, sample);
      figure.tokens += sample.completionTokens;
      figure.wallMs += sample.totalMs;
      figure.requestTokensPerSecond.push(sample.completionTokens / (sample.totalMs / 1000));
      figure.firstTokenMs.push(sample.firstTokenMs);
      // The vouchers that pay for an answer follow it: let them be handled before the next pair streams.
      await new Promise((resolve) => setTimeout(resolve, settleMs));
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
  const cpuPerRequest = (pair: Pair) => {
    const [gateway, provider] = cpuAtStart.get(pair) as number[];
    return {
      gateway: (cpuOf(pair.gateway) - (gateway as number)) / rounds,
      provider: (cpuOf(pair.provider) - (provider as number)) / rounds,
    };
  };
  const otherCpu = cpuWatch.stop();
  const tokensPerSecond = (name: ModeName) => {
    const figure = figures.get(name) as ModeFigures;
    return figure.tokens / (figure.wallMs / 1000);
  };
  console.log(
    formatTable(
      [
        "payments",
        "requests",
        "completion tokens",
        "stream time (s)",
        "tokens/s",
        "per stream min-max",
        "first token (ms)",
        "CPU ms/request: gateway",
        "provider",
        "on / off",
      ],
      modes.map((mode) => {
        const figure = figures.get(mode.name) as ModeFigures;
        const cpu = cpuPerRequest(pairs.get(mode.name) as Pair);
        return [
          mode.label,
          String(rounds),
          String(figure.tokens),
          (figure.wallMs / 1000).toFixed(2),
          tokensPerSecond(mode.name).toFixed(1),
          `${Math.min(...figure.requestTokensPerSecond).toFixed(0)}-${Math.max(...figure.requestTokensPerSecond).toFixed(0)}`,
          median(figure.firstTokenMs).toFixed(1),
          cpu.gateway.toFixed(0),
          cpu.provider.toFixed(0),
          mode.paid ? (tokensPerSecond(mode.name) / tokensPerSecond("off")).toFixed(3) : "-",
        ];
      }),
    ),
  );
  console.log(
    `(${rounds} rounds of one stream per pair, order rotating, after 1 warm-up each; tokens/s: all completion ` +
      "tokens / summed stream times; first token: median; CPU: user + system time of the pair's processes over the " +
      "section, per request)",
  );
  console.log(
    otherCpu === undefined
      ? "other processes' CPU: unknown (no /proc)"
      : `other processes used ${(otherCpu * 100).toFixed(0)}% of the machine's CPU meanwhile` +
          (otherCpu > 0.05 ? ": noisier than on an idle machine" : ""),
  );

  // The payments really happened: each paying gateway paid for every receipt, its provider acknowledged it,
  // and the provider, which settles what it holds when it stops, got it on chain.
  const free = pairs.get("off") as Pair;
  if ((await getUsage(free.gatewayUrl)).payments !== null)
    throw new Error("the free gateway reports payments");
  const rows: string[][] = [];
  for (const mode of modes.filter((entry) => entry.paid)) {
    const pair = pairs.get(mode.name) as Pair;
    const paid = await checkPaid(pair);
    await stopProcesses([pair.gateway]);
    await stopProcesses([pair.provider], 14_000);
    const record = await getChannel(chain.deployer, {
      deployments: chain.deployments,
      channelId: paid.channelId,
    });
    rows.push([
      mode.label,
      `${paid.channelId.slice(0, 10)}…`,
      `${formatEther(paid.deposited)} MYC`,
      String(paid.paid),
      "yes",
      `${record.settled}${record.settled === paid.paid ? "" : " (NOT what was paid)"}`,
    ]);
  }
  await stopProcesses([free.gateway, free.provider]);
  console.log(
    formatTable(
      [
        "payments",
        "channel",
        "deposit",
        "paid (units)",
        "paid = cost, acknowledged",
        "settled on chain at stop",
      ],
      rows,
    ),
  );
  console.log(
    `(GET /mycel/v1/usage of each paying gateway after ${rounds + 1} requests, warm-up ` +
      `included: payments.paid = total.cost and every voucher acknowledged; 1 MYC = 10^18 units)\n`,
  );
  return tokensPerSecond("on") / tokensPerSecond("off");
}

/** Section 2: in this process, a provider's payments over a temporary store checking pre-signed vouchers. */
async function measureVouchers(parameters: { root: string; chain: Chain }) {
  const { chain } = parameters;
  const { deployments } = chain;
  const providerKey = devPrivateKey("bench-payments:vouchers:provider");
  const clientKey = devPrivateKey("bench-payments:vouchers:client");
  const provider = privateKeyToAccount(providerKey).address;
  const clientAddress = privateKeyToAccount(clientKey).address;
  await fundDevAccounts(chain.deployer, { deployments, accounts: [provider, clientAddress] });
  const opened = await openChannel(withSigner(chain.deployer, clientKey), {
    deployments,
    provider,
    amount: parseEther("1000"),
  });
  const store = openPaymentStore({
    path: join(parameters.root, "vouchers", "payments.sqlite"),
    chain: "bench",
  });
  const writeStore = openPaymentStore({
    path: join(parameters.root, "vouchers-write", "payments.sqlite"),
    chain: "bench",
  });
  try {
    const payments = createProviderPayments({
      connection: withSigner(chain.deployer, providerKey),
      deployments,
      store,
      provider,
      outputPricePerMillion: roleDefaults.pricePerMillion,
      creditWindowTokens: 512,
    });
    const domain = deploymentVoucherDomain(deployments);
    // One voucher per 256 output tokens at the default price: far below the 1-token settlement threshold.
    const step = priceOfTokens({
      promptTokens: 0,
      completionTokens: 256,
      pricePerMillion: { input: 0n, output: roleDefaults.pricePerMillion },
    });
    const amounts = Array.from({ length: voucherCount + 1 }, (_, index) => step * BigInt(index + 1));
    progress(`signing ${voucherCount + 1} vouchers`);
    const signStarted = performance.now();
    const signatures: Hex[] = [];
    for (const cumulativeAmount of amounts)
      signatures.push(
        await signVoucher({
          privateKey: clientKey,
          domain,
          message: { channelId: opened.channelId, cumulativeAmount },
        }),
      );
    const signMs = performance.now() - signStarted;
    // The first voucher reads the channel from the chain; it is cached after that.
    await payments.acceptVoucher({
      channelId: opened.channelId,
      cumulativeAmount: amounts[0] as bigint,
      signature: signatures[0] as Hex,
    });

    /** Runs `body` over vouchers 1..N; wall and CPU time (this process: one thread runs all of it). */
    async function timed(body: (index: number) => Promise<void> | void) {
      const cpu = process.cpuUsage();
      const started = performance.now();
      for (let index = 1; index <= voucherCount; index++) await body(index);
      const wallMs = performance.now() - started;
      const used = process.cpuUsage(cpu);
      return { wallMs, cpuMs: (used.user + used.system) / 1000 };
    }
    progress(`checking ${voucherCount} vouchers with acceptVoucher`);
    const accepted = await timed(async (index) => {
      await payments.acceptVoucher({
        channelId: opened.channelId,
        cumulativeAmount: amounts[index] as bigint,
        signature: signatures[index] as Hex,
      });
    });
    const latest = store.latestVoucher(opened.channelId);
    if (latest?.cumulativeAmount !== amounts[voucherCount])
      throw new Error(`the store holds ${latest?.cumulativeAmount}, not the last voucher`);
    progress(`recovering ${voucherCount} signers`);
    const recovered = await timed(async (index) => {
      const signer = await recoverVoucherSigner({
        domain,
        message: { channelId: opened.channelId, cumulativeAmount: amounts[index] as bigint },
        signature: signatures[index] as Hex,
      });
      if (!isAddressEqual(signer, clientAddress)) throw new Error(`voucher ${index} recovered to ${signer}`);
    });
    // The same durable writes on a channel of their own in a second store: what the write alone costs.
    const writeChannel = keccak256(toHex("bench-payments:write-only"));
    const written = await timed((index) => {
      writeStore.saveVoucher({
        channelId: writeChannel,
        provider,
        client: clientAddress,
        cumulativeAmount: amounts[index] as bigint,
        signature: signatures[index] as Hex,
      });
    });

    console.log(
      `2. vouchers checked per second on one core: ${voucherCount} pre-signed vouchers of increasing amounts ` +
        "on one open channel, one after another, in this process",
    );
    const rows = [
      ["acceptVoucher (checks, recovery, durable write)", accepted],
      ["signature recovery only (recoverVoucherSigner)", recovered],
      ["durable write only, back to back (saveVoucher)", written],
      ["signing (signVoucher, the gateway's side)", { wallMs: signMs, cpuMs: Number.NaN }],
    ] as const;
    console.log(
      formatTable(
        ["operation", "vouchers/s", "ms/voucher", "CPU ms/voucher"],
        rows.map(([label, time]) => [
          label,
          (voucherCount / (time.wallMs / 1000)).toFixed(0),
          (time.wallMs / voucherCount).toFixed(3),
          Number.isNaN(time.cpuMs) ? "-" : (time.cpuMs / voucherCount).toFixed(3),
        ]),
      ),
    );
    console.log(
      "(wall-clock rates; JavaScript and better-sqlite3's synchronous calls run on the one main thread, so " +
        "vouchers/s is per core; the channel is cached after the first voucher, which is not timed)",
    );
    console.log(
      `the store is SQLite in WAL mode with synchronous=FULL under ${tmpdir()}: each voucher's commit waits ` +
        `for the disk's flush, ${((accepted.wallMs - accepted.cpuMs) / voucherCount).toFixed(3)} ms per voucher ` +
        "in acceptVoucher here (wall - CPU); what a flush costs depends on the disk and how busy it is\n",
    );
    return voucherCount / (accepted.wallMs / 1000);
  } finally {
    store.close();
    writeStore.close();
  }
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), "mycel-bench-payments-"));
  let anvil: AnvilProcess | undefined;
  // On Ctrl-C or SIGTERM the children are killed and this folder removed even though `finally` does not run
  // (anvil stops by itself when this process's end of its watcher's pipe closes).
  onAbruptExit(() => rmSync(root, { recursive: true, force: true }));
  try {
    progress("starting anvil and deploying the contracts");
    anvil = await startAnvil({ gasLimit: 100_000_000n });
    const deployer = await connectChain({ rpcUrl: anvil.rpcUrl, privateKey: anvilDeployerKey });
    const deployments = await deployMycel(deployer, { parameters: devnetDeployParameters });
    const chain: Chain = { anvil, deployer, deployments };
    const made = generateTestModel({ size: "small" });
    console.log(
      `setup: anvil (chain ${deployments.chainId}) with the contracts deployed, devnet parameters, in ` +
        `${((performance.now() - runStarted) / 1000).toFixed(1)} s; every process on 127.0.0.1\n`,
    );
    const ratio = await measureThroughput({ root, chain, made });
    const vouchersPerSecond = await measureVouchers({ root, chain });

    console.log(
      `tokens/s ratio (payments on / off): ${roundDown(ratio, 2).toFixed(2)} ` +
        `(target >= ${targets.throughputRatio}) ${verdict(ratio >= targets.throughputRatio)}`,
    );
    console.log(
      `vouchers verified per second per core: ${Math.floor(vouchersPerSecond)} ` +
        `(target >= ${targets.vouchersPerSecond}) ${verdict(vouchersPerSecond >= targets.vouchersPerSecond)}`,
    );
  } finally {
    await stopAll();
    await anvil?.stop();
    await rm(root, { recursive: true, force: true });
    process.stderr.write(`runtime: ${((performance.now() - runStarted) / 1000).toFixed(1)} s\n`);
  }
}

await main();
