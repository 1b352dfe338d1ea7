/** Sending transactions: simulate first (to get the revert reason in words), send, wait, report. */
import {
  type Abi,
  type Address,
  type ContractFunctionArgs,
  type ContractFunctionName,
  getAddress,
  type Hex,
  type TransactionReceipt,
} from "viem";
import { type ChainConnection, requireWallet } from "./client.ts";
import { ContractRevertError, toChainError } from "./errors.ts";

/** What a sent transaction did. */
export type TransactionReport = {
  /** What it does, in words ("stake 100 MYC"). */
  action: string;
  hash: Hex;
  gasUsed: bigint;
  blockNumber: bigint;
};

/** Called once per mined transaction (the CLI prints it). */
export type TransactionReporter = (report: TransactionReport) => void;

/** Parameters of {@link sendContractTransaction}. */
export type SendContractTransactionParameters<
  abi extends Abi,
  functionName extends ContractFunctionName<abi, "nonpayable" | "payable">,
> = {
  address: Address;
  abi: abi;
  functionName: functionName;
  args: ContractFunctionArgs<abi, "nonpayable" | "payable", functionName>;
  /** What the transaction does, in words, for reports and errors. */
  action: string;
  onTransaction?: TransactionReporter;
};

/** What {@link sendContractTransaction} returns: the report, the receipt and the simulated return value. */
export type SendContractTransactionReturnType = TransactionReport & {
  receipt: TransactionReceipt;
  result: unknown;
};

/** The send in progress of each account on each chain: one account's transactions leave one at a time. */
const sendingByAccount = new Map<string, Promise<unknown>>();

/**
 * Runs `send` (which hands a transaction to the node) after the account's previous send: two parts of one process
 * that send from the same key at once (a validator's commitment and its slashing proposal) would otherwise take the
 * same nonce, and one would fail. Only the hand-over is in turn; waiting for the receipt is not.
 */
async function inTurn<T>(connection: ChainConnection, account: Address, send: () => Promise<T>): Promise<T> {
  const key = `${connection.rpcUrl}|${account.toLowerCase()}`;
  const previous = sendingByAccount.get(key) ?? Promise.resolve();
  const run = previous.then(send, send);
  const settled = run.catch(() => undefined);
  sendingByAccount.set(key, settled);
  void settled.then(() => {
    if (sendingByAccount.get(key) === settled) sendingByAccount.delete(key);
  });
  return run;
}

/** Simulates, sends and waits for one contract call; a refusal becomes a ContractRevertError with the reason in words. */
export async function sendContractTransaction<
  const abi extends Abi,
  functionName extends ContractFunctionName<abi, "nonpayable" | "payable">,
>(
  connection: ChainConnection,
  parameters: SendContractTransactionParameters<abi, functionName>,
): Promise<SendContractTransactionReturnType> {
  const wallet = requireWallet(connection);
  let hash: Hex;
  let result: unknown;
  try {
    // biome-ignore lint/suspicious/noExplicitAny: viem's generic simulate/write parameters are checked by the caller's types
    const call: any = {
      address: parameters.address,
      abi: parameters.abi,
      functionName: parameters.functionName,
      args: parameters.args,
      account: wallet.account,
    };
    ({ hash, result } = await inTurn(connection, wallet.account.address, async () => {
      const simulation = await connection.publicClient.simulateContract(call);
      return { result: simulation.result as unknown, hash: await wallet.writeContract(simulation.request) };
    }));
  } catch (error) {
    throw toChainError(error, parameters.action);
  }
  const { receipt, report } = await confirm(connection, hash, parameters);
  return { ...report, receipt, result };
}

/** Parameters of {@link deployContract}. */
export type DeployContractParameters = {
  abi: Abi;
  bytecode: Hex;
  args?: readonly unknown[];
  action: string;
  onTransaction?: TransactionReporter;
};

/** Deploys a contract and waits for it; returns its address with the report. */
export async function deployContract(
  connection: ChainConnection,
  parameters: DeployContractParameters,
): Promise<TransactionReport & { address: Address }> {
  const wallet = requireWallet(connection);
  let hash: Hex;
  try {
    hash = await inTurn(connection, wallet.account.address, () =>
      wallet.deployContract({
        abi: parameters.abi,
        bytecode: parameters.bytecode,
        args: parameters.args ?? [],
        account: wallet.account,
        chain: connection.chain,
      } as Parameters<typeof wallet.deployContract>[0]),
    );
  } catch (error) {
    throw toChainError(error, parameters.action);
  }
  const { receipt, report } = await confirm(connection, hash, parameters);
  if (!receipt.contractAddress) throw new ContractRevertError({ action: parameters.action });
  return { ...report, address: getAddress(receipt.contractAddress) };
}

/** Waits for a sent transaction, refuses a reverted one, and reports it. */
async function confirm(
  connection: ChainConnection,
  hash: Hex,
  parameters: { action: string; onTransaction?: TransactionReporter },
): Promise<{ receipt: TransactionReceipt; report: TransactionReport }> {
  let receipt: TransactionReceipt;
  try {
    receipt = await connection.publicClient.waitForTransactionReceipt({ hash, timeout: 120_000 });
  } catch (error) {
    throw toChainError(error, `${parameters.action} (waiting for ${hash})`);
  }
  if (receipt.status !== "success") throw new ContractRevertError({ action: parameters.action });
  const report = {
    action: parameters.action,
    hash,
    gasUsed: receipt.gasUsed,
    blockNumber: receipt.blockNumber,
  };
  parameters.onTransaction?.(report);
  return { receipt, report };
}
