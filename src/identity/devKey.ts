/** Deterministic keys for local devnets. */
import { type Hex, keccak256, stringToBytes } from "viem";

/**
 * FOR LOCAL DEVNETS AND TESTS ONLY: returns the deterministic key keccak256("mycel-devnet:" + label).
 * Anyone can recompute it from the label, so any funds or stake held by it can be taken by anyone.
 * Never use it on a public chain or for a real provider; use {@link createKeystore} there.
 */
export function devPrivateKey(label: string): Hex {
  return keccak256(stringToBytes(`mycel-devnet:${label}`));
}
