/** The chain commands of `mycel`: chain deploy/status, model register/info, provider stake/unbond/withdraw/status, channel open/list/close. */
import { existsSync, readFileSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import { type Address, getAddress, type Hex, isAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  addProviderStake,
  type ChainConnection,
  ChainError,
  connectChain,
  type Deployments,
  type DeployParameters,
  defaultDeploymentsPath,
  defaultDeployParameters,
  deployMycel,
  devnetDeployParameters,
  formatLineage,
  formatTokenAmount,
  getChannel,
  getModelEntry,
  getModelLineage,
  getProviderRecord,
  getTokenBalance,
  getTokenInfo,
  listChannels,
  type ModelParent,
  openChannel,
  type ProviderOffer,
  parseModelParent,
  parseTokenAmount,
  readDeployments,
  registerModel,
  registerProvider,
  requestChannelClose,
  requestProviderUnbond,
  type TokenInfo,
  type TransactionReport,
  withdrawChannel,
  withdrawProviderStake,
  withSigner,
  writeDeployments,
} from "../chain/index.ts";
import type { ConfigOverrides, MycelConfig } from "../config/index.ts";
import { InvalidInputError, MycelError } from "../errors/index.ts";
import { readKeystoreAddress } from "../identity/index.ts";
import { type ModelRecord, openModelStore } from "../model/index.ts";
import { modelHashToBytes32 } from "../protocol/index.ts";
import {
  gatewayPaymentStorePath,
  openPaymentStore,
  type PaymentStore,
  providerPaymentStorePath,
} from "../store/index.ts";
import { printTable } from "./output.ts";

/** The flags every chain-using command takes. */
export type ChainFlags = { rpcUrl?: string; deployments?: string };

/** Adds --rpc-url and --deployments. */
export function addChainOptions(command: Command): Command {
  return command
    .option(
      "--rpc-url <url>",
      "EVM JSON-RPC endpoint (default: $MYCEL_RPC_URL, else the one in the deployments file)",
    )
    .option(
      "--deployments <file>",
      "contract addresses (default: $MYCEL_DEPLOYMENTS, else MYCEL_HOME/deployments.json, which `mycel devnet` writes)",
    );
}

/** Whether the user pointed a role at a chain (flags or environment). */
export function chainRequested(flags: ChainFlags): boolean {
  return Boolean(
    flags.rpcUrl || flags.deployments || process.env.MYCEL_RPC_URL || process.env.MYCEL_DEPLOYMENTS,
  );
}

/** Reads the deployments and connects to their chain (signing with `privateKey` when given). */
export async function openChain(parameters: {
  home: string;
  flags: ChainFlags;
  privateKey?: Hex;
}): Promise<{ connection: ChainConnection; deployments: Deployments; deploymentsPath: string }> {
  const deploymentsPath =
    parameters.flags.deployments ?? process.env.MYCEL_DEPLOYMENTS ?? defaultDeploymentsPath(parameters.home);
  const deployments = readDeployments(deploymentsPath);
  const rpcUrl = parameters.flags.rpcUrl ?? process.env.MYCEL_RPC_URL ?? deployments.rpcUrl;
  if (!rpcUrl)
    throw new ChainError(`${deploymentsPath} names no RPC URL`, {
      hint: "pass --rpc-url <url> (or set MYCEL_RPC_URL)",
    });
  const connection = await connectChain({ rpcUrl, privateKey: parameters.privateKey, deployments });
  const code = await connection.publicClient.getCode({ address: deployments.contracts.providerRegistry });
  if (!code || code === "0x")
    throw new ChainError(`no Mycel contracts at ${deployments.contracts.providerRegistry} on ${rpcUrl}`, {
      code: "deployment_missing",
      details: `deployments file: ${deploymentsPath}`,
      hint: "the chain was reset (a devnet restarts with a fresh chain): restart `mycel devnet`, or deploy with `mycel chain deploy`",
    });
  return { connection, deployments, deploymentsPath };
}

/** Prints one mined transaction: what it did, its hash and its gas. */
export function printTransaction(report: TransactionReport) {
  console.log(
    `✓ ${report.action}\n    tx ${report.hash}  block ${report.blockNumber}  gas ${report.gasUsed}`,
  );
}

function address(value: string): Address {
  if (!isAddress(value)) throw new InvalidArgumentError(`"${value}" is not an address (0x + 40 hex digits)`);
  return getAddress(value);
}

function channelId(value: string): Hex {
  if (!/^0x[0-9a-fA-F]{64}$/.test(value))
    throw new InvalidArgumentError(`"${value}" is not a channel id (0x + 64 hex digits)`);
  return value.toLowerCase() as Hex;
}

function collect(value: string, previous: string[] = []) {
  return [...previous, value];
}

/** Resolves a model given by name, hash or prefix in the local store, or a full sha256 not in the store. */
async function resolveModel(home: string, query: string): Promise<{ hash: Hex; record?: ModelRecord }> {
  const store = openModelStore({ home });
  try {
    const record = await store.resolve(query);
    return { hash: modelHashToBytes32(record.hash), record };
  } catch (error) {
    if (/^(0x|sha256:)?[0-9a-fA-F]{64}$/.test(query)) return { hash: modelHashToBytes32(query) };
    throw error;
  }
}

/** The payments this machine's gateway and provider stores hold for `account` (opened only if they exist). */
function readLocalPayments(home: string, account: Address) {
  /** Reads a store only if it exists (a command that shows things creates nothing). */
  const read = <T>(path: string, use: (store: PaymentStore) => T[]): T[] => {
    if (!existsSync(path)) return [];
    const store = openPaymentStore({ path });
    try {
      return use(store);
    } finally {
      store.close();
    }
  };
  const byChannel = <T extends { channelId: Hex }>(items: T[]) =>
    new Map(items.map((item) => [item.channelId.toLowerCase(), item]));
  return {
    signed: byChannel(read(gatewayPaymentStorePath(home), (store) => store.channelsOf(account))),
    received: byChannel(read(providerPaymentStorePath(home, account), (store) => store.vouchersOf(account))),
  };
}

async function tokenOf(connection: ChainConnection, deployments: Deployments): Promise<TokenInfo> {
  return getTokenInfo(connection, deployments.contracts.token);
}

function readDeployParameters(path: string | undefined, devnet: boolean): DeployParameters {
  const base = devnet ? devnetDeployParameters : defaultDeployParameters;
  if (!path) return base;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new InvalidInputError(`cannot read deploy parameters from ${path}`, {
      cause,
      hint: "pass a JSON file",
    });
  }
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(json)) {
    if (!(key in base))
      throw new InvalidInputError(`unknown deploy parameter "${key}"`, {
        hint: `known: ${Object.keys(base).join(", ")}`,
      });
    const current = (base as Record<string, unknown>)[key];
    merged[key] = typeof current === "bigint" ? BigInt(String(value)) : Number(value);
  }
  return merged as DeployParameters;
}

/** Adds the chain commands to the program. */
export function addChainCommands(parameters: {
  program: Command;
  model: Command;
  provider: Command;
  configFrom: (command: Command, overrides?: ConfigOverrides) => MycelConfig;
  loadKey: (parameters: { home: string; name: string }) => Promise<Hex>;
  integer: (name: string, minimum?: number, maximum?: number) => (value: string) => number;
  defaultPricePerMillion: bigint;
}) {
  const { program, model, provider, configFrom, loadKey, integer } = parameters;
  const keyOf = (command: Command) => (command.optsWithGlobals() as { key?: string }).key ?? "default";
  const chainFlagsOf = (command: Command) => command.optsWithGlobals() as ChainFlags;
  const signer = async (command: Command) => {
    const config = configFrom(command);
    // Check the deployment and the RPC before asking for a password.
    const reader = await openChain({ home: config.home, flags: chainFlagsOf(command) });
    const privateKey = await loadKey({ home: config.home, name: keyOf(command) });
    const connection = withSigner(reader.connection, privateKey);
    return {
      config,
      privateKey,
      connection,
      deployments: reader.deployments,
      deploymentsPath: reader.deploymentsPath,
    };
  };

  /** A read-only view: the chain, and the address of the key (no password needed) or of --address. */
  const viewer = async (command: Command) => {
    const config = configFrom(command);
    const reader = await openChain({ home: config.home, flags: chainFlagsOf(command) });
    const given = (command.optsWithGlobals() as { address?: Address }).address;
    const account = given ?? (await readKeystoreAddress({ home: config.home, name: keyOf(command) }));
    return { config, account, ...reader };
  };

  // ---- mycel chain ----
  const chain = program
    .command("chain")
    .description("the EVM chain: deploy Mycel's contracts, show a deployment");

  chain
    .command("deploy")
    .description(
      "deploy the registries, payment channels and consensus to a chain and write deployments.json",
    )
    .requiredOption("--rpc-url <url>", "EVM JSON-RPC endpoint")
    .option("--key <name>", "keystore of the deploying account (pays gas)", "default")
    .option(
      "--token <address>",
      "the ERC-20 to stake and pay with (default: deploy a MycelToken, for devnets)",
      address,
    )
    .option("--out <file>", "where to write the deployments (default: MYCEL_HOME/deployments.json)")
    .option("--params <file>", "JSON file overriding deploy parameters (stakes, periods, rewards)")
    .option(
      "--devnet-periods",
      "use minutes instead of days for unbonding, epochs and challenges (local testing)",
    )
    .option("--force", "overwrite an existing deployments file")
    .action(
      async (
        flags: {
          rpcUrl: string;
          key: string;
          token?: Address;
          out?: string;
          params?: string;
          devnetPeriods?: boolean;
          force?: boolean;
        },
        command: Command,
      ) => {
        const config = configFrom(command);
        const out = flags.out ?? defaultDeploymentsPath(config.home);
        if (existsSync(out) && !flags.force)
          throw new MycelError(`${out} exists already`, {
            hint: "pass --out <file> to write elsewhere, or --force to replace it",
          });
        const settings = readDeployParameters(flags.params, Boolean(flags.devnetPeriods));
        const privateKey = await loadKey({ home: config.home, name: flags.key });
        const connection = await connectChain({ rpcUrl: flags.rpcUrl, privateKey });
        console.log(
          `deploying to chain ${connection.chain.id} (${flags.rpcUrl}) from ${connection.account?.address}`,
        );
        const deployments = await deployMycel(connection, {
          token: flags.token,
          parameters: settings,
          onTransaction: printTransaction,
        });
        writeDeployments(out, deployments);
        console.log(`\ndeployments written to ${out}`);
        for (const [name, value] of Object.entries(deployments.contracts))
          console.log(`  ${name.padEnd(17)} ${value}`);
      },
    );

  addChainOptions(
    chain.command("status").description("show the chain, the deployment and this key's balances"),
  )
    .option("--key <name>", "keystore whose balances to show (optional)")
    .action(async (flags: ChainFlags & { key?: string }, command: Command) => {
      const config = configFrom(command);
      const { connection, deployments, deploymentsPath } = await openChain({ home: config.home, flags });
      const token = await tokenOf(connection, deployments);
      const block = await connection.publicClient.getBlockNumber();
      console.log(`chain ${deployments.chainId} at ${connection.rpcUrl}, block ${block}`);
      console.log(`deployments: ${deploymentsPath} (deployed ${deployments.deployedAt})`);
      for (const [name, value] of Object.entries(deployments.contracts))
        console.log(`  ${name.padEnd(17)} ${value}`);
      console.log(`token: ${token.symbol}, ${token.decimals} decimals`);
      if (flags.key) {
        const privateKey = await loadKey({ home: config.home, name: flags.key });
        const account = privateKeyToAccount(privateKey).address;
        const [ether, tokens] = await Promise.all([
          connection.publicClient.getBalance({ address: account }),
          getTokenBalance(connection, { token: token.address, owner: account }),
        ]);
        console.log(
          `key "${flags.key}" ${account}: ${formatTokenAmount(ether, { decimals: 18, symbol: "ETH" })}, ${formatTokenAmount(tokens, token)}`,
        );
      }
    });

  // ---- mycel model register / info ----
  addChainOptions(
    model
      .command("register")
      .description(
        "register a model's weight hash on chain with its name, license and lineage (you become its publisher)",
      )
      .argument("<model>", "name, hash or prefix in the local store, or a full sha256")
      .option(
        "--parent <hash:relation>",
        "a parent and how this model derives from it (repeatable); relation: finetune, quantize, distill, merge, adapter, convert",
        collect,
      )
      .option("--name <name>", "name to register (default: the store's name)")
      .option("--license <spdx>", "SPDX license (default: the GGUF's general.license, else NOASSERTION)")
      .option("--uri <uri>", "metadata URI (model card, weights location)")
      .option("--key <name>", "keystore of the publisher", "default"),
  ).action(
    async (
      query: string,
      flags: ChainFlags & { parent?: string[]; name?: string; license?: string; uri?: string },
      command: Command,
    ) => {
      const parents: ModelParent[] = (flags.parent ?? []).map(parseModelParent);
      const { config, connection, deployments } = await signer(command);
      const { hash, record } = await resolveModel(config.home, query);
      const name = flags.name ?? record?.name;
      if (!name)
        throw new InvalidInputError(`model ${hash} is not in the local store, so its name is unknown`, {
          hint: "pass --name <name> (and --license <spdx>)",
        });
      const license = flags.license ?? record?.license ?? "NOASSERTION";
      if (!flags.license && !record?.license)
        console.log("no license in the GGUF metadata: registering NOASSERTION (pass --license to set one)");
      await registerModel(connection, {
        deployments,
        modelHash: hash,
        name,
        license,
        metadataUri: flags.uri,
        parents,
        onTransaction: printTransaction,
      });
      console.log(
        `registered ${name} (${hash}) as ${license}${parents.length ? ` with ${parents.length} parent(s)` : ""}`,
      );
    },
  );

  addChainOptions(
    model
      .command("info")
      .description("show a model's registry entry and its lineage tree")
      .argument("<model>", "name, hash or prefix in the local store, or a full sha256")
      .option("--json", "print JSON"),
  ).action(async (query: string, flags: ChainFlags & { json?: boolean }, command: Command) => {
    const config = configFrom(command);
    const { connection, deployments } = await openChain({ home: config.home, flags });
    const { hash, record } = await resolveModel(config.home, query);
    const lineage = await getModelLineage(connection, { deployments, modelHash: hash });
    if (!lineage)
      throw new MycelError(`model ${hash} is not registered on chain ${deployments.chainId}`, {
        code: "model_not_registered",
        hint: `register it with \`mycel model register ${record?.name ?? hash}\``,
      });
    if (flags.json) {
      console.log(
        JSON.stringify(lineage, (_key, value) => (typeof value === "bigint" ? value.toString() : value), 2),
      );
      return;
    }
    console.log(`${lineage.name}  ${lineage.modelHash}`);
    console.log(`  license:    ${lineage.license}`);
    console.log(`  publisher:  ${lineage.publisher}`);
    console.log(
      `  registered: ${lineage.registeredAt.toISOString()}${lineage.deprecated ? "  (deprecated)" : ""}`,
    );
    if (lineage.metadataUri) console.log(`  metadata:   ${lineage.metadataUri}`);
    console.log(`  local store: ${record ? `yes (${record.name})` : "no"}`);
    console.log("\nlineage:");
    for (const line of formatLineage(lineage)) console.log(`  ${line}`);
    if (lineage.children.length > 0) {
      console.log("\nderived models:");
      for (const child of lineage.children) {
        const entry = await getModelEntry(connection, { deployments, modelHash: child });
        const relation = entry?.parents.find((parent) => parent.modelHash === hash)?.relation;
        console.log(`  ${relation ?? "?"}: ${entry?.name ?? "?"} ${child}`);
      }
    }
  });

  // ---- mycel provider stake / unbond / withdraw / status ----
  provider
    .command("stake")
    .description(
      "stake on chain: registers this key as a provider (with the --model and --price of `mycel provider`) or adds to its stake",
    )
    .argument("<amount>", "tokens to stake, e.g. 100 or 0.5")
    .action(async (amountText: string, _flags: unknown, command: Command) => {
      const globals = command.optsWithGlobals() as ChainFlags & {
        model?: string[];
        price?: bigint;
        priceInput?: bigint;
        priceOutput?: bigint;
      };
      const { config, privateKey, connection, deployments } = await signer(command);
      const token = await tokenOf(connection, deployments);
      const amount = parseTokenAmount(amountText, token.decimals);
      const account = connection.account?.address as Address;
      const record = await getProviderRecord(connection, { deployments, provider: account });
      if (record) {
        await addProviderStake(connection, {
          deployments,
          amount,
          onTransaction: printTransaction,
          formatAmount: (value: bigint) => formatTokenAmount(value, token),
        });
      } else {
        if (!globals.model?.length)
          throw new InvalidInputError("a new provider names the models it serves", {
            hint: "run `mycel provider stake <amount> --model <model> [--price <n>]`",
          });
        const fallback = globals.price ?? parameters.defaultPricePerMillion;
        const offers: ProviderOffer[] = [];
        for (const query of globals.model)
          offers.push({
            modelHash: (await resolveModel(config.home, query)).hash,
            inputPricePerMillion: globals.priceInput ?? fallback,
            outputPricePerMillion: globals.priceOutput ?? fallback,
          });
        const { peerIdOfSecp256k1Key } = await import("../p2p/index.ts");
        await registerProvider(connection, {
          deployments,
          peerId: peerIdOfSecp256k1Key(privateKey),
          offers,
          stake: amount,
          onTransaction: printTransaction,
          formatAmount: (value: bigint) => formatTokenAmount(value, token),
        });
      }
      const after = await getProviderRecord(connection, { deployments, provider: account });
      console.log(
        `provider ${account}: staked ${formatTokenAmount(after?.stake ?? 0n, token)}${after?.active ? " (active)" : " (below the minimum: inactive)"}`,
      );
    });

  provider
    .command("unbond")
    .description(
      "start unbonding stake; withdraw it after the unbonding period (it can still be slashed until then)",
    )
    .argument("<amount>", "tokens to unbond")
    .action(async (amountText: string, _flags: unknown, command: Command) => {
      const { connection, deployments } = await signer(command);
      const token = await tokenOf(connection, deployments);
      const amount = parseTokenAmount(amountText, token.decimals);
      await requestProviderUnbond(connection, {
        deployments,
        amount,
        onTransaction: printTransaction,
        formatAmount: (value: bigint) => formatTokenAmount(value, token),
      });
      const record = await getProviderRecord(connection, {
        deployments,
        provider: connection.account?.address as Address,
      });
      console.log(
        `unbonding ${formatTokenAmount(record?.unbonding ?? 0n, token)}: withdraw with \`mycel provider withdraw\` after ${record?.unbondingReleaseAt?.toISOString()}`,
      );
    });

  provider
    .command("withdraw")
    .description("withdraw unbonded stake once the unbonding period is over")
    .action(async (_flags: unknown, command: Command) => {
      const { connection, deployments } = await signer(command);
      const token = await tokenOf(connection, deployments);
      const before = await getProviderRecord(connection, {
        deployments,
        provider: connection.account?.address as Address,
      });
      await withdrawProviderStake(connection, { deployments, onTransaction: printTransaction });
      console.log(`withdrew ${formatTokenAmount(before?.unbonding ?? 0n, token)}`);
    });

  provider
    .command("status")
    .description("show this key's provider record on chain")
    .action(async (_flags: unknown, command: Command) => {
      const { connection, deployments } = await signer(command);
      const token = await tokenOf(connection, deployments);
      const account = connection.account?.address as Address;
      const record = await getProviderRecord(connection, { deployments, provider: account });
      if (!record) {
        console.log(
          `${account} is not a registered provider: run \`mycel provider stake <amount> --model <model>\``,
        );
        return;
      }
      console.log(`provider ${account} (peer ${record.peerId}) ${record.active ? "active" : "inactive"}`);
      console.log(`  stake:     ${formatTokenAmount(record.stake, token)}`);
      console.log(
        `  unbonding: ${formatTokenAmount(record.unbonding, token)}${record.unbondingReleaseAt ? ` (withdrawable after ${record.unbondingReleaseAt.toISOString()})` : ""}`,
      );
      for (const offer of record.offers)
        console.log(
          `  offers ${offer.modelHash}: ${offer.inputPricePerMillion} in / ${offer.outputPricePerMillion} out per 1M tokens`,
        );
    });

  // ---- mycel channel ----
  const channel = program
    .command("channel")
    .description("payment channels: deposits a client pays providers from");

  addChainOptions(
    channel
      .command("open")
      .description("open a payment channel to a provider with a deposit")
      .requiredOption("--provider <address>", "the provider's address", address)
      .requiredOption("--amount <tokens>", "deposit, e.g. 10 or 0.5")
      .option(
        "--challenge-period <seconds>",
        "how long the provider may still settle after you ask to close (default: the deployment's minimum)",
        integer("--challenge-period", 1),
      )
      .option("--key <name>", "keystore of the client", "default"),
  ).action(
    async (
      flags: ChainFlags & { provider: Address; amount: string; challengePeriod?: number },
      command: Command,
    ) => {
      const { connection, deployments } = await signer(command);
      const token = await tokenOf(connection, deployments);
      const amount = parseTokenAmount(flags.amount, token.decimals);
      const opened = await openChannel(connection, {
        deployments,
        provider: flags.provider,
        amount,
        challengePeriodSeconds: flags.challengePeriod,
        onTransaction: printTransaction,
        formatAmount: (value: bigint) => formatTokenAmount(value, token),
      });
      console.log(
        `channel ${opened.channelId} open: ${formatTokenAmount(amount, token)} to ${flags.provider}`,
      );
    },
  );

  addChainOptions(
    channel
      .command("list")
      .description(
        "list the channels this key opened (as client) or receives (as provider), with the latest vouchers (no password needed)",
      )
      .option("--key <name>", "keystore", "default")
      .option("--address <address>", "any address instead of a key", address)
      .option("--json", "print JSON"),
  ).action(async (flags: ChainFlags & { json?: boolean }, command: Command) => {
    const { config, connection, deployments, account } = await viewer(command);
    const token = await tokenOf(connection, deployments);
    const { asClient, asProvider } = await listChannels(connection, { deployments, account });
    const local = readLocalPayments(config.home, account);
    const rows = [
      ...asClient.map((entry) => ({
        role: "client",
        counterparty: entry.provider,
        ...entry,
        /** The highest voucher this machine's gateway signed on it. */
        voucher: local.signed.get(entry.channelId.toLowerCase())?.signedAmount,
      })),
      ...asProvider.map((entry) => ({
        role: "provider",
        counterparty: entry.client,
        ...entry,
        /** The latest voucher this machine's provider received on it. */
        voucher: local.received.get(entry.channelId.toLowerCase())?.cumulativeAmount,
      })),
    ];
    if (flags.json) {
      console.log(
        JSON.stringify(rows, (_key, value) => (typeof value === "bigint" ? value.toString() : value), 2),
      );
      return;
    }
    if (rows.length === 0) {
      console.log(
        `no channels for ${account}: open one with \`mycel channel open --provider <address> --amount <tokens>\``,
      );
      return;
    }
    const table = [
      ["CHANNEL", "ROLE", "COUNTERPARTY", "DEPOSIT", "VOUCHER", "SETTLED", "STATE", "CLOSES AT"],
      ...rows.map((row) => [
        row.channelId,
        row.role,
        row.counterparty,
        formatTokenAmount(row.deposit, token),
        row.voucher === undefined ? "-" : formatTokenAmount(row.voucher, token),
        formatTokenAmount(row.settled, token),
        row.state,
        row.closesAt?.toISOString() ?? "-",
      ]),
    ];
    printTable(table);
    console.log(
      "VOUCHER: the latest voucher on this machine (signed by its gateway, or received by its provider); SETTLED: paid out on chain",
    );
  });

  // ---- mycel wallet ----
  addChainOptions(
    program
      .command("wallet")
      .description("balances, channel deposits, payments made and earnings of a key (no password needed)")
      .option("--key <name>", "keystore", "default")
      .option("--address <address>", "any address instead of a key", address)
      .option("--json", "print JSON"),
  ).action(async (flags: ChainFlags & { json?: boolean }, command: Command) => {
    const { config, connection, deployments, account } = await viewer(command);
    const token = await tokenOf(connection, deployments);
    const [ether, tokens, channels, record] = await Promise.all([
      connection.publicClient.getBalance({ address: account }),
      getTokenBalance(connection, { token: token.address, owner: account }),
      listChannels(connection, { deployments, account }),
      getProviderRecord(connection, { deployments, provider: account }),
    ]);
    const local = readLocalPayments(config.home, account);
    const sum = <T>(items: T[], pick: (item: T) => bigint) =>
      items.reduce((total, item) => total + pick(item), 0n);
    const live = (state: string) => state !== "closed";
    const spending = {
      channels: channels.asClient.filter((entry) => live(entry.state)).length,
      deposited: sum(
        channels.asClient.filter((entry) => live(entry.state)),
        (entry) => entry.deposit,
      ),
      paid: sum([...local.signed.values()], (entry) => entry.signedAmount),
      settled: sum(channels.asClient, (entry) => entry.settled),
    };
    const earning = {
      channels: channels.asProvider.length,
      earned: sum([...local.received.values()], (entry) => entry.cumulativeAmount),
      settled: sum(channels.asProvider, (entry) => entry.settled),
      stake: record?.stake ?? 0n,
    };
    // Unsettled: what the vouchers held here promise beyond what the chain has paid out on their channels.
    const settledOnChain = new Map(
      channels.asProvider.map((entry) => [entry.channelId.toLowerCase(), entry.settled]),
    );
    const unsettled = sum([...local.received.values()], (entry) => {
      const rest = entry.cumulativeAmount - (settledOnChain.get(entry.channelId.toLowerCase()) ?? 0n);
      return rest > entry.forfeitedAmount ? rest - entry.forfeitedAmount : 0n;
    });
    if (flags.json) {
      console.log(
        JSON.stringify(
          {
            address: account,
            chainId: deployments.chainId,
            token: { symbol: token.symbol, decimals: token.decimals, address: token.address },
            balances: { ether, token: tokens },
            asClient: spending,
            asProvider: { ...earning, unsettled },
          },
          (_key, value) => (typeof value === "bigint" ? value.toString() : value),
          2,
        ),
      );
      return;
    }
    const show = (amount: bigint) => formatTokenAmount(amount, token);
    console.log(`${account} on chain ${deployments.chainId}`);
    console.log(
      `  balance        ${formatTokenAmount(ether, { decimals: 18, symbol: "ETH" })}, ${show(tokens)}`,
    );
    console.log(
      `  as a client    ${spending.channels} open channel(s), ${show(spending.deposited)} deposited; vouchers signed here ${show(spending.paid)}; settled by providers ${show(spending.settled)}`,
    );
    console.log(
      `  as a provider  ${earning.channels} channel(s); vouchers received here ${show(earning.earned)} (${show(unsettled)} not settled yet); settled to you ${show(earning.settled)}; stake ${show(earning.stake)}`,
    );
  });

  addChainOptions(
    channel
      .command("close")
      .description(
        "close a channel you opened: first asks to close, then (after the challenge period) withdraws the rest",
      )
      .argument("<channelId>", "the channel id (see `mycel channel list`)", channelId)
      .option("--key <name>", "keystore of the client", "default"),
  ).action(async (id: Hex, _flags: ChainFlags, command: Command) => {
    const { connection, deployments } = await signer(command);
    const token = await tokenOf(connection, deployments);
    const before = await getChannel(connection, { deployments, channelId: id });
    if (before.state === "closed") {
      console.log(`channel ${id} is closed already`);
      return;
    }
    if (before.state === "open") {
      await requestChannelClose(connection, { deployments, channelId: id, onTransaction: printTransaction });
      const after = await getChannel(connection, { deployments, channelId: id });
      console.log(
        `channel ${id} is closing: the provider may settle until ${after.closesAt?.toISOString()}; run \`mycel channel close ${id}\` again after that to withdraw the rest`,
      );
      return;
    }
    const withdrawn = await withdrawChannel(connection, {
      deployments,
      channelId: id,
      onTransaction: printTransaction,
      formatAmount: (value: bigint) => formatTokenAmount(value, token),
    });
    console.log(
      `channel ${id} closed: ${formatTokenAmount(withdrawn.refunded, token)} returned, ${formatTokenAmount(before.settled, token)} paid to the provider`,
    );
  });
}
