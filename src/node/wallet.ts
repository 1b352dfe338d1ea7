/**
 * A key's money, from the chain and this machine's stores: balances, channels as a client and as a provider, the
 * vouchers signed or received here, what is settled, and the stake.
 */
import { existsSync } from "node:fs";
import type { Address, Hex } from "viem";
import {
  type ChainConnection,
  type ChannelRecord,
  type Deployments,
  getProviderRecord,
  getTokenBalance,
  getTokenInfo,
  listChannels,
  readChainBinding,
  type TokenInfo,
} from "../chain/index.ts";
import {
  gatewayPaymentStorePath,
  openPaymentStore,
  type PaymentStore,
  providerPaymentStorePath,
} from "../store/index.ts";

/**
 * The payments this machine's gateway and provider stores hold for `account` on the chain `chain` (a
 * `ChainBinding.key`), opened only if they exist.
 */
export function readLocalPayments(home: string, account: Address, chain: string) {
  /** Reads a store only if it exists (a command that shows things creates nothing). */
  const read = <T>(path: string, use: (store: PaymentStore) => T[]): T[] => {
    if (!existsSync(path)) return [];
    const store = openPaymentStore({ path, chain });
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

/** One channel of an account, with the latest voucher this machine holds on it. */
export type ChannelRow = ChannelRecord & {
  role: "client" | "provider";
  counterparty: Address;
  /** The highest voucher this machine's gateway signed (client) or its provider received (provider) on it. */
  voucher: bigint | undefined;
};

/** Every channel of `account` on chain, as client and as provider, with this machine's latest vouchers. */
export async function listChannelRows(parameters: {
  connection: ChainConnection;
  deployments: Deployments;
  account: Address;
  home: string;
}): Promise<ChannelRow[]> {
  const { asClient, asProvider } = await listChannels(parameters.connection, parameters);
  const binding = await readChainBinding(parameters.connection, { deployments: parameters.deployments });
  const local = readLocalPayments(parameters.home, parameters.account, binding.key);
  return [
    ...asClient.map((entry) => ({
      ...entry,
      role: "client" as const,
      counterparty: entry.provider,
      voucher: local.signed.get(entry.channelId.toLowerCase())?.signedAmount,
    })),
    ...asProvider.map((entry) => ({
      ...entry,
      role: "provider" as const,
      counterparty: entry.client,
      voucher: local.received.get(entry.channelId.toLowerCase())?.cumulativeAmount,
    })),
  ];
}

/** What {@link readWallet} returns. */
export type Wallet = {
  address: Address;
  chainId: number;
  token: TokenInfo;
  balances: { ether: bigint; token: bigint };
  asClient: { channels: number; deposited: bigint; paid: bigint; settled: bigint };
  asProvider: { channels: number; earned: bigint; settled: bigint; stake: bigint; unsettled: bigint };
};

function sum<T>(items: Iterable<T>, pick: (item: T) => bigint): bigint {
  let total = 0n;
  for (const item of items) total += pick(item);
  return total;
}

/** Reads an account's wallet: balances, spending as a client and earnings as a provider. */
export async function readWallet(parameters: {
  connection: ChainConnection;
  deployments: Deployments;
  account: Address;
  home: string;
}): Promise<Wallet> {
  const { connection, deployments, account } = parameters;
  const token = await getTokenInfo(connection, deployments.contracts.token);
  const [ether, tokens, channels, record, binding] = await Promise.all([
    connection.publicClient.getBalance({ address: account }),
    getTokenBalance(connection, { token: token.address, owner: account }),
    listChannels(connection, { deployments, account }),
    getProviderRecord(connection, { deployments, provider: account }),
    readChainBinding(connection, { deployments }),
  ]);
  const local = readLocalPayments(parameters.home, account, binding.key);
  const live = channels.asClient.filter((entry) => entry.state !== "closed");
  // Unsettled: what the vouchers held here promise beyond what the chain has paid out on their channels.
  const settledOnChain = new Map(
    channels.asProvider.map((entry) => [entry.channelId.toLowerCase(), entry.settled]),
  );
  const unsettled = sum(local.received.values(), (entry) => {
    const rest = entry.cumulativeAmount - (settledOnChain.get(entry.channelId.toLowerCase()) ?? 0n);
    return rest > entry.forfeitedAmount ? rest - entry.forfeitedAmount : 0n;
  });
  return {
    address: account,
    chainId: deployments.chainId,
    token,
    balances: { ether, token: tokens },
    asClient: {
      channels: live.length,
      deposited: sum(live, (entry) => entry.deposit),
      paid: sum(local.signed.values(), (entry) => entry.signedAmount),
      settled: sum(channels.asClient, (entry) => entry.settled),
    },
    asProvider: {
      channels: channels.asProvider.length,
      earned: sum(local.received.values(), (entry) => entry.cumulativeAmount),
      settled: sum(channels.asProvider, (entry) => entry.settled),
      stake: record?.stake ?? 0n,
      unsettled,
    },
  };
}
