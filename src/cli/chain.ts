/**
 * The chain commands of `mycel`: chain deploy/status, model register/info, provider stake/unbond/withdraw/status,
 * channel open/list/close and wallet. Flags in, node/ and chain/ do the work, this prints. Heavy parts (viem, the
 * contracts) load only when a command runs.
 */
import { existsSync } from "node:fs";
import type { Command } from "commander";
import type { Address, Hex } from "viem";
import type { TransactionReport } from "../chain/index.ts";
import { InvalidInputError, MycelError } from "../errors/index.ts";
import {
  addChainOptions,
  address,
  type ChainFlags,
  channelId,
  collect,
  configFrom,
  integer,
} from "./options.ts";
import { printTable } from "./output.ts";

/** Prints one mined transaction: what it did, its hash and its gas. */
export function printTransaction(report: TransactionReport) {
  console.log(
    `✓ ${report.action}\n    tx ${report.hash}  block ${report.blockNumber}  gas ${report.gasUsed}`,
  );
}

/** JSON with bigints as decimal strings. */
function printJson(value: unknown) {
  console.log(JSON.stringify(value, (_key, item) => (typeof item === "bigint" ? item.toString() : item), 2));
}

const keyOf = (command: Command) => (command.optsWithGlobals() as { key?: string }).key ?? "default";
const chainFlagsOf = (command: Command) => command.optsWithGlobals() as ChainFlags;

/** A command that sends transactions: the chain (checked before the password is asked) and the signing key. */
async function signer(command: Command) {
  const config = configFrom(command);
  const node = await import("../node/index.ts");
  const { withSigner, getTokenInfo } = await import("../chain/index.ts");
  const reader = await node.openChain({ home: config.home, location: chainFlagsOf(command) });
  const privateKey = await node.loadKey({ home: config.home, name: keyOf(command) });
  const connection = withSigner(reader.connection, privateKey);
  const token = await getTokenInfo(connection, reader.deployments.contracts.token);
  return { config, privateKey, connection, deployments: reader.deployments, token };
}

/** The options of a read-only command: the chain, whose account (a key or an address), and JSON output. */
function addViewOptions(command: Command): Command {
  return addChainOptions(command)
    .option("--key <name>", "keystore (default: default, or on a devnet machine without it devnet-gateway)")
    .option("--address <address>", "any address instead of a key", address)
    .option("--json", "print JSON");
}

/** A read-only command: the chain, and the address of the key (no password needed) or of --address. */
async function viewer(command: Command) {
  const config = configFrom(command);
  const node = await import("../node/index.ts");
  const reader = await node.openChain({ home: config.home, location: chainFlagsOf(command) });
  const options = command.optsWithGlobals() as { address?: Address; key?: string };
  if (options.address) return { config, account: options.address, ...reader };
  const chosen = await node.chooseViewKey({ home: config.home, requested: options.key });
  if (chosen.note) process.stderr.write(`${chosen.note}\n`);
  const { readKeystoreAddress } = await import("../identity/index.ts");
  const account = await readKeystoreAddress({ home: config.home, name: chosen.name });
  return { config, account, ...reader };
}

function addChainDeployCommands(program: Command) {
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
    .option(
      "--bootstrap <multiaddr...>",
      "nodes (each a multiaddr with /p2p/<peer id>) where others join the network first, kept in deployments.json",
    )
    .action(
      async (
        flags: {
          bootstrap?: string[];
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
        const node = await import("../node/index.ts");
        const {
          connectChain,
          defaultDeploymentsPath,
          deployMycel,
          validateBootstrapAddresses,
          writeDeployments,
        } = await import("../chain/index.ts");
        // Checked before anything is sent: a bad address costs no gas.
        const bootstrap = validateBootstrapAddresses(flags.bootstrap ?? []);
        const out = flags.out ?? defaultDeploymentsPath(config.home);
        if (existsSync(out) && !flags.force)
          throw new MycelError(`${out} exists already`, {
            hint: "pass --out <file> to write elsewhere, or --force to replace it",
          });
        const settings = await node.readDeployParameters(flags.params, Boolean(flags.devnetPeriods));
        const privateKey = await node.loadKey({ home: config.home, name: flags.key });
        const connection = await connectChain({ rpcUrl: flags.rpcUrl, privateKey });
        console.log(
          `deploying to chain ${connection.chain.id} (${flags.rpcUrl}) from ${connection.account?.address}`,
        );
        const deployments = await deployMycel(connection, {
          token: flags.token,
          parameters: settings,
          onTransaction: printTransaction,
        });
        writeDeployments(out, bootstrap.length > 0 ? { ...deployments, bootstrap } : deployments);
        console.log(`\ndeployments written to ${out}`);
        if (bootstrap.length > 0) console.log(`  bootstrap         ${bootstrap.join(" ")}`);
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
      const node = await import("../node/index.ts");
      const { formatTokenAmount, getTokenBalance, getTokenInfo } = await import("../chain/index.ts");
      const { connection, deployments, deploymentsPath } = await node.openChain({
        home: config.home,
        location: flags,
      });
      const token = await getTokenInfo(connection, deployments.contracts.token);
      const block = await connection.publicClient.getBlockNumber();
      console.log(`chain ${deployments.chainId} at ${connection.rpcUrl}, block ${block}`);
      console.log(`deployments: ${deploymentsPath} (deployed ${deployments.deployedAt})`);
      for (const [name, value] of Object.entries(deployments.contracts))
        console.log(`  ${name.padEnd(17)} ${value}`);
      console.log(`token: ${token.symbol}, ${token.decimals} decimals`);
      if (!flags.key) return;
      const { privateKeyToAccount } = await import("viem/accounts");
      const account = privateKeyToAccount(await node.loadKey({ home: config.home, name: flags.key })).address;
      const [ether, tokens] = await Promise.all([
        connection.publicClient.getBalance({ address: account }),
        getTokenBalance(connection, { token: token.address, owner: account }),
      ]);
      console.log(
        `key "${flags.key}" ${account}: ${formatTokenAmount(ether, { decimals: 18, symbol: "ETH" })}, ${formatTokenAmount(tokens, token)}`,
      );
    });
}

function addModelChainCommands(model: Command) {
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
      const { parseModelParent, registerModel } = await import("../chain/index.ts");
      const parents = (flags.parent ?? []).map(parseModelParent);
      const { config, connection, deployments } = await signer(command);
      const node = await import("../node/index.ts");
      const { hash, record } = await node.resolveModelHash({ home: config.home, query });
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
      .description(
        "show a model file's tokenizer, special tokens and chat template, and its registry entry and lineage tree",
      )
      .argument("<model>", "name, hash or prefix in the local store, a GGUF file's path, or a full sha256")
      .option("--json", "print JSON"),
  ).action(async (query: string, flags: ChainFlags & { json?: boolean }, command: Command) => {
    const config = configFrom(command);
    const info = await import("./modelInfo.ts");
    const local = await info.findLocalModel({ home: config.home, query });
    if (!local) {
      // Only a hash: the registry is all there is to show, and its errors are the command's.
      const registry = await registryEntry({ home: config.home, query, flags });
      if (flags.json)
        return printJson({
          model: { hash: registry.lineage.modelHash },
          file: null,
          registry: registry.lineage,
        });
      return printRegistryEntry(registry);
    }
    let registry: RegistryEntry | undefined;
    let registryNote: string | undefined;
    if (!info.isChainConfigured({ home: config.home, flags }))
      registryNote = "no chain configured (run `mycel devnet`, or pass --rpc-url and --deployments)";
    else {
      try {
        registry = await registryEntry({
          home: config.home,
          query: local.hash ?? (await info.sha256OfFile(local.path)),
          flags,
        });
      } catch (error) {
        registryNote = error instanceof MycelError ? error.message : String(error);
      }
    }
    if (flags.json)
      return printJson({
        model: { name: local.name ?? null, hash: local.hash ?? null, path: local.path },
        file: local.report,
        registry: registry?.lineage ?? null,
        ...(registryNote ? { registryNote } : {}),
      });
    for (const line of info.formatModelReport(local)) console.log(line);
    if (registryNote) return console.log(`\nregistry: ${registryNote}`);
    console.log("\nregistry:");
    if (registry) await printRegistryEntry(registry);
  });
}

type RegistryEntry = Awaited<ReturnType<typeof registryEntry>>;

/** A model's registry entry and lineage; throws when the chain is unreachable or the model is not registered. */
async function registryEntry(parameters: { home: string; query: string; flags: ChainFlags }) {
  const node = await import("../node/index.ts");
  const { getModelLineage } = await import("../chain/index.ts");
  // The model first: a name that is nowhere gets "not found", not a complaint about the chain.
  const { hash, record } = await node.resolveModelHash({ home: parameters.home, query: parameters.query });
  const { connection, deployments } = await node.openChain({
    home: parameters.home,
    location: parameters.flags,
  });
  const lineage = await getModelLineage(connection, { deployments, modelHash: hash });
  if (!lineage)
    throw new MycelError(`model ${hash} is not registered on chain ${deployments.chainId}`, {
      code: "model_not_registered",
      hint: `register it with \`mycel model register ${record?.name ?? hash}\``,
    });
  return { lineage, localName: record?.name, connection, deployments };
}

async function printRegistryEntry(entry: RegistryEntry) {
  const { formatLineage, getModelEntry } = await import("../chain/index.ts");
  const { connection, deployments, localName, lineage } = entry;
  const hash = lineage.modelHash;
  console.log(`${lineage.name}  ${lineage.modelHash}`);
  console.log(`  license:    ${lineage.license}`);
  console.log(`  publisher:  ${lineage.publisher}`);
  console.log(
    `  registered: ${lineage.registeredAt.toISOString()}${lineage.deprecated ? "  (deprecated)" : ""}`,
  );
  if (lineage.metadataUri) console.log(`  metadata:   ${lineage.metadataUri}`);
  console.log(`  local store: ${localName ? `yes (${localName})` : "no"}`);
  console.log("\nlineage:");
  for (const line of formatLineage(lineage)) console.log(`  ${line}`);
  if (lineage.children.length === 0) return;
  console.log("\nderived models:");
  for (const child of lineage.children) {
    const childEntry = await getModelEntry(connection, { deployments, modelHash: child });
    const relation = childEntry?.parents.find((parent) => parent.modelHash === hash)?.relation;
    console.log(`  ${relation ?? "?"}: ${childEntry?.name ?? "?"} ${child}`);
  }
}

function addProviderStakeCommands(provider: Command) {
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
      const chain = await import("../chain/index.ts");
      const { roleDefaults } = await import("../config/index.ts");
      const { config, privateKey, connection, deployments, token } = await signer(command);
      const show = (value: bigint) => chain.formatTokenAmount(value, token);
      const amount = chain.parseTokenAmount(amountText, token.decimals);
      const account = connection.account?.address as Address;
      const record = await chain.getProviderRecord(connection, { deployments, provider: account });
      if (record) {
        await chain.addProviderStake(connection, {
          deployments,
          amount,
          onTransaction: printTransaction,
          formatAmount: show,
        });
      } else {
        if (!globals.model?.length)
          throw new InvalidInputError("a new provider names the models it serves", {
            hint: "run `mycel provider stake <amount> --model <model> [--price <n>]`",
          });
        const node = await import("../node/index.ts");
        const fallback = globals.price ?? roleDefaults.pricePerMillion;
        const offers = [];
        for (const query of globals.model)
          offers.push({
            modelHash: (await node.resolveModelHash({ home: config.home, query })).hash,
            inputPricePerMillion: globals.priceInput ?? fallback,
            outputPricePerMillion: globals.priceOutput ?? fallback,
          });
        const { peerIdOfSecp256k1Key } = await import("../p2p/index.ts");
        await chain.registerProvider(connection, {
          deployments,
          peerId: peerIdOfSecp256k1Key(privateKey),
          offers,
          stake: amount,
          onTransaction: printTransaction,
          formatAmount: show,
        });
      }
      const after = await chain.getProviderRecord(connection, { deployments, provider: account });
      console.log(
        `provider ${account}: staked ${show(after?.stake ?? 0n)}${after?.active ? " (active)" : " (below the minimum: inactive)"}`,
      );
    });

  provider
    .command("unbond")
    .description(
      "start unbonding stake; withdraw it after the unbonding period (it can still be slashed until then)",
    )
    .argument("<amount>", "tokens to unbond")
    .action(async (amountText: string, _flags: unknown, command: Command) => {
      const chain = await import("../chain/index.ts");
      const { connection, deployments, token } = await signer(command);
      const show = (value: bigint) => chain.formatTokenAmount(value, token);
      await chain.requestProviderUnbond(connection, {
        deployments,
        amount: chain.parseTokenAmount(amountText, token.decimals),
        onTransaction: printTransaction,
        formatAmount: show,
      });
      const record = await chain.getProviderRecord(connection, {
        deployments,
        provider: connection.account?.address as Address,
      });
      console.log(
        `unbonding ${show(record?.unbonding ?? 0n)}: withdraw with \`mycel provider withdraw\` after ${record?.unbondingReleaseAt?.toISOString()}`,
      );
    });

  provider
    .command("withdraw")
    .description("withdraw unbonded stake once the unbonding period is over")
    .action(async (_flags: unknown, command: Command) => {
      const chain = await import("../chain/index.ts");
      const { connection, deployments, token } = await signer(command);
      const before = await chain.getProviderRecord(connection, {
        deployments,
        provider: connection.account?.address as Address,
      });
      await chain.withdrawProviderStake(connection, { deployments, onTransaction: printTransaction });
      console.log(`withdrew ${chain.formatTokenAmount(before?.unbonding ?? 0n, token)}`);
    });

  provider
    .command("status")
    .description("show this key's provider record on chain")
    .action(async (_flags: unknown, command: Command) => {
      const chain = await import("../chain/index.ts");
      const { connection, deployments, token } = await signer(command);
      const show = (value: bigint) => chain.formatTokenAmount(value, token);
      const account = connection.account?.address as Address;
      const record = await chain.getProviderRecord(connection, { deployments, provider: account });
      if (!record) {
        console.log(
          `${account} is not a registered provider: run \`mycel provider stake <amount> --model <model>\``,
        );
        return;
      }
      console.log(`provider ${account} (peer ${record.peerId}) ${record.active ? "active" : "inactive"}`);
      console.log(`  stake:     ${show(record.stake)}`);
      console.log(
        `  unbonding: ${show(record.unbonding)}${record.unbondingReleaseAt ? ` (withdrawable after ${record.unbondingReleaseAt.toISOString()})` : ""}`,
      );
      for (const offer of record.offers)
        console.log(
          `  offers ${offer.modelHash}: ${offer.inputPricePerMillion} in / ${offer.outputPricePerMillion} out per 1M tokens`,
        );
    });
}

function addChannelCommands(program: Command) {
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
      const chain = await import("../chain/index.ts");
      const { connection, deployments, token } = await signer(command);
      const show = (value: bigint) => chain.formatTokenAmount(value, token);
      const amount = chain.parseTokenAmount(flags.amount, token.decimals);
      const opened = await chain.openChannel(connection, {
        deployments,
        provider: flags.provider,
        amount,
        challengePeriodSeconds: flags.challengePeriod,
        onTransaction: printTransaction,
        formatAmount: show,
      });
      console.log(`channel ${opened.channelId} open: ${show(amount)} to ${flags.provider}`);
    },
  );

  addViewOptions(
    channel
      .command("list")
      .description(
        "list the channels this key opened (as client) or receives (as provider), with the latest vouchers (no password needed)",
      ),
  ).action(async (flags: ChainFlags & { json?: boolean }, command: Command) => {
    const { config, connection, deployments, account } = await viewer(command);
    const node = await import("../node/index.ts");
    const chain = await import("../chain/index.ts");
    const token = await chain.getTokenInfo(connection, deployments.contracts.token);
    const rows = await node.listChannelRows({ connection, deployments, account, home: config.home });
    if (flags.json) return printJson(rows);
    if (rows.length === 0) {
      console.log(
        `no channels for ${account}: open one with \`mycel channel open --provider <address> --amount <tokens>\``,
      );
      return;
    }
    const show = (value: bigint) => chain.formatTokenAmount(value, token);
    printTable([
      ["CHANNEL", "ROLE", "COUNTERPARTY", "DEPOSIT", "VOUCHER", "SETTLED", "STATE", "CLOSES AT"],
      ...rows.map((row) => [
        row.channelId,
        row.role,
        row.counterparty,
        show(row.deposit),
        row.voucher === undefined ? "-" : show(row.voucher),
        show(row.settled),
        row.state,
        row.closesAt?.toISOString() ?? "-",
      ]),
    ]);
    console.log(
      "VOUCHER: the latest voucher on this machine (signed by its gateway, or received by its provider); SETTLED: paid out on chain",
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
    const chain = await import("../chain/index.ts");
    const { connection, deployments, token } = await signer(command);
    const show = (value: bigint) => chain.formatTokenAmount(value, token);
    const before = await chain.getChannel(connection, { deployments, channelId: id });
    if (before.state === "closed") {
      console.log(`channel ${id} is closed already`);
      return;
    }
    if (before.state === "open") {
      await chain.requestChannelClose(connection, {
        deployments,
        channelId: id,
        onTransaction: printTransaction,
      });
      const after = await chain.getChannel(connection, { deployments, channelId: id });
      console.log(
        `channel ${id} is closing: the provider may settle until ${after.closesAt?.toISOString()}; run \`mycel channel close ${id}\` again after that to withdraw the rest`,
      );
      return;
    }
    const withdrawn = await chain.withdrawChannel(connection, {
      deployments,
      channelId: id,
      onTransaction: printTransaction,
      formatAmount: show,
    });
    console.log(
      `channel ${id} closed: ${show(withdrawn.refunded)} returned, ${show(before.settled)} paid to the provider`,
    );
  });
}

function addWalletCommand(program: Command) {
  addViewOptions(
    program
      .command("wallet")
      .description("balances, channel deposits, payments made and earnings of a key (no password needed)"),
  ).action(async (flags: ChainFlags & { json?: boolean }, command: Command) => {
    const { config, connection, deployments, account } = await viewer(command);
    const node = await import("../node/index.ts");
    const { formatTokenAmount } = await import("../chain/index.ts");
    const wallet = await node.readWallet({ connection, deployments, account, home: config.home });
    const { token } = wallet;
    if (flags.json)
      return printJson({
        ...wallet,
        token: { symbol: token.symbol, decimals: token.decimals, address: token.address },
      });
    const show = (amount: bigint) => formatTokenAmount(amount, token);
    const { asClient, asProvider } = wallet;
    console.log(`${account} on chain ${wallet.chainId}`);
    console.log(
      `  balance        ${formatTokenAmount(wallet.balances.ether, { decimals: 18, symbol: "ETH" })}, ${show(wallet.balances.token)}`,
    );
    console.log(
      `  as a client    ${asClient.channels} open channel(s), ${show(asClient.deposited)} deposited; vouchers signed here ${show(asClient.paid)}; settled by providers ${show(asClient.settled)}`,
    );
    console.log(
      `  as a provider  ${asProvider.channels} channel(s); vouchers received here ${show(asProvider.earned)} (${show(asProvider.unsettled)} not settled yet); settled to you ${show(asProvider.settled)}; stake ${show(asProvider.stake)}`,
    );
  });
}

/** Adds the chain commands to the program (`provider` and `model` are the commands their subcommands hang off). */
export function addChainCommands(parameters: { program: Command; model: Command; provider: Command }) {
  addChainDeployCommands(parameters.program);
  addModelChainCommands(parameters.model);
  addProviderStakeCommands(parameters.provider);
  addChannelCommands(parameters.program);
  addWalletCommand(parameters.program);
}
