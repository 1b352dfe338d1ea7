import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ethereumAddressOfPeerId, peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";

describe("ethereumAddressOfPeerId", () => {
  it("gives the address of the Ethereum key a secp256k1 peer id was made from", () => {
    for (let index = 0; index < 50; index++) {
      const privateKey = generatePrivateKey();
      assert.equal(
        ethereumAddressOfPeerId(peerIdOfSecp256k1Key(privateKey)),
        privateKeyToAccount(privateKey).address,
      );
    }
  });

  it("gives no address for a peer of another key type, or for what is not a peer id", async () => {
    const ed25519 = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
    assert.equal(ethereumAddressOfPeerId(ed25519), undefined);
    assert.equal(ethereumAddressOfPeerId("not a peer id"), undefined);
    assert.equal(ethereumAddressOfPeerId(""), undefined);
  });
});
