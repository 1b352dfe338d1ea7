/**
 * Slashing: a validator proposes to slash a provider it caught provably cheating (the evidence goes on chain), and
 * votes on every open proposal after auditing its evidence itself.
 */
import { type Address, getAddress } from "viem";
import {
  type ChainConnection,
  ContractRevertError,
  type Deployments,
  getProviderRecord,
  hasVotedOnSlash,
  proposeSlash,
  readEpochClock,
  readSlashProposals,
  readValidatorStake,
  voteSlash,
} from "../chain/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { AuditInput, SignedReceipt } from "../protocol/index.ts";
import type { Auditor } from "../verify/index.ts";
import type { AuditQueue } from "./auditQueue.ts";
import { isSlashable } from "./scores.ts";
import { decodeSlashEvidence, encodeSlashEvidence } from "./slashEvidence.ts";

/** The chain a validator acts on. */
export type ValidatorChain = { connection: ChainConnection; deployments: Deployments };

/** Parameters of {@link createSlasher}. */
export type CreateSlasherParameters = {
  chain: ValidatorChain;
  /** The validator's address. */
  address: Address;
  /** Share of a provider's stake a proposal asks for, in basis points. */
  slashBps: number;
  auditor: Pick<Auditor, "audit">;
  queue: AuditQueue;
  logger: Logger;
};

/** A validator's part in slashing. */
export type Slasher = {
  /** Proposes to slash a provider for a provable cheat (once per provider, only with stake on both sides). */
  propose(parameters: { provider: Address; input: AuditInput }): Promise<void>;
  /**
   * Audits the evidence of open proposals this validator has not judged, and votes for those it proves. `now`: the
   * chain's time when the caller has just read it (else it is read).
   */
  judge(now?: bigint): Promise<void>;
  /** How many executed slashing proposals `judge` has seen (each zeroes a provider's reputation on chain). */
  executedSlashes?(): number;
};

/** Creates the slasher. */
export function createSlasher(parameters: CreateSlasherParameters): Slasher {
  const { chain, logger } = parameters;
  const { connection, deployments } = chain;
  const proposedAgainst = new Set<string>();
  const judgedProposals = new Set<string>();
  const executedProposals = new Set<string>();
  let nextProposalId = 0n;

  async function propose(input: { provider: Address; input: AuditInput }) {
    if (proposedAgainst.has(input.provider)) return;
    if ((await readValidatorStake(connection, { deployments, validator: parameters.address })) === 0n) return;
    const record = await getProviderRecord(connection, { deployments, provider: input.provider });
    if (!record || record.stake === 0n) {
      logger.info("not proposing slashing: the provider has no stake on chain", { provider: input.provider });
      return;
    }
    const evidence = encodeSlashEvidence(input.input);
    if (!evidence) {
      logger.warn("not proposing slashing: the evidence is too large for the chain", {
        provider: input.provider,
      });
      return;
    }
    // One open proposal per provider: if another validator proposed already, the vote loop judges it.
    const open = await readSlashProposals(connection, { deployments, fromId: 0n });
    const { now } = await readEpochClock(connection, { deployments });
    if (open.some((entry) => entry.provider === input.provider && !entry.executed && entry.deadline > now))
      return;
    const amount = (record.stake * BigInt(parameters.slashBps)) / 10_000n || 1n;
    proposedAgainst.add(input.provider);
    let sent: Awaited<ReturnType<typeof proposeSlash>>;
    try {
      sent = await proposeSlash(connection, { deployments, provider: input.provider, amount, evidence });
    } catch (error) {
      // Another validator caught the same cheat first: its proposal is judged (and voted for) by the vote loop.
      if (error instanceof ContractRevertError && error.errorName === "SlashAlreadyProposed") {
        logger.info("another validator proposed slashing this provider first: judging its proposal", {
          provider: input.provider,
        });
        return;
      }
      throw error;
    }
    judgedProposals.add(sent.proposalId.toString());
    logger.warn("proposed slashing a cheating provider", {
      provider: input.provider,
      proposalId: sent.proposalId.toString(),
      amount: amount.toString(),
    });
  }

  async function judge(clockNow?: bigint) {
    const proposals = await readSlashProposals(connection, { deployments, fromId: nextProposalId });
    const now = clockNow ?? (await readEpochClock(connection, { deployments })).now;
    for (const proposal of proposals) {
      const id = proposal.proposalId.toString();
      if (proposal.executed) executedProposals.add(id);
      const over = proposal.executed || proposal.deadline <= now;
      if (over || judgedProposals.has(id)) {
        if (proposal.proposalId >= nextProposalId && over) nextProposalId = proposal.proposalId + 1n;
        continue;
      }
      const voted = await hasVotedOnSlash(connection, {
        deployments,
        proposalId: proposal.proposalId,
        validator: parameters.address,
      });
      judgedProposals.add(id);
      if (voted) continue;
      let input: unknown;
      try {
        input = decodeSlashEvidence(proposal.evidence);
      } catch {
        logger.warn("slashing proposal with unreadable evidence: not voting", { proposalId: id });
        continue;
      }
      const verdict = await parameters.queue
        .enqueue(() => parameters.auditor.audit(input))
        .catch((error) => {
          logger.warn("cannot judge a slashing proposal", { proposalId: id, error: describeError(error) });
          return undefined;
        });
      const receipt = (input as { receipt?: SignedReceipt }).receipt;
      const againstThisProvider =
        receipt !== undefined && getAddress(receipt.message.provider) === getAddress(proposal.provider);
      if (verdict?.verdict === "fail" && isSlashable(verdict.reasons) && againstThisProvider) {
        await voteSlash(connection, { deployments, proposalId: proposal.proposalId });
        logger.warn("voted to slash", {
          proposalId: id,
          provider: proposal.provider,
          reasons: verdict.reasons.map((reason) => reason.code).join(","),
        });
      } else {
        logger.info("not voting to slash: the evidence does not prove cheating", {
          proposalId: id,
          provider: proposal.provider,
          verdict: verdict?.verdict,
        });
      }
    }
  }

  return { propose, judge, executedSlashes: () => executedProposals.size };
}
