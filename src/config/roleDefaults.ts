/**
 * Defaults of the network roles, in one place: the parts build their default settings from these, and the CLI's
 * flags default to them, so that a default is written once.
 */
export const roleDefaults = {
  /** Price per 1M tokens, in the payment token's smallest unit (1e12 = 0.000001 of an 18-decimal token). */
  pricePerMillion: 1_000_000_000_000n,
  /**
   * The most a gateway pays per 1M tokens, input or output (`--max-price`): 1000 times the default price, far above
   * the devnet's (at most 32 times it). Providers above it are never routed to.
   */
  maxPricePerMillion: 1_000_000_000_000_000n,
  /** Output tokens a provider serves on credit before a client must pay. */
  creditTokens: 512,
  /** A provider settles whatever has been unsettled this long. */
  settleIntervalSeconds: 600,
  /** How often a provider checks its unsettled channels. */
  settleCheckSeconds: 10,
  /** Deposited in each provider channel of a gateway (and added when it runs low), in whole tokens. */
  gatewayDeposit: "10",
  /** The most a gateway keeps deposited across its channels, in whole tokens. */
  gatewayBudget: "100",
  /** Share of answers a gateway sends to a validator for audit (docs/VERIFICATION.md derives it). */
  auditRate: 0.05,
  /** Requests a gateway holds while every provider of their model is at capacity; one more gets 503. */
  gatewayQueueLength: 256,
  /** The longest a request waits in a gateway for a provider with room before it gets 503 (ms from arrival). */
  gatewayQueueTimeoutMs: 120_000,
  /** A validator that failed to take an audit sample is not sent samples for this long (then tried again). */
  validatorRestSeconds: 60,
  /** On-chain reputation (0..1) below which a gateway stops routing to a provider. */
  minimumReputation: 0.5,
  /** How often a validator sends a challenge request. */
  challengeIntervalSeconds: 60,
  /** How often a validator looks at the chain to commit, reveal, finalize and vote. */
  epochCheckSeconds: 10,
  /** Share of a cheating provider's stake a slashing proposal asks for. */
  slashPercent: 10,
  /**
   * How long a provider keeps the evidence of an answer (it holds the conversation) for its client and the
   * validators the client samples to; pruned every hour.
   */
  evidenceRetentionHours: 7 * 24,
  /**
   * Relay reservations a relay holds at once (`--max-reservations`): each lets one node that is not reachable be
   * dialled through this relay. libp2p's default is 15.
   */
  relayMaxReservations: 128,
  /**
   * Bytes one relayed connection may carry, both directions together (`--relay-data-limit`): the relay resets it
   * beyond. 16 MiB holds a long streamed answer with its payment frames (libp2p's default, 128 KiB, does not);
   * a connection upgraded to a direct one by hole punching carries the rest.
   */
  relayDataLimitBytes: 16 * 1024 * 1024,
  /** Seconds one relayed connection may stay open (`--relay-duration-limit`); libp2p's default is 120. */
  relayDurationLimitSeconds: 600,
  /** How long a role may take to stop cleanly (a provider settles its vouchers first). */
  shutdownSeconds: 15,
} as const;
