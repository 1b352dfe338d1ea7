/** deployments.json: which chain and which contract addresses a node uses. */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Address, getAddress } from "viem";
import { z } from "zod";
import { type ReceiptDomain, receiptDomain } from "../protocol/index.ts";
import { ChainError } from "./errors.ts";

const address = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, "must be an address")
  .transform((value) => getAddress(value));
const uintString = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal integer string");

/** The schema of deployments.json. */
export const deploymentsSchema = z.object({
  chainId: z.number().int().positive(),
  /** The RPC URL the contracts were deployed through (a hint; --rpc-url wins). */
  rpcUrl: z.string().optional(),
  deployer: address,
  blockNumber: uintString,
  deployedAt: z.string(),
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
