/**
 * The devnet: a whole network on this machine from one call. A chain (anvil) with Mycel's contracts, N providers and
 * a validator in processes of their own, and a gateway in this process, all on 127.0.0.1. If any part stops on its
 * own, `ended` says which, so that the caller stops the rest.
 */
import type { Hex } from "viem";
import {
  type AnvilProcess,
  maxDeploymentBootstrapAddresses,
  startAnvil,
  withSigner,
  writeDeployments,
} from "../chain/index.ts";
import { type MycelConfig, roleDefaults } from "../config/index.ts";
import { describeError } from "../errors/index.ts";
import { defaultMinimumReputation } from "../gateway/index.ts";
import type { Logger } from "../log/index.ts";
import { generateTestModel, type ModelRecord, openModelStore } from "../model/index.ts";
import { devnetGatewayKeyName, devnetPassword } from "./constants.ts";
import { type DevnetChain, setUpDevnetChain } from "./devnetChain.ts";
import { startGatewayNode } from "./gateway.ts";
import { ensureDevKey } from "./keys.ts";
import { type RoleProcess, type RoleReady, spawnRole } from "./roleProcess.ts";

/** One answer in five goes to the devnet's validator, so that a devnet user sees audits happen. */
export const devnetAuditRate = 0.2;
/** How long the devnet's roles may take to stop: everything is down within 5 s of a signal. */
const roleShutdownSeconds = 3;
/** When a role that has not stopped is killed. */
const roleKillAfterMs = 4_000;
/** How long the gateway in this process may take to close. */
const gatewayCloseLimitMs = 3_000;

/** Parameters of {@link startDevnet}. */
export type StartDevnetParameters = {
  config: MycelConfig;
  /** Provider processes to start. */
  providers: number;
  /** The models every provider serves, by name or hash in the store (default: the tiny test model, made if needed). */
  models?: readonly string[];
  stallMs?: number;
  /** The chain's port on 127.0.0.1 (0 picks a free one). */
  rpcPort: number;
  logger: Logger;
  /** The gateway's logger (its lines prefixed apart from the devnet's). */
  gatewayLogger: Logger;
  /** Where the roles' output lines go, prefixed with their names. */
  write: { stdout: (line: string) => void; stderr: (line: string) => void };
  /** Aborting it during start-up stops what has started and rejects. */
  signal?: AbortSignal;
};

/** A running devnet. */
export type Devnet = {
  url: string;
  /** The first model the providers serve (the banner's example). */
  model: ModelRecord;
  /** Every model the providers serve. */
  models: ModelRecord[];
  providers: RoleReady[];
  validator: RoleReady;
  chain: DevnetChain;
  /** The password of the devnet's dev keystores. */
  password: string;
  /** Resolves when a part stopped on its own (a role or the chain exited), saying which. */
  ended: Promise<string>;
  /** Stops everything (bounded: about 5 s); safe to call twice. */
  stop(): Promise<void>;
};

/** The models the providers serve, and the first one's quantizations to register as its children. */
async function devnetModels(config: MycelConfig, queries: readonly string[] | undefined) {
  const store = openModelStore({ home: config.home });
  if (queries && queries.length > 0) {
    const models: ModelRecord[] = [];
    for (const query of queries) {
      const model = await store.resolve(query);
      if (!models.some((known) => known.hash === model.hash)) models.push(model);
    }
    return { models, derived: [] as ModelRecord[] };
  }
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
  // The same seeded weights at lower precision: true quantizations of the served model.
  return { models: [await make("f32")], derived: [await make("f16"), await make("q8_0")] };
}

/** What has been started so far, and how to stop it. */
function createParts(logger: Logger) {
  const roles: RoleProcess[] = [];
  let anvil: AnvilProcess | undefined;
  let closeGateway: (() => Promise<void>) | undefined;
  let stopping: Promise<void> | undefined;
  return {
    roles,
    setAnvil: (value: AnvilProcess) => {
      anvil = value;
    },
    setGateway: (close: () => Promise<void>) => {
      closeGateway = close;
    },
    isStopping: () => stopping !== undefined,
    stop() {
      stopping ??= (async () => {
        // Roles and the gateway stop together; providers settle their vouchers on the chain, so it stops last.
        const bounded = (work: Promise<void>, limitMs: number) =>
          Promise.race([work, new Promise<void>((resolve) => setTimeout(resolve, limitMs).unref())]);
        await Promise.all([
          bounded(
            closeGateway?.().catch((error) =>
              logger.warn("gateway did not close", { error: describeError(error) }),
            ) ?? Promise.resolve(),
            gatewayCloseLimitMs,
          ),
          ...roles.map((role) => role.stop(roleKillAfterMs)),
        ]);
        await anvil?.stop();
      })();
      return stopping;
    },
  };
}

/** Starts a devnet; on failure stops what it started and throws. */
export async function startDevnet(parameters: StartDevnetParameters): Promise<Devnet> {
  const { config, logger } = parameters;
  const { models, derived } = await devnetModels(config, parameters.models);
  const model = models[0] as ModelRecord;
  const parts = createParts(logger);
  const { signal } = parameters;
  signal?.addEventListener("abort", () => void parts.stop(), { once: true });
  const step = <T>(value: T): T => {
    signal?.throwIfAborted();
    return value;
  };
  try {
    const started = performance.now();
    logger.info("starting", {
      providers: parameters.providers,
      models: models.map((entry) => entry.name).join(","),
    });
    const providerKeys: Hex[] = [];
    for (let index = 1; index <= parameters.providers; index++)
      providerKeys.push(await ensureDevKey(config.home, `devnet-provider-${index}`));
    const gatewayKey = await ensureDevKey(config.home, devnetGatewayKeyName);
    const validatorKey = await ensureDevKey(config.home, "devnet-validator");
    const challengerKey = await ensureDevKey(config.home, "devnet-challenger");
    const anvil = step(await startAnvil({ port: parameters.rpcPort, logger }));
    parts.setAnvil(anvil);
    const chain = step(
      await setUpDevnetChain({
        rpcUrl: anvil.rpcUrl,
        home: config.home,
        models,
        derived,
        providerKeys,
        gatewayKey,
        validatorKey,
        challengerKey,
        priceOf: (index) => roleDefaults.pricePerMillion * BigInt(index + 1),
        logger,
      }),
    );
    const chainArgs = ["--rpc-url", chain.rpcUrl, "--deployments", chain.deploymentsPath];
    const common = { home: config.home, write: parameters.write };
    const providerArgs = (index: number, bootstrap: string[]) => [
      "provider",
      ...models.flatMap((entry) => ["--model", entry.hash]),
      "--price",
      String(roleDefaults.pricePerMillion * BigInt(index)),
      ...chainArgs,
      // Settle within a minute, so that a devnet user sees earnings reach the chain.
      "--settle-interval",
      "60",
      "--shutdown-timeout",
      String(roleShutdownSeconds),
      ...bootstrap.flatMap((address) => ["--bootstrap", address]),
    ];
    const first = spawnRole({
      ...common,
      name: "provider-1",
      args: providerArgs(1, []),
      keyName: "devnet-provider-1",
    });
    parts.roles.push(first);
    const bootstrap = step(await first.ready).multiaddrs.slice(0, 1);
    for (let index = 2; index <= parameters.providers; index++)
      parts.roles.push(
        spawnRole({
          ...common,
          name: `provider-${index}`,
          args: providerArgs(index, bootstrap),
          keyName: `devnet-provider-${index}`,
        }),
      );
    const providers = step(await Promise.all(parts.roles.map((role) => role.ready)));
    const validatorRole = spawnRole({
      ...common,
      name: "validator",
      args: [
        "validator",
        ...chainArgs,
        "--challenge-key",
        "devnet-challenger",
        "--challenge-interval",
        "60",
        // The validator shares the machine with the providers: audits on as many threads as a provider's sequence
        // (1 on 2 cores), not on every core, where llama.cpp's spinning threads starved the providers.
        "--threads",
        String(config.engine.threadsPerSequence),
        "--shutdown-timeout",
        String(roleShutdownSeconds),
        ...bootstrap.flatMap((address) => ["--bootstrap", address]),
      ],
      keyName: "devnet-validator",
    });
    parts.roles.push(validatorRole);
    const validator = step(await validatorRole.ready);
    // Its nodes listen now: another gateway (or provider) on this machine joins with just --rpc-url and --deployments.
    const joinAt = [...providers, validator]
      .map((entry) => entry.multiaddrs[0])
      .filter((entry): entry is string => entry !== undefined)
      .slice(0, maxDeploymentBootstrapAddresses);
    writeDeployments(chain.deploymentsPath, { ...chain.deployments, bootstrap: joinAt });
    const gatewayNode = await startGatewayNode({
      config,
      privateKey: gatewayKey,
      chain: {
        connection: withSigner(chain.connection, gatewayKey),
        deployments: chain.deployments,
        deposit: roleDefaults.gatewayDeposit,
        budget: roleDefaults.gatewayBudget,
      },
      logger: parameters.gatewayLogger,
      bootstrap: providers
        .map((entry) => entry.multiaddrs[0])
        .filter((entry): entry is string => entry !== undefined),
      stallMs: parameters.stallMs,
      audit: { rate: devnetAuditRate, validators: validator.multiaddrs.slice(0, 1) },
      minReputation: defaultMinimumReputation,
    });
    parts.setGateway(gatewayNode.close);
    step(undefined);
    for (const entry of models)
      await gatewayNode.gateway.waitForProviders({
        count: parameters.providers,
        modelHash: entry.hash,
        timeoutMs: 60_000,
        signal,
      });
    logger.info("ready", { seconds: ((performance.now() - started) / 1000).toFixed(1) });
    const ended = Promise.race([
      ...parts.roles.map((role) => role.exited.then((how) => `${role.name} exited (${how})`)),
      anvil.exited.then((how) => `the chain (anvil) exited (${how})`),
    ]);
    return {
      url: gatewayNode.url,
      model,
      models,
      providers,
      validator,
      chain,
      password: devnetPassword,
      // Only an exit nobody asked for ends the devnet.
      ended: ended.then((reason) => (parts.isStopping() ? new Promise<string>(() => undefined) : reason)),
      stop: parts.stop,
    };
  } catch (error) {
    await parts.stop();
    throw error;
  }
}
