/**
 * The epoch loop: every few seconds a staked validator commits its scores for the current epoch (again when they
 * change), reveals the last epoch's once it ended, finalizes it after the reveal period, and judges slashing
 * proposals.
 */
import { randomBytes } from "node:crypto";
import { type Address, toHex } from "viem";
import {
  commitScores,
  finalizeEpoch,
  getEpochState,
  getProviderStanding,
  getScoreCommitment,
  readActiveProviders,
  readEpochClock,
  readValidatorStake,
  revealScores,
  scoreCommitment,
} from "../chain/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { AuditStore } from "../store/index.ts";
import { epochScores } from "./scores.ts";
import type { Slasher, ValidatorChain } from "./slashing.ts";

/** Whether two address lists name the same addresses in the same order (any letter case). */
function sameAddresses(left: readonly string[], right: readonly string[]): boolean {
  return (
    left.length === right.length &&
    left.every((entry, index) => entry.toLowerCase() === right[index]?.toLowerCase())
  );
}

/** Parameters of {@link createEpochLoop}. */
export type CreateEpochLoopParameters = {
  chain: ValidatorChain;
  address: Address;
  store: AuditStore;
  slasher: Slasher;
  logger: Logger;
};

/** The validator's work on chain, one pass at a time. */
export type EpochLoop = {
  /** Runs one pass now, or joins the one running; never rejects (a failed pass is logged and retried). */
  tick(): Promise<void>;
  /** Resolves once the pass running now (if any) is over. */
  settled(): Promise<void>;
};

/** Creates the epoch loop (the validator's timer calls `tick`). */
export function createEpochLoop(parameters: CreateEpochLoopParameters): EpochLoop {
  const { chain, store, logger } = parameters;
  const { connection, deployments } = chain;
  const epochStarts = new Map<bigint, number>();
  let unstakedWarned = false;
  let ticking: Promise<void> | undefined;

  async function commitIfChanged(epoch: bigint, epochStartedAt: number) {
    const state = await getEpochState(connection, { deployments, epoch });
    const providers = state.opened
      ? [...state.providers]
      : await readActiveProviders(connection, { deployments });
    if (providers.length === 0) return;
    const reputations = new Map<string, number | undefined>();
    for (const provider of providers) {
      const standing = await getProviderStanding(connection, { deployments, provider });
      reputations.set(provider.toLowerCase(), standing.scored ? standing.reputation : undefined);
    }
    const scores = epochScores({
      providers,
      audits: store.auditsBetween(epochStartedAt, Date.now() + 1),
      reputationOf: (provider) => reputations.get(provider.toLowerCase()),
    });
    const stored = store.commitmentOf(epoch);
    if (
      stored &&
      JSON.stringify(stored.scores) === JSON.stringify(scores) &&
      sameAddresses(stored.providers, providers)
    ) {
      // Stored before it was sent: a send that failed (or a stop in between) leaves the chain without it. Send it again.
      const posted = await getScoreCommitment(connection, {
        deployments,
        epoch,
        validator: parameters.address,
      });
      const expected = scoreCommitment({
        epoch,
        validator: parameters.address,
        scores: stored.scores,
        salt: stored.salt,
      });
      if (posted.hash === expected) return;
      await commitScores(connection, { deployments, epoch, scores: stored.scores, salt: stored.salt });
      logger.info("scores committed again (the last send did not reach the chain)", {
        epoch: epoch.toString(),
      });
      return;
    }
    const salt = toHex(randomBytes(32));
    // Written before it is sent: a validator that restarts can still reveal what it committed.
    store.saveCommitment({ epoch, providers, scores, salt });
    await commitScores(connection, { deployments, epoch, scores, salt });
    logger.info("scores committed", {
      epoch: epoch.toString(),
      scores: providers.map((provider, index) => `${provider.slice(0, 10)}=${scores[index]}`).join(","),
    });
  }

  async function revealAndFinalize(epoch: bigint, now: bigint, revealPeriod: bigint) {
    if (epoch < 0n) return;
    // One read serves both phases: they never overlap (reveal until end + revealPeriod, finalize from then).
    const state = await getEpochState(connection, { deployments, epoch });
    const ended = BigInt(state.endsAt.getTime() / 1000);
    const stored = store.commitmentOf(epoch);
    if (stored && stored.revealedAt === undefined && now >= ended && now < ended + revealPeriod) {
      if (!sameAddresses(state.providers, stored.providers)) {
        logger.warn("cannot reveal: the epoch's provider list differs from the committed one", {
          epoch: epoch.toString(),
        });
        store.markRevealed(epoch);
      } else {
        await revealScores(connection, { deployments, epoch, scores: stored.scores, salt: stored.salt });
        store.markRevealed(epoch);
        logger.info("scores revealed", { epoch: epoch.toString() });
      }
    }
    if (now >= ended + revealPeriod && state.opened && !state.finalized && state.revealed > 0) {
      await finalizeEpoch(connection, { deployments, epoch }).then(
        () => logger.info("epoch finalized", { epoch: epoch.toString() }),
        (error) => logger.debug("finalize skipped", { epoch: epoch.toString(), error: describeError(error) }),
      );
    }
  }

  async function tickOnce() {
    // Without stake there is nothing to commit or vote with (the contract would refuse every call).
    const stake = await readValidatorStake(connection, { deployments, validator: parameters.address });
    if (stake === 0n) {
      if (!unstakedWarned)
        logger.warn("no validator stake: verdicts are kept but not posted on chain", {
          address: parameters.address,
        });
      unstakedWarned = true;
      return;
    }
    unstakedWarned = false;
    const clock = await readEpochClock(connection, { deployments });
    if (!epochStarts.has(clock.epoch))
      epochStarts.set(clock.epoch, store.commitmentOf(clock.epoch - 1n)?.committedAt ?? 0);
    await revealAndFinalize(clock.epoch - 1n, clock.now, clock.revealPeriod);
    await commitIfChanged(clock.epoch, epochStarts.get(clock.epoch) ?? 0);
    await parameters.slasher.judge();
  }

  return {
    settled: async () => ticking,
    tick() {
      ticking ??= tickOnce()
        .catch((error) => logger.warn("epoch loop failed (retried)", { error: describeError(error) }))
        .finally(() => {
          ticking = undefined;
        });
      return ticking;
    },
  };
}
