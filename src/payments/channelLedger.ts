/**
 * What a provider knows of each channel that pays it: the channel as the chain holds it (read once, again when it
 * matters), what it is owed, what it was paid, the output being served on credit, and who waits for a voucher.
 */
import { type Address, getAddress, type Hex, isAddressEqual, zeroAddress } from "viem";
import {
  type ChainConnection,
  type ChannelRecord,
  ContractRevertError,
  type Deployments,
  getChannel,
} from "../chain/index.ts";
import { describeError } from "../errors/index.ts";
import type { PaymentStore } from "../store/index.ts";
import { VoucherRejectedError } from "./errors.ts";

/** One channel's accounts on the provider's side. */
export type ChannelState = {
  record: ChannelRecord;
  /** Prices of finished requests (plus what earlier runs were paid), in smallest units. */
  owed: bigint;
  /** The latest stored voucher. */
  paid: bigint;
  /** Requests being served on this channel, with the output counted so far. */
  active: Set<{ outputTokens: number }>;
  /** Finished requests whose final voucher may still be on its way. */
  grace: { amount: bigint; until: number }[];
  /** Called after each voucher accepted on the channel. */
  waiters: Set<() => void>;
};

/** Parameters of {@link createChannelLedger}. */
export type CreateChannelLedgerParameters = {
  connection: ChainConnection;
  deployments: Deployments;
  store: PaymentStore;
  /** The provider: the payee every channel must name. */
  provider: Address;
  /** The price of `tokens` output tokens. */
  priceOfOutput: (tokens: number) => bigint;
};

/** The provider's channel accounts. */
export type ChannelLedger = {
  /** The channel's state (read from the chain when not known yet, or when `refresh`). */
  state(channelId: Hex, refresh: boolean): Promise<ChannelState>;
  /** What the channel owes beyond its vouchers now: finished prices and output on credit, less what is in grace. */
  debtOf(state: ChannelState): bigint;
  /** Throws VoucherRejectedError when the channel does not exist, pays someone else, or in another token. */
  checkPayee(state: ChannelState, channelId: Hex): void;
};

/** Creates the ledger; chain reads of one channel are shared by concurrent callers. */
export function createChannelLedger(parameters: CreateChannelLedgerParameters): ChannelLedger {
  const { connection, deployments, store } = parameters;
  const provider = getAddress(parameters.provider);
  const channels = new Map<string, ChannelState>();
  const loading = new Map<string, Promise<ChannelState>>();

  async function read(channelId: Hex, known: ChannelState | undefined): Promise<ChannelState> {
    let record: ChannelRecord;
    try {
      record = await getChannel(connection, { deployments, channelId });
    } catch (cause) {
      if (cause instanceof ContractRevertError && cause.errorName === "UnknownChannel")
        throw new VoucherRejectedError(
          `channel ${channelId} does not exist on chain ${deployments.chainId}`,
          {
            code: "unknown_channel",
            hint: "open a channel to this provider with `mycel channel open`",
          },
        );
      // The chain is unreachable: a channel seen before is trusted as last read (serving goes on within it).
      if (known) return known;
      throw new VoucherRejectedError(`cannot read channel ${channelId} from the chain`, {
        code: "chain_unavailable",
        details: describeError(cause),
        hint: "the provider's chain RPC is unreachable; retry shortly",
        retryAfterMs: 2_000,
      });
    }
    // Owed and paid both start from the latest stored voucher (an earlier run's debts are not known).
    const stored = known ? 0n : (store.latestVoucher(channelId)?.cumulativeAmount ?? 0n);
    const state = known ?? {
      record,
      owed: stored,
      paid: stored,
      active: new Set(),
      grace: [],
      waiters: new Set(),
    };
    state.record = record;
    channels.set(channelId.toLowerCase(), state);
    return state;
  }

  return {
    async state(channelId, refresh) {
      const key = channelId.toLowerCase();
      const known = channels.get(key);
      if (known && !refresh) return known;
      const pending = loading.get(key);
      if (pending) return pending;
      const load = read(channelId, known);
      loading.set(key, load);
      try {
        return await load;
      } finally {
        loading.delete(key);
      }
    },
    debtOf(state) {
      const now = Date.now();
      state.grace = state.grace.filter((entry) => entry.until > now);
      let active = 0n;
      for (const request of state.active) active += parameters.priceOfOutput(request.outputTokens);
      const inGrace = state.grace.reduce((sum, entry) => sum + entry.amount, 0n);
      return state.owed + active - inGrace - state.paid;
    },
    checkPayee(state, channelId) {
      if (isAddressEqual(state.record.client, zeroAddress))
        throw new VoucherRejectedError(
          `channel ${channelId} does not exist on chain ${deployments.chainId}`,
          {
            code: "unknown_channel",
            hint: "open a channel to this provider with `mycel channel open`",
          },
        );
      if (!isAddressEqual(state.record.provider, provider))
        throw new VoucherRejectedError(
          `channel ${channelId} pays ${state.record.provider}, not this provider`,
          {
            code: "wrong_channel",
            hint: `open a channel to ${provider}`,
          },
        );
      if (!isAddressEqual(state.record.token, deployments.contracts.token))
        throw new VoucherRejectedError(`channel ${channelId} is in a token this provider does not take`, {
          code: "wrong_channel",
          details: `channel token ${state.record.token}, accepted ${deployments.contracts.token}`,
        });
    },
  };
}
