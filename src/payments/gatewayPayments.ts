/**
 * The gateway's side of payment channels: opens and funds a channel per provider within a budget, meters what
 * it receives, and pays with cumulative vouchers (one in flight per channel, each written down before it is sent).
 */
import { type Address, getAddress, type Hex, isAddressEqual } from "viem";
import {
  type ChainConnection,
  type ChannelRecord,
  ContractRevertError,
  type Deployments,
  deploymentVoucherDomain,
  getChannel,
  openChannel,
  topUpChannel,
} from "../chain/index.ts";
import { describeError, PaymentRequiredError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import type { Announcement } from "../protocol/index.ts";
import type { ClientChannel, PaymentStore } from "../store/index.ts";
import {
  acknowledgementTimeoutMs,
  type ChannelEntry,
  createPayingChannel,
  type PayingChannel,
} from "./payingChannel.ts";

/** Parameters of {@link createGatewayPayments}. */
export type CreateGatewayPaymentsParameters = {
  /** A connection that signs with the gateway's key (it opens and funds channels). */
  connection: ChainConnection;
  deployments: Deployments;
  store: PaymentStore;
  /** The gateway's key: it signs vouchers. */
  privateKey: Hex;
  /** Deposited into each new channel, and added at each top-up (smallest units). */
  depositPerProvider: bigint;
  /** The most the gateway keeps deposited across all its channels (smallest units). */
  budget: bigint;
  logger?: Logger;
};

/** The gateway's payments (see {@link createGatewayPayments}). */
export type GatewayPayments = {
  /** Whether this gateway can pay a provider whose announcement says how it is paid. */
  canPay(payment: Announcement["payment"]): boolean;
  /** The provider's channel, opened or topped up first if needed (within the budget). */
  channelFor(parameters: { provider: Address; creditWindow: bigint }): Promise<PayingChannel>;
  /** Every channel of this gateway's key on this chain, newest first. */
  channels(): ClientChannel[];
  /**
   * A provider said it does not know `channelId`: asks the chain. When the chain does not know it either, the
   * channel is forgotten (the next `channelFor` opens a new one) and this resolves true; when the chain knows it,
   * the provider is wrong and this resolves false. Throws when the chain cannot be read.
   */
  forgetIfUnknown(parameters: { channelId: Hex }): Promise<boolean>;
  budget: { limit: bigint; depositPerProvider: bigint; committed(): bigint };
  /** Waits (bounded) for vouchers in flight. */
  stop(): Promise<void>;
};

/**
 * The channel as the chain holds it; "unknown" when the chain has no such channel, or holds another's under its id
 * (channel ids repeat on a fresh chain). Throws when the chain cannot be read.
 */
async function channelOnChain(parameters: {
  connection: ChainConnection;
  deployments: Deployments;
  client: Address;
  entry: ChannelEntry;
}): Promise<ChannelRecord | "unknown"> {
  const { entry } = parameters;
  try {
    const record = await getChannel(parameters.connection, {
      deployments: parameters.deployments,
      channelId: entry.channelId,
    });
    const ours =
      isAddressEqual(record.client, parameters.client) && isAddressEqual(record.provider, entry.row.provider);
    return ours ? record : "unknown";
  } catch (error) {
    if (error instanceof ContractRevertError && error.errorName === "UnknownChannel") return "unknown";
    throw error;
  }
}

/** Creates the gateway's payment side. */
export function createGatewayPayments(parameters: CreateGatewayPaymentsParameters): GatewayPayments {
  const { connection, deployments, store } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const client = getAddress(connection.account?.address ?? "0x");
  const domain = deploymentVoucherDomain(deployments);
  const byProvider = new Map<string, ChannelEntry>();
  const preparing = new Map<string, Promise<ChannelEntry>>();
  const checkedOnChain = new Set<string>();
  // Chain actions go out one at a time: they are sent from one key (nonces, the token allowance), and the
  // budget is checked against deposits recorded by the actions before.
  let chainActions: Promise<unknown> = Promise.resolve();
  function serialized<T>(action: () => Promise<T>): Promise<T> {
    const run = chainActions.then(action);
    chainActions = run.catch(() => undefined);
    return run;
  }
  const queues = new Set<Promise<void>>();

  function committed(): bigint {
    return store
      .channelsOf(client)
      .filter((row) => row.state === "open" || row.state === "closing")
      .reduce((sum, row) => sum + row.deposit, 0n);
  }

  const entryOf = (row: ClientChannel): ChannelEntry =>
    createPayingChannel({ row, store, privateKey: parameters.privateKey, domain, running: queues, logger });

  // Channels opened in earlier runs on this chain are used again (the store shows only this chain's channels: those
  // of a chain that was reset, and those stored before channels were bound to their chain, are never reused).
  for (const row of store.channelsOf(client)) {
    const key = row.provider.toLowerCase();
    if (row.state === "open" && !byProvider.has(key)) byProvider.set(key, entryOf(row));
  }

  async function ensureFunded(entry: ChannelEntry | undefined, provider: Address, creditWindow: bigint) {
    const amount = parameters.depositPerProvider;
    if (entry && !checkedOnChain.has(entry.channelId)) {
      // Once per run: the channel may have been closed from the command line meanwhile.
      const record = await channelOnChain({ connection, deployments, client, entry }).catch((error) => {
        logger.warn(
          "cannot read a payment channel from the chain: using it as stored, reading it again later",
          {
            channel: entry?.channelId,
            error: describeError(error),
          },
        );
        return undefined;
      });
      if (record) checkedOnChain.add(entry.channelId);
      if (record === "unknown") {
        forget(entry, "the chain does not know this channel");
        entry = undefined;
      } else if (record && record.state !== "open") {
        store.updateChannel({ channelId: entry.channelId, state: record.state });
        byProvider.delete(provider.toLowerCase());
        entry = undefined;
      } else if (record && record.deposit !== entry.row.deposit) {
        store.updateChannel({ channelId: entry.channelId, deposit: record.deposit });
        entry.row.deposit = record.deposit;
      }
    }
    const headroom = creditWindow * 4n > amount / 4n ? creditWindow * 4n : amount / 4n;
    if (entry && entry.row.deposit - entry.row.signedAmount >= headroom) return entry;
    return serialized(() => fund(entry, provider, headroom));
  }

  /** Tops up or opens a channel: one at a time (see `serialized`). */
  async function fund(entry: ChannelEntry | undefined, provider: Address, headroom: bigint) {
    const limit = parameters.budget;
    const amount = parameters.depositPerProvider;
    if (entry) {
      const remaining = entry.row.deposit - entry.row.signedAmount;
      if (remaining >= headroom) return entry;
      if (committed() + amount > limit) {
        if (remaining > 0n) return entry;
        throw budgetExhausted(limit);
      }
      logger.info("topping up a payment channel", {
        provider,
        channel: entry.channelId,
        amount: amount.toString(),
      });
      await topUpChannel(connection, { deployments, channelId: entry.channelId, amount });
      entry.row.deposit += amount;
      store.updateChannel({ channelId: entry.channelId, deposit: entry.row.deposit });
      return entry;
    }
    if (committed() + amount > limit) throw budgetExhausted(limit);
    logger.info("opening a payment channel", { provider, deposit: amount.toString() });
    const opened = await openChannel(connection, { deployments, provider, amount });
    const row = store.addChannel({
      channelId: opened.channelId,
      client,
      provider,
      deposit: amount,
      state: "open",
    });
    checkedOnChain.add(opened.channelId);
    const created = entryOf(row);
    byProvider.set(provider.toLowerCase(), created);
    logger.info("payment channel open", { provider, channel: opened.channelId });
    return created;
  }

  function forget(entry: ChannelEntry, reason: string) {
    logger.warn("forgetting a payment channel: a new one is opened", {
      provider: entry.row.provider,
      channel: entry.channelId,
      reason,
    });
    store.updateChannel({ channelId: entry.channelId, state: "unknown" });
    const key = entry.row.provider.toLowerCase();
    if (byProvider.get(key) === entry) byProvider.delete(key);
  }

  function budgetExhausted(limit: bigint) {
    return new PaymentRequiredError(`the gateway's payment budget of ${limit} is spent`, {
      details: `${committed()} is deposited in channels`,
      hint: "raise --budget, or close channels you no longer use with `mycel channel close`",
    });
  }

  return {
    canPay(payment) {
      return (
        payment !== undefined &&
        payment.chain_id === deployments.chainId &&
        isAddressEqual(payment.payment_channels as Address, deployments.contracts.paymentChannels)
      );
    },
    async channelFor(input) {
      const key = input.provider.toLowerCase();
      const pending = preparing.get(key);
      if (pending) await pending.catch(() => undefined);
      const current = byProvider.get(key);
      const prepare = ensureFunded(current, getAddress(input.provider), input.creditWindow).then((entry) => {
        // The window is the provider's latest word (its announcement), not what it was when the channel opened.
        entry.creditWindow = input.creditWindow;
        return entry;
      });
      preparing.set(key, prepare);
      try {
        return await prepare;
      } finally {
        if (preparing.get(key) === prepare) preparing.delete(key);
      }
    },
    channels: () => store.channelsOf(client),
    async forgetIfUnknown(input) {
      const entry = [...byProvider.values()].find(
        (candidate) => candidate.channelId.toLowerCase() === input.channelId.toLowerCase(),
      );
      // Already forgotten (by a concurrent request): the next channelFor opens a new one.
      if (!entry) return true;
      const record = await channelOnChain({ connection, deployments, client, entry });
      if (record !== "unknown") return false;
      forget(entry, "neither the provider nor the chain knows it");
      return true;
    },
    budget: { limit: parameters.budget, depositPerProvider: parameters.depositPerProvider, committed },
    async stop() {
      await Promise.race([
        Promise.allSettled([...queues]),
        new Promise((resolve) => setTimeout(resolve, acknowledgementTimeoutMs + 1_000).unref()),
      ]);
    },
  };
}
