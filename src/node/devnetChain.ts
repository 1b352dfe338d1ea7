/** The devnet's chain: contracts deployed to its anvil, dev keys funded, the model registered, every role staked. */
import { type Hex, parseEther } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  anvilDeployerKey,
  type ChainConnection,
  connectChain,
  type Deployments,
  defaultDeploymentsPath,
  deployMycel,
  devnetDeployParameters,
  fundDevAccounts,
  fundRewards,
  registerModel,
  registerProvider,
  registerValidator,
  withSigner,
  writeDeployments,
} from "../chain/index.ts";
import type { Logger } from "../log/index.ts";
import type { ModelRecord } from "../model/index.ts";
import { peerIdOfSecp256k1Key } from "../p2p/index.ts";
import { modelHashToBytes32 } from "../protocol/index.ts";

/** The devnet's chain, ready to use. */
export type DevnetChain = {
  rpcUrl: string;
  deployments: Deployments;
  deploymentsPath: string;
  /** Signs with anvil's deployer key. */
  connection: ChainConnection;
};

/** Deploys to the devnet's anvil, funds the dev keys, registers the models (and the first one's children), stakes every provider. */
export async function setUpDevnetChain(parameters: {
  rpcUrl: string;
  home: string;
  /** The models every provider serves (each registered, each in every provider's offers). */
  models: readonly ModelRecord[];
  /** Models derived from the first served one, registered as its quantizations. */
  derived: ModelRecord[];
  providerKeys: Hex[];
  gatewayKey: Hex;
  validatorKey: Hex;
  challengerKey: Hex;
  priceOf: (index: number) => bigint;
  logger: Logger;
}): Promise<DevnetChain> {
  const { logger } = parameters;
  const deployer = await connectChain({ rpcUrl: parameters.rpcUrl, privateKey: anvilDeployerKey });
  const deployments = await deployMycel(deployer, { parameters: devnetDeployParameters });
  const deploymentsPath = defaultDeploymentsPath(parameters.home);
  writeDeployments(deploymentsPath, deployments);
  logger.info("contracts deployed", { chainId: deployments.chainId, deployments: deploymentsPath });
  const accounts = [
    ...parameters.providerKeys,
    parameters.gatewayKey,
    parameters.validatorKey,
    parameters.challengerKey,
  ].map((key) => privateKeyToAccount(key).address);
  await fundDevAccounts(deployer, { deployments, accounts: [deployer.account?.address as Hex, ...accounts] });
  await fundRewards(deployer, { deployments, amount: parseEther("100000") });
  const register = (model: ModelRecord, parents?: { modelHash: Hex; relation: "quantize" }[]) =>
    registerModel(deployer, {
      deployments,
      modelHash: modelHashToBytes32(model.hash),
      name: model.name,
      license: model.license ?? "NOASSERTION",
      metadataUri: "mycel:test-model",
      ...(parents ? { parents } : {}),
    });
  const modelHashes = parameters.models.map((model) => modelHashToBytes32(model.hash));
  for (const model of parameters.models) await register(model);
  const modelHash = modelHashes[0] as Hex;
  for (const child of parameters.derived) await register(child, [{ modelHash, relation: "quantize" }]);
  const stake = BigInt(deployments.parameters.minimumProviderStake);
  await Promise.all(
    parameters.providerKeys.map(async (privateKey, index) => {
      const price = parameters.priceOf(index);
      await registerProvider(withSigner(deployer, privateKey), {
        deployments,
        peerId: peerIdOfSecp256k1Key(privateKey),
        offers: modelHashes.map((hash) => ({
          modelHash: hash,
          inputPricePerMillion: price,
          outputPricePerMillion: price,
        })),
        stake,
      });
    }),
  );
  await registerValidator(withSigner(deployer, parameters.validatorKey), {
    deployments,
    stake: BigInt(deployments.parameters.minimumValidatorStake),
  });
  logger.info("providers staked on chain", {
    providers: parameters.providerKeys.length,
    stake: stake.toString(),
  });
  return { rpcUrl: parameters.rpcUrl, deployments, deploymentsPath, connection: deployer };
}
