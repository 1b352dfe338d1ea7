/**
 * Verification end to end: an honest provider and a cheating one (announces the claimed model, answers with
 * another), three validator processes and a gateway that samples every answer, on a real anvil. The cheater is
 * caught, a quorum of validators slashes it, its reputation falls and the gateway stops routing to it; epoch
 * scores are committed, revealed and finalized on chain.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import type { Address, Hex } from "viem";
import {
  epochConsensusAbi,
  getEpochState,
  getProviderRecord,
  getProviderStanding,
  readSlashProposals,
  registerModel,
  registerProvider,
  registerValidator,
  writeDeployments,
} from "../../src/chain/index.ts";
import { createKeystore } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { peerIdOfSecp256k1Key } from "../../src/p2p/index.ts";
import { modelHashToBytes32 } from "../../src/protocol/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import { mycelBin, type RoleProcess, repositoryRoot, startRole, temporaryHome, waitFor } from "../helpers.ts";

const password = "validator-network-test";
const env = { MYCEL_PASSWORD: password };
/** Chain-paced steps (audits, votes, epochs) get a minute. */
const waitLong = <T>(what: string, check: () => Promise<T | undefined>) => waitFor(what, check, 60_000);

describe("validators catch a cheating provider (real processes, real anvil)", () => {
  let chain: LocalChain;
  let directory: { home: string; remove: () => Promise<void> };
  const roles: RoleProcess[] = [];
  let honest: TestAccount;
  let cheater: TestAccount;
  let validators: TestAccount[];
  let client: OpenAI;
  let modelName: string;
  let honestPeer: string;
  let cheaterPeer: string;
  let gateway: RoleProcess;
  let validatorRoles: RoleProcess[];
  const stakeOf = async (provider: Address) =>
    (await getProviderRecord(chain.deployer, { deployments: chain.deployments, provider }))?.stake ?? 0n;
  let initialStake: bigint;

  before(async () => {
    chain = await startLocalChain();
    directory = await temporaryHome("mycel-validators-");
    const store = openModelStore({ home: directory.home });
    const claimed = generateTestModel({ size: "tiny", seed: 1 });
    const other = generateTestModel({ size: "tiny", seed: 2 });
    const claimedModel = (await store.addBytes({ bytes: claimed.bytes, name: claimed.name, source: "test" }))
      .model;
    const otherModel = (await store.addBytes({ bytes: other.bytes, name: other.name, source: "test" })).model;
    modelName = claimedModel.name;
    const deploymentsPath = join(directory.home, "deployments.json");
    writeDeployments(deploymentsPath, chain.deployments);
    const { deployments } = chain;
    const modelHash = modelHashToBytes32(claimedModel.hash);
    await registerModel(chain.deployer, {
      deployments,
      modelHash,
      name: claimedModel.name,
      license: "NOASSERTION",
      metadataUri: "mycel:test-model",
    });
    honest = await chain.account("honest-provider");
    cheater = await chain.account("cheating-provider");
    validators = [
      await chain.account("validator-1"),
      await chain.account("validator-2"),
      await chain.account("validator-3"),
    ];
    const gatewayAccount = await chain.account("gateway");
    initialStake = BigInt(deployments.parameters.minimumProviderStake);
    for (const account of [honest, cheater])
      await registerProvider(account.connection, {
        deployments,
        peerId: peerIdOfSecp256k1Key(account.privateKey),
        offers: [{ modelHash, inputPricePerMillion: 0n, outputPricePerMillion: 0n }],
        stake: initialStake,
      });
    for (const account of validators)
      await registerValidator(account.connection, {
        deployments,
        stake: BigInt(deployments.parameters.minimumValidatorStake),
      });
    const keys: [string, Hex][] = [
      ["honest", honest.privateKey],
      ["gateway", gatewayAccount.privateKey],
      ...validators.map((account, index): [string, Hex] => [`validator-${index + 1}`, account.privateKey]),
    ];
    for (const [name, privateKey] of keys)
      await createKeystore({ home: directory.home, name, password, privateKey });
    const chainArgs = ["--rpc-url", chain.anvil.rpcUrl, "--deployments", deploymentsPath];
    const honestRole = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "provider",
        "--model",
        claimedModel.hash,
        "--key",
        "honest",
        "--price",
        "0",
        ...chainArgs,
      ],
      { env },
    );
    roles.push(honestRole);
    honestPeer = honestRole.ready.peerId as string;
    const bootstrap = honestRole.ready.multiaddrs?.[0] ?? "";
    const cheaterRole = await startRole(
      [
        "--import",
        "tsx",
        join(repositoryRoot, "test", "fixtures", "cheatingProvider.ts"),
        directory.home,
        claimedModel.hash,
        otherModel.hash,
        cheater.privateKey,
        bootstrap,
        deploymentsPath,
      ],
      { env },
    );
    roles.push(cheaterRole);
    cheaterPeer = cheaterRole.ready.peerId as string;
    validatorRoles = [];
    for (let index = 1; index <= validators.length; index++) {
      const role = await startRole(
        [
          mycelBin,
          "--home",
          directory.home,
          "validator",
          "--key",
          `validator-${index}`,
          "--threads",
          "1",
          "--epoch-check",
          "1",
          "--challenge-interval",
          "0",
          "--bootstrap",
          bootstrap,
          ...chainArgs,
        ],
        { env },
      );
      roles.push(role);
      validatorRoles.push(role);
    }
    gateway = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "gateway",
        "--key",
        "gateway",
        "--port",
        "0",
        "--bootstrap",
        bootstrap,
        "--audit-rate",
        "1",
        ...validatorRoles.flatMap((role) => ["--validator", role.ready.multiaddrs?.[0] ?? ""]),
        ...chainArgs,
      ],
      { env },
    );
    roles.push(gateway);
    client = new OpenAI({ baseURL: `${gateway.ready.url}/v1`, apiKey: "unused", maxRetries: 0 });
    await waitLong("the gateway to see both providers", async () => {
      const response = await fetch(`${gateway.ready.url}/mycel/v1/providers`);
      const body = (await response.json()) as { data: unknown[] };
      return body.data.length >= 2 ? true : undefined;
    });
  });

  after(async () => {
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await chain?.stop();
    await directory?.remove();
  });

  async function ask(index: number) {
    const answer = await client.chat.completions.create({
      model: modelName,
      messages: [{ role: "user", content: `Question number ${index}: what is a mushroom?` }],
      max_tokens: 16,
      temperature: 0,
    });
    const mycel = (answer as unknown as { mycel: { providers: string[] } }).mycel;
    return mycel.providers[mycel.providers.length - 1] as string;
  }

  it("audits every sampled answer, slashes the cheater by quorum and stops routing to it", async () => {
    const served: string[] = [];
    for (let index = 0; index < 12; index++) served.push(await ask(index));
    assert.ok(
      served.includes(cheater.address),
      `the cheater served some of the first answers: ${served.join(",")}`,
    );
    assert.ok(
      served.includes(honest.address),
      `the honest provider served some of the first answers: ${served.join(",")}`,
    );

    // The validators' verdicts: every honest answer passes, the cheater's fail.
    const logs = () => validatorRoles.map((role) => role.output()).join("\n");
    const audited = (verdict: RegExp) =>
      Promise.any(validatorRoles.map((role) => role.waitForOutput(verdict, { timeoutMs: 60_000 })));
    await Promise.all([audited(/verdict=fail/), audited(/verdict=pass/)]).catch(() => {
      throw new Error(`no audits of both providers (verdict=fail and verdict=pass) within 60 s:\n${logs()}`);
    });
    const failed = logs()
      .split("\n")
      .filter((line) => line.includes("audited") && line.includes("verdict=fail"));
    assert.ok(failed.length > 0, "some audit failed");
    assert.doesNotMatch(
      gateway.output(),
      /audit sample not delivered/,
      "every sample reaches its validator (each validator's node is its own peer)",
    );
    for (const line of failed) assert.ok(line.includes(cheater.address), `only the cheater fails: ${line}`);

    // A quorum (2/3 of validator stake) slashes it: its stake falls, the honest provider's does not.
    const slashedStake = await waitLong("the slash to execute", async () => {
      const stake = await stakeOf(cheater.address);
      return stake < initialStake ? stake : undefined;
    });
    assert.equal(slashedStake, initialStake - initialStake / 10n, "10% of the stake is slashed");
    const proposals = await readSlashProposals(chain.deployer, {
      deployments: chain.deployments,
      fromId: 0n,
    });
    assert.ok(
      proposals.every((proposal) => proposal.provider === cheater.address),
      "no proposal names the honest provider",
    );
    assert.ok(
      proposals.some((proposal) => proposal.executed),
      "a proposal executed",
    );
    assert.equal(await stakeOf(honest.address), initialStake, "the honest provider keeps its stake");
    const standing = await getProviderStanding(chain.deployer, {
      deployments: chain.deployments,
      provider: cheater.address,
    });
    assert.equal(standing.reputation, 0, "a slash zeroes the cheater's reputation");

    // The gateway reads reputation every 5 s: once it has read the cheater's, only the honest provider answers.
    let seen: unknown;
    await waitFor(
      "the gateway to read the cheater's fallen reputation",
      async () => {
        const body = (await (await fetch(`${gateway.ready.url}/mycel/v1/providers`)).json()) as {
          data: { peer_id: string; reputation: number | null }[];
        };
        seen = body.data.map((row) => ({ peer: row.peer_id, reputation: row.reputation }));
        return body.data.find((row) => row.peer_id === cheaterPeer)?.reputation === 0 ? true : undefined;
      },
      { timeoutMs: 30_000, describe: () => JSON.stringify(seen) },
    );
    const after: string[] = [];
    for (let index = 100; index < 108; index++) after.push(await ask(index));
    assert.deepEqual(
      [...new Set(after)],
      [honest.address],
      `only the honest provider is routed to once the cheater's reputation fell: ${after.join(",")}`,
    );
    assert.ok(honestPeer && cheaterPeer, "peers known");
  });

  it("commits, reveals and finalizes epoch scores: the honest provider scores full, the cheater zero", async () => {
    const { deployments } = chain;
    const epoch = 0n;
    await waitLong("every validator to commit scores for epoch 0", async () => {
      const state = await getEpochState(chain.deployer, { deployments, epoch });
      return state.committers.length === validators.length ? true : undefined;
    });
    // Before the epoch ends, every validator commits what it knows after the slash: a zero for the cheater (from its
    // own failed audits, or from the reputation the slash zeroed). Each commitment is logged as
    // `scores committed epoch=0 scores=<address prefix>=<score>,...`.
    const cheaterScoredZero = new RegExp(
      `scores committed .*scores=(\\S*,)?${cheater.address.slice(0, 10)}=0(,|\\s|$)`,
      "im",
    );
    await Promise.all(
      validatorRoles.map((role) => role.waitForOutput(cheaterScoredZero, { timeoutMs: 60_000 })),
    );
    const end = await chain.deployer.publicClient.readContract({
      address: deployments.contracts.epochConsensus,
      abi: epochConsensusAbi,
      functionName: "epochEnd",
      args: [epoch],
    });
    await chain.increaseTime(Number(BigInt(end) - (await chain.now())) + 1);
    await waitLong("every validator to reveal", async () => {
      const state = await getEpochState(chain.deployer, { deployments, epoch });
      return state.revealed === validators.length ? true : undefined;
    });
    await chain.increaseTime(Number(deployments.parameters.revealSeconds) + 1);
    await waitLong("a validator to finalize the epoch", async () => {
      const state = await getEpochState(chain.deployer, { deployments, epoch });
      return state.finalized ? true : undefined;
    });
    const honestStanding = await getProviderStanding(chain.deployer, {
      deployments,
      provider: honest.address,
    });
    const cheaterStanding = await getProviderStanding(chain.deployer, {
      deployments,
      provider: cheater.address,
    });
    assert.equal(honestStanding.lastScore, 10_000, "the honest provider's consensus score is full");
    assert.equal(honestStanding.reputation, 10_000, "and so is its reputation");
    assert.equal(cheaterStanding.lastScore, 0, "the cheater's consensus score is zero");
    assert.ok(
      cheaterStanding.reputation < 5_000,
      `the cheater's reputation stays low: ${cheaterStanding.reputation}`,
    );
  });
});
