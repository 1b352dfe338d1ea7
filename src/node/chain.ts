/** The chain a role or command uses: a deployments file and an RPC URL, checked before anything is sent. */
import { readFileSync } from "node:fs";
import type { Hex } from "viem";
import {
  type ChainConnection,
  ChainError,
  connectChain,
  type Deployments,
  type DeployParameters,
  defaultDeploymentsPath,
  defaultDeployParameters,
  devnetDeployParameters,
  readDeployments,
} from "../chain/index.ts";
import { InvalidInputError } from "../errors/index.ts";
import { type ModelRecord, openModelStore } from "../model/index.ts";
import { modelHashToBytes32 } from "../protocol/index.ts";

/** Where the chain is, as flags give it (each falls back to the environment, then MYCEL_HOME). */
export type ChainLocation = { rpcUrl?: string; deployments?: string };

/** A chain opened by {@link openChain}. */
export type OpenedChain = { connection: ChainConnection; deployments: Deployments; deploymentsPath: string };

/** Reads the deployments and connects to their chain (signing with `privateKey` when given). */
export async function openChain(parameters: {
  home: string;
  location: ChainLocation;
  privateKey?: Hex;
}): Promise<OpenedChain> {
  const deploymentsPath =
    parameters.location.deployments ??
    process.env.MYCEL_DEPLOYMENTS ??
    defaultDeploymentsPath(parameters.home);
  const deployments = readDeployments(deploymentsPath);
  const rpcUrl = parameters.location.rpcUrl ?? process.env.MYCEL_RPC_URL ?? deployments.rpcUrl;
  if (!rpcUrl)
    throw new ChainError(`${deploymentsPath} names no RPC URL`, {
      hint: "pass --rpc-url <url> (or set MYCEL_RPC_URL)",
    });
  const connection = await connectChain({ rpcUrl, privateKey: parameters.privateKey, deployments });
  const code = await connection.publicClient.getCode({ address: deployments.contracts.providerRegistry });
  if (!code || code === "0x")
    throw new ChainError(`no Mycel contracts at ${deployments.contracts.providerRegistry} on ${rpcUrl}`, {
      code: "deployment_missing",
      details: `deployments file: ${deploymentsPath}`,
      hint: "the chain was reset (a devnet restarts with a fresh chain): restart `mycel devnet`, or deploy with `mycel chain deploy`",
    });
  return { connection, deployments, deploymentsPath };
}

/** A model named by the user: in the local store (name, hash or prefix), or any full sha256 not in the store. */
export async function resolveModelHash(parameters: {
  home: string;
  query: string;
}): Promise<{ hash: Hex; record?: ModelRecord }> {
  const store = openModelStore({ home: parameters.home });
  try {
    const record = await store.resolve(parameters.query);
    return { hash: modelHashToBytes32(record.hash), record };
  } catch (error) {
    if (/^(0x|sha256:)?[0-9a-fA-F]{64}$/.test(parameters.query))
      return { hash: modelHashToBytes32(parameters.query) };
    throw error;
  }
}

/** Deploy parameters: the defaults (or the devnet's), with any the JSON file at `path` overrides. */
export function readDeployParameters(path: string | undefined, devnet: boolean): DeployParameters {
  const base = devnet ? devnetDeployParameters : defaultDeployParameters;
  if (!path) return base;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new InvalidInputError(`cannot read deploy parameters from ${path}`, {
      cause,
      hint: "pass a JSON file",
    });
  }
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(json)) {
    if (!(key in base))
      throw new InvalidInputError(`unknown deploy parameter "${key}"`, {
        hint: `known: ${Object.keys(base).join(", ")}`,
      });
    const current = (base as Record<string, unknown>)[key];
    merged[key] = typeof current === "bigint" ? BigInt(String(value)) : Number(value);
  }
  return merged as DeployParameters;
}
