/** Binding a libp2p peer id to an Ethereum address: the address signs (EIP-191) a fixed text naming the peer. */
import { type Address, type Hex, verifyMessage } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { InvalidInputError } from "../errors/index.ts";
import { peerBindingMessage } from "../protocol/index.ts";

/** A signed statement that `address` operates the libp2p peer `peerId`. */
export type PeerBinding = { address: Address; peerId: string; signature: Hex };

const peerIdPattern = /^[1-9A-HJ-NP-Za-km-z]+$|^[a-z2-7]+$/;

export { peerBindingMessage };

/** Parameters of {@link signPeerBinding}. */
export type SignPeerBindingParameters = {
  privateKey: Hex;
  /** The libp2p peer id as a string (base58btc, e.g. `16Uiu2HAm...` for secp256k1 keys, or a base32 CID). */
  peerId: string;
};

/** Signs, with the Ethereum key, that its address operates the libp2p peer `peerId`. */
export async function signPeerBinding(parameters: SignPeerBindingParameters): Promise<PeerBinding> {
  const { peerId } = parameters;
  if (typeof peerId !== "string" || !peerIdPattern.test(peerId)) {
    throw new InvalidInputError(`invalid peer id ${JSON.stringify(peerId)}`, {
      param: "peerId",
      hint: "pass the libp2p peer id as a string, e.g. `node.peerId.toString()`",
    });
  }
  const account = privateKeyToAccount(parameters.privateKey);
  const signature = await account.signMessage({ message: peerBindingMessage(peerId) });
  return { address: account.address, peerId, signature };
}

/** Returns true when `signature` is `address`'s signature of the binding to `peerId`; false otherwise (never throws). */
export async function verifyPeerBinding(parameters: PeerBinding): Promise<boolean> {
  const { address, peerId, signature } = parameters;
  if (typeof peerId !== "string" || !peerIdPattern.test(peerId)) return false;
  try {
    return await verifyMessage({ address, message: peerBindingMessage(peerId), signature });
  } catch {
    return false;
  }
}
