/** deployments.json: which chain and which contract addresses a node uses. */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { type Address, getAddress } from "viem";
import { z } from "zod";
import { type ReceiptDomain, receiptDomain } from "../protocol/index.ts";
import { ChainError } from "./errors.ts";

const address = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, "must be an address")
  .transform((value) => getAddress(value));
const uintString = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal integer string");

/** Bootstrap addresses a deployment may carry at most. */
export const maxDeploymentBootstrapAddresses = 64;

/**
 * Why `address` cannot be a bootstrap address (a multiaddr ending in /p2p/<peer id>), or undefined when it can.
 */
export function bootstrapAddressProblem(address: string): string | undefined {
  let components: { name: string; value?: string }[];
  try {
    components = multiaddr(address).getComponents();
  } catch {
    return "is not a multiaddr (write it like /ip4/203.0.113.7/tcp/4001/p2p/16Uiu2HAm…)";
  }
  const peerId = components.findLast((component) => component.name === "p2p")?.value;
  if (peerId === undefined) return "has no /p2p/<peer id> (append the node's peer id)";
  try {
    peerIdFromString(peerId);
  } catch {
    return `names "${peerId}", which is not a peer id`;
  }
  return undefined;
}

const bootstrapAddress = z
  .string()
  .max(512)
  .superRefine((value, context) => {
    const problem = bootstrapAddressProblem(value);
    if (problem) context.addIssue({ code: "custom", message: `"${value}" ${problem}` });
  });

/** The schema of deployments.json. */
export const deploymentsSchema = z.object({
  chainId: z.number().int().positive(),
  /** The RPC URL the contracts were deployed through (a hint; --rpc-url wins). */
  rpcUrl: z.string().optional(),
  deployer: address,
  blockNumber: uintString,
  deployedAt: z.string(),
  /** Multiaddrs (each with /p2p/<peer id>) a node dials first when it is given no --bootstrap; absent in old files. */
  bootstrap: z.array(bootstrapAddress).max(maxDeploymentBootstrapAddresses).optional(),
  contracts: z.object({
    token: address,
    modelRegistry: address,
    providerRegistry: address,
    paymentChannels: address,
    epochConsensus: address,
  }),
  parameters: z.object({
    minimumProviderStake: uintString,
    providerUnbondingSeconds: z.number().int().nonnegative(),
    maxProviders: z.number().int().positive(),
    minChallengeSeconds: z.number().int().nonnegative(),
    maxChallengeSeconds: z.number().int().positive(),
    minimumValidatorStake: uintString,
    validatorUnbondingSeconds: z.number().int().nonnegative(),
    epochSeconds: z.number().int().positive(),
    revealSeconds: z.number().int().positive(),
    votingSeconds: z.number().int().positive(),
    rewardPerEpoch: uintString,
    validatorShareBps: z.number().int().min(0).max(10_000),
  }),
});

/** The contents of deployments.json. */
export type Deployments = {
  chainId: number;
  rpcUrl?: string;
  deployer: Address;
  blockNumber: string;
  deployedAt: string;
  /** Where a node joins the network when it is given no --bootstrap: multiaddrs, each with /p2p/<peer id>. */
  bootstrap?: string[];
  contracts: {
    token: Address;
    modelRegistry: Address;
    providerRegistry: Address;
    paymentChannels: Address;
    epochConsensus: Address;
  };
  parameters: z.infer<typeof deploymentsSchema>["parameters"];
};

/** Where deployments.json lives by default: `MYCEL_HOME/deployments.json`. */
export function defaultDeploymentsPath(home: string): string {
  return join(home, "deployments.json");
}

/** Reads and validates a deployments file. */
export function readDeployments(path: string): Deployments {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new ChainError(`no deployments file at ${path}`, {
      code: "deployments_not_found",
      cause,
      hint: "start `mycel devnet` (it writes one), deploy with `mycel chain deploy --rpc-url <url>`, or pass --deployments <file>",
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ChainError(`${path} is not valid JSON`, { code: "invalid_deployments", cause });
  }
  const parsed = deploymentsSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ChainError(`${path}: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "is invalid"}`, {
      code: "invalid_deployments",
      hint: "redeploy with `mycel chain deploy`, or fix the file",
    });
  }
  return parsed.data;
}

/**
 * Checks bootstrap addresses for a deployments file: each a multiaddr with /p2p/<peer id>, no more than
 * {@link maxDeploymentBootstrapAddresses}; returns them without duplicates, or throws ChainError naming the bad one.
 */
export function validateBootstrapAddresses(addresses: readonly string[]): string[] {
  const unique = [...new Set(addresses)];
  for (const address of unique) {
    const problem = bootstrapAddressProblem(address);
    if (problem)
      throw new ChainError(`bootstrap address "${address}" ${problem}`, {
        code: "invalid_bootstrap",
        hint: "give each --bootstrap as a node's full multiaddr, e.g. /ip4/203.0.113.7/tcp/4001/p2p/16Uiu2HAm… (a provider prints its multiaddrs when it starts)",
      });
  }
  if (unique.length > maxDeploymentBootstrapAddresses)
    throw new ChainError(`${unique.length} bootstrap addresses: at most ${maxDeploymentBootstrapAddresses}`, {
      code: "invalid_bootstrap",
      hint: "list a few well-connected staked nodes: any one of them is enough to join",
    });
  return unique;
}

/** Writes a deployments file atomically (temp file, then rename). */
export function writeDeployments(path: string, deployments: Deployments): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(deployments, null, 2)}\n`);
  renameSync(temporary, path);
}

/** The EIP-712 domain providers sign receipts under on this deployment: this chain, the ProviderRegistry. */
export function deploymentReceiptDomain(deployments: Deployments): ReceiptDomain {
  return receiptDomain({
    chainId: deployments.chainId,
    verifyingContract: deployments.contracts.providerRegistry,
  });
}
