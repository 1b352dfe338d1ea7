/**
 * On a real anvil: one account's transactions sent at once all go through (they leave in turn, never on the same
 * nonce), a validator whose commitment was stored but never reached the chain sends it again, and a validator at
 * rest reads the chain only for what can change.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Hex, keccak256, stringToHex, toHex } from "viem";
import {
  getScoreCommitment,
  readActiveProviders,
  readEpochClock,
  registerModel,
  registerProvider,
  registerValidator,
  scoreCommitment,
} from "../../src/chain/index.ts";
import { silentLogger } from "../../src/log/index.ts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { type AuditStore, openAuditStore } from "../../src/store/index.ts";
import { createAuditQueue, createEpochLoop, createSlasher } from "../../src/validator/index.ts";
import { type LocalChain, startLocalChain } from "../fixtures/chain/localChain.ts";
import { temporaryHome } from "../helpers.ts";

describe("chain sends and the validator's commitments (real anvil)", () => {
  let chain: LocalChain;
  let directory: { home: string; remove: () => Promise<void> };
  let store: AuditStore;
  before(async () => {
    chain = await startLocalChain();
    directory = await temporaryHome("mycel-epochs-");
    store = openAuditStore({ path: join(directory.home, "validator.sqlite") });
  });
  after(async () => {
    store.close();
    await chain.stop();
    await directory.remove();
  });

  it("sends one account's transactions in turn: all of several sent at once are mined", async () => {
    const publisher = await chain.account("publisher");
    const names = ["a", "b", "c", "d", "e"];
    const sent = await Promise.all(
      names.map((name) =>
        registerModel(publisher.connection, {
          deployments: chain.deployments,
          modelHash: keccak256(stringToHex(`model ${name}`)),
          name: `model-${name}`,
          license: "MIT",
        }),
      ),
    );
    assert.equal(
      new Set(sent.map((report) => report.hash)).size,
      names.length,
      "five transactions, all mined",
    );
  });

  it("sends again a commitment that was stored but never reached the chain, and only once", async () => {
    const { deployments } = chain;
    const provider = await chain.account("provider");
    const validator = await chain.account("validator");
    const modelHash = keccak256(stringToHex("served model"));
    await registerModel(provider.connection, { deployments, modelHash, name: "served", license: "MIT" });
    await registerProvider(provider.connection, {
      deployments,
      peerId: peerIdOfSecp256k1Key(provider.privateKey),
      offers: [{ modelHash, inputPricePerMillion: 1n, outputPricePerMillion: 1n }],
      stake: BigInt(deployments.parameters.minimumProviderStake),
    });
    await registerValidator(validator.connection, {
      deployments,
      stake: BigInt(deployments.parameters.minimumValidatorStake),
    });
    const { epoch } = await readEpochClock(validator.connection, { deployments });
    const providers = await readActiveProviders(validator.connection, { deployments });
    // What a validator stored before a send that failed: the scores it would commit (no audits: unscored, full).
    const salt = toHex(new Uint8Array(32).fill(7)) as Hex;
    store.saveCommitment({ epoch, providers, scores: providers.map(() => 10_000), salt });
    const before = await getScoreCommitment(validator.connection, {
      deployments,
      epoch,
      validator: validator.address,
    });
    assert.equal(BigInt(before.hash), 0n, "nothing on chain yet");
    const queue = createAuditQueue({ maxQueue: 4 });
    const validatorChain = { connection: validator.connection, deployments };
    const auditor = { audit: async () => assert.fail("no audit runs here") };
    const loop = createEpochLoop({
      chain: validatorChain,
      address: validator.address,
      store,
      slasher: createSlasher({
        chain: validatorChain,
        address: validator.address,
        slashBps: 1_000,
        auditor,
        queue,
        logger: silentLogger,
      }),
      logger: silentLogger,
    });
    await loop.tick();
    const posted = await getScoreCommitment(validator.connection, {
      deployments,
      epoch,
      validator: validator.address,
    });
    assert.equal(
      posted.hash,
      scoreCommitment({ epoch, validator: validator.address, scores: providers.map(() => 10_000), salt }),
      "the stored commitment, with its salt, so that it can be revealed",
    );
    const block = await validator.connection.publicClient.getBlockNumber();
    await loop.tick();
    assert.equal(await validator.connection.publicClient.getBlockNumber(), block, "not sent a second time");
  });

  it("reads at rest only what can change: standings once per epoch, a commitment seen on chain not again", async () => {
    const { deployments } = chain;
    const validator = await chain.account("validator");
    // The chain reads the loop makes, by the contract function (or `getBlock`) each asks for.
    const reads: string[] = [];
    const publicClient = new Proxy(validator.connection.publicClient, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property === "readContract")
          return (request: { functionName: string }) => {
            reads.push(request.functionName);
            return value.call(target, request);
          };
        if (property === "getBlock")
          return (request: unknown) => {
            reads.push("getBlock");
            return value.call(target, request);
          };
        return value;
      },
    });
    const counted = { connection: { ...validator.connection, publicClient }, deployments };
    const auditor = { audit: async () => assert.fail("no audit runs here") };
    const loop = createEpochLoop({
      chain: counted,
      address: validator.address,
      store,
      slasher: createSlasher({
        chain: counted,
        address: validator.address,
        slashBps: 1_000,
        auditor,
        queue: createAuditQueue({ maxQueue: 4 }),
        logger: silentLogger,
      }),
      logger: silentLogger,
    });
    const block = await validator.connection.publicClient.getBlockNumber();
    await loop.tick();
    assert.ok(reads.includes("standingOf"), `the first pass reads standings: ${reads.join(",")}`);
    assert.ok(reads.includes("getCommitment"), "and checks the stored commitment reached the chain");
    reads.length = 0;
    await loop.tick();
    assert.equal(await validator.connection.publicClient.getBlockNumber(), block, "nothing sent at rest");
    for (const constant of ["standingOf", "getCommitment", "revealPeriod"])
      assert.ok(
        !reads.includes(constant),
        `${constant} not read again in the same epoch: ${reads.join(",")}`,
      );
    assert.ok(
      reads.length <= 7,
      `a pass at rest reads the chain at most 7 times, read ${reads.length}: ${reads.join(",")}`,
    );
    // A new epoch: standings are read again (the last one may have been finalized meanwhile).
    const { endsAt, now } = await readEpochClock(validator.connection, { deployments });
    await chain.increaseTime(Number(endsAt - now) + 1);
    reads.length = 0;
    await loop.tick();
    assert.ok(reads.includes("standingOf"), `a new epoch's first pass reads standings: ${reads.join(",")}`);
  });
});
