/** What a validator needs of the network: the providers it hears of, and a way to ask them like any user would. */
import type { InferenceRequest, SignedReceipt } from "../protocol/index.ts";

/** A request a validator sends as a challenge, routed to one provider only. */
export type ChallengeRequest = {
  model: { name: string; hash: string };
  messages: { role: string; content: string }[];
  maxTokens: number;
  temperature: number;
  /** The provider's peer id. */
  providerPeerId: string;
  signal: AbortSignal;
};

/**
 * The validator's view of the network. A gateway of the validator's own (its own key and peer id, unknown to
 * providers) provides it, so challenges cannot be told from user traffic.
 */
export type ValidatorNetwork = {
  /** Models some provider serves now (hash: 64 hex digits, no 0x). */
  liveModels(): { name: string; hash: string }[];
  /** Trusted providers serving a model (0x bytes32 hash). */
  providersOf(modelHash: string): { peerId: string; address: string }[];
  /** The address a provider announced itself with, or undefined when it is not known. */
  providerAddress(peerId: string): string | undefined;
  /** Sends a request to one provider; resolves with the answer's receipts and the wire request it sent. */
  ask(request: ChallengeRequest): Promise<{ receipts: SignedReceipt[]; request: InferenceRequest }>;
};
