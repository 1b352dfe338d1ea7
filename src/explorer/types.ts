/**
 * The JSON the explorer's endpoints return (under /mycel/v1/ on a gateway). Types only: the web app in web/
 * imports them too, so the server and the browser agree on every field. Amounts are decimal strings in the
 * payment token's smallest unit; times are milliseconds since the epoch; addresses are checksummed 0x hex.
 */

/** GET /mycel/v1/explorer: what this gateway is and what it is connected to. */
export type ExplorerInfo = {
  object: "mycel.explorer";
  gateway: { address: string; peer_id: string };
  /** The chain the gateway pays on and reads stake, reputation and the registry from; null without one. */
  chain: {
    chain_id: number;
    token: { address: string; symbol: string; decimals: number };
    contracts: Record<string, string>;
  } | null;
  audit: { rate: number; validators: string[] };
  history: { interval_ms: number; capacity: number };
};

/** Whether a provider is routed to now, and if not why. */
export type ProviderStatus = "online" | "busy" | "banned" | "untrusted" | "expired";

/** A provider as a gateway sees it now. */
export type ProviderView = {
  peer_id: string;
  address: string;
  models: { hash: string; name: string; context_size: number }[];
  price_per_million: { input: string; output: string };
  /** The gateway's smoothed time to first token, ms; null until it has sent the provider a request. */
  latency_ms: number | null;
  /** The gateway's smoothed tokens per second while streaming from this provider; null until measured. */
  throughput_tps: number | null;
  in_flight: number;
  successes: number;
  failures: number;
  /** busy / parallelism from the provider's last announcement (0..1), and requests waiting there. */
  load: number;
  parallelism: number;
  waiting: number;
  banned: boolean;
  untrusted: boolean;
  status: ProviderStatus;
  /** On-chain reputation 0..1; null until validators have scored the provider (routing counts that as 1). */
  reputation: number | null;
  /**
   * Why the gateway does not route to it for any model it announces (not staked on chain, an announced price that
   * differs from its on-chain offer, above the price ceiling...); null when it routes to it.
   */
  not_routed?: string | null;
  announced_at: number;
  expires_at: number;
};

/**
 * One provider as GET /mycel/v1/providers lists it: the gateway's view, its stake on the ProviderRegistry (null
 * without a chain), and how the gateway is connected to it now: `direct`, `relayed` (only through a relay: the
 * provider is not reachable and no hole punch has upgraded the connection yet), or null (no connection open).
 */
export type ExplorerProvider = ProviderView & {
  stake: string | null;
  connection: "direct" | "relayed" | null;
};

/** One sample of the network, taken every `interval_ms`. */
export type HistoryPoint = {
  t: number;
  /** Output tokens per second that this gateway received over the last interval, all providers together. */
  tokens_per_second: number;
  /** Requests completed over the last interval. */
  requests: number;
  providers: {
    address: string;
    latency_ms: number | null;
    throughput_tps: number | null;
    price_output: string;
    in_flight: number;
    load: number;
  }[];
};

/** GET /mycel/v1/network/history. */
export type NetworkHistory = { interval_ms: number; capacity: number; points: HistoryPoint[] };

/** One model: its registry entry (when registered) and who serves it now. */
export type RegistryModel = {
  model_hash: string;
  name: string;
  registered: boolean;
  license: string | null;
  publisher: string | null;
  registered_at: number | null;
  deprecated: boolean;
  metadata_uri: string | null;
  parents: { model_hash: string; relation: string }[];
  children: string[];
  served_by: { address: string; peer_id: string; price_per_million: { input: string; output: string } }[];
};

/** GET /mycel/v1/registry. */
export type RegistryList = { object: "list"; chain: boolean; data: RegistryModel[] };

/** A validator's signed verdict on one answer, as the gateway received it. */
export type AuditSummary = {
  verdict: "pass" | "fail";
  validator: string;
  reasons: { code: string; message: string }[];
  metrics: Record<string, unknown>;
  audited_at: number;
  signature: string;
};

/** One stored receipt (one provider segment of a request). */
export type ReceiptSummary = {
  request_id: string;
  segment: number;
  provider: string;
  model_hash: string;
  model_name: string | null;
  created_at: number;
  prompt_tokens: number;
  completion_tokens: number;
  price: string;
  /** Whether this gateway sent the answer for audit, to which validator peer; null when not sampled. */
  sampled_to: string | null;
  audit: AuditSummary | null;
};

/** GET /mycel/v1/receipts?q=&audited=&limit=&offset= (newest first). */
export type ReceiptList = {
  object: "list";
  total: number;
  limit: number;
  offset: number;
  data: ReceiptSummary[];
};

/** GET /mycel/v1/receipts/<request id>. */
export type ReceiptDetail = {
  request_id: string;
  /** The signed receipts ({domain, types, message, signature}), one per provider segment. */
  receipts: unknown[];
  summaries: ReceiptSummary[];
  /** The signature of each receipt checked again now: who signed it and whether that is the provider it names. */
  verification: { segment: number; signer: string | null; valid: boolean }[];
  /** What the request cost, all segments together. */
  cost: string;
};

/** A payment channel as the chain holds it. */
export type ChainChannel = {
  channel_id: string;
  client: string;
  provider: string;
  deposit: string;
  settled: string;
  state: "open" | "closing" | "closed";
  close_requested_at: number | null;
  /** Whether this gateway is the channel's client. */
  mine: boolean;
};

/** A gateway's own payment channels and budget (also `payments` of GET /mycel/v1/usage). */
export type GatewayPaymentsSummary = {
  budget: string;
  deposit_per_provider: string;
  deposited: string;
  paid: string;
  channels: {
    channel_id: string;
    provider: string;
    state: string;
    deposit: string;
    paid: string;
    acknowledged: string;
  }[];
};

/** GET /mycel/v1/payments. */
export type PaymentsView = {
  object: "mycel.payments";
  chain: boolean;
  token: { address: string; symbol: string; decimals: number } | null;
  /** This gateway's side: what it deposited, signed and had acknowledged, per channel (from its own store). */
  gateway: GatewayPaymentsSummary | null;
  /** Every channel to every registered provider, from the chain. */
  channels: ChainChannel[];
  /** Per registered provider: what it has settled on chain (its earnings), deposits towards it, its stake. */
  providers: { address: string; earned: string; deposits: string; channels: number; stake: string }[];
  /** The latest settlements (ChannelSettled events), newest first. */
  settlements: {
    channel_id: string;
    provider: string;
    client: string;
    paid: string;
    cumulative: string;
    block: number;
    time: number | null;
    transaction: string;
  }[];
};

/** One epoch of validator consensus. */
export type EpochView = {
  epoch: number;
  opened: boolean;
  finalized: boolean;
  /**
   * Where the epoch stands by the chain's clock: validators commit until `ends_at`, reveal until
   * `reveals_until`, then anyone may finalize.
   */
  phase: "committing" | "revealing" | "finalizing" | "finalized";
  /** When the epoch ends (its reveal period follows). */
  ends_at: number;
  reveals_until: number;
  providers: string[];
  committers: string[];
  revealed: number;
  /** Each revealing validator's scores, in `providers` order (0..10000). */
  scores: { validator: string; scores: number[] }[];
  /** The stake-weighted consensus, in `providers` order; null until finalized. */
  consensus: number[] | null;
};

/** GET /mycel/v1/validators. */
export type ValidatorsView = {
  object: "mycel.validators";
  chain: boolean;
  current_epoch: number | null;
  max_score: number;
  validators: { address: string; stake: string; unbonding: string }[];
  /** Newest first. */
  epochs: EpochView[];
  /** Provider standing as the chain holds it; `reputation` and `last_score` out of `max_score`. */
  standings: {
    provider: string;
    reputation: number;
    last_score: number;
    scored: boolean;
    last_epoch: number;
  }[];
  slashes: {
    id: number;
    provider: string;
    proposer: string;
    amount: string;
    executed: boolean;
    deadline: number;
    yes_stake: string;
    total_stake: string;
  }[];
};

/** Server-sent events on GET /mycel/v1/events. */
export type ExplorerEvent =
  | { type: "providers"; data: ExplorerProvider[] }
  | { type: "history"; data: HistoryPoint }
  | { type: "receipt"; data: ReceiptSummary }
  | { type: "audit"; data: { request_id: string; segment: number; audit: AuditSummary } };
