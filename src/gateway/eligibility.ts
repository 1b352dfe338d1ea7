/**
 * Which providers a gateway may route to at all, before any scoring: trusted, with a live announcement, staked on
 * chain with an offer that matches what they announce (unless the operator allows unstaked providers), and no
 * dearer than the price ceiling. A stranger who announces a price cannot be paid more than the ceiling, nor at all
 * without stake at risk.
 */
import { roleDefaults } from "../config/index.ts";
import { PaymentRequiredError } from "../errors/index.ts";
import { capabilitiesOf, type ModelCapability } from "../protocol/index.ts";
import type { KnownProvider } from "./providerTable.ts";

/** What a gateway requires of a provider before it routes to it. */
export type RoutingPolicy = {
  /**
   * Only providers registered and active in ProviderRegistry, under the peer id they announce, whose on-chain offer
   * for the model has the announced input and output prices (a gateway with a chain, unless `--allow-unstaked`).
   */
  requireStake: boolean;
  /** The most a provider may charge per 1M tokens, input or output (`--max-price`). */
  maxPricePerMillion: bigint;
};

/** The policy of a gateway that reads no chain: nothing to check stake against, the default price ceiling. */
export const defaultRoutingPolicy: RoutingPolicy = {
  requireStake: false,
  maxPricePerMillion: roleDefaults.maxPricePerMillion,
};

/** Why a provider is not routed to for a model. */
export type UnroutableReason =
  | "untrusted"
  | "expired"
  | "not_serving"
  | "lacks_capability"
  | "not_checked"
  | "not_registered"
  | "not_active"
  | "peer_id_differs"
  | "no_offer"
  | "offer_differs"
  | "above_ceiling";

/** Parameters of {@link unroutableReason}. */
export type RoutableParameters = {
  /** The model (0x bytes32). */
  modelHash: string;
  policy: RoutingPolicy;
  /** The request's own ceiling, if lower than the policy's (`mycel.max_price`). */
  maxPricePerMillion?: bigint;
  /** What the request needs the model to do there (embeddings, tools, grammar); none: any provider of it. */
  requiredCapabilities?: readonly ModelCapability[];
  now?: number;
};

/** The ceiling a request is held to: the gateway's, or the request's own where it is lower. */
export function effectiveCeiling(policy: RoutingPolicy, requested: bigint | undefined): bigint {
  return requested !== undefined && requested < policy.maxPricePerMillion
    ? requested
    : policy.maxPricePerMillion;
}

/** Whether the chain records this provider, under its announced peer id, offering the model at its announced prices. */
function registrationReason(provider: KnownProvider, modelHash: string): UnroutableReason | undefined {
  const registration = provider.registration;
  if (registration === undefined) return "not_checked";
  if (registration === null) return "not_registered";
  if (!registration.active) return "not_active";
  if (registration.peerId !== provider.peerId) return "peer_id_differs";
  const offer = registration.offers.find((entry) => entry.modelHash.toLowerCase() === modelHash);
  if (!offer) return "no_offer";
  const price = provider.announcement.price;
  if (
    offer.inputPricePerMillion !== BigInt(price.input) ||
    offer.outputPricePerMillion !== BigInt(price.output)
  )
    return "offer_differs";
  return undefined;
}

/** Why `provider` may not serve `modelHash` under the policy, or undefined when it may. */
export function unroutableReason(
  provider: KnownProvider,
  parameters: RoutableParameters,
): UnroutableReason | undefined {
  const modelHash = parameters.modelHash.toLowerCase();
  if (provider.untrusted) return "untrusted";
  if (provider.announcement.expires_at <= (parameters.now ?? Date.now())) return "expired";
  const model = provider.announcement.models.find((entry) => entry.hash.toLowerCase() === modelHash);
  if (!model) return "not_serving";
  if (!hasCapabilities(model, parameters.requiredCapabilities)) return "lacks_capability";
  const ceiling = effectiveCeiling(parameters.policy, parameters.maxPricePerMillion);
  const price = provider.announcement.price;
  if (BigInt(price.input) > ceiling || BigInt(price.output) > ceiling) return "above_ceiling";
  if (parameters.policy.requireStake) return registrationReason(provider, modelHash);
  return undefined;
}

/** Whether an announced model entry can do everything `required` names (an entry without the field: chat, completion). */
export function hasCapabilities(
  model: { capabilities?: readonly ModelCapability[] },
  required: readonly ModelCapability[] | undefined,
): boolean {
  const announced = capabilitiesOf(model);
  return (required ?? []).every((capability) => announced.includes(capability));
}

/** Whether `provider` may serve `modelHash` under the policy. */
export function isRoutable(provider: KnownProvider, parameters: RoutableParameters): boolean {
  return unroutableReason(provider, parameters) === undefined;
}

/** A reason in words, for logs, errors and the explorer. */
export function describeUnroutable(reason: UnroutableReason): string {
  const words: Record<UnroutableReason, string> = {
    untrusted: "caught cheating or breaking the protocol",
    expired: "its announcement expired",
    not_serving: "it does not announce the model",
    lacks_capability: "it does not announce the capabilities the request needs for the model",
    not_checked: "its on-chain registration has not been read yet",
    not_registered: "not registered on chain (no stake)",
    not_active: "its on-chain stake is below the minimum",
    peer_id_differs: "registered on chain under another peer id",
    no_offer: "its on-chain offers do not include the model",
    offer_differs: "its announced price differs from its on-chain offer",
    above_ceiling: "its price is above the price ceiling",
  };
  return words[reason];
}

/** Why none of `providers` may serve the model, in words; undefined when one may (or there are none). */
export function whyNoneRoutable(providers: readonly KnownProvider[], parameters: RoutableParameters) {
  const reasons = providers.map((provider) => unroutableReason(provider, parameters));
  if (providers.length === 0 || reasons.some((reason) => reason === undefined)) return undefined;
  return [...new Set(reasons.map((reason) => describeUnroutable(reason as UnroutableReason)))].join("; ");
}

/**
 * Throws a 402 naming the ceiling and the fix when a request's own price ceiling (`mycel.max_price`) leaves out
 * every provider that the gateway's policy would otherwise route it to: nothing is sent, nothing paid.
 */
export function refuseAboveCeiling(parameters: {
  modelName: string;
  modelHash: string;
  requested: bigint | undefined;
  policy: RoutingPolicy;
  serving: readonly KnownProvider[];
}): void {
  const { modelHash, policy, requested } = parameters;
  if (requested === undefined || requested >= policy.maxPricePerMillion) return;
  const underGatewayCeiling = parameters.serving.filter((entry) => isRoutable(entry, { modelHash, policy }));
  if (underGatewayCeiling.length === 0) return;
  if (
    underGatewayCeiling.some((entry) =>
      isRoutable(entry, { modelHash, policy, maxPricePerMillion: requested }),
    )
  )
    return;
  let cheapest = policy.maxPricePerMillion;
  for (const entry of underGatewayCeiling) {
    const input = BigInt(entry.announcement.price.input);
    const output = BigInt(entry.announcement.price.output);
    const dearer = input > output ? input : output;
    if (dearer < cheapest) cheapest = dearer;
  }
  throw new PaymentRequiredError(
    `every provider of model "${parameters.modelName}" charges more than this request's price ceiling (mycel.max_price ${requested} per 1M tokens)`,
    {
      code: "price_ceiling_too_low",
      details: `the cheapest asks ${cheapest} per 1M tokens (input or output); this gateway's ceiling is ${policy.maxPricePerMillion}`,
      hint: `raise mycel.max_price to at least ${cheapest} (at most the gateway's --max-price ${policy.maxPricePerMillion}), or leave it out`,
    },
  );
}
