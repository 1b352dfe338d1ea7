import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  ChainError,
  type Deployments,
  maxDeploymentBootstrapAddresses,
  readDeployments,
  validateBootstrapAddresses,
  writeDeployments,
} from "../../src/chain/index.ts";
import { devPrivateKey } from "../../src/identity/index.ts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { runMycel, temporaryHome } from "../helpers.ts";

const peerId = peerIdOfSecp256k1Key(devPrivateKey("bootstrap-test"));
const goodAddress = `/ip4/203.0.113.7/tcp/4001/p2p/${peerId}`;

/** A deployments file as an older Mycel wrote it: no bootstrap field. */
const oldDeployments: Deployments = {
  chainId: 31337,
  rpcUrl: "http://127.0.0.1:8545",
  deployer: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  blockNumber: "1",
  deployedAt: "2026-01-01T00:00:00.000Z",
  contracts: {
    token: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    modelRegistry: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    providerRegistry: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    paymentChannels: "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
    epochConsensus: "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
  },
  parameters: {
    minimumProviderStake: "100",
    providerUnbondingSeconds: 60,
    maxProviders: 256,
    minChallengeSeconds: 60,
    maxChallengeSeconds: 3600,
    minimumValidatorStake: "100",
    validatorUnbondingSeconds: 60,
    epochSeconds: 60,
    revealSeconds: 30,
    votingSeconds: 60,
    rewardPerEpoch: "0",
    validatorShareBps: 1000,
  },
};

describe("deployments.json bootstrap list", () => {
  it("loads an old deployments file without the field, and keeps a list written with it", async () => {
    const directory = await temporaryHome("mycel-deployments-bootstrap-");
    try {
      const path = join(directory.home, "deployments.json");
      writeFileSync(path, JSON.stringify(oldDeployments));
      const old = readDeployments(path);
      assert.equal(old.bootstrap, undefined);
      assert.equal(old.contracts.providerRegistry, oldDeployments.contracts.providerRegistry);
      writeDeployments(path, { ...old, bootstrap: [goodAddress] });
      assert.deepEqual(readDeployments(path).bootstrap, [goodAddress]);
    } finally {
      await directory.remove();
    }
  });

  it("refuses a file whose bootstrap list holds a bad address, naming it", async () => {
    const directory = await temporaryHome("mycel-deployments-bootstrap-");
    try {
      const path = join(directory.home, "deployments.json");
      const cases: [string, RegExp][] = [
        ["not-a-multiaddr", /bootstrap\.0 "not-a-multiaddr" is not a multiaddr/],
        ["/ip4/203.0.113.7/tcp/4001", /has no \/p2p\/<peer id>/],
      ];
      for (const [address, expected] of cases) {
        writeFileSync(path, JSON.stringify({ ...oldDeployments, bootstrap: [address] }));
        assert.throws(
          () => readDeployments(path),
          (error: unknown) => {
            assert.ok(error instanceof ChainError);
            assert.equal(error.code, "invalid_deployments");
            assert.match(error.message, expected);
            return true;
          },
        );
      }
    } finally {
      await directory.remove();
    }
  });

  it("validates --bootstrap addresses: each with a peer id, no duplicates, a bounded list", () => {
    assert.deepEqual(validateBootstrapAddresses([goodAddress, goodAddress]), [goodAddress]);
    for (const [address, expected] of [
      ["/ip4/1.2.3.4/tcp/1", /has no \/p2p\/<peer id>/],
      ["/ip4/1.2.3.4/tcp/notaport", /is not a multiaddr/],
    ] as const)
      assert.throws(
        () => validateBootstrapAddresses([address]),
        (error: unknown) => {
          assert.ok(error instanceof ChainError);
          assert.equal(error.code, "invalid_bootstrap");
          assert.match(error.message, expected);
          assert.match(error.hint ?? "", /\/p2p\/16Uiu2HAm/);
          return true;
        },
      );
    const many = Array.from(
      { length: maxDeploymentBootstrapAddresses + 1 },
      (_, index) => `/ip4/10.0.0.1/tcp/${4000 + index}/p2p/${peerId}`,
    );
    assert.throws(() => validateBootstrapAddresses(many), /at most 64/);
  });

  it("`mycel chain deploy --bootstrap` refuses a bad address before it sends anything", async () => {
    const directory = await temporaryHome("mycel-deploy-bootstrap-");
    try {
      // Port 9 answers nothing: had the command connected or sent a transaction, the error would say so.
      const result = await runMycel(
        ["chain", "deploy", "--rpc-url", "http://127.0.0.1:9", "--bootstrap", "/ip4/1.2.3.4/tcp/1"],
        { home: directory.home },
      );
      assert.equal(result.code, 1);
      assert.match(result.stderr, /bootstrap address "\/ip4\/1\.2\.3\.4\/tcp\/1" has no \/p2p\/<peer id>/);
      assert.throws(() => readFileSync(join(directory.home, "deployments.json")), /ENOENT/);
    } finally {
      await directory.remove();
    }
  });
});
