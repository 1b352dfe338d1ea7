/**
 * A validator's network when challenges go out with a key of their own: the providers are known from a view on the
 * validator's own node (its provider table, no payments), and the challenge gateway (a node of the challenge key,
 * its channels and receipts) exists only while a challenge runs, so that between challenges it costs nothing.
 */
import { isRoutable } from "../gateway/index.ts";
import type { Logger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import type { ValidatorNetwork } from "../validator/index.ts";
import type { GatewayNode } from "./gateway.ts";
import { validatorNetworkOf } from "./validatorNetwork.ts";

/** How long a started challenge gateway may take to see the challenged provider (announcement and registration). */
const providerSeenTimeoutMs = 20_000;
/** How often it looks again meanwhile. */
const providerCheckMs = 50;

/** Parameters of {@link challengeNetworkOf}. */
export type ChallengeNetworkParameters = {
  /** The validator's view of the providers: a gateway on its own node that sends nothing. */
  view: GatewayNode;
  /** Starts the challenge gateway (a fresh node of the challenge key, with its payments); closed after each challenge. */
  startChallengeGateway: () => Promise<GatewayNode>;
  logger: Logger;
};

/** The network as the validator sees it; `running()` tells whether a challenge gateway exists now. */
export type ChallengeNetwork = ValidatorNetwork & { running(): boolean; close(): Promise<void> };

/** Addresses the view node reaches a peer at, to hand to the challenge node (which then skips the DHT). */
function addressesOf(node: MycelNode, peerId: string): string[] {
  return node.libp2p
    .getConnections()
    .filter((connection) => connection.remotePeer.toString() === peerId && connection.limits === undefined)
    .map((connection) => connection.remoteAddr.toString());
}

/** Resolves once the challenge gateway may route to `peerId` for `modelHash`; rejects after a timeout or on `signal`. */
async function providerSeen(
  challenger: GatewayNode,
  parameters: { peerId: string; modelHash: string; signal: AbortSignal },
): Promise<void> {
  const { gateway } = challenger;
  const deadline = Date.now() + providerSeenTimeoutMs;
  for (;;) {
    const entry = gateway.providers.get(parameters.peerId);
    if (entry && isRoutable(entry, { modelHash: parameters.modelHash, policy: gateway.policy })) return;
    parameters.signal.throwIfAborted();
    if (Date.now() > deadline)
      throw new Error(
        `the challenge gateway did not see provider ${parameters.peerId} within ${providerSeenTimeoutMs} ms`,
      );
    await new Promise((resolve) => setTimeout(resolve, providerCheckMs));
  }
}

/** The validator's network with a challenge gateway started per challenge. */
export function challengeNetworkOf(parameters: ChallengeNetworkParameters): ChallengeNetwork {
  const viewed = validatorNetworkOf(parameters.view.gateway);
  let current: Promise<unknown> | undefined;
  let closed = false;
  let running = false;
  const askOnce: ValidatorNetwork["ask"] = async (request) => {
    running = true;
    const challenger = await parameters.startChallengeGateway();
    try {
      const addresses = addressesOf(parameters.view.node, request.providerPeerId);
      if (addresses.length > 0) {
        await challenger.node.addPeerAddresses(request.providerPeerId, addresses);
        await challenger.node
          .connect(request.providerPeerId, { signal: request.signal })
          .catch((error) => parameters.logger.debug("challenge dial failed", { error: String(error) }));
      }
      await providerSeen(challenger, {
        peerId: request.providerPeerId,
        modelHash: `0x${request.model.hash}`,
        signal: request.signal,
      });
      return await validatorNetworkOf(challenger.gateway).ask(request);
    } finally {
      // Waits for the answer's payment to settle with the provider, then stops the node.
      await challenger.close();
      running = false;
    }
  };
  return {
    liveModels: viewed.liveModels,
    providersOf: viewed.providersOf,
    providerAddress: viewed.providerAddress,
    async ask(request) {
      if (closed) throw new Error("the validator is stopping");
      // One challenge gateway at a time: two nodes of one key would compete for one peer id.
      while (current) await current.catch(() => undefined);
      const asking = askOnce(request);
      current = asking;
      try {
        return await asking;
      } finally {
        current = undefined;
      }
    },
    running: () => running,
    async close() {
      closed = true;
      await current?.catch(() => undefined);
      await parameters.view.close();
    },
  };
}
