import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  type Address,
  BaseError,
  decodeErrorResult,
  encodeAbiParameters,
  encodeDeployData,
  erc20Abi,
  type Hex,
  keccak256,
  parseEventLogs,
  stringToHex,
  type TransactionReceipt,
} from "viem";
import {
  commitScores,
  computeConsensus,
  epochConsensusAbi,
  epochConsensusBytecode,
  epochConsensusInput,
  finalizeEpoch,
  fundRewards,
  getEpochState,
  getProviderRecord,
  getProviderStanding,
  getTokenBalance,
  maxScore,
  proposeSlash,
  providerRegistryAbi,
  registerModel,
  registerProvider,
  registerValidator,
  requestProviderUnbond,
  revealScores,
  scoreCommitment,
  sendContractTransaction,
  voteSlash,
} from "../../src/chain/index.ts";
import { type LocalChain, startLocalChain, type TestAccount } from "../fixtures/chain/localChain.ts";
import { assertRefused, type Call, type Loose, refusalAt } from "../fixtures/chain/refusals.ts";

const myc = 10n ** 18n;

const randomSalt = (): Hex => `0x${randomBytes(32).toString("hex")}`;

// ---- the reference: EpochConsensus's documented rules, computed independently ----

type Reveal = { validator: Address; weight: bigint; scores: number[] };
type Standing = {
  lastScore: number;
  reputation: number;
  lastEpoch: bigint;
  scored: boolean;
  /** The provider's rewards not yet claimed (they accrue in its standing). */
  unclaimedReward: bigint;
};
const noStanding: Standing = {
  lastScore: 0,
  reputation: 0,
  lastEpoch: 0n,
  scored: false,
  unclaimedReward: 0n,
};
type Outcome = {
  consensus: number[];
  providerRewards: bigint[];
  agreements: bigint[];
  validatorRewards: bigint[];
  distributed: bigint;
};

/** The highest score s such that the validators giving >= s hold at least half the revealed weight. */
function referenceConsensus(reveals: Reveal[], provider: number): number {
  const total = reveals.reduce((sum, reveal) => sum + reveal.weight, 0n);
  const candidates = [...new Set(reveals.map((reveal) => reveal.scores[provider] ?? 0))].sort(
    (a, b) => b - a,
  );
  for (const candidate of candidates) {
    const support = reveals
      .filter((reveal) => (reveal.scores[provider] ?? 0) >= candidate)
      .reduce((sum, reveal) => sum + reveal.weight, 0n);
    if (support * 2n >= total) return candidate;
  }
  return 0;
}

/** What finalizing an epoch with these reveals must compute, with `available` in the reward pool. */
function referenceOutcome(
  providerCount: number,
  reveals: Reveal[],
  available: bigint,
  rules: { rewardPerEpoch: bigint; validatorShareBps: bigint },
): Outcome {
  if (reveals.length === 0 || providerCount === 0)
    return { consensus: [], providerRewards: [], agreements: [], validatorRewards: [], distributed: 0n };
  const consensus = Array.from({ length: providerCount }, (_, p) => referenceConsensus(reveals, p));
  const pool = available < rules.rewardPerEpoch ? available : rules.rewardPerEpoch;
  const validatorPart = (pool * rules.validatorShareBps) / 10_000n;
  const providerPart = pool - validatorPart;
  const consensusSum = BigInt(consensus.reduce((sum, score) => sum + score, 0));
  const providerRewards = consensus.map((score) =>
    consensusSum === 0n ? 0n : (providerPart * BigInt(score)) / consensusSum,
  );
  const agreements = reveals.map((reveal) => {
    let agreed = 0n;
    let spread = 0n;
    consensus.forEach((score, p) => {
      const given = reveal.scores[p] ?? 0;
      agreed += BigInt(Math.min(given, score));
      spread += BigInt(Math.max(given, score));
    });
    return spread === 0n ? 10_000n : (agreed * 10_000n) / spread;
  });
  const weighted = reveals.map((reveal, v) => reveal.weight * (agreements[v] ?? 0n));
  const weightedSum = weighted.reduce((sum, value) => sum + value, 0n);
  const validatorRewards = weighted.map((value) =>
    weightedSum === 0n ? 0n : (validatorPart * value) / weightedSum,
  );
  const distributed = [...providerRewards, ...validatorRewards].reduce((sum, value) => sum + value, 0n);
  return { consensus, providerRewards, agreements, validatorRewards, distributed };
}

/** The reputation update: the first score as is, then (3 * old + new) / 4; the reward adds to what is unclaimed. */
function nextStanding(
  previous: Standing | undefined,
  score: number,
  epoch: bigint,
  reward: bigint,
): Standing {
  const reputation = previous?.scored ? Math.floor((3 * previous.reputation + score) / 4) : score;
  const unclaimedReward = (previous?.unclaimedReward ?? 0n) + reward;
  return { lastScore: score, reputation, lastEpoch: epoch, scored: true, unclaimedReward };
}

/** What a slash of `amount` takes: bonded stake first, then unbonding stake. */
function referenceSlash(stake: bigint, unbonding: bigint, amount: bigint) {
  const fromStake = amount < stake ? amount : stake;
  const rest = amount - fromStake;
  const fromUnbonding = rest < unbonding ? rest : unbonding;
  return { stake: stake - fromStake, unbonding: unbonding - fromUnbonding, taken: fromStake + fromUnbonding };
}

describe("computeConsensus (src/chain) agrees with the reference", () => {
  const asReveals = (scores: number[][], weights: bigint[]): Reveal[] =>
    scores.map((row, v) => ({ validator: `0x${"00".repeat(20)}`, weight: weights[v] ?? 0n, scores: row }));
  const reference = (scores: number[][], weights: bigint[], providerCount: number) =>
    Array.from({ length: providerCount }, (_, p) => referenceConsensus(asReveals(scores, weights), p));
  /** What EpochConsensus.finalize accepts for provider p: weight(given >= c) * 2 >= total > weight(given > c) * 2. */
  const contractAccepts = (scores: number[][], weights: bigint[], p: number, c: number) => {
    const total = weights.reduce((sum, w) => sum + w, 0n);
    const weightOf = (keep: (given: number) => boolean) =>
      scores.reduce((sum, row, v) => (keep(row[p] ?? 0) ? sum + (weights[v] ?? 0n) : sum), 0n);
    return weightOf((given) => given >= c) * 2n >= total && weightOf((given) => given > c) * 2n < total;
  };

  it("on hand-picked ties and equal weights", () => {
    const cases: [string, number[][], bigint[], number[]][] = [
      ["two equal weights: exactly half is enough, so the higher score", [[3000], [7000]], [5n, 5n], [7000]],
      ["three equal weights: the middle score", [[1000], [9000], [5000]], [1n, 1n, 1n], [5000]],
      ["four equal weights: the upper middle", [[1000], [2000], [3000], [4000]], [7n, 7n, 7n, 7n], [3000]],
      ["weights 1, 1, 2: the two lighter reach half", [[9000], [8000], [1000]], [1n, 1n, 2n], [8000]],
      ["one heavy validator decides", [[10000], [0], [0]], [3n, 1n, 1n], [10000]],
      ["a tie at the median score", [[5000], [5000], [2000], [9000]], [1n, 1n, 1n, 1n], [5000]],
      [
        "everyone agrees",
        [
          [4242, 0, 10000],
          [4242, 0, 10000],
        ],
        [myc, 3n * myc],
        [4242, 0, 10000],
      ],
      ["no providers", [[], []], [1n, 2n], []],
    ];
    for (const [what, scores, weights, expected] of cases) {
      assert.deepEqual(reference(scores, weights, expected.length), expected, `the reference: ${what}`);
      assert.deepEqual(computeConsensus({ scores, weights }), expected, `computeConsensus: ${what}`);
      expected.forEach((c, p) => {
        assert.ok(contractAccepts(scores, weights, p, c), `the contract's rule accepts it: ${what}`);
      });
    }
    assert.deepEqual(computeConsensus({ scores: [], weights: [] }), [], "no reveals, no vector");
  });

  it("on random score matrices and weights", () => {
    const score = fc.oneof(
      fc.constantFrom(0, 5_000, maxScore),
      fc.integer({ min: 4_999, max: 5_001 }),
      fc.integer({ min: 0, max: maxScore }),
    );
    const weight = fc.oneof(
      fc.constant(1_000n * myc),
      fc.bigInt({ min: 1n, max: 4n }),
      fc.bigInt({ min: 1n, max: 2n ** 128n - 1n }),
    );
    const matrix = fc
      .tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 9 }), fc.boolean())
      .chain(([providerCount, validatorCount, equalWeights]) =>
        fc.record({
          providerCount: fc.constant(providerCount),
          scores: fc.array(fc.array(score, { minLength: providerCount, maxLength: providerCount }), {
            minLength: validatorCount,
            maxLength: validatorCount,
          }),
          weights: equalWeights
            ? weight.map((w) => Array.from({ length: validatorCount }, () => w))
            : fc.array(weight, { minLength: validatorCount, maxLength: validatorCount }),
        }),
      );
    fc.assert(
      fc.property(matrix, ({ providerCount, scores, weights }) => {
        const expected = reference(scores, weights, providerCount);
        assert.deepEqual(
          computeConsensus({ scores, weights }),
          expected,
          "computeConsensus is the reference",
        );
        expected.forEach((c, p) => {
          assert.ok(
            contractAccepts(scores, weights, p, c),
            `the contract's rule accepts provider ${p}'s median`,
          );
          if (c < maxScore) assert.ok(!contractAccepts(scores, weights, p, c + 1), "and not one above");
          if (c > 0) assert.ok(!contractAccepts(scores, weights, p, c - 1), "and not one below");
        });
      }),
      { numRuns: 1_000 },
    );
  });
});

describe("EpochConsensus (real anvil)", () => {
  let chain: LocalChain;
  let consensus: Address;
  let token: Address;
  let rules: { rewardPerEpoch: bigint; validatorShareBps: bigint };
  let minimumValidatorStake: bigint;
  let minimumProviderStake: bigint;
  let genesis: bigint;
  let epochLength: bigint;
  let revealPeriod: bigint;
  let votingPeriod: bigint;
  let modelHash: Hex;

  const validators: Record<"v1" | "v2" | "v3" | "v4" | "v5", TestAccount> = {} as Loose;
  const providers: Record<"p1" | "p2" | "p3" | "p4" | "p5", TestAccount> = {} as Loose;
  let outsider: TestAccount;
  let funder: TestAccount;
  const validatorList = () => Object.values(validators);
  const everyone = () => [...Object.values(validators), ...Object.values(providers), outsider, funder];
  const labelOf = (address: Address) => {
    const entry = Object.entries(providers).find(([, account]) => account.address === address);
    assert.ok(entry, `${address} is one of the test's providers`);
    return entry[0];
  };

  // The reference state: what the contracts must hold.
  const ref = {
    validators: new Map<Address, { stake: bigint; unbonding: bigint }>(),
    providers: new Map<Address, { stake: bigint; unbonding: bigint }>(),
    rewardPool: 0n,
    /** Validators' unclaimed rewards; providers' accrue in their standings. */
    validatorRewards: new Map<Address, bigint>(),
    standings: new Map<Address, Standing>(),
  };
  /** What `claimable(account)` must return: its validator rewards plus its standing's unclaimed reward. */
  const claimableOf = (account: Address) =>
    (ref.validatorRewards.get(account) ?? 0n) + (ref.standings.get(account)?.unclaimedReward ?? 0n);
  const totalValidatorStake = () => [...ref.validators.values()].reduce((sum, v) => sum + v.stake, 0n);
  const activeProviders = () =>
    [...ref.providers.entries()]
      .filter(([, p]) => p.stake >= minimumProviderStake)
      .map(([address]) => address);

  const read = <T>(functionName: string, args: readonly unknown[] = []) =>
    chain.deployer.publicClient.readContract({
      address: consensus,
      abi: epochConsensusAbi,
      functionName,
      args,
    } as Loose) as Promise<T>;
  const call = (functionName: string, args: readonly unknown[]): Call => ({
    address: consensus,
    abi: epochConsensusAbi,
    functionName,
    args,
  });
  const registryProviders = async (functionName: "activeProviders" | "providerAddresses") => [
    ...(await chain.deployer.publicClient.readContract({
      address: chain.deployments.contracts.providerRegistry,
      abi: providerRegistryAbi,
      functionName,
    })),
  ];
  const epochEnd = (epoch: bigint) => genesis + (epoch + 1n) * epochLength;
  const balanceOf = (owner: Address) => getTokenBalance(chain.deployer, { token, owner });

  /** Moves chain time to `target` (a few seconds of wall clock may pass on top). */
  async function moveTo(target: bigint) {
    const now = await chain.now();
    assert.ok(target > now, `cannot move back in time (${target} <= ${now})`);
    await chain.increaseTime(Number(target - now));
    const reached = await chain.now();
    assert.ok(reached >= target && reached < target + 10n, `moved to ${reached}, wanted ${target}`);
  }

  /** Moves to 10 s into the next epoch and checks the contract agrees on which epoch that is. */
  async function freshEpoch() {
    const now = await chain.now();
    const next = (now - genesis) / epochLength + 1n;
    await moveTo(genesis + next * epochLength + 10n);
    assert.equal(await read("currentEpoch"), next);
    assert.equal(await read("epochEnd", [next]), epochEnd(next));
    return next;
  }

  async function standingOf(provider: Address) {
    return { ...(await getProviderStanding(chain.deployer, { deployments: chain.deployments, provider })) };
  }

  /** Compares the contract's pool, claimables, standings and stakes with the reference, and checks the books balance. */
  async function assertMatchesReference() {
    assert.equal(await read("rewardPool"), ref.rewardPool, "reward pool");
    assert.equal(await read("totalValidatorStake"), totalValidatorStake(), "total validator stake");
    for (const account of everyone()) {
      assert.equal(
        await read("claimable", [account.address]),
        claimableOf(account.address),
        `claimable of ${account.address}`,
      );
    }
    for (const provider of Object.values(providers)) {
      assert.deepEqual(
        await standingOf(provider.address),
        ref.standings.get(provider.address) ?? noStanding,
        `standing of ${labelOf(provider.address)}`,
      );
      const record = await getProviderRecord(chain.deployer, {
        deployments: chain.deployments,
        provider: provider.address,
      });
      const expected = ref.providers.get(provider.address);
      assert.deepEqual(
        record && { stake: record.stake, unbonding: record.unbonding },
        expected && { ...expected },
        `provider record of ${labelOf(provider.address)}`,
      );
    }
    for (const validator of validatorList()) {
      const record = await read<{ stake: bigint; unbonding: bigint }>("getValidator", [validator.address]);
      const expected = ref.validators.get(validator.address) ?? { stake: 0n, unbonding: 0n };
      assert.deepEqual({ stake: record.stake, unbonding: record.unbonding }, expected);
    }
    // Every token the contract holds is validator stake, the reward pool or owed to someone.
    let owed = ref.rewardPool;
    for (const v of ref.validators.values()) owed += v.stake + v.unbonding;
    for (const amount of ref.validatorRewards.values()) owed += amount;
    for (const standing of ref.standings.values()) owed += standing.unclaimedReward;
    assert.equal(await balanceOf(consensus), owed, "the contract's balance covers exactly what it owes");
  }

  /** Everything observable that a refused call must leave as it was. */
  async function snapshot(epochs: bigint[] = []) {
    return {
      rewardPool: await read("rewardPool"),
      totalValidatorStake: await read("totalValidatorStake"),
      proposalCount: await read<bigint>("proposalCount"),
      balance: await balanceOf(consensus),
      registryBalance: await balanceOf(chain.deployments.contracts.providerRegistry),
      validators: await Promise.all(validatorList().map((v) => read("getValidator", [v.address]))),
      claimable: await Promise.all(everyone().map((a) => read("claimable", [a.address]))),
      standings: await Promise.all(Object.values(providers).map((p) => standingOf(p.address))),
      providerRecords: await Promise.all(
        Object.values(providers).map((p) =>
          getProviderRecord(chain.deployer, { deployments: chain.deployments, provider: p.address }),
        ),
      ),
      proposals: await Promise.all(
        Array.from({ length: Number(await read<bigint>("proposalCount")) }, (_, id) =>
          read("getProposal", [BigInt(id)]),
        ),
      ),
      epochs: await Promise.all(
        epochs.map(async (epoch) => ({
          state: await read("getEpoch", [epoch]),
          consensus: await read("consensusScores", [epoch]),
          commitments: await Promise.all(
            validatorList().map((v) => read("getCommitment", [epoch, v.address])),
          ),
          revealedScores: await Promise.all(
            validatorList().map((v) => read("revealedScores", [epoch, v.address])),
          ),
        })),
      ),
    };
  }

  const events = (receipt: TransactionReceipt, eventName: string) =>
    parseEventLogs({ abi: epochConsensusAbi, logs: receipt.logs, eventName: eventName as Loose })
      .filter((log) => log.address.toLowerCase() === consensus.toLowerCase())
      .map((log) => log.args as Record<string, unknown>);

  /** Checks a finalize receipt against the reference outcome, then applies the outcome to the reference and compares state. */
  async function assertFinalized(
    epoch: bigint,
    epochProviders: Address[],
    reveals: Reveal[],
    outcome: Outcome,
    receipt: TransactionReceipt,
  ) {
    const standings = epochProviders.map((provider, p) =>
      nextStanding(
        ref.standings.get(provider),
        outcome.consensus[p] ?? -1,
        epoch,
        outcome.providerRewards[p] ?? -1n,
      ),
    );
    assert.deepEqual(
      events(receipt, "ProviderScored"),
      epochProviders.map((provider, p) => ({
        epoch,
        provider,
        score: outcome.consensus[p],
        reputation: standings[p]?.reputation,
        reward: outcome.providerRewards[p],
      })),
    );
    assert.deepEqual(
      events(receipt, "ValidatorRewarded"),
      reveals.map((reveal, v) => ({
        epoch,
        validator: reveal.validator,
        agreementBps: outcome.agreements[v],
        reward: outcome.validatorRewards[v],
      })),
    );
    assert.deepEqual(events(receipt, "EpochFinalized"), [
      {
        epoch,
        validators: BigInt(reveals.length),
        providers: BigInt(epochProviders.length),
        distributed: outcome.distributed,
      },
    ]);
    epochProviders.forEach((provider, p) => {
      ref.standings.set(provider, standings[p] as Standing);
    });
    reveals.forEach((reveal, v) => {
      ref.validatorRewards.set(
        reveal.validator,
        (ref.validatorRewards.get(reveal.validator) ?? 0n) + (outcome.validatorRewards[v] ?? 0n),
      );
    });
    ref.rewardPool -= outcome.distributed;
    assert.deepEqual(await read("consensusScores", [epoch]), outcome.consensus);
    assert.equal((await read<{ finalized: boolean }>("getEpoch", [epoch])).finalized, true);
    await assertMatchesReference();
  }

  type Entry = { validator: TestAccount; scores: Record<string, number>; reveal: boolean };

  /**
   * Checks that finalizing `epoch` (in its finalize phase, with reveals) with anything but `expected`, the
   * reference consensus, is refused and changes nothing: for every provider one above and one below its
   * median (WrongConsensus(index, score)), a score above 10000 (ScoreOutOfRange) and vectors of the wrong
   * length (ConsensusLengthMismatch); and that `expected` itself would be accepted.
   */
  async function assertOnlyConsensusAccepted(epoch: bigint, expected: number[]) {
    const count = expected.length;
    assert.ok(count > 0, "an epoch with providers");
    const finalizeWith = (vector: number[]) => call("finalize", [epoch, vector]);
    const changed = (vector: number[], index: number, value: number) =>
      vector.map((score, i) => (i === index ? value : score));
    const refusals: [string, number[], string, readonly unknown[]][] = [];
    expected.forEach((score, p) => {
      if (score < maxScore) {
        refusals.push([
          `one above provider ${p}'s median`,
          changed(expected, p, score + 1),
          "WrongConsensus",
          [BigInt(p), BigInt(score + 1)],
        ]);
      }
      if (score > 0) {
        refusals.push([
          `one below provider ${p}'s median`,
          changed(expected, p, score - 1),
          "WrongConsensus",
          [BigInt(p), BigInt(score - 1)],
        ]);
      }
    });
    const last = count - 1;
    const lastScore = expected[last] ?? 0;
    const wrongLast = lastScore === 0 ? maxScore : 0;
    if (count >= 2) {
      const wrongFirst = (expected[0] ?? 0) === 0 ? 1 : 0;
      refusals.push([
        "two wrong scores: the first is reported",
        changed(changed(expected, 0, wrongFirst), last, wrongLast),
        "WrongConsensus",
        [0n, BigInt(wrongFirst)],
      ]);
    }
    refusals.push(
      [
        "a score above 10000",
        changed(expected, last, maxScore + 1),
        "ScoreOutOfRange",
        [BigInt(last), BigInt(maxScore + 1)],
      ],
      [
        "one score too many",
        [...expected, expected[0] ?? 0],
        "ConsensusLengthMismatch",
        [BigInt(count + 1), BigInt(count)],
      ],
      [
        "one score too few",
        expected.slice(0, -1),
        "ConsensusLengthMismatch",
        [BigInt(count - 1), BigInt(count)],
      ],
      ["no scores", [], "ConsensusLengthMismatch", [0n, BigInt(count)]],
    );
    const before = await snapshot([epoch]);
    for (const [what, vector, errorName, args] of refusals) {
      await assertRefused(outsider.connection, finalizeWith(vector), errorName, args);
      assert.deepEqual(await snapshot([epoch]), before, `refusing ${what} changes nothing`);
    }
    assert.equal(
      await refusalAt(outsider.connection, (await chain.now()) + 1n, finalizeWith(expected)),
      undefined,
      "the reference vector is accepted",
    );
  }

  /** One epoch of commit, reveal and finalize, checked against the reference at every step. */
  async function runScoredEpoch(plan: {
    entries: Entry[];
    afterFirstCommit?: () => Promise<void>;
    afterCommits?: () => Promise<void>;
    /** "client": src/chain's finalizeEpoch computes the vector (the default); "reference": the test's reference vector is sent. */
    finalizeWith?: "client" | "reference";
  }) {
    const deployments = chain.deployments;
    const epoch = await freshEpoch();
    const expectedProviders = activeProviders();
    let epochProviders: Address[] = [];
    const committed: (Reveal & { salt: Hex; reveal: boolean; account: TestAccount })[] = [];
    for (const [index, entry] of plan.entries.entries()) {
      if (index === 0) epochProviders = await registryProviders("activeProviders");
      const scores = epochProviders.map((provider) => {
        const score = entry.scores[labelOf(provider)];
        assert.ok(score !== undefined, `a score for ${labelOf(provider)}`);
        return score;
      });
      const salt = randomSalt();
      const validator = entry.validator.address;
      const sent = await commitScores(entry.validator.connection, { deployments, epoch, scores, salt });
      assert.deepEqual(events(sent.receipt, "ScoresCommitted"), [
        { epoch, validator, commitment: scoreCommitment({ epoch, validator, scores, salt }) },
      ]);
      assert.deepEqual(
        events(sent.receipt, "EpochOpened"),
        index === 0 ? [{ epoch, providers: BigInt(epochProviders.length) }] : [],
      );
      const weight = ref.validators.get(validator)?.stake ?? 0n;
      committed.push({ validator, weight, scores, salt, reveal: entry.reveal, account: entry.validator });
      if (index === 0) {
        // The first commitment fixes the epoch's providers: the active ones now.
        assert.deepEqual([...epochProviders].sort(), [...expectedProviders].sort());
        await plan.afterFirstCommit?.();
      }
    }
    await plan.afterCommits?.();
    const state = await getEpochState(chain.deployer, { deployments, epoch });
    assert.deepEqual(
      state.providers,
      epochProviders,
      "the provider list stays as the first commitment fixed it",
    );
    assert.deepEqual(
      state.committers,
      committed.map((c) => c.validator),
    );
    for (const entry of committed) {
      assert.deepEqual(await read("getCommitment", [epoch, entry.validator]), {
        hash: scoreCommitment({ epoch, validator: entry.validator, scores: entry.scores, salt: entry.salt }),
        weight: entry.weight,
        revealed: false,
      });
    }

    await moveTo(epochEnd(epoch) + 10n);
    const revealedScores = (validator: Address) => read<number[]>("revealedScores", [epoch, validator]);
    for (const entry of committed) {
      assert.deepEqual(await revealedScores(entry.validator), [], "no revealed scores before the reveal");
    }
    for (const entry of committed.filter((c) => c.reveal)) {
      const sent = await revealScores(entry.account.connection, {
        deployments,
        epoch,
        scores: entry.scores,
        salt: entry.salt,
      });
      assert.deepEqual(events(sent.receipt, "ScoresRevealed"), [
        { epoch, validator: entry.validator, scores: entry.scores },
      ]);
      assert.deepEqual(
        await revealedScores(entry.validator),
        entry.scores,
        "revealedScores after the reveal",
      );
    }
    const reveals = committed.filter((c) => c.reveal);
    assert.equal((await getEpochState(chain.deployer, { deployments, epoch })).revealed, reveals.length);
    for (const entry of committed) {
      assert.deepEqual(
        await revealedScores(entry.validator),
        entry.reveal ? entry.scores : [],
        "revealedScores: exactly what was revealed, empty without a reveal",
      );
    }
    assert.deepEqual(await revealedScores(outsider.address), [], "no scores for a non-committer");

    await moveTo(epochEnd(epoch) + revealPeriod + 10n);
    const available = ref.rewardPool;
    const used = reveals.map(({ validator, weight, scores }) => ({ validator, weight, scores }));
    const outcome = referenceOutcome(epochProviders.length, used, available, rules);
    // The client reads the reveals back and computes the same vector as the reference.
    assert.deepEqual(await epochConsensusInput(chain.deployer, { deployments, epoch }), outcome.consensus);
    await assertOnlyConsensusAccepted(epoch, outcome.consensus);
    // Anyone may finalize.
    const sent =
      plan.finalizeWith === "reference"
        ? await sendContractTransaction(funder.connection, {
            ...call("finalize", [epoch, outcome.consensus]),
            action: "finalize with the reference vector",
          } as Loose)
        : await finalizeEpoch(funder.connection, { deployments, epoch });
    await assertFinalized(epoch, epochProviders, used, outcome, sent.receipt);
    return { epoch, epochProviders, committed, reveals: used, outcome, available };
  }

  before(async () => {
    chain = await startLocalChain();
    const deployments = chain.deployments;
    consensus = deployments.contracts.epochConsensus;
    token = deployments.contracts.token;
    const parameters = deployments.parameters;
    rules = {
      rewardPerEpoch: BigInt(parameters.rewardPerEpoch),
      validatorShareBps: BigInt(parameters.validatorShareBps),
    };
    minimumValidatorStake = BigInt(parameters.minimumValidatorStake);
    minimumProviderStake = BigInt(parameters.minimumProviderStake);
    epochLength = BigInt(parameters.epochSeconds);
    revealPeriod = BigInt(parameters.revealSeconds);
    votingPeriod = BigInt(parameters.votingSeconds);
    genesis = await read<bigint>("genesis");
    // One at a time: the fixture funds each account from the deployer's key.
    for (const label of ["v1", "v2", "v3", "v4", "v5"] as const)
      validators[label] = await chain.account(`consensus-${label}`);
    for (const label of ["p1", "p2", "p3", "p4", "p5"] as const)
      providers[label] = await chain.account(`consensus-${label}`);
    outsider = await chain.account("consensus-outsider");
    funder = await chain.account("consensus-funder");
    modelHash = `0x${createHash("sha256").update("consensus-model").digest("hex")}`;
    await registerModel(chain.deployer, { deployments, modelHash, name: "scored", license: "MIT" });
    // p1..p4 now, p5 joins later (during epoch 2).
    const stakes = { p1: 100n, p2: 200n, p3: 300n, p4: 400n };
    for (const [label, amount] of Object.entries(stakes)) {
      const account = providers[label as keyof typeof stakes];
      await registerProvider(account.connection, {
        deployments,
        peerId: `12D3KooW${label}`,
        offers: [{ modelHash, inputPricePerMillion: 1n, outputPricePerMillion: 2n }],
        stake: amount * myc,
      });
      ref.providers.set(account.address, { stake: amount * myc, unbonding: 0n });
    }
  });
  after(async () => {
    await chain?.stop();
  });

  it("is deployed with the devnet's epoch rules", async () => {
    assert.equal(await read("epochLength"), epochLength);
    assert.equal(await read("revealPeriod"), revealPeriod);
    assert.equal(await read("votingPeriod"), votingPeriod);
    assert.equal(await read("rewardPerEpoch"), rules.rewardPerEpoch);
    assert.equal(BigInt(await read<number>("validatorShareBps")), rules.validatorShareBps);
    assert.equal(await read("minimumValidatorStake"), minimumValidatorStake);
    assert.equal(await read("MAX_SCORE"), maxScore);
    assert.equal(epochLength, 600n);
    assert.equal(revealPeriod, 120n);
    // The configuration the constructor requires: a validator's stake stays bonded through an epoch and its
    // reveal, and a provider's through a slashing vote.
    const validatorUnbonding = await read<bigint>("validatorUnbondingPeriod");
    assert.equal(validatorUnbonding, BigInt(chain.deployments.parameters.validatorUnbondingSeconds));
    assert.equal(validatorUnbonding, 1_200n);
    assert.ok(
      validatorUnbonding >= epochLength + revealPeriod,
      "validator unbonding covers an epoch and its reveal",
    );
    assert.ok(validatorUnbonding >= votingPeriod, "validator unbonding covers a vote");
    const providerUnbonding = await chain.deployer.publicClient.readContract({
      address: chain.deployments.contracts.providerRegistry,
      abi: providerRegistryAbi,
      functionName: "unbondingPeriod",
    });
    assert.ok(providerUnbonding >= votingPeriod, "provider unbonding covers a slashing vote");
    const now = await chain.now();
    assert.equal(await read("currentEpoch"), (now - genesis) / epochLength);
    // The client's commitment is the contract's: keccak256(abi.encode(epoch, validator, scores, salt)).
    const sample = {
      epoch: 7n,
      validator: outsider.address,
      scores: [0, 1, 9_999, 10_000],
      salt: randomSalt(),
    };
    const encoded = keccak256(
      encodeAbiParameters(
        [{ type: "uint256" }, { type: "address" }, { type: "uint16[]" }, { type: "bytes32" }],
        [sample.epoch, sample.validator, sample.scores, sample.salt],
      ),
    );
    assert.equal(scoreCommitment(sample), encoded);
    assert.equal(
      await read("commitmentHash", [sample.epoch, sample.validator, sample.scores, sample.salt]),
      encoded,
    );
    await assertMatchesReference();
  });

  it("refuses constructor parameters where stake could leave before an epoch's reveal or a slashing vote ends", async () => {
    const parameters = chain.deployments.parameters;
    /** Deploys EpochConsensus (simulated) with the devnet's parameters but these periods: the refusal reason, if any. */
    const constructorRefusal = async (periods: { validatorUnbonding: bigint; voting: bigint }) => {
      const data = encodeDeployData({
        abi: epochConsensusAbi,
        bytecode: epochConsensusBytecode,
        args: [
          token,
          chain.deployments.contracts.providerRegistry,
          minimumValidatorStake,
          periods.validatorUnbonding,
          epochLength,
          revealPeriod,
          periods.voting,
          rules.rewardPerEpoch,
          Number(rules.validatorShareBps),
        ],
      });
      try {
        await chain.deployer.publicClient.call({ account: chain.deployer.account, data });
        return undefined;
      } catch (error) {
        assert.ok(error instanceof BaseError, `a viem error, got ${String(error)}`);
        // The node returns the revert data with the RPC error (there is no contract ABI to decode it on deploys).
        const raw = error.walk((entry) => typeof (entry as { data?: unknown }).data === "string");
        const revertData = (raw as { data?: Hex } | null)?.data;
        if (!revertData?.startsWith("0x")) assert.fail(`no revert data in ${error.message}`);
        const decoded = decodeErrorResult({ abi: epochConsensusAbi, data: revertData });
        return `${decoded.errorName}: ${decoded.args?.join(", ")}`;
      }
    };
    const providerUnbonding = BigInt(parameters.providerUnbondingSeconds);
    const devnet = { validatorUnbonding: BigInt(parameters.validatorUnbondingSeconds), voting: votingPeriod };
    assert.equal(await constructorRefusal(devnet), undefined, "the devnet's parameters deploy");
    const tooShort =
      "InvalidConfiguration: validator unbonding must last at least an epoch plus its reveal period";
    assert.equal(
      await constructorRefusal({ ...devnet, validatorUnbonding: epochLength + revealPeriod - 1n }),
      tooShort,
    );
    assert.equal(
      await constructorRefusal({ ...devnet, validatorUnbonding: epochLength + revealPeriod }),
      undefined,
      "exactly an epoch plus its reveal period is enough",
    );
    assert.ok(
      providerUnbonding + 1n <= devnet.validatorUnbonding,
      "the voting period below is otherwise valid",
    );
    assert.equal(
      await constructorRefusal({ ...devnet, voting: providerUnbonding + 1n }),
      "InvalidConfiguration: provider unbonding must last at least the voting period",
    );
    assert.equal(
      await constructorRefusal({ ...devnet, voting: providerUnbonding }),
      undefined,
      "a vote as long as the provider unbonding is allowed",
    );
  });

  it("registers validators with at least the minimum stake, pulling the tokens", async () => {
    const deployments = chain.deployments;
    await sendContractTransaction(outsider.connection, {
      address: token,
      abi: erc20Abi,
      functionName: "approve",
      args: [consensus, minimumValidatorStake * 10n],
      action: "approve",
    });
    const before = await snapshot();
    await assertRefused(
      outsider.connection,
      call("registerValidator", [minimumValidatorStake - 1n]),
      "StakeBelowMinimum",
      [minimumValidatorStake - 1n, minimumValidatorStake],
    );
    await assertRefused(outsider.connection, call("registerValidator", [0n]), "StakeBelowMinimum", [
      0n,
      minimumValidatorStake,
    ]);
    assert.deepEqual(await snapshot(), before);
    assert.deepEqual(await read("validatorAddresses"), []);

    const stakes = { v1: 1000n, v2: 2000n, v3: 3000n, v4: 4000n, v5: 1000n };
    assert.equal(stakes.v1 * myc, minimumValidatorStake, "v1 stakes exactly the minimum");
    for (const [label, amount] of Object.entries(stakes)) {
      const account = validators[label as keyof typeof stakes];
      const stake = amount * myc;
      const balanceBefore = await balanceOf(account.address);
      const sent = await registerValidator(account.connection, { deployments, stake });
      assert.deepEqual(events(sent.receipt, "ValidatorRegistered"), [{ validator: account.address, stake }]);
      assert.equal(await balanceOf(account.address), balanceBefore - stake);
      ref.validators.set(account.address, { stake, unbonding: 0n });
    }
    assert.deepEqual(
      await read("validatorAddresses"),
      validatorList().map((v) => v.address),
    );
    await assertMatchesReference();
    const registered = await snapshot();
    await assertRefused(
      validators.v2.connection,
      call("registerValidator", [minimumValidatorStake]),
      "AlreadyValidator",
      [validators.v2.address],
    );
    // What stays bonded must be zero or at least the minimum.
    await assertRefused(
      validators.v2.connection,
      call("requestValidatorUnbond", [stakes.v2 * myc - minimumValidatorStake + 1n]),
      "StakeBelowMinimum",
      [minimumValidatorStake - 1n, minimumValidatorStake],
    );
    assert.deepEqual(await snapshot(), registered);

    // v5 unbonds everything: still registered, but with no stake it is no longer a validator.
    const v5 = validators.v5;
    await sendContractTransaction(v5.connection, {
      ...call("requestValidatorUnbond", [stakes.v5 * myc]),
      action: "unbond v5",
    } as Loose);
    ref.validators.set(v5.address, { stake: 0n, unbonding: stakes.v5 * myc });
    await assertMatchesReference();
  });

  it("refuses commitments, proposals and votes from accounts without validator stake", async () => {
    const epoch = await read<bigint>("currentEpoch");
    const commitment = scoreCommitment({
      epoch,
      validator: outsider.address,
      scores: [1, 2, 3, 4],
      salt: randomSalt(),
    });
    const before = await snapshot([epoch]);
    for (const account of [outsider, validators.v5]) {
      await assertRefused(account.connection, call("commit", [epoch, commitment]), "NotValidator", [
        account.address,
      ]);
      await assertRefused(
        account.connection,
        call("proposeSlash", [providers.p1.address, myc, stringToHex("evidence")]),
        "NotValidator",
        [account.address],
      );
      await assertRefused(account.connection, call("voteSlash", [0n]), "NotValidator", [account.address]);
    }
    await assertRefused(
      validators.v1.connection,
      call("commit", [epoch, `0x${"00".repeat(32)}`]),
      "ZeroCommitment",
      [],
    );
    assert.deepEqual(await snapshot([epoch]), before, "refusals change nothing");
    assert.equal((await read<{ opened: boolean }>("getEpoch", [epoch])).opened, false);
  });

  it("funds the reward pool", async () => {
    const amount = 2_500n * myc;
    const balanceBefore = await balanceOf(funder.address);
    const sent = await fundRewards(funder.connection, { deployments: chain.deployments, amount });
    assert.deepEqual(events(sent.receipt, "RewardsFunded"), [{ from: funder.address, amount }]);
    assert.equal(await balanceOf(funder.address), balanceBefore - amount);
    ref.rewardPool += amount;
    await assertMatchesReference();
    const before = await snapshot();
    await assertRefused(funder.connection, call("fundRewards", [0n]), "ZeroAmount", []);
    assert.deepEqual(await snapshot(), before);
  });

  it("epoch 1: commit-reveal with four validators of different stakes scores providers as the reference does", async () => {
    const { v1, v2, v3, v4 } = validators;
    const added = 500n * myc;
    const result = await runScoredEpoch({
      entries: [
        { validator: v1, scores: { p1: 7000, p2: 6000, p3: 3000, p4: 9000 }, reveal: true },
        { validator: v2, scores: { p1: 9000, p2: 6500, p3: 2000, p4: 9000 }, reveal: true },
        { validator: v3, scores: { p1: 8000, p2: 5000, p3: 2500, p4: 8500 }, reveal: true },
        { validator: v4, scores: { p1: 6000, p2: 6000, p3: 3000, p4: 10000 }, reveal: true },
      ],
      // Finalized with the test's own reference vector (the other epochs use the client's finalizeEpoch).
      finalizeWith: "reference",
      // v1 adds stake after committing: its weight this epoch stays its stake at commit time.
      afterCommits: async () => {
        await sendContractTransaction(v1.connection, {
          address: token,
          abi: erc20Abi,
          functionName: "approve",
          args: [consensus, added],
          action: "approve",
        });
        await sendContractTransaction(v1.connection, {
          ...call("addValidatorStake", [added]),
          action: "add",
        } as Loose);
        const v1State = ref.validators.get(v1.address);
        assert.ok(v1State, "v1State");
        v1State.stake += added;
        await assertMatchesReference();
      },
    });
    const { outcome, reveals, epochProviders, available } = result;
    assert.equal(reveals[0]?.weight, 1000n * myc, "v1 weighs its commit-time stake");
    assert.ok(
      outcome.distributed > 0n && outcome.distributed <= rules.rewardPerEpoch,
      "outcome.distributed > 0n && outcome.distributed <= rules.rewardPerEpoch",
    );
    assert.ok(available > rules.rewardPerEpoch, "a full epoch reward was available");
    // The scenario is discriminating: weighing v1's current stake would have given other results.
    const withCurrentStake = referenceOutcome(
      epochProviders.length,
      reveals.map((r) => (r.validator === v1.address ? { ...r, weight: r.weight + added } : r)),
      available,
      rules,
    );
    assert.notDeepEqual(withCurrentStake.consensus, outcome.consensus);
    // Consensus scores lie within what validators gave.
    outcome.consensus.forEach((score, p) => {
      const given = reveals.map((r) => r.scores[p] ?? 0);
      assert.ok(
        score >= Math.min(...given) && score <= Math.max(...given),
        "score >= Math.min(...given) && score <= Math.max(...given)",
      );
    });
  });

  it("epoch 2: an outlier's inflated score is clipped and costs it agreement; a validator who does not reveal counts for nothing", async () => {
    const { v1, v2, v3, v4 } = validators;
    const p5 = providers.p5;
    const v2ClaimableBefore = claimableOf(v2.address);
    const result = await runScoredEpoch({
      entries: [
        // v1 inflates p3 (the others see ~2500-3000).
        { validator: v1, scores: { p1: 8000, p2: 6000, p3: 10000, p4: 9000 }, reveal: true },
        // v2 commits and never reveals.
        { validator: v2, scores: { p1: 0, p2: 0, p3: 0, p4: 0 }, reveal: false },
        { validator: v3, scores: { p1: 8000, p2: 5500, p3: 2500, p4: 8500 }, reveal: true },
        { validator: v4, scores: { p1: 7000, p2: 6000, p3: 3000, p4: 9500 }, reveal: true },
      ],
      // A provider that registers after the first commitment waits for the next epoch.
      afterFirstCommit: async () => {
        await registerProvider(p5.connection, {
          deployments: chain.deployments,
          peerId: "12D3KooWp5",
          offers: [{ modelHash, inputPricePerMillion: 1n, outputPricePerMillion: 2n }],
          stake: 150n * myc,
        });
        ref.providers.set(p5.address, { stake: 150n * myc, unbonding: 0n });
      },
    });
    const { outcome, reveals, epochProviders, committed, available } = result;
    assert.ok(!epochProviders.includes(p5.address), "!epochProviders.includes(p5.address)");
    const p3 = epochProviders.indexOf(providers.p3.address);
    const outlier = reveals.findIndex((r) => r.validator === v1.address);
    assert.ok((outcome.consensus[p3] ?? 0) < 10_000, "the inflated score is not the consensus");
    assert.ok((outcome.consensus[p3] ?? 0) <= 3000, "(outcome.consensus[p3] ?? 0) <= 3000");
    const agreementOf = (v: number) => outcome.agreements[v] ?? 0n;
    reveals.forEach((_, v) => {
      if (v !== outlier) assert.ok(agreementOf(outlier) < agreementOf(v), "the outlier agrees least");
    });
    // Per unit of stake the outlier earns less than every honest revealer.
    reveals.forEach((reveal, v) => {
      if (v === outlier) return;
      const outlierRate = (outcome.validatorRewards[outlier] ?? 0n) * reveal.weight;
      const rate = (outcome.validatorRewards[v] ?? 0n) * (reveals[outlier]?.weight ?? 0n);
      assert.ok(outlierRate < rate, "outlierRate < rate");
    });
    // Had it scored p3 like the others, its agreement and reward would have been higher.
    const honest = reveals.map((r, v) =>
      v === outlier ? { ...r, scores: r.scores.map((s, p) => (p === p3 ? 3000 : s)) } : r,
    );
    const honestOutcome = referenceOutcome(epochProviders.length, honest, available, rules);
    assert.ok(
      agreementOf(outlier) < (honestOutcome.agreements[outlier] ?? 0n),
      "agreementOf(outlier) < (honestOutcome.agreements[outlier] ?? 0n)",
    );
    assert.ok(
      (outcome.validatorRewards[outlier] ?? 0n) < (honestOutcome.validatorRewards[outlier] ?? 0n),
      "(outcome.validatorRewards[outlier] ?? 0n) < (honestOutcome.validatorRewards[outlier] ?? 0n)",
    );
    // v2 gets nothing and counts for nothing.
    assert.ok(
      !reveals.some((r) => r.validator === v2.address),
      "!reveals.some((r) => r.validator === v2.address)",
    );
    assert.equal(await read("claimable", [v2.address]), v2ClaimableBefore);
    assert.equal(
      (await read<{ revealed: boolean }>("getCommitment", [result.epoch, v2.address])).revealed,
      false,
    );
    const counted = committed.map(({ validator, weight, scores }) => ({ validator, weight, scores }));
    assert.notDeepEqual(
      referenceOutcome(epochProviders.length, counted, available, rules).consensus,
      outcome.consensus,
      "the scenario is discriminating: counting v2 would change the consensus",
    );
  });

  it("epoch 3: zero scores everywhere: agreement is 10000 on an empty denominator, providers earn nothing, a new provider's first reputation is its score", async () => {
    const { v1, v2, v3, v4 } = validators;
    const zeros = { p1: 0, p2: 0, p3: 0, p4: 0, p5: 0 };
    const result = await runScoredEpoch({
      entries: [
        { validator: v1, scores: { ...zeros, p3: 500 }, reveal: true },
        { validator: v2, scores: zeros, reveal: true },
        { validator: v3, scores: zeros, reveal: true },
        { validator: v4, scores: zeros, reveal: true },
      ],
    });
    const { outcome, epochProviders, available, reveals } = result;
    assert.ok(epochProviders.includes(providers.p5.address), "p5 is scored from this epoch on");
    assert.ok(available < rules.rewardPerEpoch, "the pool holds less than a full epoch's reward");
    assert.deepEqual(
      outcome.consensus,
      epochProviders.map(() => 0),
    );
    assert.deepEqual(
      outcome.providerRewards,
      epochProviders.map(() => 0n),
    );
    assert.deepEqual(
      outcome.agreements,
      reveals.map((r) => (r.validator === v1.address ? 0n : 10_000n)),
    );
    assert.deepEqual(await standingOf(providers.p5.address), {
      lastScore: 0,
      reputation: 0,
      lastEpoch: result.epoch,
      scored: true,
      unclaimedReward: 0n,
    });
  });

  /** Claims `account`'s rewards and checks it received exactly its claimable amount, and that a second claim is refused. */
  async function claimAll(account: TestAccount) {
    const amount = claimableOf(account.address);
    const balanceBefore = await balanceOf(account.address);
    const sent = await sendContractTransaction(account.connection, {
      ...call("claimRewards", []),
      action: "claim",
    } as Loose);
    assert.equal(sent.result, amount);
    assert.deepEqual(events(sent.receipt, "RewardsClaimed"), [{ account: account.address, amount }]);
    assert.equal(await balanceOf(account.address), balanceBefore + amount);
    ref.validatorRewards.set(account.address, 0n);
    const standing = ref.standings.get(account.address);
    if (standing) standing.unclaimedReward = 0n;
    await assertMatchesReference();
    await assertRefused(account.connection, call("claimRewards", []), "NothingToClaim", [account.address]);
    return amount;
  }

  it("claimRewards pays out exactly the claimable amount, once", async () => {
    const claimants = everyone().filter((a) => claimableOf(a.address) > 0n);
    assert.ok(claimants.length >= 8, "validators and providers earned rewards");
    assert.ok(
      claimants.some((a) => (ref.standings.get(a.address)?.unclaimedReward ?? 0n) > 0n) &&
        claimants.some((a) => (ref.validatorRewards.get(a.address) ?? 0n) > 0n),
      "both provider and validator rewards are claimed",
    );
    for (const account of claimants) {
      await claimAll(account);
    }
    await assertRefused(outsider.connection, call("claimRewards", []), "NothingToClaim", [outsider.address]);
    await assertMatchesReference();
  });

  describe("commit-reveal attacks and phase errors (one epoch)", () => {
    let epoch: bigint;
    let count: number;
    const salts = { v1: randomSalt(), v2: randomSalt(), v3old: randomSalt(), v3: randomSalt() };
    let v3Scores: number[];
    let v3OldScores: number[];
    let v1Scores: number[];
    let v2Scores: number[];

    it("refuses commitments outside the current epoch, early reveals and early finalization", async () => {
      const { v1, v2, v3, v4 } = validators;
      const deployments = chain.deployments;
      epoch = await freshEpoch();
      // Nobody committed in epoch 0 (the first scored epoch came after it).
      const unopened = 0n;
      assert.equal((await read<{ opened: boolean }>("getEpoch", [unopened])).opened, false);
      count = activeProviders().length;
      v3OldScores = Array.from({ length: count }, (_, i) => 1000 * (i + 1));
      v3Scores = Array.from({ length: count }, (_, i) => 9000 - 1000 * i);
      v1Scores = v3Scores.map((s, i) => (i === 1 ? maxScore + 1 : s));
      v2Scores = [...v3Scores, 5000];
      const tracked = [epoch, unopened];
      let before = await snapshot(tracked);
      const someCommitment = scoreCommitment({
        epoch,
        validator: v1.address,
        scores: v3Scores,
        salt: salts.v1,
      });
      await assertRefused(v1.connection, call("commit", [epoch - 1n, someCommitment]), "NotCommitPhase", [
        epoch - 1n,
        epoch,
      ]);
      await assertRefused(v1.connection, call("commit", [epoch + 1n, someCommitment]), "NotCommitPhase", [
        epoch + 1n,
        epoch,
      ]);
      await assertRefused(v1.connection, call("finalize", [epoch, []]), "NotFinalizePhase", [
        epoch,
        epochEnd(epoch) + revealPeriod,
      ]);
      await assertRefused(v1.connection, call("finalize", [unopened, []]), "EpochNotOpened", [unopened]);
      assert.deepEqual(await snapshot(tracked), before);

      await commitScores(v1.connection, { deployments, epoch, scores: v1Scores, salt: salts.v1 });
      await commitScores(v2.connection, { deployments, epoch, scores: v2Scores, salt: salts.v2 });
      await commitScores(v3.connection, { deployments, epoch, scores: v3OldScores, salt: salts.v3old });
      // A validator may replace its commitment during the epoch.
      const replaced = await commitScores(v3.connection, {
        deployments,
        epoch,
        scores: v3Scores,
        salt: salts.v3,
      });
      const [v3Commitment] = events(replaced.receipt, "ScoresCommitted");
      // v4 copies v3's commitment hash: it will not be able to reveal v3's scores with it.
      await sendContractTransaction(v4.connection, {
        ...call("commit", [epoch, v3Commitment?.commitment]),
        action: "copy",
      } as Loose);
      const state = await getEpochState(chain.deployer, { deployments, epoch });
      assert.deepEqual(state.committers, [v1.address, v2.address, v3.address, v4.address]);
      assert.equal(state.providers.length, count);

      before = await snapshot(tracked);
      const opensAt = epochEnd(epoch);
      const closesAt = opensAt + revealPeriod;
      await assertRefused(v3.connection, call("reveal", [epoch, v3Scores, salts.v3]), "NotRevealPhase", [
        epoch,
        opensAt,
        closesAt,
      ]);
      assert.deepEqual(await snapshot(tracked), before);

      // The boundaries, simulated at exact block times.
      const commit = call("commit", [epoch, someCommitment]);
      assert.equal(await refusalAt(v1.connection, opensAt - 1n, commit), undefined);
      assert.equal(await refusalAt(v1.connection, opensAt, commit), "NotCommitPhase");
      const reveal = call("reveal", [epoch, v3Scores, salts.v3]);
      assert.equal(await refusalAt(v3.connection, opensAt - 1n, reveal), "NotRevealPhase");
      assert.equal(await refusalAt(v3.connection, opensAt, reveal), undefined);
      assert.equal(await refusalAt(v3.connection, closesAt - 1n, reveal), undefined);
      assert.equal(await refusalAt(v3.connection, closesAt, reveal), "NotRevealPhase");
      // Nobody revealed yet, so any vector passes the consensus check here: only the time decides.
      const finalize = call("finalize", [epoch, []]);
      assert.equal(await refusalAt(outsider.connection, closesAt - 1n, finalize), "NotFinalizePhase");
      assert.equal(await refusalAt(outsider.connection, closesAt, finalize), undefined);
    });

    it("refuses reveals that do not match the commitment, double reveals, wrong score counts and scores above 10000", async () => {
      const { v1, v2, v3, v4 } = validators;
      const deployments = chain.deployments;
      await moveTo(epochEnd(epoch) + 10n);
      const tracked = [epoch, epoch + 1n];
      const before = await snapshot(tracked);
      const refusals: [string, TestAccount, Call, string, readonly unknown[]][] = [
        [
          "a commitment for the epoch whose commit phase is over",
          v1,
          call("commit", [
            epoch,
            scoreCommitment({ epoch, validator: v1.address, scores: v1Scores, salt: salts.v1 }),
          ]),
          "NotCommitPhase",
          [epoch, epoch + 1n],
        ],
        [
          "finalizing during the reveal phase",
          outsider,
          call("finalize", [epoch, v3Scores]),
          "NotFinalizePhase",
          [epoch, epochEnd(epoch) + revealPeriod],
        ],
        [
          "the replaced commitment's scores",
          v3,
          call("reveal", [epoch, v3OldScores, salts.v3old]),
          "RevealMismatch",
          [epoch, v3.address],
        ],
        [
          "the right scores with another salt",
          v3,
          call("reveal", [epoch, v3Scores, salts.v1]),
          "RevealMismatch",
          [epoch, v3.address],
        ],
        [
          "one score changed",
          v3,
          call("reveal", [epoch, v3Scores.map((s, i) => (i === 0 ? s - 1 : s)), salts.v3]),
          "RevealMismatch",
          [epoch, v3.address],
        ],
        [
          "v3's scores and salt revealed by v4, who copied v3's commitment",
          v4,
          call("reveal", [epoch, v3Scores, salts.v3]),
          "RevealMismatch",
          [epoch, v4.address],
        ],
        [
          "one score too many (as committed)",
          v2,
          call("reveal", [epoch, v2Scores, salts.v2]),
          "ScoreCountMismatch",
          [BigInt(count + 1), BigInt(count)],
        ],
        [
          "one score too few",
          v3,
          call("reveal", [epoch, v3Scores.slice(1), salts.v3]),
          "ScoreCountMismatch",
          [BigInt(count - 1), BigInt(count)],
        ],
        [
          "a score of 10001 (as committed)",
          v1,
          call("reveal", [epoch, v1Scores, salts.v1]),
          "ScoreOutOfRange",
          [1n, BigInt(maxScore + 1)],
        ],
        [
          "a reveal without a commitment",
          outsider,
          call("reveal", [epoch, v3Scores, salts.v3]),
          "NoCommitment",
          [epoch, outsider.address],
        ],
      ];
      for (const [what, account, refused, errorName, args] of refusals) {
        await assertRefused(account.connection, refused, errorName, args);
        assert.deepEqual(await snapshot(tracked), before, `refusing ${what} changes nothing`);
      }
      for (const account of [v1, v2, v3, v4]) {
        assert.deepEqual(await read("revealedScores", [epoch, account.address]), [], "nothing revealed yet");
      }
      const sent = await revealScores(v3.connection, {
        deployments,
        epoch,
        scores: v3Scores,
        salt: salts.v3,
      });
      assert.deepEqual(events(sent.receipt, "ScoresRevealed"), [
        { epoch, validator: v3.address, scores: v3Scores },
      ]);
      assert.deepEqual(await read("revealedScores", [epoch, v3.address]), v3Scores, "v3's revealed scores");
      const revealed = await snapshot(tracked);
      await assertRefused(v3.connection, call("reveal", [epoch, v3Scores, salts.v3]), "AlreadyRevealed", [
        epoch,
        v3.address,
      ]);
      assert.deepEqual(await snapshot(tracked), revealed);
      assert.equal((await getEpochState(chain.deployer, { deployments, epoch })).revealed, 1);
    });

    it("refuses late reveals, finalizes with the one valid reveal, and refuses finalizing twice", async () => {
      const { v1, v2, v3, v4 } = validators;
      const deployments = chain.deployments;
      await moveTo(epochEnd(epoch) + revealPeriod + 10n);
      const before = await snapshot([epoch]);
      await assertRefused(v4.connection, call("reveal", [epoch, v3Scores, salts.v3]), "NotRevealPhase", [
        epoch,
        epochEnd(epoch),
        epochEnd(epoch) + revealPeriod,
      ]);
      assert.deepEqual(await snapshot([epoch]), before);

      const epochProviders = (await getEpochState(chain.deployer, { deployments, epoch })).providers;
      const reveals = [
        { validator: v3.address, weight: ref.validators.get(v3.address)?.stake ?? 0n, scores: v3Scores },
      ];
      const outcome = referenceOutcome(epochProviders.length, reveals, ref.rewardPool, rules);
      assert.deepEqual(outcome.consensus, v3Scores, "a lone revealer's scores are the consensus");
      assert.deepEqual(await read("revealedScores", [epoch, v3.address]), v3Scores);
      for (const account of [v1, v2, v4]) {
        assert.deepEqual(await read("revealedScores", [epoch, account.address]), [], "no reveal, no scores");
      }
      // Only v3's reveal counts: v1's, v2's and v4's scores (unrevealed) change nothing in the check.
      await assertOnlyConsensusAccepted(epoch, outcome.consensus);
      const sent = await finalizeEpoch(outsider.connection, { deployments, epoch });
      await assertFinalized(epoch, [...epochProviders], reveals, outcome, sent.receipt);

      const finalized = await snapshot([epoch]);
      for (const vector of [outcome.consensus, []]) {
        await assertRefused(outsider.connection, call("finalize", [epoch, vector]), "EpochAlreadyFinalized", [
          epoch,
        ]);
      }
      await assertRefused(
        v3.connection,
        call("finalize", [epoch, outcome.consensus]),
        "EpochAlreadyFinalized",
        [epoch],
      );
      assert.deepEqual(await snapshot([epoch]), finalized);
    });
  });

  it("finalizes an epoch nobody revealed with any consensus vector: nothing is scored or paid", async () => {
    const { v1, v2 } = validators;
    const deployments = chain.deployments;
    const epoch = await freshEpoch();
    const count = activeProviders().length;
    const scores = Array.from({ length: count }, () => 5_000);
    await commitScores(v1.connection, { deployments, epoch, scores, salt: randomSalt() });
    await commitScores(v2.connection, { deployments, epoch, scores, salt: randomSalt() });
    await moveTo(epochEnd(epoch) + revealPeriod + 10n);
    assert.deepEqual(
      await epochConsensusInput(chain.deployer, { deployments, epoch }),
      [],
      "no reveal, no vector",
    );
    const before = await snapshot([epoch]);
    // The vector is ignored: wrong length, a score above 10000.
    const vector = [maxScore + 1, 7];
    assert.notEqual(vector.length, count, "the vector has the wrong length");
    const sent = await sendContractTransaction(outsider.connection, {
      ...call("finalize", [epoch, vector]),
      action: "finalize without reveals",
    } as Loose);
    assert.deepEqual(events(sent.receipt, "EpochFinalized"), [
      { epoch, validators: 0n, providers: BigInt(count), distributed: 0n },
    ]);
    assert.deepEqual(events(sent.receipt, "ProviderScored"), []);
    assert.deepEqual(events(sent.receipt, "ValidatorRewarded"), []);
    assert.deepEqual(await read("consensusScores", [epoch]), []);
    const { epochs: afterEpochs, ...after } = await snapshot([epoch]);
    const { epochs: beforeEpochs, ...unchanged } = before;
    assert.deepEqual(after, unchanged, "nothing but the epoch changed");
    assert.deepEqual(
      afterEpochs.map(({ state, ...rest }) => rest),
      beforeEpochs.map(({ state, ...rest }) => rest),
    );
    const stateBefore = beforeEpochs[0]?.state as { finalized: boolean };
    assert.equal(stateBefore.finalized, false);
    assert.deepEqual(afterEpochs[0]?.state, { ...stateBefore, finalized: true }, "the epoch is finalized");
    await assertMatchesReference();
    for (const again of [vector, []]) {
      await assertRefused(outsider.connection, call("finalize", [epoch, again]), "EpochAlreadyFinalized", [
        epoch,
      ]);
    }
  });

  describe("slashing", () => {
    const evidence = stringToHex("audit: provider returned tokens from another model");

    /**
     * Votes in turn and checks after each vote whether the proposal executed exactly when >= 2/3 of the
     * validator stake at the proposal voted. `afterVote(index)` runs after each vote (checked) and before the next.
     */
    async function voteUntil(
      target: TestAccount,
      amount: bigint,
      voters: TestAccount[],
      expectExecutionAt: number,
      options: { afterVote?: (index: number) => Promise<void> } = {},
    ) {
      const deployments = chain.deployments;
      // The bar is fixed when the proposal is made: 2/3 of the validator stake then.
      const total = totalValidatorStake();
      let yes = 0n;
      let proposalId = -1n;
      for (const [index, voter] of voters.entries()) {
        const stake = ref.validators.get(voter.address)?.stake ?? 0n;
        yes += stake;
        const executes = yes * 3n >= total * 2n;
        assert.equal(
          executes,
          index === expectExecutionAt,
          `the scenario: vote ${index} executes: ${executes}`,
        );
        const providerBefore = ref.providers.get(target.address);
        assert.ok(providerBefore, "providerBefore");
        const slash = referenceSlash(providerBefore.stake, providerBefore.unbonding, amount);
        const before = await snapshot();
        const sent =
          index === 0
            ? await proposeSlash(voter.connection, {
                deployments,
                provider: target.address,
                amount,
                evidence,
              })
            : await voteSlash(voter.connection, { deployments, proposalId });
        if (index === 0) {
          assert.ok("proposalId" in sent, '"proposalId" in sent');
          proposalId = sent.proposalId as bigint;
          assert.equal(proposalId, before.proposalCount);
          assert.deepEqual(events(sent.receipt, "SlashProposed"), [
            {
              proposalId,
              provider: target.address,
              proposer: voter.address,
              amount,
              evidenceHash: keccak256(evidence),
              evidence,
            },
          ]);
        }
        assert.deepEqual(events(sent.receipt, "SlashVoted"), [
          { proposalId, validator: voter.address, stake, yesStake: yes },
        ]);
        assert.equal(await read("hasVoted", [proposalId, voter.address]), true);
        const proposal = await read<{
          executed: boolean;
          yesStake: bigint;
          deadline: bigint;
          totalStake: bigint;
        }>("getProposal", [proposalId]);
        assert.equal(proposal.yesStake, yes);
        assert.equal(proposal.totalStake, total, "the proposal keeps the validator stake when it was made");
        assert.equal(proposal.executed, executes);
        if (!executes) {
          assert.deepEqual(events(sent.receipt, "SlashExecuted"), []);
          // Only the proposal itself changed: no stake moved, the pool and standings are as they were.
          const { proposals: _after, proposalCount: _afterCount, ...after } = await snapshot();
          const { proposals: _before, proposalCount: _beforeCount, ...unchanged } = before;
          assert.deepEqual(after, unchanged, "a vote below 2/3 moves nothing");
          await assertMatchesReference();
          await options.afterVote?.(index);
          continue;
        }
        assert.deepEqual(events(sent.receipt, "SlashExecuted"), [
          { proposalId, provider: target.address, slashed: slash.taken },
        ]);
        const registryEvents = parseEventLogs({
          abi: providerRegistryAbi,
          logs: sent.receipt.logs,
          eventName: "ProviderSlashed",
        }).map((log) => log.args);
        assert.deepEqual(registryEvents, [
          { provider: target.address, amount: slash.taken, recipient: consensus },
        ]);
        if (slash.stake === 0n && slash.unbonding === 0n) ref.providers.delete(target.address);
        else ref.providers.set(target.address, { stake: slash.stake, unbonding: slash.unbonding });
        ref.rewardPool += slash.taken;
        const previous = ref.standings.get(target.address);
        // The score and reputation are zeroed; rewards already earned stay claimable.
        ref.standings.set(target.address, {
          lastScore: 0,
          reputation: 0,
          lastEpoch: previous?.lastEpoch ?? 0n,
          scored: true,
          unclaimedReward: previous?.unclaimedReward ?? 0n,
        });
        assert.equal(
          await balanceOf(chain.deployments.contracts.providerRegistry),
          before.registryBalance - slash.taken,
        );
        await assertMatchesReference();
        await options.afterVote?.(index);
      }
      return proposalId;
    }

    it("a proposal below 2/3 of validator stake moves nothing; the vote that reaches 2/3 slashes the provider", async () => {
      const { v1, v2, v3, v4 } = validators;
      const { p1 } = providers;
      assert.ok((ref.standings.get(p1.address)?.reputation ?? 0) > 0, "p1 had a reputation to lose");
      assert.ok((ref.standings.get(p1.address)?.unclaimedReward ?? 0n) > 0n, "and unclaimed rewards to keep");
      const id = await voteUntil(p1, 40n * myc, [v3, v2, v1, v4], 3);
      const before = await snapshot();
      await assertRefused(v2.connection, call("voteSlash", [id]), "ProposalExecuted", [id]);
      await assertRefused(v3.connection, call("voteSlash", [id]), "ProposalExecuted", [id]);
      assert.deepEqual(await snapshot(), before);
    });

    it("executes at exactly 2/3 of the validator stake", async () => {
      const { v3, v4 } = validators;
      const total = totalValidatorStake();
      const yes =
        (ref.validators.get(v3.address)?.stake ?? 0n) + (ref.validators.get(v4.address)?.stake ?? 0n);
      assert.equal(yes * 3n, total * 2n, "v3 and v4 hold exactly two thirds");
      await voteUntil(providers.p2, 10n * myc, [v4, v3], 1);
    });

    it("slashes unbonding stake too: bonded first, then unbonding, and removes a provider left with nothing", async () => {
      const { v3, v4 } = validators;
      const { p3 } = providers;
      const deployments = chain.deployments;
      const p3State = ref.providers.get(p3.address);
      assert.ok(p3State, "p3State");
      const unbond = p3State.stake - 50n * myc;
      await requestProviderUnbond(p3.connection, { deployments, amount: unbond });
      p3State.stake -= unbond;
      p3State.unbonding += unbond;
      await assertMatchesReference();
      // Part from the bonded 50, the rest from unbonding.
      await voteUntil(p3, 120n * myc, [v4, v3], 1);
      assert.deepEqual(ref.providers.get(p3.address), { stake: 0n, unbonding: 180n * myc });
      const record = await getProviderRecord(chain.deployer, { deployments, provider: p3.address });
      assert.equal(record?.active, false);
      assert.ok((await registryProviders("providerAddresses")).includes(p3.address), "still registered");
      assert.ok(!(await registryProviders("activeProviders")).includes(p3.address), "but not active");
      // More than what is left: everything left is taken and the provider is removed.
      await voteUntil(p3, 1_000n * myc, [v4, v3], 1);
      assert.equal(ref.providers.has(p3.address), false);
      assert.deepEqual(
        (await registryProviders("providerAddresses")).sort(),
        [...ref.providers.keys()].sort(),
      );
      const before = await snapshot();
      await assertRefused(
        v4.connection,
        call("proposeSlash", [p3.address, myc, evidence]),
        "UnknownProvider",
        [p3.address],
      );
      assert.deepEqual(await snapshot(), before);
    });

    it("refuses double votes, expired votes, non-validators and malformed proposals, changing nothing", async () => {
      const { v1, v2, v3, v5 } = validators;
      const { p4 } = providers;
      const deployments = chain.deployments;
      const sent = await proposeSlash(v1.connection, {
        deployments,
        provider: p4.address,
        amount: myc,
        evidence,
      });
      const id = sent.proposalId;
      const proposal = await read<{ deadline: bigint; executed: boolean; yesStake: bigint }>("getProposal", [
        id,
      ]);
      const proposedAt = (
        await chain.deployer.publicClient.getBlock({ blockNumber: sent.receipt.blockNumber })
      ).timestamp;
      assert.equal(proposal.deadline, proposedAt + votingPeriod);
      assert.equal(proposal.executed, false);
      assert.equal(proposal.yesStake, ref.validators.get(v1.address)?.stake);
      const before = await snapshot();
      const refusals: [string, TestAccount, Call, string, readonly unknown[]][] = [
        ["a second vote by the proposer", v1, call("voteSlash", [id]), "AlreadyVoted", [id, v1.address]],
        ["a vote by a non-validator", outsider, call("voteSlash", [id]), "NotValidator", [outsider.address]],
        ["a vote by a validator with no stake", v5, call("voteSlash", [id]), "NotValidator", [v5.address]],
        ["a vote on an unknown proposal", v2, call("voteSlash", [id + 1n]), "UnknownProposal", [id + 1n]],
        [
          "a proposal by a non-validator",
          outsider,
          call("proposeSlash", [p4.address, myc, evidence]),
          "NotValidator",
          [outsider.address],
        ],
        [
          "a proposal against an unregistered provider",
          v2,
          call("proposeSlash", [outsider.address, myc, evidence]),
          "UnknownProvider",
          [outsider.address],
        ],
        [
          "a second proposal against a provider whose first is still open (one offence, one slash)",
          v2,
          call("proposeSlash", [p4.address, myc, evidence]),
          "SlashAlreadyProposed",
          [p4.address, id],
        ],
        ["a zero amount", v2, call("proposeSlash", [p4.address, 0n, evidence]), "ZeroAmount", []],
        ["no evidence", v2, call("proposeSlash", [p4.address, myc, "0x"]), "InvalidEvidence", [0n]],
        [
          "too much evidence",
          v2,
          call("proposeSlash", [p4.address, myc, `0x${"ab".repeat(16_385)}`]),
          "InvalidEvidence",
          [16_385n],
        ],
      ];
      for (const [what, account, refused, errorName, args] of refusals) {
        await assertRefused(account.connection, refused, errorName, args);
        assert.deepEqual(await snapshot(), before, `refusing ${what} changes nothing`);
      }
      // The deadline, simulated at exact block times: a vote is accepted until deadline - 1.
      const vote = call("voteSlash", [id]);
      assert.equal(await refusalAt(v2.connection, proposal.deadline - 1n, vote), undefined);
      assert.equal(await refusalAt(v2.connection, proposal.deadline, vote), "ProposalExpired");
      await moveTo(proposal.deadline + 5n);
      for (const voter of [v2, v3]) {
        await assertRefused(voter.connection, vote, "ProposalExpired", [id, proposal.deadline]);
      }
      assert.deepEqual(await snapshot(), before, "expired votes change nothing");
      await assertMatchesReference();
      // Once the open proposal has expired, the provider may be proposed for slashing again.
      const again = await proposeSlash(v2.connection, {
        deployments,
        provider: p4.address,
        amount: myc,
        evidence,
      });
      assert.equal(again.proposalId, id + 1n);
    });

    it("keeps the 2/3 bar of the stake at the proposal: a proposer who unbonds after proposing does not lower it", async () => {
      const { v2, v3, v4 } = validators;
      const { p5 } = providers;
      const stakeOf = (account: TestAccount) => ref.validators.get(account.address)?.stake ?? 0n;
      // A (v3) proposes and unbonds everything; B (v2) votes; C (v4) votes.
      const [a, b, c] = [stakeOf(v3), stakeOf(v2), stakeOf(v4)];
      const total = totalValidatorStake();
      assert.ok((a + b) * 3n < total * 2n, "A and B hold less than 2/3 of the stake at the proposal");
      assert.ok(
        (a + b) * 3n >= (total - a) * 2n,
        "but at least 2/3 of the stake left once A unbonds: the stake now would let B's vote slash",
      );
      assert.ok((a + b + c) * 3n >= total * 2n, "A, B and C together pass it");
      const id = await voteUntil(p5, 20n * myc, [v3, v2, v4], 2, {
        afterVote: async (index) => {
          if (index !== 0) return;
          await sendContractTransaction(v3.connection, {
            ...call("requestValidatorUnbond", [a]),
            action: "unbond everything after proposing",
          } as Loose);
          const v3State = ref.validators.get(v3.address);
          assert.ok(v3State, "v3State");
          v3State.stake = 0n;
          v3State.unbonding += a;
          await assertMatchesReference();
          assert.equal(await read("totalValidatorStake"), total - a, "A's stake left the total");
        },
      });
      const proposal = await read<{ executed: boolean; yesStake: bigint; totalStake: bigint }>(
        "getProposal",
        [id],
      );
      assert.deepEqual(
        { executed: proposal.executed, yesStake: proposal.yesStake, totalStake: proposal.totalStake },
        { executed: true, yesStake: a + b + c, totalStake: total },
      );
      // A, with no stake left, cannot propose again.
      await assertRefused(v3.connection, call("proposeSlash", [p5.address, myc, evidence]), "NotValidator", [
        v3.address,
      ]);
    });
  });

  it("an account that is both provider and validator claims both rewards in one claim", async () => {
    const { v1, v2, v4 } = validators;
    const { p2 } = providers;
    const deployments = chain.deployments;
    await registerValidator(p2.connection, { deployments, stake: minimumValidatorStake });
    ref.validators.set(p2.address, { stake: minimumValidatorStake, unbonding: 0n });
    await assertMatchesReference();
    const scores = { p1: 6000, p2: 7000, p3: 0, p4: 8000, p5: 3000 };
    const result = await runScoredEpoch({
      entries: [
        { validator: v1, scores, reveal: true },
        { validator: v2, scores: { ...scores, p2: 6500 }, reveal: true },
        { validator: v4, scores: { ...scores, p4: 9000 }, reveal: true },
        // p2 scores itself high: clipped to the consensus.
        { validator: p2, scores: { ...scores, p2: 10_000 }, reveal: true },
      ],
    });
    assert.ok(result.epochProviders.includes(p2.address), "p2 is scored");
    const asValidator = ref.validatorRewards.get(p2.address) ?? 0n;
    const asProvider = ref.standings.get(p2.address)?.unclaimedReward ?? 0n;
    assert.ok(asValidator > 0n && asProvider > 0n, "p2 earned as validator and as provider");
    assert.equal(await read("claimable", [p2.address]), asValidator + asProvider);
    assert.equal(await claimAll(p2), asValidator + asProvider);
    assert.equal((await standingOf(p2.address)).unclaimedReward, 0n, "the provider part is zeroed");
    assert.equal(await read("claimable", [p2.address]), 0n, "and the validator part");
  });
});
