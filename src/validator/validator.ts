/**
 * The validator role: audits answers that gateways sample to it (over `/mycel/audit/1.0.0`) and answers to its own
 * challenge requests, hands verdicts back, posts per-epoch scores with commit-reveal, finalizes epochs, and proposes
 * and votes on slashing. This file only wires its parts.
 */
import type { Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { roleDefaults } from "../config/index.ts";
import { describeError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import type { SignedReceipt } from "../protocol/index.ts";
import { serveAuditSamples } from "../protocols/index.ts";
import type { AuditStore } from "../store/index.ts";
import type { Auditor, AuditVerdict } from "../verify/index.ts";
import { createAuditQueue } from "./auditQueue.ts";
import { type AuditSample, createSampleAuditor } from "./audits.ts";
import { createChallenger } from "./challenges.ts";
import { createEpochLoop } from "./epochs.ts";
import { checkSample } from "./intake.ts";
import type { ValidatorNetwork } from "./network.ts";
import { createSlasher, type ValidatorChain } from "./slashing.ts";
import { returnVerdict } from "./verdictReturn.ts";

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
  epochCheckMs: roleDefaults.epochCheckSeconds * 1000,
  challengeIntervalMs: roleDefaults.challengeIntervalSeconds * 1000,
  slashBps: roleDefaults.slashPercent * 100,
  evidenceAttempts: 3,
};

/** Parameters of {@link startValidator}. */
export type StartValidatorParameters = {
  node: MycelNode;
  auditor: Auditor;
  store: AuditStore;
  /** The validator's staking key: it commits scores and votes. */
  privateKey: Hex;
  /** The providers it hears of, and a way to challenge them (a gateway of its own; see network.ts). */
  network: ValidatorNetwork;
  /**
   * The key the challenge gateway (`network`) pays and asks with, the client of its answers' receipts: the
   * validator signs the audit sample of each challenge with it, as a provider hands evidence only to the client or
   * to the holder of a sample the client signed.
   */
  challengeKey: Hex;
  /** Models challenges may ask for: those in this validator's store, by name (as the gateway lists them). */
  challengeModels?: () => { name: string; hash: string }[];
  chain?: ValidatorChain;
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

/** The share of one core a validator's challenges may take at most (their CPU time over the wait between them). */
export const challengeCpuShare = 0.01;

/**
 * The wait before the next challenge: the interval, or longer when the last challenge took `cpuMs` of CPU time (the
 * validator process's, every thread: the challenge gateway's node and payments, the request, the audit).
 */
export function nextChallengeDelayMs(parameters: { intervalMs: number; cpuMs: number }): number {
  return Math.max(parameters.intervalMs, parameters.cpuMs / challengeCpuShare);
}

/** CPU time (user + system, ms) this process has used since `since` (a process.cpuUsage() reading). */
function cpuMsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

/** Starts a validator. */
export async function startValidator(parameters: StartValidatorParameters): Promise<Validator> {
  const { node, network, chain } = parameters;
  const options = { ...defaultValidatorOptions, ...parameters.options };
  const logger = parameters.logger ?? silentLogger;
  const address = privateKeyToAccount(parameters.privateKey).address;
  const components = { node, logger };
  let stopped = false;
  const queue = createAuditQueue({ maxQueue: options.maxQueue });
  const slasher =
    chain &&
    createSlasher({ chain, address, slashBps: options.slashBps, auditor: parameters.auditor, queue, logger });
  const auditOne = createSampleAuditor({
    components,
    auditor: parameters.auditor,
    store: parameters.store,
    evidenceAttempts: options.evidenceAttempts,
    onSlashable: async (cheat) => slasher?.propose(cheat),
    logger,
  });
  const auditSample = async (sample: AuditSample) => {
    const verdict = await auditOne(sample);
    if (verdict && sample.source === "sample" && sample.fromPeer)
      await returnVerdict(components, {
        privateKey: parameters.privateKey,
        gatewayPeerId: sample.fromPeer,
        requestId: sample.requestId,
        receipt: sample.receipt,
        verdict,
      });
    return verdict;
  };

  await serveAuditSamples(components, {
    accept: async (sample, peerId) => {
      await checkSample(sample, {
        providerAddress: network.providerAddress,
        queueFull: queue.full,
        waiting: queue.waiting(),
      });
      void queue
        .enqueue(() =>
          auditSample({
            requestId: sample.request_id as Hex,
            providerPeerId: sample.provider_peer_id,
            request: sample.request,
            receipt: sample.receipt as SignedReceipt,
            signedSample: sample,
            source: "sample",
            fromPeer: peerId,
          }),
        )
        .catch((error) => logger.warn("audit failed to run", { error: describeError(error) }));
    },
  });

  const challenge = createChallenger({
    network,
    models: parameters.challengeModels ?? (() => []),
    challengeKey: parameters.challengeKey,
    queue,
    auditSample,
    logger,
  });
  const epochs =
    chain && slasher && createEpochLoop({ chain, address, store: parameters.store, slasher, logger });
  const tick = async () => {
    if (!stopped) await epochs?.tick();
  };
  const epochTimer = setInterval(() => void tick(), options.epochCheckMs);
  epochTimer.unref();
  // One challenge at a time, each after the interval, and after a longer wait when it cost much CPU: challenges take
  // at most challengeCpuShare of a core whatever the model's size (a 0.5B model's challenge audit takes seconds).
  let challengeTimer: NodeJS.Timeout | undefined;
  const scheduleChallenge = (delayMs: number) => {
    challengeTimer = setTimeout(async () => {
      let cpuMs = 0;
      if (queue.waiting() === 0) {
        const started = process.cpuUsage();
        const verdict = await challenge().catch((error) => {
          logger.warn("challenge failed", { error: describeError(error) });
          return undefined;
        });
        // The process's CPU over the challenge (anything else it did meanwhile too: the wait errs long), and at
        // least the audit's own time.
        cpuMs = Math.max(cpuMsSince(started), verdict?.metrics.evaluateMs ?? 0);
      }
      if (!stopped)
        scheduleChallenge(nextChallengeDelayMs({ intervalMs: options.challengeIntervalMs, cpuMs }));
    }, delayMs);
    challengeTimer.unref();
  };
  if (options.challengeIntervalMs > 0) scheduleChallenge(options.challengeIntervalMs);
  logger.info("validator ready", { address, peer: node.peerId, chain: chain?.deployments.chainId });

  return {
    address,
    pending: queue.waiting,
    idle: queue.idle,
    tick,
    challenge,
    async stop() {
      stopped = true;
      clearInterval(epochTimer);
      if (challengeTimer) clearTimeout(challengeTimer);
      await epochs?.settled();
      await queue.idle();
    },
  };
}
