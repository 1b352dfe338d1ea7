/** The long-running roles behind `mycel provider`, `mycel gateway` and `mycel devnet`, loaded only when one runs. */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type Hex, parseEther } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { startApiServer } from "../api/index.ts";
import {
  type AnvilProcess,
  anvilDeployerKey,
  type ChainConnection,
  connectChain,
  type Deployments,
  defaultDeploymentsPath,
  deployMycel,
  deploymentReceiptDomain,
  devnetDeployParameters,
  fundDevAccounts,
  fundRewards,
  getProviderRecord,
  getProviderStanding,
  getTokenInfo,
  maxScore,
  parseTokenAmount,
  readValidatorStake,
  registerModel,
  registerProvider,
  registerValidator,
  startAnvil,
  withSigner,
  writeDeployments,
} from "../chain/index.ts";
import type { MycelConfig } from "../config/index.ts";
import { createEngine } from "../engine/index.ts";
import { describeError, MycelError } from "../errors/index.ts";
import { createExplorer } from "../explorer/index.ts";
import { startGateway } from "../gateway/index.ts";
import { createKeystore, devPrivateKey, KeystoreExistsError } from "../identity/index.ts";
import { createLogger, type Logger } from "../log/index.ts";
import { generateTestModel, type ModelRecord, openModelStore } from "../model/index.ts";
import { createMycelNode, libp2pKeyFromSecp256k1, peerIdOfSecp256k1Key } from "../p2p/index.ts";
import { createGatewayPayments, createProviderPayments, type GatewayPayments } from "../payments/index.ts";
import { modelHashToBytes32 } from "../protocol/index.ts";
import { startProvider } from "../provider/index.ts";
import {
  gatewayPaymentStorePath,
  openAuditStore,
  openEvidenceStore,
  openPaymentStore,
  openReceiptStore,
  type PaymentStore,
  providerEvidenceStorePath,
  providerPaymentStorePath,
  validatorStorePath,
} from "../store/index.ts";
import { chainRequested, openChain } from "./chain.ts";
import {
  defaultGatewayBudget,
  defaultGatewayDeposit,
  defaultPricePerMillion,
  devnetPassword,
  exitWithParent,
  type GatewayFlags,
  loadKey,
  type ProviderFlags,
  type ValidatorFlags,
} from "./network.ts";

/** Logs what the chain says about this provider: registered, stake, whether it offers the models it serves. */
async function logProviderRegistration(parameters: {
  connection: ChainConnection;
  deployments: Deployments;
  privateKey: Hex;
  modelHashes: string[];
  logger: Logger;
}) {
  const { logger } = parameters;
  const account = privateKeyToAccount(parameters.privateKey).address;
  const record = await getProviderRecord(parameters.connection, {
    deployments: parameters.deployments,
    provider: account,
  });
  if (!record) {
    logger.warn("not registered on chain: gateways and validators cannot see a stake", {
      chainId: parameters.deployments.chainId,
      hint: "mycel provider stake <amount> --model <model>",
    });
    return;
  }
  const offered = new Set(record.offers.map((offer) => offer.modelHash.slice(2).toLowerCase()));
  const missing = parameters.modelHashes.filter((hash) => !offered.has(hash.toLowerCase()));
  logger.info("registered on chain", {
    chainId: parameters.deployments.chainId,
    stake: record.stake.toString(),
    active: record.active,
  });
  if (missing.length > 0)
    logger.warn("serving models the chain record does not offer", { models: missing.join(",") });
}

/** Prints a machine-readable line that `mycel devnet` (and tests) wait for. */
function printReady(fields: Record<string, unknown>) {
  console.log(`MYCEL_READY ${JSON.stringify(fields)}`);
}

/** How long a role may take to shut down (a provider settles its vouchers first) before it is forced. */
const shutdownLimitMs = 15_000;

function onShutdown(logger: Logger, close: () => Promise<void>) {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    const force = setTimeout(() => process.exit(0), shutdownLimitMs);
    force.unref();
    await close().catch((error) => logger.warn("shutdown failed", { error: describeError(error) }));
    process.exit(0);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
}

/** Runs `mycel provider` until SIGINT/SIGTERM. */
export async function runProviderRole(parameters: {
  flags: ProviderFlags;
  config: MycelConfig;
  version: string;
}) {
  const { flags, config } = parameters;
  const logger = createLogger().child({ role: "provider" });
  exitWithParent(logger);
  const privateKey = await loadKey({ home: config.home, name: flags.key });
  const store = openModelStore({ home: config.home });
  const records: ModelRecord[] = [];
  for (const query of flags.model ?? []) records.push(await store.resolve(query));
  const chain = chainRequested(flags) ? await openChain({ home: config.home, flags, privateKey }) : undefined;
  if (chain)
    await logProviderRegistration({
      connection: chain.connection,
      deployments: chain.deployments,
      privateKey,
      modelHashes: records.map((record) => record.hash),
      logger,
    });
  const engine = createEngine({ options: config.engine, logger });
  const models = [];
  for (const record of records)
    models.push(
      await engine.loadModel({ hash: record.hash, path: store.pathOf(record.hash), name: record.name }),
    );
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(privateKey),
    listen: flags.listen,
    bootstrap: flags.bootstrap,
    logger: logger.child({ part: "p2p" }),
  });
  const fallback = flags.price ?? defaultPricePerMillion;
  const price = { input: flags.priceInput ?? fallback, output: flags.priceOutput ?? fallback };
  const address = privateKeyToAccount(privateKey).address;
  const paymentStore = chain
    ? openPaymentStore({ path: providerPaymentStorePath(config.home, address) })
    : undefined;
  const payments =
    chain && paymentStore
      ? createProviderPayments({
          connection: chain.connection,
          deployments: chain.deployments,
          store: paymentStore,
          provider: address,
          outputPricePerMillion: price.output,
          creditWindowTokens: flags.creditTokens,
          settlement: {
            ...(flags.settleThreshold === undefined ? {} : { thresholdAmount: flags.settleThreshold }),
            maxAgeMs: flags.settleInterval * 1000,
            checkIntervalMs: flags.settleCheck * 1000,
          },
          logger: logger.child({ part: "payments" }),
        })
      : undefined;
  payments?.start();
  const evidence = openEvidenceStore({ path: providerEvidenceStorePath(config.home, address) });
  const provider = await startProvider({
    engine,
    models,
    node,
    privateKey,
    price,
    receiptDomain: chain ? deploymentReceiptDomain(chain.deployments) : undefined,
    version: parameters.version,
    limits: flags.idleTimeout ? { idleTimeoutMs: flags.idleTimeout } : undefined,
    payments,
    evidence,
    logger,
  });
  for (const address of node.multiaddrs()) {
    if (!/\/ip4\/127\.|\/ip6\/::1\//.test(address)) logger.warn("listening beyond this machine", { address });
  }
  printReady({
    role: "provider",
    peerId: node.peerId,
    address: provider.address,
    multiaddrs: node.multiaddrs(),
  });
  onShutdown(logger, async () => {
    await provider.stop();
    await node.stop();
    await payments?.stop({ timeoutMs: shutdownLimitMs - 3_000 });
    paymentStore?.close();
    evidence.close();
    await engine.close();
  });
}

/** Runs `mycel gateway` until SIGINT/SIGTERM. */
export async function runGatewayRole(parameters: { flags: GatewayFlags; config: MycelConfig }) {
  const { flags, config } = parameters;
  const logger = createLogger().child({ role: "gateway" });
  exitWithParent(logger);
  const privateKey = await loadKey({ home: config.home, name: flags.key });
  const chain = chainRequested(flags) ? await openChain({ home: config.home, flags, privateKey }) : undefined;
  if (chain) logger.info("chain", { chainId: chain.deployments.chainId, rpcUrl: chain.connection.rpcUrl });
  const running = await runGateway({
    config,
    privateKey,
    chain: chain ? { ...chain, deposit: flags.deposit, budget: flags.budget } : undefined,
    logger,
    listen: flags.listen,
    bootstrap: flags.bootstrap,
    stallMs: flags.stallTimeout,
    audit: { rate: flags.auditRate, validators: flags.validator ?? [] },
    minReputation: flags.minReputation,
  });
  if ((flags.validator ?? []).length === 0 && flags.auditRate > 0)
    logger.info("no --validator given: answers are not sent for audit");
  printReady({ role: "gateway", url: running.url, peerId: running.peerId });
  console.log(
    `Mycel gateway\n  Explorer (web app): ${running.url}/\n  OpenAI-compatible endpoint: ${running.url}/v1\n  Receipts: ${running.url}/mycel/v1/receipts/<request id>`,
  );
  onShutdown(logger, running.close);
}

/** Starts a gateway (node, receipts, API) in this process. */
async function runGateway(parameters: {
  config: MycelConfig;
  privateKey: Hex;
  logger: Logger;
  listen?: string[];
  bootstrap?: string[];
  stallMs?: number;
  /** The chain to pay on, with the deposit per provider and the budget in whole tokens. */
  chain?: { connection: ChainConnection; deployments: Deployments; deposit: string; budget: string };
  audit?: { rate: number; validators: string[] };
  /** Routing leaves out providers whose on-chain reputation is below this (with a chain). */
  minReputation?: number;
  /** Where the gateway's receipts and channels live (default: MYCEL_HOME/gateway). */
  storeDirectory?: string;
  /** Serve the HTTP API (default true; a validator's challenge gateway does not). */
  serveApi?: boolean;
  /** The libp2p identity (default: the gateway's key; a validator's challenges use a fresh one). */
  nodeKey?: Hex;
}) {
  const { config, logger, chain } = parameters;
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(parameters.nodeKey ?? parameters.privateKey),
    listen: parameters.listen,
    bootstrap: parameters.bootstrap,
    logger: logger.child({ part: "p2p" }),
  });
  const storeDirectory = parameters.storeDirectory ?? join(config.home, "gateway");
  const receipts = openReceiptStore({ path: join(storeDirectory, "receipts.sqlite") });
  let paymentStore: PaymentStore | undefined;
  let payments: GatewayPayments | undefined;
  if (chain) {
    const token = await getTokenInfo(chain.connection, chain.deployments.contracts.token);
    paymentStore = openPaymentStore({
      path: parameters.storeDirectory
        ? join(parameters.storeDirectory, "payments.sqlite")
        : gatewayPaymentStorePath(config.home),
    });
    payments = createGatewayPayments({
      connection: chain.connection,
      deployments: chain.deployments,
      store: paymentStore,
      privateKey: parameters.privateKey,
      depositPerProvider: parseTokenAmount(chain.deposit, token.decimals),
      budget: parseTokenAmount(chain.budget, token.decimals),
      logger: logger.child({ part: "payments" }),
    });
    logger.info("paying providers", {
      chainId: chain.deployments.chainId,
      deposit: `${chain.deposit} ${token.symbol}`,
      budget: `${chain.budget} ${token.symbol}`,
    });
  }
  const gateway = startGateway({
    node,
    privateKey: parameters.privateKey,
    receipts,
    logger,
    receiptDomain: chain ? deploymentReceiptDomain(chain.deployments) : undefined,
    payments,
    timeouts: parameters.stallMs ? { stallMs: parameters.stallMs } : undefined,
    audit: parameters.audit,
    reputation: chain
      ? {
          minimum: parameters.minReputation ?? 0.5,
          refreshMs: 5_000,
          read: async (provider) => {
            const standing = await getProviderStanding(chain.connection, {
              deployments: chain.deployments,
              provider,
            });
            return standing.scored ? standing.reputation / maxScore : undefined;
          },
        }
      : undefined,
  });
  const explorer =
    parameters.serveApi === false
      ? undefined
      : createExplorer({
          gateway,
          node,
          receipts,
          chain: chain ? { connection: chain.connection, deployments: chain.deployments } : undefined,
          payments,
          audit: parameters.audit,
          logger: logger.child({ part: "explorer" }),
        });
  const server =
    parameters.serveApi === false || !explorer
      ? undefined
      : await startApiServer({
          // The gateway's own routes first, then the explorer's views and web app.
          backend: {
            ...gateway.backend,
            route: async (input) => (await gateway.backend.route?.(input)) || explorer.route(input),
          },
          host: config.serve.host,
          port: config.serve.port,
          maxBodyBytes: config.serve.maxBodyBytes,
          logger: logger.child({ part: "api" }),
        });
  if (server && !["127.0.0.1", "localhost", "::1"].includes(config.serve.host))
    logger.warn("the API listens beyond this machine: anyone who can reach it spends your funds", {
      host: config.serve.host,
    });
  return {
    url: server?.url ?? "",
    peerId: node.peerId,
    gateway,
    async close() {
      explorer?.stop();
      await server?.close();
      await gateway.stop();
      await node.stop();
      receipts.close();
      paymentStore?.close();
    },
  };
}

/** Runs `mycel validator` until SIGINT/SIGTERM. */
export async function runValidatorRole(parameters: { flags: ValidatorFlags; config: MycelConfig }) {
  const { flags, config } = parameters;
  const logger = createLogger().child({ role: "validator" });
  exitWithParent(logger);
  const privateKey = await loadKey({ home: config.home, name: flags.key });
  const challengeKey = flags.challengeKey
    ? await loadKey({ home: config.home, name: flags.challengeKey })
    : privateKey;
  if (!flags.challengeKey && flags.challengeInterval > 0)
    logger.warn(
      "challenges are sent with the validator's own key: give --challenge-key so providers cannot tell them apart",
    );
  const address = privateKeyToAccount(privateKey).address;
  const chain = chainRequested(flags) ? await openChain({ home: config.home, flags, privateKey }) : undefined;
  if (chain) {
    const stake = await readValidatorStake(chain.connection, {
      deployments: chain.deployments,
      validator: address,
    });
    if (stake === 0n && flags.stake) {
      const token = await getTokenInfo(chain.connection, chain.deployments.contracts.token);
      await registerValidator(chain.connection, {
        deployments: chain.deployments,
        stake: parseTokenAmount(flags.stake, token.decimals),
        formatAmount: (amount) => `${amount} units of ${token.symbol}`,
      });
      logger.info("registered as a validator", { stake: `${flags.stake} ${token.symbol}` });
    } else if (stake === 0n)
      logger.warn("not a registered validator: scores and slashing votes need stake (give --stake <tokens>)");
    else logger.info("validator stake", { stake: stake.toString() });
  }
  const { createAuditor } = await import("../verify/index.ts");
  const { startValidator } = await import("../validator/index.ts");
  const { availableParallelism } = await import("node:os");
  const auditor = createAuditor({
    home: config.home,
    engineOptions: { threadsPerSequence: flags.threads ?? availableParallelism() },
    logger: logger.child({ part: "audit" }),
  });
  const store = openAuditStore({ path: validatorStorePath(config.home, address) });
  // Challenges go out from their own node and key, so that providers cannot tell them from user traffic.
  const challenger = await runGateway({
    config,
    privateKey: challengeKey,
    logger: logger.child({ part: "challenges" }),
    bootstrap: flags.bootstrap,
    chain: chain
      ? {
          connection: withSigner(chain.connection, challengeKey),
          deployments: chain.deployments,
          deposit: flags.deposit,
          budget: flags.budget,
        }
      : undefined,
    storeDirectory: join(config.home, "validator", address.toLowerCase(), "challenges"),
    serveApi: false,
    // A peer id of its own, new at every start: never the validator's (which gateways dial for audits).
    nodeKey: generatePrivateKey(),
  });
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(privateKey),
    listen: flags.listen,
    bootstrap: flags.bootstrap,
    logger: logger.child({ part: "p2p" }),
  });
  const models = await openModelStore({ home: config.home }).list();
  const validator = await startValidator({
    node,
    auditor,
    store,
    privateKey,
    gateway: challenger.gateway,
    challengeModels: () => models.map((model) => ({ name: model.name, hash: model.hash })),
    chain: chain ? { connection: chain.connection, deployments: chain.deployments } : undefined,
    options: {
      challengeIntervalMs: flags.challengeInterval * 1000,
      epochCheckMs: flags.epochCheck * 1000,
      slashBps: flags.slashPercent * 100,
    },
    logger,
  });
  printReady({ role: "validator", peerId: node.peerId, address, multiaddrs: node.multiaddrs() });
  onShutdown(logger, async () => {
    await validator.stop();
    await node.stop();
    await challenger.close();
    store.close();
    await auditor.close();
  });
}

/** A child role process of the devnet, with its output prefixed. */
type RoleProcess = {
  name: string;
  child: ChildProcess;
  ready: Promise<{ peerId: string; multiaddrs: string[]; address: string }>;
};

function spawnRole(parameters: { name: string; args: string[]; home: string; keyName: string }): RoleProcess {
  const bin = join(import.meta.dirname, "..", "..", "bin", "mycel.js");
  const child = spawn(
    process.execPath,
    [bin, "--home", parameters.home, ...parameters.args, "--key", parameters.keyName],
    {
      env: {
        ...process.env,
        MYCEL_PASSWORD: devnetPassword,
        MYCEL_EXIT_WITH_PARENT: "1",
        MYCEL_HOME: parameters.home,
      },
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  const prefix = `[${parameters.name}]`;
  const ready = new Promise<{ peerId: string; multiaddrs: string[]; address: string }>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      if (line.startsWith("MYCEL_READY ")) resolve(JSON.parse(line.slice("MYCEL_READY ".length)));
      else process.stdout.write(`${prefix} ${line}\n`);
    });
    child.on("exit", (code, signal) =>
      reject(
        new MycelError(`${parameters.name} exited (${signal ?? code}) before it was ready`, {
          hint: "see its log lines above",
        }),
      ),
    );
  });
  ready.catch(() => undefined);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) =>
    process.stderr.write(`${prefix} ${line}\n`),
  );
  return { name: parameters.name, child, ready };
}

async function ensureDevKey(home: string, name: string): Promise<Hex> {
  const privateKey = devPrivateKey(name);
  try {
    await createKeystore({ home, name, password: devnetPassword, privateKey });
  } catch (error) {
    if (!(error instanceof KeystoreExistsError)) throw error;
  }
  return privateKey;
}

/** Runs the devnet until SIGINT/SIGTERM: N provider processes and a gateway, all on loopback. */
export async function runDevnet(parameters: {
  config: MycelConfig;
  providers: number;
  model?: string;
  stallMs?: number;
  rpcPort: number;
}) {
  const { config } = parameters;
  const logger = createLogger({ write: (line) => process.stderr.write(`[devnet] ${line}\n`) });
  const store = openModelStore({ home: config.home });
  let model: ModelRecord;
  /** Models derived from the served one, registered with their lineage so that the registry shows a graph. */
  const derived: ModelRecord[] = [];
  if (parameters.model) model = await store.resolve(parameters.model);
  else {
    const make = async (quant: "f32" | "f16" | "q8_0") => {
      const made = generateTestModel({ size: "tiny", seed: 1, quant });
      return (
        await store.addBytes({
          bytes: made.bytes,
          name: made.name,
          source: `make-test --size tiny --seed 1 --quant ${quant}`,
        })
      ).model;
    };
    model = await make("f32");
    // The same seeded weights at lower precision: true quantizations of the served model.
    derived.push(await make("f16"), await make("q8_0"));
  }
  const roles: RoleProcess[] = [];
  let gatewayClose: (() => Promise<void>) | undefined;
  let anvil: AnvilProcess | undefined;
  let stopping = false;
  const stopAll = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping the devnet", { signal });
    await gatewayClose?.().catch(() => undefined);
    await Promise.all(
      roles.map(
        (role) =>
          new Promise<void>((resolve) => {
            if (role.child.exitCode !== null || role.child.signalCode !== null) return resolve();
            // Providers settle their vouchers before they exit: give them the time they allow themselves.
            const kill = setTimeout(() => role.child.kill("SIGKILL"), shutdownLimitMs + 1_000);
            role.child.once("exit", () => {
              clearTimeout(kill);
              resolve();
            });
            role.child.kill("SIGTERM");
          }),
      ),
    );
    await anvil?.stop();
    process.exit(0);
  };
  process.once("SIGINT", () => void stopAll("SIGINT"));
  process.once("SIGTERM", () => void stopAll("SIGTERM"));
  try {
    const started = performance.now();
    logger.info("starting", { providers: parameters.providers, model: model.name });
    const providerKeys: Hex[] = [];
    for (let index = 1; index <= parameters.providers; index++)
      providerKeys.push(await ensureDevKey(config.home, `devnet-provider-${index}`));
    const gatewayKey = await ensureDevKey(config.home, "devnet-gateway");
    const validatorKey = await ensureDevKey(config.home, "devnet-validator");
    const challengerKey = await ensureDevKey(config.home, "devnet-challenger");
    anvil = await startAnvil({ port: parameters.rpcPort, logger });
    const chain = await setUpDevnetChain({
      rpcUrl: anvil.rpcUrl,
      home: config.home,
      model,
      derived,
      providerKeys,
      gatewayKey,
      validatorKey,
      challengerKey,
      priceOf: (index) => defaultPricePerMillion * BigInt(index + 1),
      logger,
    });
    const providerArgs = (index: number) => [
      "provider",
      "--model",
      model.hash,
      "--price",
      String(defaultPricePerMillion * BigInt(index)),
      "--rpc-url",
      chain.rpcUrl,
      "--deployments",
      chain.deploymentsPath,
      // Settle within a minute, so that a devnet user sees earnings reach the chain.
      "--settle-interval",
      "60",
    ];
    const first = spawnRole({
      name: "provider-1",
      args: providerArgs(1),
      home: config.home,
      keyName: "devnet-provider-1",
    });
    roles.push(first);
    const firstReady = await first.ready;
    const bootstrap = firstReady.multiaddrs.slice(0, 1);
    for (let index = 2; index <= parameters.providers; index++) {
      const name = `devnet-provider-${index}`;
      roles.push(
        spawnRole({
          name: `provider-${index}`,
          args: [...providerArgs(index), ...bootstrap.flatMap((address) => ["--bootstrap", address])],
          home: config.home,
          keyName: name,
        }),
      );
    }
    const ready = await Promise.all(roles.map((role) => role.ready));
    const validatorRole = spawnRole({
      name: "validator",
      args: [
        "validator",
        "--rpc-url",
        chain.rpcUrl,
        "--deployments",
        chain.deploymentsPath,
        "--challenge-key",
        "devnet-challenger",
        "--challenge-interval",
        "60",
        ...bootstrap.flatMap((address) => ["--bootstrap", address]),
      ],
      home: config.home,
      keyName: "devnet-validator",
    });
    roles.push(validatorRole);
    const validatorReady = await validatorRole.ready;
    const running = await runGateway({
      chain: {
        connection: withSigner(chain.connection, gatewayKey),
        deployments: chain.deployments,
        deposit: defaultGatewayDeposit,
        budget: defaultGatewayBudget,
      },
      config,
      privateKey: gatewayKey,
      logger: createLogger({ write: (line) => process.stderr.write(`[gateway] ${line}\n`) }),
      bootstrap: ready
        .map((entry) => entry.multiaddrs[0])
        .filter((entry): entry is string => entry !== undefined),
      stallMs: parameters.stallMs,
      // A devnet user should see audits happen: one answer in five goes to the validator.
      audit: { rate: 0.2, validators: validatorReady.multiaddrs.slice(0, 1) },
    });
    gatewayClose = running.close;
    await running.gateway.waitForProviders({
      count: parameters.providers,
      modelHash: model.hash,
      timeoutMs: 60_000,
    });
    logger.info("ready", { seconds: ((performance.now() - started) / 1000).toFixed(1) });
    printDevnet({ url: running.url, model, providers: ready, validator: validatorReady, chain });
  } catch (error) {
    process.stderr.write(`error: ${describeError(error)}\n`);
    await stopAll("error");
  }
}

/** Deploys to the devnet's anvil, funds the dev keys, registers the model and stakes every provider. */
async function setUpDevnetChain(parameters: {
  rpcUrl: string;
  home: string;
  model: ModelRecord;
  derived: ModelRecord[];
  providerKeys: Hex[];
  gatewayKey: Hex;
  validatorKey: Hex;
  challengerKey: Hex;
  priceOf: (index: number) => bigint;
  logger: Logger;
}) {
  const { logger } = parameters;
  const deployer = await connectChain({ rpcUrl: parameters.rpcUrl, privateKey: anvilDeployerKey });
  const deployments = await deployMycel(deployer, { parameters: devnetDeployParameters });
  const deploymentsPath = defaultDeploymentsPath(parameters.home);
  writeDeployments(deploymentsPath, deployments);
  logger.info("contracts deployed", { chainId: deployments.chainId, deployments: deploymentsPath });
  const accounts = [
    ...parameters.providerKeys,
    parameters.gatewayKey,
    parameters.validatorKey,
    parameters.challengerKey,
  ].map((key) => privateKeyToAccount(key).address);
  await fundDevAccounts(deployer, { deployments, accounts: [deployer.account?.address as Hex, ...accounts] });
  await fundRewards(deployer, { deployments, amount: parseEther("100000") });
  const modelHash = modelHashToBytes32(parameters.model.hash);
  await registerModel(deployer, {
    deployments,
    modelHash,
    name: parameters.model.name,
    license: parameters.model.license ?? "NOASSERTION",
    metadataUri: "mycel:test-model",
  });
  for (const child of parameters.derived)
    await registerModel(deployer, {
      deployments,
      modelHash: modelHashToBytes32(child.hash),
      name: child.name,
      license: child.license ?? "NOASSERTION",
      metadataUri: "mycel:test-model",
      parents: [{ modelHash, relation: "quantize" }],
    });
  const stake = BigInt(deployments.parameters.minimumProviderStake);
  await Promise.all(
    parameters.providerKeys.map(async (privateKey, index) => {
      const connection = withSigner(deployer, privateKey);
      const price = parameters.priceOf(index);
      await registerProvider(connection, {
        deployments,
        peerId: peerIdOfSecp256k1Key(privateKey),
        offers: [{ modelHash, inputPricePerMillion: price, outputPricePerMillion: price }],
        stake,
      });
    }),
  );
  await registerValidator(withSigner(deployer, parameters.validatorKey), {
    deployments,
    stake: BigInt(deployments.parameters.minimumValidatorStake),
  });
  logger.info("providers staked on chain", {
    providers: parameters.providerKeys.length,
    stake: stake.toString(),
  });
  return { rpcUrl: parameters.rpcUrl, deployments, deploymentsPath, connection: deployer };
}

function printDevnet(parameters: {
  url: string;
  model: ModelRecord;
  providers: { peerId: string; address: string }[];
  validator: { peerId: string; address: string };
  chain: { rpcUrl: string; deploymentsPath: string; deployments: Deployments };
}) {
  const { chain } = parameters;
  const { url, model } = parameters;
  const body = JSON.stringify({
    model: model.name,
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 32,
  });
  console.log(`
Mycel devnet is up: ${parameters.providers.length} providers, a validator and a gateway, all on 127.0.0.1
${parameters.providers.map((p, i) => `  provider-${i + 1}: ${p.address} (peer ${p.peerId})`).join("\n")}
  validator: ${parameters.validator.address} (peer ${parameters.validator.peerId}), audits 1 answer in 5
  Explorer (web app): ${url}/
  OpenAI-compatible endpoint: ${url}/v1
  Providers seen by the gateway: ${url}/mycel/v1/providers
  Receipts: ${url}/mycel/v1/receipts/<request id>
  Chain (anvil): ${chain.rpcUrl}, chain id ${chain.deployments.chainId}
    contracts: ${chain.deploymentsPath}
${Object.entries(chain.deployments.contracts)
  .map(([name, address]) => `      ${name.padEnd(17)} ${address}`)
  .join("\n")}
    dev keys (password "${devnetPassword}"): devnet-provider-1..${parameters.providers.length}, devnet-gateway,
      devnet-validator, devnet-challenger
    e.g. MYCEL_PASSWORD=${devnetPassword} mycel provider status --key devnet-provider-1
         mycel model info ${model.hash.slice(0, 12)}

Try it with curl:
  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '${body}'

Or with the openai package (node, ESM):
  import OpenAI from "openai";
  const client = new OpenAI({ baseURL: "${url}/v1", apiKey: "unused" });
  const answer = await client.chat.completions.create({ model: "${model.name}", messages: [{ role: "user", content: "Hello!" }] });
  console.log(answer.choices[0].message.content, answer.mycel?.receipts);

Test models have random weights: their answers are noise, but real llama.cpp inference over real libp2p.
Press Ctrl-C to stop everything.
`);
}
