/**
 * The epoch loop: every few seconds a staked validator commits its scores for the current epoch (again when they
 * change), reveals the last epoch's once it ended, finalizes it after the reveal period, and judges slashing
 * proposals. At rest a pass reads the chain about six times whatever the number of providers: what cannot change is
 * read once (the reveal period, each epoch's end, a commitment seen on chain, an epoch settled), and providers'
 * standings once per epoch, again once the previous epoch is finalized and after each executed slash (the only
 * times they change).
 */
import { randomBytes } from "node:crypto";
import { type Address, type Hex, toHex } from "viem";
import {
  commitScores,
  createEpochClockReader,
  finalizeEpoch,
  getEpochState,
  getProviderStanding,
  getScoreCommitment,
  readActiveProviders,
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
  const clock = createEpochClockReader(connection, { deployments });
  /** Ended epochs with nothing left to do here (finalized, or nothing to finalize): not read again. */
  const settledEpochs = new Set<bigint>();
  /** Commitments (epoch: hash) seen on chain or sent by this loop: not read again while the stored one is unchanged. */
  const postedCommitments = new Map<bigint, Hex>();
  /** Providers' standings as read for one epoch and state of its predecessor (`key`); refreshed when either changes. */
  let standings: { key: string; reputations: Map<string, number | undefined> } = {
    key: "",
    reputations: new Map(),
  };

  /** Reputations of `providers`: read once per epoch, and again once the previous epoch is settled (finalized). */
  async function reputationsOf(epoch: bigint, providers: readonly Address[]) {
    // A slash executed mid-epoch zeroes the provider's reputation: read them again after one.
    const key = `${epoch}|${settledEpochs.has(epoch - 1n)}|${parameters.slasher.executedSlashes?.() ?? 0}`;
    if (standings.key !== key) standings = { key, reputations: new Map() };
    const { reputations } = standings;
    for (const provider of providers) {
      if (reputations.has(provider.toLowerCase())) continue;
      const standing = await getProviderStanding(connection, { deployments, provider });
      reputations.set(provider.toLowerCase(), standing.scored ? standing.reputation : undefined);
    }
    return reputations;
  }

  async function commitIfChanged(epoch: bigint, epochStartedAt: number) {
    const state = await getEpochState(connection, { deployments, epoch });
    const providers = state.opened
      ? [...state.providers]
      : await readActiveProviders(connection, { deployments });
    if (providers.length === 0) return;
    const reputations = await reputationsOf(epoch, providers);
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
      const expected = scoreCommitment({
        epoch,
        validator: parameters.address,
        scores: stored.scores,
        salt: stored.salt,
      });
      if (postedCommitments.get(epoch) === expected) return;
      const posted = await getScoreCommitment(connection, {
        deployments,
        epoch,
        validator: parameters.address,
      });
      if (posted.hash === expected) {
        rememberPosted(epoch, expected);
        return;
      }
      await commitScores(connection, { deployments, epoch, scores: stored.scores, salt: stored.salt });
      rememberPosted(epoch, expected);
      logger.info("scores committed again (the last send did not reach the chain)", {
        epoch: epoch.toString(),
      });
      return;
    }
    const salt = toHex(randomBytes(32));
    // Written before it is sent: a validator that restarts can still reveal what it committed.
    store.saveCommitment({ epoch, providers, scores, salt });
    await commitScores(connection, { deployments, epoch, scores, salt });
    rememberPosted(epoch, scoreCommitment({ epoch, validator: parameters.address, scores, salt }));
    logger.info("scores committed", {
      epoch: epoch.toString(),
      scores: providers.map((provider, index) => `${provider.slice(0, 10)}=${scores[index]}`).join(","),
    });
  }

  function rememberPosted(epoch: bigint, hash: Hex) {
    postedCommitments.set(epoch, hash);
    for (const [known] of postedCommitments) if (known < epoch - 1n) postedCommitments.delete(known);
  }

  async function revealAndFinalize(epoch: bigint, now: bigint, revealPeriod: bigint) {
    if (epoch < 0n || settledEpochs.has(epoch)) return;
    const ended = await clock.endOf(epoch);
    const stored = store.commitmentOf(epoch);
    const toReveal = stored !== undefined && stored.revealedAt === undefined && now >= ended;
    // Before the reveal period is over there is nothing to read unless there is something to reveal.
    if (!toReveal && now < ended + revealPeriod) return;
    // One read serves both phases: they never overlap (reveal until end + revealPeriod, finalize from then).
    const state = await getEpochState(connection, { deployments, epoch });
    if (stored && toReveal && now < ended + revealPeriod) {
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
    if (now < ended + revealPeriod) return;
    // Past the reveal period nothing of the epoch changes but its finalization.
    if (!state.opened || state.finalized || state.revealed === 0) {
      settle(epoch);
      return;
    }
    await finalizeEpoch(connection, { deployments, epoch }).then(
      () => {
        logger.info("epoch finalized", { epoch: epoch.toString() });
        settle(epoch);
      },
      (error) => logger.debug("finalize skipped", { epoch: epoch.toString(), error: describeError(error) }),
    );
  }

  function settle(epoch: bigint) {
    settledEpochs.add(epoch);
    for (const known of settledEpochs) if (known < epoch - 4n) settledEpochs.delete(known);
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
    const { epoch, now, revealPeriod } = await clock.read();
    if (!epochStarts.has(epoch)) epochStarts.set(epoch, store.commitmentOf(epoch - 1n)?.committedAt ?? 0);
    await revealAndFinalize(epoch - 1n, now, revealPeriod);
    await commitIfChanged(epoch, epochStarts.get(epoch) ?? 0);
    await parameters.slasher.judge(now);
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
