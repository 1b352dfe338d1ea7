/**
 * Settlement: a provider turns its latest voucher of each channel into a transfer on chain: when enough is
 * unsettled, when it has waited long enough, when the client is closing the channel, at start and at shutdown.
 * One settlement at a time (they are sent from one key, each needing the next nonce).
 */
import type { Address, Hex } from "viem";
import {
  type ChainConnection,
  ContractRevertError,
  type Deployments,
  getChannel,
  settleVoucher,
} from "../chain/index.ts";
import { roleDefaults } from "../config/index.ts";
import { describeError } from "../errors/index.ts";
import type { Logger } from "../log/index.ts";
import type { PaymentStore } from "../store/index.ts";
import type { ChannelLedger } from "./channelLedger.ts";

/** When and how a provider settles. */
export type SettlementPolicy = {
  /** Settle a channel as soon as this much of its latest voucher is unsettled (smallest units). */
  thresholdAmount: bigint;
  /** Settle whatever has been unsettled for this long. */
  maxAgeMs: number;
  /** How often unsettled channels are checked on chain (a client closing one) and old ones settled. */
  checkIntervalMs: number;
  /** Settle a closing channel at the latest this long before its challenge period ends. */
  closingMarginMs: number;
};

/** Defaults: settle at 1 token (10^18 units), after 10 minutes, checking every 10 s. */
export const defaultSettlementPolicy: SettlementPolicy = {
  thresholdAmount: 10n ** 18n,
  maxAgeMs: roleDefaults.settleIntervalSeconds * 1000,
  checkIntervalMs: roleDefaults.settleCheckSeconds * 1000,
  closingMarginMs: 30_000,
};

/** Parameters of {@link createSettler}. */
export type CreateSettlerParameters = {
  connection: ChainConnection;
  deployments: Deployments;
  store: PaymentStore;
  provider: Address;
  ledger: ChannelLedger;
  policy: SettlementPolicy;
  logger: Logger;
};

/** A provider's settlements. */
export type Settler = {
  /** Settles a channel after those already queued (once however often it is queued meanwhile). */
  queue(channelId: Hex): Promise<void>;
  /** Whether a stored voucher is over the threshold (worth settling now). */
  overThreshold(voucher: { cumulativeAmount: bigint; settledAmount: bigint }): boolean;
  /** Settles every unsettled voucher; resolves when each was tried. */
  settleAll(): Promise<void>;
  /** Starts the timer that settles old, large and closing channels. */
  start(): void;
  /** Stops the timer and settles everything unsettled, bounded by `timeoutMs`. */
  stop(timeoutMs: number): Promise<void>;
};

/** Creates the settler. */
export function createSettler(parameters: CreateSettlerParameters): Settler {
  const { connection, deployments, store, provider, policy, logger } = parameters;
  let settling: Promise<void> = Promise.resolve();
  const queued = new Set<string>();

  /** The channel's settled amount as the chain says it, when the store is behind or the rest is lost. */
  async function recordFromChain(channelId: Hex, error: ContractRevertError, fallback: bigint) {
    const record = await getChannel(connection, { deployments, channelId }).catch(() => undefined);
    if (error.errorName === "VoucherNotAboveSettled") {
      // Settled before (a crash after the transaction, before it was recorded): take the chain's word.
      if (record) store.recordSettled({ channelId, settledAmount: record.settled });
      return;
    }
    // The client withdrew (or the deposit is paid out): the rest can never be settled. Stop trying.
    const closed = store.recordForfeited({ channelId, settledAmount: record?.settled ?? fallback });
    logger.warn("a voucher can no longer be settled: its channel was closed first", {
      channel: channelId,
      reason: error.errorName,
      lost: closed?.forfeitedAmount.toString(),
    });
  }

  async function settleChannel(channelId: Hex) {
    const voucher = store.latestVoucher(channelId);
    if (!voucher || voucher.cumulativeAmount <= voucher.settledAmount) return;
    try {
      const sent = await settleVoucher(connection, {
        deployments,
        channelId,
        cumulativeAmount: voucher.cumulativeAmount,
        signature: voucher.signature,
      });
      store.recordSettled({ channelId, settledAmount: voucher.cumulativeAmount });
      logger.info("settled", {
        channel: channelId,
        paid: sent.paid.toString(),
        cumulative: voucher.cumulativeAmount.toString(),
        tx: sent.hash,
      });
    } catch (error) {
      const final = ["VoucherNotAboveSettled", "ChannelFinalized", "DepositExhausted"];
      if (error instanceof ContractRevertError && final.includes(error.errorName ?? ""))
        return recordFromChain(channelId, error, voucher.settledAmount);
      logger.warn("settlement failed: retried at the next check", {
        channel: channelId,
        error: describeError(error).split("\n")[0],
      });
    }
  }

  function queue(channelId: Hex): Promise<void> {
    const key = channelId.toLowerCase();
    if (queued.has(key)) return settling;
    queued.add(key);
    settling = settling.then(async () => {
      queued.delete(key);
      await settleChannel(channelId);
    });
    return settling;
  }

  async function settleAll() {
    for (const voucher of store.unsettledVouchers(provider)) await queue(voucher.channelId);
  }

  const overThreshold = (voucher: { cumulativeAmount: bigint; settledAmount: bigint }) =>
    voucher.cumulativeAmount - voucher.settledAmount >= policy.thresholdAmount;

  /** Settles what is old, over the threshold, or on a channel its client is closing. */
  async function check() {
    const now = Date.now();
    for (const voucher of store.unsettledVouchers(provider)) {
      const old = voucher.unsettledSince !== undefined && now - voucher.unsettledSince >= policy.maxAgeMs;
      let closing = false;
      try {
        const state = await parameters.ledger.state(voucher.channelId, true);
        closing = state.record.state !== "open";
        if (closing && state.record.closesAt)
          logger.info("a client is closing a channel: settling before its challenge period ends", {
            channel: voucher.channelId,
            closesAt: state.record.closesAt.toISOString(),
          });
      } catch {
        // Unreachable chain: the settlement below fails too and is retried at the next check.
      }
      if (old || overThreshold(voucher) || closing) await queue(voucher.channelId);
    }
  }

  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> | undefined;
  return {
    queue,
    overThreshold,
    settleAll,
    start() {
      settleAll().catch((error) => logger.warn("settling at start failed", { error: describeError(error) }));
      timer = setInterval(
        () => {
          if (checking) return;
          checking = check()
            .catch((error) => logger.warn("settlement check failed", { error: describeError(error) }))
            .finally(() => {
              checking = undefined;
            });
        },
        Math.min(policy.checkIntervalMs, policy.closingMarginMs),
      );
      timer.unref();
    },
    async stop(timeoutMs) {
      clearInterval(timer);
      const unsettled = store.unsettledVouchers(provider).length;
      if (unsettled === 0) return;
      logger.info("settling before shutdown", { channels: unsettled });
      let deadline: NodeJS.Timeout | undefined;
      await Promise.race([
        settleAll(),
        new Promise<void>((resolve) => {
          deadline = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(deadline);
      const left = store.unsettledVouchers(provider).length;
      if (left > 0)
        logger.warn("some vouchers are still unsettled: they are settled at the next start", {
          channels: left,
        });
    },
  };
}
