/**
 * Audit sampling: after each answer, with probability `rate` (or when the client asked), one of the validators gets
 * it, signed by the gateway. Decided after the answer, so a provider cannot know which answers are checked. A
 * sample its validator does not take goes to another; a validator that could not be reached (dial failure, timeout,
 * broken stream) is left out for a while, then tried again. A sample no validator takes is logged and never fails
 * the answer.
 */
import { randomInt } from "node:crypto";
import type { Hex } from "viem";
import { roleDefaults } from "../config/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { type InferenceRequest, type SignedReceipt, signAuditSample } from "../protocol/index.ts";
import { sendAuditSample, WireError } from "../protocols/index.ts";
import type { ReceiptStore } from "../store/index.ts";

/** The audit rate gateways use by default (docs/VERIFICATION.md derives it). */
export const defaultAuditRate: number = roleDefaults.auditRate;

/** One answer segment that may be sampled. */
export type SampleCandidate = {
  requestId: Hex;
  segment: number;
  providerPeerId: string;
  request: InferenceRequest;
  receipt: SignedReceipt;
  /** Always send it (the client asked for an audit). */
  force: boolean;
};

/** Parameters of {@link createAuditSampler}. */
export type CreateAuditSamplerParameters = {
  node: Pick<MycelNode, "openStream" | "handleProtocol" | "addPeerAddresses">;
  /** The gateway's key: samples are signed by the receipts' client. */
  privateKey: Hex;
  receipts: Pick<ReceiptStore, "markSampled" | "unmarkSampled">;
  /** Validators' multiaddrs, each ending in /p2p/<peer id>. */
  validators: readonly string[];
  rate: number;
  logger: Logger;
  /** A number in [0, 1) (default Math.random); tests make it predictable. */
  random?: () => number;
  /** How long a validator that could not be reached is left out (default roleDefaults.validatorRestSeconds). */
  validatorRestMs?: number;
};

/** The gateway's audit sampler. */
export type AuditSampler = {
  /** Validators' peer ids. */
  validators: readonly string[];
  /**
   * When the segment is drawn, sends it to a validator (another if that one does not take it); resolves with the
   * peer id of the validator that took it, or undefined (not drawn, or no validator took it). Never rejects.
   */
  maybeSample(candidate: SampleCandidate): Promise<string | undefined>;
  /** Validators left out now (they could not be reached), with when they are tried again (ms since the epoch). */
  resting(): Map<string, number>;
  /** Waits for samples still being sent. */
  drain(): Promise<void>;
};

/** The validators in the order to try them: those not resting first, in random order, then the resting ones. */
function deliveryOrder(validators: readonly string[], restingUntil: Map<string, number>): string[] {
  const now = Date.now();
  const shuffled = [...validators];
  for (let index = shuffled.length - 1; index > 0; index--) {
    const other = randomInt(0, index + 1);
    [shuffled[index], shuffled[other]] = [shuffled[other] as string, shuffled[index] as string];
  }
  const rested = (peer: string) => (restingUntil.get(peer) ?? 0) <= now;
  return [...shuffled.filter(rested), ...shuffled.filter((peer) => !rested(peer))];
}

/** Creates the sampler; validators' addresses go into the node's peer store so they can be dialled. */
export function createAuditSampler(parameters: CreateAuditSamplerParameters): AuditSampler {
  const { node, logger } = parameters;
  const random = parameters.random ?? Math.random;
  const restMs = parameters.validatorRestMs ?? roleDefaults.validatorRestSeconds * 1000;
  const validators = parameters.validators.map((multiaddr) => {
    const peerId = multiaddr.split("/p2p/").pop() ?? "";
    node.addPeerAddresses(peerId, [multiaddr]).catch(() => undefined);
    return peerId;
  });
  const restingUntil = new Map<string, number>();
  const sending = new Set<Promise<unknown>>();

  async function send(validator: string, candidate: SampleCandidate) {
    const sample = await signAuditSample({
      privateKey: parameters.privateKey,
      sample: {
        request_id: candidate.requestId,
        provider_peer_id: candidate.providerPeerId,
        request: candidate.request,
        receipt: candidate.receipt,
      },
    });
    await sendAuditSample({ node, logger }, { validatorPeerId: validator, sample });
    logger.info("answer sent for audit", { validator, provider: candidate.receipt.message.provider });
  }

  /** Tries the validators in turn until one takes the sample; the store names the one that did. */
  async function deliver(candidate: SampleCandidate): Promise<string | undefined> {
    const sample = { requestId: candidate.requestId, segment: candidate.segment };
    for (const validator of deliveryOrder(validators, restingUntil)) {
      try {
        parameters.receipts.markSampled({ ...sample, validatorPeer: validator });
      } catch (error) {
        // Without the mark the validator's verdict would not be kept: better not to send it at all.
        logger.error("audit sample not recorded, so not sent", { error: describeError(error) });
        return undefined;
      }
      try {
        await send(validator, candidate);
        restingUntil.delete(validator);
        return validator;
      } catch (error) {
        // A refusal comes from a live validator (it is full); anything else means it cannot be reached now.
        const unreachable = !(error instanceof WireError);
        if (unreachable) restingUntil.set(validator, Date.now() + restMs);
        logger.warn("audit sample not taken: trying another validator", {
          validator,
          unreachable,
          error: describeError(error),
        });
        try {
          parameters.receipts.unmarkSampled({ ...sample, validatorPeer: validator });
        } catch (storeError) {
          logger.error("audit sample could not be reassigned", { error: describeError(storeError) });
          return undefined;
        }
      }
    }
    logger.warn("audit sample not taken by any validator", { requestId: candidate.requestId.slice(0, 18) });
    return undefined;
  }

  return {
    validators,
    maybeSample(candidate) {
      if (validators.length === 0 || (!candidate.force && random() >= parameters.rate))
        return Promise.resolve(undefined);
      const delivery = deliver(candidate).catch((error) => {
        logger.warn("audit sample not delivered", { error: describeError(error) });
        return undefined;
      });
      sending.add(delivery);
      void delivery.finally(() => sending.delete(delivery));
      return delivery;
    },
    resting() {
      const now = Date.now();
      for (const [peer, until] of restingUntil) if (until <= now) restingUntil.delete(peer);
      return new Map(restingUntil);
    },
    async drain() {
      await Promise.allSettled([...sending]);
    },
  };
}
