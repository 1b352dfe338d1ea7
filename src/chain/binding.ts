/**
 * Which chain a payment channel lives on: the chain id, the PaymentChannels contract and the chain's genesis block.
 * Channel ids restart at the same values on a fresh chain with the same deployer (a devnet restarted), so a
 * channel id alone does not name a channel: its binding does, together with the id.
 */
import type { Address, Hex } from "viem";
import type { ChainConnection } from "./client.ts";
import type { Deployments } from "./deployments.ts";
import { toChainError } from "./errors.ts";

/** The chain a channel is bound to; `key` is the one string stored beside each channel. */
export type ChainBinding = {
  chainId: number;
  paymentChannels: Address;
  /** The hash of the chain's block 0: a chain restarted from nothing has another. */
  genesisHash: Hex;
  /** `<chainId>:<paymentChannels>:<genesisHash>`, lower case. */
  key: string;
};

/** Reads the binding of the chain `connection` reaches for these deployments (one RPC call). */
export async function readChainBinding(
  connection: ChainConnection,
  parameters: { deployments: Deployments },
): Promise<ChainBinding> {
  let genesisHash: Hex;
  try {
    const genesis = await connection.publicClient.getBlock({ blockNumber: 0n });
    if (!genesis.hash) throw new Error("the chain returned block 0 without a hash");
    genesisHash = genesis.hash;
  } catch (cause) {
    throw toChainError(cause, "reading the chain's genesis block (to bind payment channels to this chain)");
  }
  const { chainId } = parameters.deployments;
  const paymentChannels = parameters.deployments.contracts.paymentChannels;
  return {
    chainId,
    paymentChannels,
    genesisHash,
    key: `${chainId}:${paymentChannels}:${genesisHash}`.toLowerCase(),
  };
}
