/** A gateway as a validator's view of the network: the providers it hears of, and challenges sent through it. */
import { type Gateway, isRoutable, wireRequestOf } from "../gateway/index.ts";
import type { ValidatorNetwork } from "../validator/index.ts";

/** Adapts a gateway (the validator's own) to what the validator needs of the network. */
export function validatorNetworkOf(gateway: Gateway): ValidatorNetwork {
  return {
    liveModels: () => gateway.catalog.models().map((model) => ({ name: model.name, hash: model.hash })),
    providersOf: (modelHash) =>
      gateway.providers
        .serving(modelHash)
        .filter((entry) => isRoutable(entry, { modelHash, policy: gateway.policy }))
        .map((entry) => ({ peerId: entry.peerId, address: entry.address })),
    providerAddress: (peerId) => gateway.providers.get(peerId)?.address,
    async ask(request) {
      const asked = {
        model: request.model,
        prompt: { kind: "chat" as const, messages: request.messages },
        sampling: {
          maxTokens: request.maxTokens,
          temperature: request.temperature,
          topP: 1,
          topK: 0,
          stop: [],
        },
        onlyProvider: request.providerPeerId,
        signal: request.signal,
      };
      const answer = await gateway.answer(asked);
      return { receipts: answer.receipts, request: wireRequestOf(asked, answer.seed) };
    },
  };
}
