/**
 * The composition root: starts a gateway, provider, validator, local server or whole devnet from code with one call,
 * and reads a key's wallet. The CLI only parses flags, calls these and prints.
 *
 * Each function loads its part of the program when it is first called, so that a command pays only for what it
 * uses (`mycel wallet` does not load libp2p or llama.cpp).
 *
 * @example
 * ```ts
 * const config = loadConfig();
 * const devnet = await startDevnet({ config, providers: 2, rpcPort: 0, logger, gatewayLogger: logger, write });
 * console.log(`${devnet.url}/v1`);
 * await devnet.stop();
 * ```
 */

import type { Hex } from "viem";
import type { DeployParameters } from "../chain/index.ts";
import type { ChainLocation, OpenedChain } from "./chain.ts";
import type { Devnet, StartDevnetParameters } from "./devnet.ts";
import type { GatewayNode, StartGatewayNodeParameters } from "./gateway.ts";
import type { ChosenKey } from "./keys.ts";
import type { ProviderNode, StartProviderNodeParameters } from "./provider.ts";
import type { RelayNode, StartRelayNodeParameters } from "./relay.ts";
import type { LocalServer } from "./serve.ts";
import type { StartValidatorNodeParameters, ValidatorNode } from "./validator.ts";
import type { ChannelRow, Wallet } from "./wallet.ts";

export type { ChainLocation, OpenedChain } from "./chain.ts";
export { type ChallengeNetwork, challengeNetworkOf } from "./challengeNetwork.ts";
export {
  chainRequested,
  devnetGatewayKeyName,
  devnetPassword,
  readyLine,
  readyPrefix,
} from "./constants.ts";
export type { Devnet, StartDevnetParameters } from "./devnet.ts";
export type { DevnetChain } from "./devnetChain.ts";
export type { GatewayNode, StartGatewayNodeParameters } from "./gateway.ts";
export type { ChosenKey } from "./keys.ts";
export type { ProviderNode, StartProviderNodeParameters } from "./provider.ts";
export type { RelayNode, StartRelayNodeParameters } from "./relay.ts";
export type { RoleProcess, RoleReady } from "./roleProcess.ts";
export type { LocalServer } from "./serve.ts";
export type { StartValidatorNodeParameters, ValidatorNode } from "./validator.ts";
export { validatorNetworkOf } from "./validatorNetwork.ts";
export type { ChannelRow, Wallet } from "./wallet.ts";

/** Starts a gateway (node, receipts, payments, API and explorer) in this process. */
export async function startGatewayNode(parameters: StartGatewayNodeParameters): Promise<GatewayNode> {
  return (await import("./gateway.ts")).startGatewayNode(parameters);
}

/** Starts a provider (engine, node, payments, evidence) in this process. */
export async function startProviderNode(parameters: StartProviderNodeParameters): Promise<ProviderNode> {
  return (await import("./provider.ts")).startProviderNode(parameters);
}

/** Starts a relay (no model, no chain) that relays for nodes that are not reachable. */
export async function startRelayNode(parameters: StartRelayNodeParameters): Promise<RelayNode> {
  return (await import("./relay.ts")).startRelayNode(parameters);
}

/** Starts a validator (auditor, challenge gateway, node, store) in this process. */
export async function startValidatorNode(parameters: StartValidatorNodeParameters): Promise<ValidatorNode> {
  return (await import("./validator.ts")).startValidatorNode(parameters);
}

/** Starts a devnet: a chain, provider and validator processes, and a gateway in this process. */
export async function startDevnet(parameters: StartDevnetParameters): Promise<Devnet> {
  return (await import("./devnet.ts")).startDevnet(parameters);
}

/** Serves models from the store on this machine alone (`mycel serve`). */
export async function startLocalServer(
  parameters: Parameters<typeof import("./serve.ts").startLocalServer>[0],
): Promise<LocalServer> {
  return (await import("./serve.ts")).startLocalServer(parameters);
}

/** Reads the deployments and connects to their chain (signing with `privateKey` when given). */
export async function openChain(parameters: {
  home: string;
  location: ChainLocation;
  privateKey?: Hex;
}): Promise<OpenedChain> {
  return (await import("./chain.ts")).openChain(parameters);
}

/** A model named by the user: in the local store, or any full sha256 not in it. */
export async function resolveModelHash(parameters: { home: string; query: string }) {
  return (await import("./chain.ts")).resolveModelHash(parameters);
}

/** Deploy parameters: the defaults (or the devnet's), with any the JSON file at `path` overrides. */
export async function readDeployParameters(
  path: string | undefined,
  devnet: boolean,
): Promise<DeployParameters> {
  return (await import("./chain.ts")).readDeployParameters(path, devnet);
}

/** Loads a keystore's private key, asking for the password unless MYCEL_PASSWORD is set. */
export async function loadKey(parameters: { home: string; name: string }): Promise<Hex> {
  return (await import("./keys.ts")).loadKey(parameters);
}

/** Creates the dev keystore `name` (deterministic key, devnet password) if it does not exist; returns its key. */
export async function ensureDevKey(home: string, name: string): Promise<Hex> {
  return (await import("./keys.ts")).ensureDevKey(home, name);
}

/** The key a read-only command uses: the one named, `default`, or on a devnet machine the devnet's gateway key. */
export async function chooseViewKey(parameters: { home: string; requested?: string }): Promise<ChosenKey> {
  return (await import("./keys.ts")).chooseViewKey(parameters);
}

/** Every channel of an account on chain, as client and as provider, with this machine's latest vouchers. */
export async function listChannelRows(
  parameters: Parameters<typeof import("./wallet.ts").listChannelRows>[0],
): Promise<ChannelRow[]> {
  return (await import("./wallet.ts")).listChannelRows(parameters);
}

/** Reads an account's wallet: balances, spending as a client and earnings as a provider. */
export async function readWallet(
  parameters: Parameters<typeof import("./wallet.ts").readWallet>[0],
): Promise<Wallet> {
  return (await import("./wallet.ts")).readWallet(parameters);
}
