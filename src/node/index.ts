/**
 * The composition root: starts a gateway, provider, validator, local server or whole devnet from code with one call,
 * and reads a key's wallet. The CLI only parses flags, calls these and prints.
 *
 * @example
 * ```ts
 * const config = loadConfig();
 * const devnet = await startDevnet({ config, providers: 2, rpcPort: 0, logger, gatewayLogger: logger, write });
 * console.log(`${devnet.url}/v1`);
 * await devnet.stop();
 * ```
 */
export {
  type ChainLocation,
  chainRequested,
  type OpenedChain,
  openChain,
  readDeployParameters,
  resolveModelHash,
} from "./chain.ts";
export { type Devnet, devnetAuditRate, type StartDevnetParameters, startDevnet } from "./devnet.ts";
export { type DevnetChain, setUpDevnetChain } from "./devnetChain.ts";
export { type GatewayNode, type StartGatewayNodeParameters, startGatewayNode } from "./gateway.ts";
export {
  type ChosenKey,
  chooseViewKey,
  devnetGatewayKeyName,
  devnetPassword,
  ensureDevKey,
  loadKey,
} from "./keys.ts";
export { type ProviderNode, type StartProviderNodeParameters, startProviderNode } from "./provider.ts";
export {
  mycelBin,
  type RoleProcess,
  type RoleReady,
  readyLine,
  readyPrefix,
  spawnRole,
} from "./roleProcess.ts";
export { type LocalServer, startLocalServer } from "./serve.ts";
export { type StartValidatorNodeParameters, startValidatorNode, type ValidatorNode } from "./validator.ts";
export { validatorNetworkOf } from "./validatorNetwork.ts";
export { type ChannelRow, listChannelRows, readLocalPayments, readWallet, type Wallet } from "./wallet.ts";
