/**
 * Mycel's P2P layer: libp2p nodes that gossip, announce and find models on a Kademlia DHT, and exchange
 * length-prefixed JSON frames over request streams.
 *
 * @example
 * ```ts
 * const node = await createMycelNode({ privateKey: libp2pKeyFromSecp256k1(walletKey), bootstrap: [address] });
 * await node.provideModel(modelHash);
 * const providers = await node.findModelProviders(modelHash);
 * const channel = createFrameChannel(await node.openStream(providers[0].peerId, "/mycel/infer/1.0.0"));
 * await channel.write({ prompt: "hi" });
 * const reply = await channel.read({ timeoutMs: 30_000 });
 * ```
 */
import "./polyfills.ts";

export type { Stream } from "@libp2p/interface";
export * from "./constants.ts";
export {
  FrameDecodeError,
  FrameStreamClosedError,
  FrameTimeoutError,
  FrameTooLargeError,
  FrameUsageError,
  ModelProvideError,
  PeerDialError,
} from "./errors.ts";
export {
  type CreateFrameChannelParameters,
  createFrameChannel,
  type FrameChannel,
  type ReadFrameParameters,
  type WriteFrameParameters,
} from "./frameChannel.ts";
export { ethereumAddressOfPeerId, libp2pKeyFromSecp256k1, peerIdOfSecp256k1Key } from "./keys.ts";
export { modelCidFromHash, normalizeModelHash } from "./modelCid.ts";
export {
  type CreateMycelNodeParameters,
  createMycelNode,
  type FindModelProvidersParameters,
  type FindPeerParameters,
  type GossipMessage,
  type HandleProtocolParameters,
  type IdentifiedPeer,
  type InboundStreamSource,
  type ModelProvider,
  type MycelLibp2p,
  type MycelNode,
  type MycelServices,
  type OpenStreamParameters,
  type ProtocolHandler,
  type ProvideModelParameters,
  type RelayOffer,
  type RelayServiceParameters,
} from "./node.ts";
export {
  type ConnectionKind,
  isLoopbackAddress,
  isPrivateAddress,
  isRelayedAddress,
  joinsFromBehindNat,
  judgeReachability,
  type Reachability,
  type ReachabilityComponents,
  type ReachabilityStatus,
  reachabilityService,
} from "./reachability.ts";
