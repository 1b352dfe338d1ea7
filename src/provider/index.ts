/** The provider role: inference over libp2p with signed receipts, announced on gossipsub and the DHT. */
export {
  type Provider,
  type ProviderComponents,
  type ProviderPrice,
  type StartProviderParameters,
  startProvider,
} from "./provider.ts";
