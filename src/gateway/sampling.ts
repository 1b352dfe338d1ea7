/**
 * Audit sampling: after each answer, with probability `rate` (or when the client asked), one of the validators gets
 * it, signed by the gateway. Decided after the answer, so a provider cannot know which answers are checked; a
 * sample that cannot be sent is logged and never delays or fails the answer.
 */
import { randomInt } from "node:crypto";
import type { Hex } from "viem";
import { roleDefaults } from "../config/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { MycelNode } from "../p2p/index.ts";
import { type InferenceRequest, type SignedReceipt, signAuditSample } from "../protocol/index.ts";
import { sendAuditSample } from "../protocols/index.ts";
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
  receipts: Pick<ReceiptStore, "markSampled">;
  /** Validators' multiaddrs, each ending in /p2p/<peer id>. */
  validators: readonly string[];
  rate: number;
  logger: Logger;
  /** A number in [0, 1) (default Math.random); tests make it predictable. */
  random?: () => number;
};

/** The gateway's audit sampler. */
export type AuditSampler = {
  /** Validators' peer ids. */
  validators: readonly string[];
  /** Sends the segment to a random validator when it is drawn; returns that validator's peer id, if it was. */
  maybeSample(candidate: SampleCandidate): string | undefined;
  /** Waits for samples still being sent. */
  drain(): Promise<void>;
};

/** Creates the sampler; validators' addresses go into the node's peer store so they can be dialled. */
export function createAuditSampler(parameters: CreateAuditSamplerParameters): AuditSampler {
  const { node, logger } = parameters;
  const random = parameters.random ?? Math.random;
  const validators = parameters.validators.map((multiaddr) => {
    const peerId = multiaddr.split("/p2p/").pop() ?? "";
    node.addPeerAddresses(peerId, [multiaddr]).catch(() => undefined);
    return peerId;
  });
  const sending = new Set<Promise<void>>();

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

  return {
    validators,
    maybeSample(candidate) {
      if (validators.length === 0 || (!candidate.force && random() >= parameters.rate)) return undefined;
      const validator = validators[randomInt(0, validators.length)] as string;
      try {
        parameters.receipts.markSampled({
          requestId: candidate.requestId,
          segment: candidate.segment,
          validatorPeer: validator,
        });
      } catch (error) {
        // Without the mark the validator's verdict would not be kept: better not to send it at all.
        logger.error("audit sample not recorded, so not sent", { error: describeError(error) });
        return undefined;
      }
      const delivery = send(validator, candidate).catch((error) =>
        logger.warn("audit sample not delivered", { validator, error: describeError(error) }),
      );
      sending.add(delivery);
      void delivery.finally(() => sending.delete(delivery));
      return validator;
    },
    async drain() {
      await Promise.allSettled([...sending]);
    },
  };
}
