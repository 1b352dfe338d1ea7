/**
 * The validator role: audits answers that gateways sample to it (over `/mycel/audit/1.0.0`) and answers to its own
 * challenge requests, turns verdicts into per-epoch scores posted with commit-reveal, finalizes epochs, and proposes
 * and votes on slashing with the evidence.
 */
import { randomBytes, randomInt } from "node:crypto";
import { type Address, getAddress, type Hex, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { BackendGenerateResult } from "../api/index.ts";
import {
  type ChainConnection,
  commitScores,
  type Deployments,
  finalizeEpoch,
  getEpochState,
  getProviderRecord,
  getProviderStanding,
  hasVotedOnSlash,
  proposeSlash,
  readActiveProviders,
  readEpochClock,
  readSlashProposals,
  readValidatorStake,
  revealScores,
  voteSlash,
} from "../chain/index.ts";
import { describeError, InvalidInputError, ModelNotFoundError, MycelError } from "../errors/index.ts";
import { fetchEvidence, type Gateway } from "../gateway/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { createFrameChannel, type MycelNode } from "../p2p/index.ts";
import {
  type AuditInput,
  auditProtocolId,
  auditSampleFrameSchema,
  type EvidenceFrame,
  type InferenceRequest,
  parseFrame,
  recoverAuditSampleSigner,
  recoverReceiptSigner,
  type SignedReceipt,
  signAuditVerdict,
  streamLimits,
  verdictProtocolId,
  wireVersion,
} from "../protocol/index.ts";
import type { AuditStore } from "../store/index.ts";
import type { Auditor, AuditVerdict } from "../verify/index.ts";
import { epochScores, isSlashable } from "./scores.ts";
import { decodeSlashEvidence, encodeSlashEvidence } from "./slashEvidence.ts";

/** How a validator behaves. */
export type ValidatorOptions = {
  /** Samples that may wait for an audit before new ones are refused. */
  maxQueue: number;
  /** How often the epoch loop looks at the chain (commit, reveal, finalize, slashing votes). */
  epochCheckMs: number;
  /** How often a challenge request goes out (0: never). */
  challengeIntervalMs: number;
  /** Share of a provider's stake a slashing proposal asks for, in basis points. */
  slashBps: number;
  /** How often a provider is asked for evidence before it counts as withheld. */
  evidenceAttempts: number;
};

/** Defaults: a queue of 64, the chain checked every 10 s, a challenge a minute, slashing 10% of the stake. */
export const defaultValidatorOptions: ValidatorOptions = {
  maxQueue: 64,
  epochCheckMs: 10_000,
  challengeIntervalMs: 60_000,
  slashBps: 1_000,
  evidenceAttempts: 3,
};

/** Parameters of {@link startValidator}. */
export type StartValidatorParameters = {
  node: MycelNode;
  auditor: Auditor;
  store: AuditStore;
  /** The validator's staking key: it commits scores and votes. */
  privateKey: Hex;
  /**
   * A gateway in this process (its own key, unknown to providers) that discovers providers and sends challenge
   * requests they cannot tell from user traffic.
   */
  gateway: Gateway;
  /** Models challenges may ask for: those in this validator's store, by name (as the gateway lists them). */
  challengeModels?: () => { name: string; hash: string }[];
  chain?: { connection: ChainConnection; deployments: Deployments };
  options?: Partial<ValidatorOptions>;
  logger?: Logger;
};

/** A running validator. */
export type Validator = {
  address: Address;
  /** Audits waiting or running. */
  pending(): number;
  /** Resolves once no audit is waiting or running. */
  idle(): Promise<void>;
  /** Runs one pass of the epoch loop now (tests). */
  tick(): Promise<void>;
  /** Sends one challenge request now; resolves with its verdict (undefined when nothing could be challenged). */
  challenge(): Promise<AuditVerdict | undefined>;
  stop(): Promise<void>;
};

/** Whether two address lists name the same addresses in the same order (any letter case). */
function sameAddresses(left: readonly string[], right: readonly string[]): boolean {
  return (
    left.length === right.length &&
    left.every((entry, index) => entry.toLowerCase() === right[index]?.toLowerCase())
  );
}

/** Prompts of challenge requests: the kind of thing users ask. */
const challengePrompts = [
  "What is a good name for a bakery?",
  "Explain photosynthesis in two sentences.",
  "Write a haiku about autumn.",
  "How do I boil an egg?",
  "Summarize the plot of a detective story.",
  "Give me three tips for learning to code.",
  "What is the capital of France?",
  "Translate 'good morning' into Spanish.",
  "Why do cats purr?",
  "Suggest a weekend hiking plan.",
];

type Sample = {
  requestId: Hex;
  providerPeerId: string;
  request?: InferenceRequest;
  receipt: SignedReceipt;
  source: "sample" | "challenge";
  /** The gateway peer that sent the sample: the verdict goes back to it. */
  fromPeer?: string;
};

/** Audit metrics as a flat record of JSON primitives (nested objects as dotted keys), as verdict frames carry them. */
function flatMetrics(metrics: object, prefix = ""): Record<string, number | string | boolean | null> {
  const flat: Record<string, number | string | boolean | null> = {};
  for (const [key, value] of Object.entries(metrics)) {
    const name = `${prefix}${key}`;
    if (value !== null && typeof value === "object") Object.assign(flat, flatMetrics(value, `${name}.`));
    else if (typeof value === "number") flat[name] = Number.isFinite(value) ? value : null;
    else if (typeof value === "string") flat[name] = value.slice(0, 200);
    else if (typeof value === "boolean" || value === null) flat[name] = value;
  }
  return flat;
}

/** Starts a validator. */
export async function startValidator(parameters: StartValidatorParameters): Promise<Validator> {
  const { node, auditor, store, gateway, chain } = parameters;
  const options = { ...defaultValidatorOptions, ...parameters.options };
  const logger = parameters.logger ?? silentLogger;
  const address = privateKeyToAccount(parameters.privateKey).address;
  let stopped = false;

  // One audit at a time (the auditor's engine is one sequence): a promise chain with a bounded queue.
  let queue: Promise<unknown> = Promise.resolve();
  let waiting = 0;
  const enqueue = <T>(work: () => Promise<T>): Promise<T> => {
    waiting++;
    const run = queue.then(work).finally(() => {
      waiting--;
    });
    queue = run.catch(() => undefined);
    return run;
  };

  /** The provider's evidence of a sample (a few tries), or why there is none. */
  async function evidenceOf(sample: Sample): Promise<EvidenceFrame | string> {
    let lastError = "";
    for (let attempt = 0; attempt < options.evidenceAttempts; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 1_000 * attempt));
      try {
        return await fetchEvidence({
          node,
          providerPeerId: sample.providerPeerId,
          requestId: sample.requestId,
        });
      } catch (error) {
        lastError = describeError(error);
      }
    }
    return lastError;
  }

  /** Hands a sample's verdict, signed, back to the gateway that sent it (best effort: it is stored here anyway). */
  async function sendVerdict(sample: Sample, verdict: AuditVerdict) {
    if (sample.source !== "sample" || !sample.fromPeer) return;
    try {
      const frame = await signAuditVerdict({
        privateKey: parameters.privateKey,
        verdict: {
          request_id: sample.requestId,
          provider: getAddress(sample.receipt.message.provider),
          verdict: verdict.verdict,
          reasons: verdict.reasons.slice(0, 32).map((reason) => ({
            code: reason.code,
            message: reason.message.slice(0, 2_000),
          })),
          metrics: flatMetrics(verdict.metrics),
          audited_at: Date.now(),
        },
      });
      const stream = await node.openStream(sample.fromPeer, verdictProtocolId, {
        signal: AbortSignal.timeout(10_000),
      });
      const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
      try {
        await channel.write(frame);
      } finally {
        await channel.close().catch(() => undefined);
      }
    } catch (error) {
      logger.debug("verdict not handed back", { peer: sample.fromPeer, error: describeError(error) });
    }
  }

  async function auditSample(sample: Sample): Promise<AuditVerdict | undefined> {
    const verdict = await auditOne(sample);
    if (verdict) await sendVerdict(sample, verdict);
    return verdict;
  }

  async function auditOne(sample: Sample): Promise<AuditVerdict | undefined> {
    const provider = getAddress(sample.receipt.message.provider);
    const fetched = await evidenceOf(sample);
    if (typeof fetched === "string") {
      logger.warn("evidence unavailable: recorded as a failed audit", { provider, error: fetched });
      const verdict: AuditVerdict = {
        verdict: "fail",
        reasons: [
          {
            code: "evidence_unavailable",
            message: `the provider did not hand over evidence: ${fetched}`,
          },
        ],
        metrics: {} as AuditVerdict["metrics"],
      };
      store.saveAudit({
        requestId: sample.requestId,
        provider,
        modelHash: sample.receipt.message.modelHash as Hex,
        verdict: "fail",
        reasons: verdict.reasons,
        metrics: {},
        source: sample.source,
        input: { request: sample.request, receipt: sample.receipt },
      });
      return verdict;
    }
    // The receipt the client holds is what is audited: evidence that does not match it fails on the commitment.
    const input: AuditInput = {
      modelHash: sample.receipt.message.modelHash,
      request: sample.request ?? fetched.request,
      promptTokens: fetched.evidence.promptTokens,
      outputTokens: fetched.evidence.outputTokens,
      fingerprints: fetched.evidence.fingerprints,
      finishReason: fetched.evidence.finishReason,
      receipt: sample.receipt,
    };
    let verdict: AuditVerdict;
    try {
      verdict = await auditor.audit(input);
    } catch (error) {
      if (error instanceof ModelNotFoundError || error instanceof InvalidInputError) {
        logger.warn("cannot audit this answer", { provider, error: error.shortMessage });
        return undefined;
      }
      throw error;
    }
    const saved = store.saveAudit({
      requestId: sample.requestId,
      provider,
      modelHash: input.modelHash as Hex,
      verdict: verdict.verdict,
      reasons: verdict.reasons,
      metrics: verdict.metrics,
      source: sample.source,
      input,
    });
    logger.info("audited", {
      provider,
      source: sample.source,
      verdict: verdict.verdict,
      reasons: verdict.reasons.map((reason) => reason.code).join(",") || undefined,
      outputTokens: verdict.metrics.outputTokens,
      worstChunkGapError: verdict.metrics.worstChunkGapError,
    });
    if (saved && verdict.verdict === "fail" && isSlashable(verdict.reasons))
      await proposeSlashing({ provider, input }).catch((error) =>
        logger.warn("slashing proposal failed", { provider, error: describeError(error) }),
      );
    return verdict;
  }

  // ---- samples from gateways ----
  await node.handleProtocol(
    auditProtocolId,
    async (stream, peerId) => {
      const channel = createFrameChannel(stream, { maxFrameBytes: streamLimits.maxFrameBytes });
      const refuse = (code: string, message: string) =>
        channel.write({ v: wireVersion, type: "error", code, message }).catch(() => undefined);
      try {
        const value = await channel.read({ timeoutMs: 15_000 });
        if (value === undefined) return;
        const sample = parseFrame(auditSampleFrameSchema, value);
        const signer = await recoverAuditSampleSigner(sample).catch(() => undefined);
        if (!signer || getAddress(signer) !== getAddress(sample.receipt.message.client)) {
          await refuse("bad_signature", "the sample is not signed by the receipt's client");
          return;
        }
        if (sample.receipt.message.requestId !== sample.request_id) {
          await refuse("invalid_request", "the receipt belongs to another request");
          return;
        }
        // Only what the named provider signed, fetched from that provider's own peer, can count against it.
        const receiptSigner = await recoverReceiptSigner(sample.receipt as SignedReceipt).catch(
          () => undefined,
        );
        if (!receiptSigner || getAddress(receiptSigner) !== getAddress(sample.receipt.message.provider)) {
          await refuse("bad_signature", "the receipt is not signed by the provider it names");
          return;
        }
        const known = gateway.providers.get(sample.provider_peer_id);
        if (!known || getAddress(known.address) !== getAddress(sample.receipt.message.provider)) {
          await refuse(
            "unknown_provider",
            "provider_peer_id is not a provider this validator has heard announce itself as the receipt's provider",
          );
          return;
        }
        if (waiting >= options.maxQueue) {
          await refuse("busy", `this validator has ${waiting} audits waiting`);
          return;
        }
        void enqueue(() =>
          auditSample({
            requestId: sample.request_id as Hex,
            providerPeerId: sample.provider_peer_id,
            request: sample.request,
            receipt: sample.receipt as SignedReceipt,
            source: "sample",
            fromPeer: peerId,
          }),
        ).catch((error) => logger.warn("audit failed to run", { error: describeError(error) }));
        await channel.write({ v: wireVersion, type: "audit_accepted" });
      } catch (error) {
        logger.debug("audit sample refused", { peer: peerId, error: describeError(error) });
        await refuse(error instanceof MycelError ? error.code : "internal_error", describeError(error));
      } finally {
        await channel.close().catch(() => undefined);
      }
    },
    { maxInboundStreams: 16 },
  );

  // ---- challenges ----
  async function challenge(): Promise<AuditVerdict | undefined> {
    const models = parameters.challengeModels?.() ?? [];
    const liveHashes = new Set(gateway.backend.listModels().map((model) => model.hash));
    const candidates = models.filter((model) => liveHashes.has(model.hash));
    const model = candidates[randomInt(0, Math.max(1, candidates.length))];
    if (!model) return undefined;
    const serving = gateway.providers.serving(`0x${model.hash}`).filter((entry) => !entry.untrusted);
    const target = serving[randomInt(0, Math.max(1, serving.length))];
    if (!target) return undefined;
    let result: BackendGenerateResult;
    try {
      result = await gateway.backend.generate({
        model: { name: model.name, hash: model.hash },
        prompt: {
          kind: "chat",
          messages: [
            { role: "user", content: challengePrompts[randomInt(0, challengePrompts.length)] as string },
          ],
        },
        sampling: {
          maxTokens: 16 + randomInt(0, 48),
          temperature: [0, 0.7, 1][randomInt(0, 3)] as number,
          topP: 1,
          topK: 0,
          stop: [],
        },
        onlyProvider: target.peerId,
        signal: AbortSignal.timeout(120_000),
      });
    } catch (error) {
      logger.info("challenge request failed", { provider: target.address, error: describeError(error) });
      return undefined;
    }
    const receipts = (result.mycel.receipts ?? []) as SignedReceipt[];
    const receipt = receipts[receipts.length - 1];
    if (!receipt) return undefined;
    return enqueue(() =>
      auditSample({
        requestId: receipt.message.requestId as Hex,
        providerPeerId: target.peerId,
        receipt,
        source: "challenge",
      }),
    );
  }

  // ---- chain: slashing ----
  const proposedAgainst = new Set<string>();
  const judgedProposals = new Set<string>();
  let nextProposalId = 0n;

  async function proposeSlashing(input: { provider: Address; input: AuditInput }) {
    if (!chain || proposedAgainst.has(input.provider)) return;
    if (
      (await readValidatorStake(chain.connection, { deployments: chain.deployments, validator: address })) ===
      0n
    )
      return;
    const record = await getProviderRecord(chain.connection, {
      deployments: chain.deployments,
      provider: input.provider,
    });
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
    const open = await readSlashProposals(chain.connection, { deployments: chain.deployments, fromId: 0n });
    const { now } = await readEpochClock(chain.connection, { deployments: chain.deployments });
    if (open.some((entry) => entry.provider === input.provider && !entry.executed && entry.deadline > now))
      return;
    const amount = (record.stake * BigInt(options.slashBps)) / 10_000n || 1n;
    proposedAgainst.add(input.provider);
    const sent = await proposeSlash(chain.connection, {
      deployments: chain.deployments,
      provider: input.provider,
      amount,
      evidence,
    });
    judgedProposals.add(sent.proposalId.toString());
    logger.warn("proposed slashing a cheating provider", {
      provider: input.provider,
      proposalId: sent.proposalId.toString(),
      amount: amount.toString(),
    });
  }

  async function judgeProposals() {
    if (!chain) return;
    const proposals = await readSlashProposals(chain.connection, {
      deployments: chain.deployments,
      fromId: nextProposalId,
    });
    const { now } = await readEpochClock(chain.connection, { deployments: chain.deployments });
    for (const proposal of proposals) {
      const id = proposal.proposalId.toString();
      if (proposal.executed || proposal.deadline <= now || judgedProposals.has(id)) {
        if (proposal.proposalId >= nextProposalId && (proposal.executed || proposal.deadline <= now))
          nextProposalId = proposal.proposalId + 1n;
        continue;
      }
      const voted = await hasVotedOnSlash(chain.connection, {
        deployments: chain.deployments,
        proposalId: proposal.proposalId,
        validator: address,
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
      const verdict = await enqueue(() => auditor.audit(input)).catch((error) => {
        logger.warn("cannot judge a slashing proposal", { proposalId: id, error: describeError(error) });
        return undefined;
      });
      const receipt = (input as { receipt?: SignedReceipt }).receipt;
      const againstThisProvider =
        receipt !== undefined && getAddress(receipt.message.provider) === getAddress(proposal.provider);
      if (verdict?.verdict === "fail" && isSlashable(verdict.reasons) && againstThisProvider) {
        await voteSlash(chain.connection, {
          deployments: chain.deployments,
          proposalId: proposal.proposalId,
        });
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

  // ---- chain: scores ----
  async function commitIfChanged(epoch: bigint, epochStartedAt: number) {
    if (!chain) return;
    const state = await getEpochState(chain.connection, { deployments: chain.deployments, epoch });
    const providers = state.opened
      ? [...state.providers]
      : await readActiveProviders(chain.connection, { deployments: chain.deployments });
    if (providers.length === 0) return;
    const reputations = new Map<string, number | undefined>();
    for (const provider of providers) {
      const standing = await getProviderStanding(chain.connection, {
        deployments: chain.deployments,
        provider,
      });
      reputations.set(provider.toLowerCase(), standing.scored ? standing.reputation : undefined);
    }
    const scores = epochScores({
      providers,
      audits: store.auditsBetween(epochStartedAt, Date.now() + 1),
      reputationOf: (provider) => reputations.get(provider.toLowerCase()),
    });
    const stored = store.commitmentOf(epoch);
    const same =
      stored &&
      JSON.stringify(stored.scores) === JSON.stringify(scores) &&
      sameAddresses(stored.providers, providers);
    if (same) return;
    const salt = toHex(randomBytes(32));
    // Written before it is sent: a validator that restarts can still reveal what it committed.
    store.saveCommitment({ epoch, providers, scores, salt });
    await commitScores(chain.connection, { deployments: chain.deployments, epoch, scores, salt });
    logger.info("scores committed", {
      epoch: epoch.toString(),
      scores: providers.map((provider, index) => `${provider.slice(0, 10)}=${scores[index]}`).join(","),
    });
  }

  async function revealAndFinalize(epoch: bigint, now: bigint, revealPeriod: bigint) {
    if (!chain || epoch < 0n) return;
    // One read serves both phases: they never overlap (reveal until end + revealPeriod, finalize from then).
    const state = await getEpochState(chain.connection, { deployments: chain.deployments, epoch });
    const ended = BigInt(state.endsAt.getTime() / 1000);
    const stored = store.commitmentOf(epoch);
    if (stored && stored.revealedAt === undefined && now >= ended && now < ended + revealPeriod) {
      if (!sameAddresses(state.providers, stored.providers)) {
        logger.warn("cannot reveal: the epoch's provider list differs from the committed one", {
          epoch: epoch.toString(),
        });
        store.markRevealed(epoch);
      } else {
        await revealScores(chain.connection, {
          deployments: chain.deployments,
          epoch,
          scores: stored.scores,
          salt: stored.salt,
        });
        store.markRevealed(epoch);
        logger.info("scores revealed", { epoch: epoch.toString() });
      }
    }
    if (now >= ended + revealPeriod && state.opened && !state.finalized && state.revealed > 0) {
      await finalizeEpoch(chain.connection, { deployments: chain.deployments, epoch }).then(
        () => logger.info("epoch finalized", { epoch: epoch.toString() }),
        (error) => logger.debug("finalize skipped", { epoch: epoch.toString(), error: describeError(error) }),
      );
    }
  }

  const epochStarts = new Map<bigint, number>();
  let ticking: Promise<void> | undefined;
  let unstakedWarned = false;
  async function tickOnce() {
    if (!chain || stopped) return;
    // Without stake there is nothing to commit or vote with (the contract would refuse every call).
    const stake = await readValidatorStake(chain.connection, {
      deployments: chain.deployments,
      validator: address,
    });
    if (stake === 0n) {
      if (!unstakedWarned)
        logger.warn("no validator stake: verdicts are kept but not posted on chain", { address });
      unstakedWarned = true;
      return;
    }
    unstakedWarned = false;
    const clock = await readEpochClock(chain.connection, { deployments: chain.deployments });
    if (!epochStarts.has(clock.epoch)) {
      const previous = store.commitmentOf(clock.epoch - 1n);
      epochStarts.set(clock.epoch, previous?.committedAt ?? 0);
    }
    await revealAndFinalize(clock.epoch - 1n, clock.now, clock.revealPeriod);
    await commitIfChanged(clock.epoch, epochStarts.get(clock.epoch) ?? 0);
    await judgeProposals();
  }
  const tick = () => {
    ticking ??= tickOnce()
      .catch((error) => logger.warn("epoch loop failed (retried)", { error: describeError(error) }))
      .finally(() => {
        ticking = undefined;
      });
    return ticking;
  };
  const epochTimer = setInterval(() => void tick(), options.epochCheckMs);
  epochTimer.unref();
  const challengeTimer =
    options.challengeIntervalMs > 0
      ? setInterval(() => {
          if (waiting === 0)
            void challenge().catch((error) =>
              logger.warn("challenge failed", { error: describeError(error) }),
            );
        }, options.challengeIntervalMs)
      : undefined;
  challengeTimer?.unref();
  logger.info("validator ready", { address, peer: node.peerId, chain: chain?.deployments.chainId });

  return {
    address,
    pending: () => waiting,
    async idle() {
      while (waiting > 0) await queue;
    },
    tick,
    challenge,
    async stop() {
      stopped = true;
      clearInterval(epochTimer);
      if (challengeTimer) clearInterval(challengeTimer);
      await ticking;
      await queue;
    },
  };
}
