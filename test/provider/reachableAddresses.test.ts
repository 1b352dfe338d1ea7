import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { reachableAddresses } from "../../src/provider/index.ts";

const relayed = "/ip4/11.77.1.1/tcp/4001/p2p/16Uiu2HAmRelay/p2p-circuit/p2p/16Uiu2HAmSelf";

describe("the addresses a provider announces", () => {
  it("drops loopback beside anything else, and keeps it when it is all there is (a devnet)", () => {
    assert.deepEqual(reachableAddresses(["/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/1"]), [
      "/ip4/10.0.0.2/tcp/1",
    ]);
    assert.deepEqual(reachableAddresses(["/ip4/127.0.0.1/tcp/1"]), ["/ip4/127.0.0.1/tcp/1"]);
  });

  it("keeps private addresses on a LAN with no relay (every node there can dial them)", () => {
    assert.deepEqual(reachableAddresses(["/ip4/192.168.1.2/tcp/4001"]), ["/ip4/192.168.1.2/tcp/4001"]);
  });

  it("behind a NAT (it holds relayed addresses) announces the relayed and public ones, not its private ones", () => {
    const announced = reachableAddresses([
      "/ip4/192.168.1.2/tcp/4001",
      "/ip4/10.1.2.3/tcp/4001",
      "/ip4/172.20.0.5/tcp/4001",
      "/ip4/100.64.0.9/tcp/4001",
      "/ip6/fd00::5/tcp/4001",
      // A documentation range (RFC 5737): no host on the internet has it.
      "/ip4/203.0.113.7/tcp/4001",
      "/ip4/81.2.69.142/tcp/4001",
      relayed,
    ]);
    assert.deepEqual(announced, ["/ip4/81.2.69.142/tcp/4001", relayed]);
  });
});
