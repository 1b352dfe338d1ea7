/** The payment ERC-20: balances, allowances, amounts in words. */

import { type Abi, type Address, type ContractFunctionName, erc20Abi, formatUnits, parseUnits } from "viem";
import { InvalidInputError } from "../errors/index.ts";
import type { ChainConnection } from "./client.ts";
import {
  type SendContractTransactionParameters,
  type SendContractTransactionReturnType,
  sendContractTransaction,
  type TransactionReporter,
} from "./transactions.ts";

/** The token's decimals and symbol (18 / "MYC" on the devnet). */
export type TokenInfo = { address: Address; decimals: number; symbol: string };

/** Reads a token's decimals and symbol. */
export async function getTokenInfo(connection: ChainConnection, token: Address): Promise<TokenInfo> {
  const [decimals, symbol] = await Promise.all([
    connection.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "decimals" }),
    connection.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "symbol" }),
  ]);
  return { address: token, decimals, symbol };
}

/** Formats a token amount ("12.5 MYC"). */
export function formatTokenAmount(amount: bigint, token: Pick<TokenInfo, "decimals" | "symbol">): string {
  return `${formatUnits(amount, token.decimals)} ${token.symbol}`;
}

/** Parses a whole or decimal token amount ("100", "0.5") into the smallest unit. */
export function parseTokenAmount(text: string, decimals: number): bigint {
  if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(text))
    throw new InvalidInputError(`"${text}" is not a token amount`, {
      code: "invalid_amount",
      hint: "write a plain number such as 100 or 0.5",
    });
  const fraction = text.split(".")[1] ?? "";
  if (fraction.length > decimals)
    throw new InvalidInputError(`"${text}" has more than ${decimals} decimals`, { code: "invalid_amount" });
  return parseUnits(text, decimals);
}

/** A token balance. */
export async function getTokenBalance(
  connection: ChainConnection,
  parameters: { token: Address; owner: Address },
): Promise<bigint> {
  return connection.publicClient.readContract({
    address: parameters.token,
    abi: erc20Abi,
    functionName: "balanceOf",
    args: [parameters.owner],
  });
}

/** How actions write token amounts in their descriptions (default: the smallest unit, e.g. "5000000000000000000 units"). */
export type AmountFormat = { formatAmount?: (amount: bigint) => string };

/** An amount in words, with the caller's format when it gave one. */
export function show(parameters: AmountFormat, amount: bigint): string {
  return parameters.formatAmount ? parameters.formatAmount(amount) : `${amount} units`;
}

/** Approves `spender` for `amount` unless the allowance already covers it. */
export async function ensureAllowance(
  connection: ChainConnection,
  parameters: {
    token: Address;
    spender: Address;
    amount: bigint;
    onTransaction?: TransactionReporter;
  } & AmountFormat,
): Promise<void> {
  const owner = connection.account?.address;
  if (!owner) return;
  const allowance = await connection.publicClient.readContract({
    address: parameters.token,
    abi: erc20Abi,
    functionName: "allowance",
    args: [owner, parameters.spender],
  });
  if (allowance >= parameters.amount) return;
  await sendContractTransaction(connection, {
    address: parameters.token,
    abi: erc20Abi,
    functionName: "approve",
    args: [parameters.spender, parameters.amount],
    action: `approve ${parameters.spender} to spend ${show(parameters, parameters.amount)}`,
    onTransaction: parameters.onTransaction,
  });
}

/** Sends a call that pulls `pull.amount` of `pull.token` into the called contract, approving it first if needed. */
export async function sendWithAllowance<
  const abi extends Abi,
  functionName extends ContractFunctionName<abi, "nonpayable" | "payable">,
>(
  connection: ChainConnection,
  parameters: SendContractTransactionParameters<abi, functionName> & {
    pull: { token: Address; amount: bigint };
  } & AmountFormat,
): Promise<SendContractTransactionReturnType> {
  await ensureAllowance(connection, {
    token: parameters.pull.token,
    spender: parameters.address,
    amount: parameters.pull.amount,
    onTransaction: parameters.onTransaction,
    formatAmount: parameters.formatAmount,
  });
  return sendContractTransaction(connection, parameters);
}
