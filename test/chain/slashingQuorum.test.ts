import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseEther } from "viem";
import {
  ContractRevertError,
  ensureAllowance,
  epochConsensusAbi,
  getProviderRecord,
  proposeSlash,
  registerModel,
  registerProvider,
  registerValidator,
  sendContractTransaction,
  voteSlash,
} from "../../src/chain/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";

async function refusal(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof ContractRevertError) return error.errorName;
    throw error;
  }
}

describe("slashing quorum: stake added after a proposal does not count", () => {
  let chain: LocalChain;
  let provider: TestAccount;
  let honest: TestAccount[];
  let attacker: TestAccount;
  let lateAttacker: TestAccount;

  before(async () => {
    chain = await startLocalChain();
    const { deployments } = chain;
    const publisher = await chain.account("publisher");
    const modelHash = `0x${"ab".repeat(32)}` as const;
    await registerModel(publisher.connection, { deployments, modelHash, name: "m", license: "MIT" });
    provider = await chain.account("provider");
    await registerProvider(provider.connection, {
      deployments,
      peerId: "peer",
      offers: [{ modelHash, inputPricePerMillion: 1n, outputPricePerMillion: 1n }],
      stake: parseEther("500"),
    });
    honest = [];
    for (const label of ["a", "b", "c"]) {
      const validator = await chain.account(`validator-${label}`);
      await registerValidator(validator.connection, { deployments, stake: parseEther("1000") });
      honest.push(validator);
    }
    attacker = await chain.account("attacker");
    await registerValidator(attacker.connection, { deployments, stake: parseEther("1000") });
    lateAttacker = await chain.account("late-attacker");
  });
  after(async () => {
    await chain?.stop();
  });

  it("refuses votes from stake registered or added after the proposal, and passes with 2/3 of the stake then", async () => {
    const { deployments } = chain;
    const [a, b, c] = honest as [TestAccount, TestAccount, TestAccount];
    const { proposalId } = await proposeSlash(attacker.connection, {
      deployments,
      provider: provider.address,
      amount: parseEther("100"),
      evidence: "0x01",
    });
    // A new validator with enough stake to reach 2/3 together with the proposer may not vote.
    await registerValidator(lateAttacker.connection, { deployments, stake: parseEther("1667") });
    assert.equal(
      await refusal(voteSlash(lateAttacker.connection, { deployments, proposalId })),
      "StakeAddedAfterProposal",
    );
    // Neither may a validator that topped up after the proposal.
    await ensureAllowance(a.connection, {
      token: deployments.contracts.token,
      spender: deployments.contracts.epochConsensus,
      amount: parseEther("1"),
    });
    await sendContractTransaction(a.connection, {
      address: deployments.contracts.epochConsensus,
      abi: epochConsensusAbi,
      functionName: "addValidatorStake",
      args: [parseEther("1")],
      action: "add validator stake",
    });
    assert.equal(
      await refusal(voteSlash(a.connection, { deployments, proposalId })),
      "StakeAddedAfterProposal",
    );
    const stakeBefore = (
      await getProviderRecord(provider.connection, { deployments, provider: provider.address })
    )?.stake;
    assert.equal(stakeBefore, parseEther("500"), "nothing slashed by the refused votes");

    // Honest validators present at the proposal: 1000 + 1000 + 1000 (proposer) = 3000 of 4000 >= 2/3.
    await voteSlash(b.connection, { deployments, proposalId });
    assert.equal(
      (await getProviderRecord(provider.connection, { deployments, provider: provider.address }))?.stake,
      parseEther("500"),
      "2000 of 4000 does not pass",
    );
    await voteSlash(c.connection, { deployments, proposalId });
    assert.equal(
      (await getProviderRecord(provider.connection, { deployments, provider: provider.address }))?.stake,
      parseEther("400"),
      "3000 of 4000 passes and slashes 100",
    );
  });
});
