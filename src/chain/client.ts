/** Connecting to an EVM chain over JSON-RPC with viem, optionally with a signing key. */
import {
  type Account,
  type Chain,
  createPublicClient,
  createWalletClient,
  defineChain,
  type Hex,
  http,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { Deployments } from "./deployments.ts";
import { ChainError, toChainError } from "./errors.ts";

/** A connection to one chain: a public client, and a wallet client when a key was given. */
export type ChainConnection = {
  rpcUrl: string;
  chain: Chain;
  publicClient: PublicClient<Transport, Chain>;
  /** Present when connected with a private key. */
  walletClient?: WalletClient<Transport, Chain, Account>;
  account?: Account;
};

/** Parameters of {@link connectChain}. */
export type ConnectChainParameters = {
  rpcUrl: string;
  privateKey?: Hex;
  /** When given, the chain id must match (a deployments file's chain). */
  deployments?: Deployments;
  /** Receipt polling interval; default 50 ms on loopback, 1 s elsewhere. */
  pollingIntervalMs?: number;
  /** Per-request timeout; default 10 s. */
  timeoutMs?: number;
};

function isLoopback(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
  } catch {
    return false;
  }
}

/** Connects to a chain, checks its id against the deployment, and returns clients for it. */
export async function connectChain(parameters: ConnectChainParameters): Promise<ChainConnection> {
  const { rpcUrl } = parameters;
  const timeout = parameters.timeoutMs ?? 10_000;
  const pollingInterval = parameters.pollingIntervalMs ?? (isLoopback(rpcUrl) ? 50 : 1_000);
  let chainId: number;
  try {
    chainId = await createPublicClient({ transport: http(rpcUrl, { timeout, retryCount: 1 }) }).getChainId();
  } catch (error) {
    const chainError = toChainError(error, `connecting to ${rpcUrl}`);
    throw new ChainError(chainError.shortMessage, {
      code: "rpc_unreachable",
      cause: error,
      hint: "start the chain (`mycel devnet` runs a local anvil) or pass the right --rpc-url",
    });
  }
  if (parameters.deployments && parameters.deployments.chainId !== chainId) {
    throw new ChainError(
      `the deployments are for chain ${parameters.deployments.chainId}, but ${rpcUrl} is chain ${chainId}`,
      { code: "wrong_chain", hint: "pass the --rpc-url and --deployments of the same chain" },
    );
  }
  const chain = defineChain({
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
  const transport = http(rpcUrl, { timeout, retryCount: 1 });
  const publicClient = createPublicClient({ chain, transport, pollingInterval }) as PublicClient<
    Transport,
    Chain
  >;
  const connection = { rpcUrl, chain, publicClient };
  return parameters.privateKey ? withSigner(connection, parameters.privateKey) : connection;
}

/** The same connection (same chain, same public client: no RPC call) signing with `privateKey`. */
export function withSigner(connection: ChainConnection, privateKey: Hex): ChainConnection {
  const account = privateKeyToAccount(privateKey);
  const walletClient = createWalletClient({
    account,
    chain: connection.chain,
    transport: http(connection.rpcUrl, { timeout: connection.publicClient.transport.timeout, retryCount: 1 }),
    pollingInterval: connection.publicClient.pollingInterval,
  });
  return { ...connection, walletClient, account };
}

/** The wallet client of a connection, or a clear error when it was made without a key. */
export function requireWallet(connection: ChainConnection): WalletClient<Transport, Chain, Account> {
  if (!connection.walletClient)
    throw new ChainError("this needs a signing key", { hint: "pass --key <name> (see `mycel init`)" });
  return connection.walletClient;
}
