/**
 * Views of the gateway itself: its providers as it sees them, its payment channels and budget, and its spending by
 * model and provider (GET /mycel/v1/usage). Built from the gateway's parts; the explorer is their only owner.
 */
import {
  describeUnroutable,
  type Gateway,
  type KnownProvider,
  type RoutingPolicy,
  unroutableReason,
} from "../gateway/index.ts";
import type { GatewayPayments } from "../payments/index.ts";
import type { ReceiptSpending } from "../store/index.ts";
import type { GatewayPaymentsSummary, ProviderView } from "./types.ts";

/** Why the gateway routes to a provider for none of its models, in words; null when it routes to it for one. */
function notRoutedBecause(
  provider: KnownProvider,
  policy: RoutingPolicy | undefined,
  now: number,
): string | null {
  if (!policy) return null;
  const reasons = provider.announcement.models.map((model) =>
    unroutableReason(provider, { modelHash: model.hash, policy, now }),
  );
  const first = reasons[0];
  return reasons.some((reason) => reason === undefined) || first === undefined
    ? null
    : describeUnroutable(first);
}

/** One provider as the gateway sees it now (with why it is not routed to, given the gateway's policy). */
export function describeProvider(
  provider: KnownProvider,
  now = Date.now(),
  policy: RoutingPolicy | undefined = undefined,
): ProviderView {
  const { announcement } = provider;
  const banned = provider.bannedUntil > now;
  const expired = announcement.expires_at <= now;
  const load = announcement.capacity.busy / announcement.capacity.parallelism;
  const busy =
    load >= 1 || provider.inFlight >= announcement.capacity.parallelism || provider.busyUntil > now;
  return {
    peer_id: provider.peerId,
    address: provider.address,
    models: announcement.models,
    price_per_million: announcement.price,
    latency_ms: provider.latencyMs ?? null,
    throughput_tps: provider.throughputTps ?? null,
    in_flight: provider.inFlight,
    successes: provider.successes,
    failures: provider.failures,
    load,
    parallelism: announcement.capacity.parallelism,
    waiting: announcement.capacity.waiting,
    banned,
    untrusted: provider.untrusted,
    status: provider.untrusted
      ? "untrusted"
      : expired
        ? "expired"
        : banned
          ? "banned"
          : busy
            ? "busy"
            : "online",
    reputation: provider.reputation ?? null,
    not_routed: notRoutedBecause(provider, policy, now),
    announced_at: announcement.issued_at,
    expires_at: announcement.expires_at,
  };
}

/** Every provider the gateway knows, as it sees them now. */
export function describeProviders(
  gateway: Pick<Gateway, "providers"> & Partial<Pick<Gateway, "policy">>,
): ProviderView[] {
  const now = Date.now();
  return gateway.providers.all().map((provider) => describeProvider(provider, now, gateway.policy));
}

/** The gateway's channels and budget; null when it does not pay. */
export function summarizeGatewayPayments(
  payments: GatewayPayments | undefined,
): GatewayPaymentsSummary | null {
  if (!payments) return null;
  const channels = payments.channels();
  return {
    budget: payments.budget.limit.toString(),
    deposit_per_provider: payments.budget.depositPerProvider.toString(),
    deposited: payments.budget.committed().toString(),
    paid: channels.reduce((sum, channel) => sum + channel.signedAmount, 0n).toString(),
    channels: channels.map((channel) => ({
      channel_id: channel.channelId,
      provider: channel.provider,
      state: channel.state,
      deposit: channel.deposit.toString(),
      paid: channel.signedAmount.toString(),
      acknowledged: channel.acknowledgedAmount.toString(),
    })),
  };
}

type UsageGroup = { requests: number; segments: number; prompt: number; completion: number; cost: bigint };

function addTo(groups: Map<string, UsageGroup>, key: string, row: ReceiptSpending) {
  const group = groups.get(key) ?? { requests: 0, segments: 0, prompt: 0, completion: 0, cost: 0n };
  group.requests += row.requests;
  group.segments += row.segments;
  group.prompt += row.promptTokens;
  group.completion += row.completionTokens;
  group.cost += row.price;
  groups.set(key, group);
}

function usageFields(group: Omit<UsageGroup, "requests">) {
  return {
    segments: group.segments,
    prompt_tokens: group.prompt,
    completion_tokens: group.completion,
    cost: group.cost.toString(),
  };
}

/** Spending by model and provider (from the stored receipts) and the payment channels behind it. */
export function describeUsage(gateway: Pick<Gateway, "address" | "receipts" | "catalog" | "payments">) {
  const rows = gateway.receipts.spending();
  const names = new Map(gateway.catalog.models().map((model) => [`0x${model.hash}`, model.name]));
  const byModel = new Map<string, UsageGroup>();
  const byProvider = new Map<string, UsageGroup>();
  for (const row of rows) {
    addTo(byModel, row.modelHash, row);
    addTo(byProvider, row.provider, row);
  }
  return {
    object: "mycel.usage",
    client: gateway.address,
    total: usageFields({
      segments: rows.reduce((sum, row) => sum + row.segments, 0),
      prompt: rows.reduce((sum, row) => sum + row.promptTokens, 0),
      completion: rows.reduce((sum, row) => sum + row.completionTokens, 0),
      cost: rows.reduce((sum, row) => sum + row.price, 0n),
    }),
    by_model: [...byModel.entries()].map(([hash, group]) => ({
      model_hash: hash,
      name: names.get(hash) ?? null,
      requests: group.requests,
      ...usageFields(group),
    })),
    by_provider: [...byProvider.entries()].map(([address, group]) => ({
      provider: address,
      requests: group.requests,
      ...usageFields(group),
    })),
    payments: summarizeGatewayPayments(gateway.payments),
  };
}
