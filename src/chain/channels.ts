/** PaymentChannels actions: open, top up, settle a voucher, request close, withdraw, list. */
import { type Address, type Hex, parseEventLogs } from "viem";
import { type VoucherDomain, voucherDomain } from "../protocol/index.ts";
import type { ChainConnection } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import { ChainError, toChainError } from "./errors.ts";
import { paymentChannelsAbi } from "./generated/contracts.ts";
import { type AmountFormat, sendWithAllowance, show } from "./token.ts";
import { sendContractTransaction, type TransactionReporter } from "./transactions.ts";

/** A channel as the contract holds it, with its state in words. */
export type ChannelRecord = {
  channelId: Hex;
  client: Address;
  provider: Address;
  token: Address;
  deposit: bigint;
  settled: bigint;
  challengePeriodSeconds: number;
  /** When the client may withdraw, once it asked to close. */
  closesAt: Date | undefined;
  state: "open" | "closing" | "closed";
};

type Common = { deployments: Deployments; onTransaction?: TransactionReporter } & AmountFormat;

/** The voucher domain of a deployment's PaymentChannels. */
export function deploymentVoucherDomain(deployments: Deployments): VoucherDomain {
  return voucherDomain({
    chainId: deployments.chainId,
    paymentChannels: deployments.contracts.paymentChannels,
  });
}

/** Opens a channel from the connected account to `provider`, approving and depositing `amount`. */
export async function openChannel(
  connection: ChainConnection,
  parameters: Common & {
    provider: Address;
    amount: bigint;
    challengePeriodSeconds?: number;
    token?: Address;
  },
): Promise<{ channelId: Hex; hash: Hex; gasUsed: bigint }> {
  const { contracts } = parameters.deployments;
  const token = parameters.token ?? contracts.token;
  const challenge =
    parameters.challengePeriodSeconds ?? parameters.deployments.parameters.minChallengeSeconds;
  const sent = await sendWithAllowance(connection, {
    pull: { token, amount: parameters.amount },
    formatAmount: parameters.formatAmount,
    address: contracts.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "open",
    args: [parameters.provider, token, parameters.amount, BigInt(challenge)],
    action: `open a channel to ${parameters.provider} with ${show(parameters, parameters.amount)} deposited`,
    onTransaction: parameters.onTransaction,
  });
  const [opened] = parseEventLogs({
    abi: paymentChannelsAbi,
    logs: sent.receipt.logs,
    eventName: "ChannelOpened",
  });
  if (!opened)
    throw new ChainError("the channel opened but no ChannelOpened event was found", { details: sent.hash });
  return { channelId: opened.args.channelId, hash: sent.hash, gasUsed: sent.gasUsed };
}

/** Adds to a channel's deposit. */
export async function topUpChannel(
  connection: ChainConnection,
  parameters: Common & { channelId: Hex; amount: bigint },
) {
  const channel = await getChannel(connection, parameters);
  return sendWithAllowance(connection, {
    pull: { token: channel.token, amount: parameters.amount },
    formatAmount: parameters.formatAmount,
    address: parameters.deployments.contracts.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "topUp",
    args: [parameters.channelId, parameters.amount],
    action: `top up channel ${parameters.channelId} by ${show(parameters, parameters.amount)}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Settles a voucher (provider only); returns what was paid. */
export async function settleVoucher(
  connection: ChainConnection,
  parameters: Common & { channelId: Hex; cumulativeAmount: bigint; signature: Hex },
) {
  const sent = await sendContractTransaction(connection, {
    address: parameters.deployments.contracts.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "settle",
    args: [parameters.channelId, parameters.cumulativeAmount, parameters.signature],
    action: `settle channel ${parameters.channelId} up to ${show(parameters, parameters.cumulativeAmount)}`,
    onTransaction: parameters.onTransaction,
  });
  return { ...sent, paid: sent.result as bigint };
}

/** Starts closing a channel (client only). */
export async function requestChannelClose(
  connection: ChainConnection,
  parameters: Common & { channelId: Hex },
) {
  return sendContractTransaction(connection, {
    address: parameters.deployments.contracts.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "requestClose",
    args: [parameters.channelId],
    action: `request to close channel ${parameters.channelId}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Withdraws the unsettled deposit after the challenge period (client only). */
export async function withdrawChannel(connection: ChainConnection, parameters: Common & { channelId: Hex }) {
  const sent = await sendContractTransaction(connection, {
    address: parameters.deployments.contracts.paymentChannels,
    abi: paymentChannelsAbi,
    functionName: "withdraw",
    args: [parameters.channelId],
    action: `withdraw what is left in channel ${parameters.channelId}`,
    onTransaction: parameters.onTransaction,
  });
  return { ...sent, refunded: sent.result as bigint };
}

/** Reads one channel. */
export async function getChannel(
  connection: ChainConnection,
  parameters: { deployments: Deployments; channelId: Hex },
): Promise<ChannelRecord> {
  try {
    const channel = await connection.publicClient.readContract({
      address: parameters.deployments.contracts.paymentChannels,
      abi: paymentChannelsAbi,
      functionName: "getChannel",
      args: [parameters.channelId],
    });
    const closesAt =
      channel.closeRequestedAt === 0n
        ? undefined
        : new Date(Number(channel.closeRequestedAt + channel.challengePeriod) * 1000);
    return {
      channelId: parameters.channelId,
      client: channel.client,
      provider: channel.provider,
      token: channel.token,
      deposit: channel.deposit,
      settled: channel.settled,
      challengePeriodSeconds: Number(channel.challengePeriod),
      closesAt,
      state: channel.finalized ? "closed" : closesAt ? "closing" : "open",
    };
  } catch (error) {
    throw toChainError(error, `reading channel ${parameters.channelId}`);
  }
}

/** Lists the channels an account opened (as client) and those opened to it (as provider). */
export async function listChannels(
  connection: ChainConnection,
  parameters: { deployments: Deployments; account: Address },
): Promise<{ asClient: ChannelRecord[]; asProvider: ChannelRecord[] }> {
  const address = parameters.deployments.contracts.paymentChannels;
  const read = (functionName: "channelsOfClient" | "channelsOfProvider") =>
    connection.publicClient.readContract({
      address,
      abi: paymentChannelsAbi,
      functionName,
      args: [parameters.account],
    });
  try {
    const [clientIds, providerIds] = await Promise.all([
      read("channelsOfClient"),
      read("channelsOfProvider"),
    ]);
    const load = (ids: readonly Hex[]) =>
      Promise.all(
        ids.map((channelId) => getChannel(connection, { deployments: parameters.deployments, channelId })),
      );
    const [asClient, asProvider] = await Promise.all([load(clientIds), load(providerIds)]);
    return { asClient, asProvider };
  } catch (error) {
    throw toChainError(error, `listing the channels of ${parameters.account}`);
  }
}
