/**
 * Starts a validator in this process: registered with stake if asked, an auditor on its model store, its own
 * challenge gateway (its own key and a fresh peer id), its libp2p node and its audit store.
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  type ChainConnection,
  type Deployments,
  getTokenInfo,
  parseTokenAmount,
  readValidatorStake,
  registerValidator,
  withSigner,
} from "../chain/index.ts";
import type { MycelConfig } from "../config/index.ts";
import type { Logger } from "../log/index.ts";
import { openModelStore } from "../model/index.ts";
import {
  createMycelNode,
  libp2pKeyFromSecp256k1,
  type MycelNode,
  type RelayServiceParameters,
} from "../p2p/index.ts";
import { openAuditStore, validatorStorePath } from "../store/index.ts";
import { startValidator, type ValidatorOptions } from "../validator/index.ts";
import { createAuditor } from "../verify/index.ts";
import { challengeNetworkOf } from "./challengeNetwork.ts";
import { startGatewayNode } from "./gateway.ts";
import { validatorNetworkOf } from "./validatorNetwork.ts";

/** Parameters of {@link startValidatorNode}. */
export type StartValidatorNodeParameters = {
  config: MycelConfig;
  privateKey: Hex;
  /** The key that sends and pays for challenges (default: the validator's own, which providers could recognise). */
  challengeKey?: Hex;
  logger: Logger;
  listen?: string[];
  bootstrap?: string[];
  /** Whether and how it relays for nodes that are not reachable (default: never). */
  relay?: RelayServiceParameters;
  /** Map its port on the router with UPnP (default off). */
  upnp?: boolean;
  /** Addresses to announce instead of the listen addresses (a forwarded port, a DNS name): they count as reachable. */
  announce?: string[];
  chain?: { connection: ChainConnection; deployments: Deployments };
  /** Register as a validator with this stake (whole tokens) first, if not registered. */
  stake?: string;
  /** llama.cpp threads for audits (default: every core). */
  threads?: number;
  options?: Partial<ValidatorOptions>;
  /** Deposit per provider channel and budget of the challenge gateway, in whole tokens. */
  challengeDeposit: string;
  challengeBudget: string;
};

/** A validator running in this process. */
export type ValidatorNode = {
  peerId: string;
  address: Hex;
  multiaddrs: string[];
  close(): Promise<void>;
};

/** Registers the validator with `stake` if it has none; logs its stake either way. */
async function ensureStake(parameters: {
  chain: { connection: ChainConnection; deployments: Deployments };
  address: Hex;
  stake?: string;
  logger: Logger;
}) {
  const { chain, logger } = parameters;
  const current = await readValidatorStake(chain.connection, {
    deployments: chain.deployments,
    validator: parameters.address,
  });
  if (current === 0n && parameters.stake) {
    const token = await getTokenInfo(chain.connection, chain.deployments.contracts.token);
    await registerValidator(chain.connection, {
      deployments: chain.deployments,
      stake: parseTokenAmount(parameters.stake, token.decimals),
      formatAmount: (amount) => `${amount} units of ${token.symbol}`,
    });
    logger.info("registered as a validator", { stake: `${parameters.stake} ${token.symbol}` });
  } else if (current === 0n)
    logger.warn("not a registered validator: scores and slashing votes need stake (give --stake <tokens>)");
  else logger.info("validator stake", { stake: current.toString() });
}

/** Starts a validator (auditor, challenge gateway, node, store) in this process. */
export async function startValidatorNode(parameters: StartValidatorNodeParameters): Promise<ValidatorNode> {
  const { config, logger, chain, privateKey } = parameters;
  const address = privateKeyToAccount(privateKey).address;
  const challengeKey = parameters.challengeKey ?? privateKey;
  if (chain) await ensureStake({ chain, address, stake: parameters.stake, logger });
  const auditor = createAuditor({
    home: config.home,
    engineOptions: { threadsPerSequence: parameters.threads ?? availableParallelism() },
    logger: logger.child({ part: "audit" }),
  });
  const store = openAuditStore({ path: validatorStorePath(config.home, address) });
  const node = await createMycelNode({
    privateKey: libp2pKeyFromSecp256k1(privateKey),
    listen: parameters.listen,
    bootstrap: parameters.bootstrap,
    relay: parameters.relay,
    upnp: parameters.upnp,
    announce: parameters.announce,
    logger: logger.child({ part: "p2p" }),
  });
  // Challenges go out from a node of the challenge key (providers serve only a request whose client is its sender),
  // so that with a key of their own providers cannot tell them from user traffic. That node, with its channels and
  // receipts, runs only while a challenge does: between challenges the providers are known from a view on the
  // validator's own node (its provider table, paying nobody). With the validator's own key challenges go out from
  // the validator's node: two nodes of one peer id would make audit samples miss.
  const ownChallengeKey = challengeKey.toLowerCase() !== privateKey.toLowerCase();
  const challengeStore = join(config.home, "validator", address.toLowerCase(), "challenges");
  const challengeGateway = (on: MycelNode | undefined) =>
    startGatewayNode({
      config,
      privateKey: challengeKey,
      logger: logger.child({ part: "challenges" }),
      bootstrap: parameters.bootstrap,
      chain: chain && {
        connection: withSigner(chain.connection, challengeKey),
        deployments: chain.deployments,
        deposit: parameters.challengeDeposit,
        budget: parameters.challengeBudget,
      },
      minReputation: 0,
      storeDirectory: challengeStore,
      serveApi: false,
      node: on,
    });
  const network = ownChallengeKey
    ? challengeNetworkOf({
        view: await startGatewayNode({
          config,
          privateKey,
          logger: logger.child({ part: "providers" }),
          chain: chain && { ...chain, deposit: "0", budget: "0" },
          pay: false,
          minReputation: 0,
          storeDirectory: join(config.home, "validator", address.toLowerCase(), "providers"),
          serveApi: false,
          node,
        }),
        startChallengeGateway: () => challengeGateway(undefined),
        logger: logger.child({ part: "challenges" }),
      })
    : await challengeGateway(node).then((challenger) => ({
        ...validatorNetworkOf(challenger.gateway),
        close: challenger.close,
      }));
  const models = await openModelStore({ home: config.home }).list();
  const validator = await startValidator({
    node,
    auditor,
    store,
    privateKey,
    network,
    challengeKey,
    challengeModels: () => models.map((model) => ({ name: model.name, hash: model.hash })),
    chain,
    options: parameters.options,
    logger,
  });
  return {
    peerId: node.peerId,
    address,
    multiaddrs: node.multiaddrs(),
    async close() {
      await validator.stop();
      await network.close();
      await node.stop();
      store.close();
      await auditor.close();
    },
  };
}
