/**
 * The payment store, in SQLite (WAL, synchronous=FULL): the latest voucher a provider received per channel
 * (written before the provider acknowledges it) and the channels a gateway opened with what it signed.
 */
import { join } from "node:path";
import type Database from "better-sqlite3";
import { type Address, getAddress, type Hex } from "viem";
import { InvalidInputError } from "../errors/index.ts";
import { openDatabase } from "./database.ts";
import { StaleVoucherError } from "./errors.ts";

/** Where a provider keeps the vouchers it received (one file per provider address). */
export function providerPaymentStorePath(home: string, address: string): string {
  return join(home, "provider", address.toLowerCase(), "payments.sqlite");
}

/** Where a gateway keeps the channels it opened and the vouchers it signed. */
export function gatewayPaymentStorePath(home: string): string {
  return join(home, "gateway", "payments.sqlite");
}

/** The latest voucher a provider holds for one channel, and how much of it is settled on chain. */
export type ReceivedVoucher = {
  channelId: Hex;
  provider: Address;
  client: Address;
  cumulativeAmount: bigint;
  signature: Hex;
  receivedAt: number;
  /** What the chain has paid out on this channel, as last seen. */
  settledAmount: bigint;
  /** Since when part of the voucher is unsettled (ms since the epoch); undefined when fully settled. */
  unsettledSince: number | undefined;
  settledAt: number | undefined;
  /** What can never be settled: the channel was withdrawn or paid out before this voucher was settled. */
  forfeitedAmount: bigint;
};

/** A channel a gateway (the client) opened to a provider, with the vouchers it signed on it. */
export type ClientChannel = {
  channelId: Hex;
  client: Address;
  provider: Address;
  deposit: bigint;
  /** The highest voucher signed (written before the voucher is sent). */
  signedAmount: bigint;
  /** The highest voucher the provider confirmed it stored. */
  acknowledgedAmount: bigint;
  /** `unknown`: the chain it was bound to does not know it (it is never used again). */
  state: "open" | "closing" | "closed" | "unknown";
  openedAt: number;
};

/** The payment store opened by {@link openPaymentStore}. */
export type PaymentStore = {
  readonly path: string;
  /** Provider side: the latest voucher of a channel, if any. */
  latestVoucher(channelId: Hex): ReceivedVoucher | undefined;
  /**
   * Provider side: stores a voucher that is above the latest one, atomically; throws {@link StaleVoucherError}
   * (and changes nothing) when it is not.
   */
  saveVoucher(parameters: {
    channelId: Hex;
    provider: Address;
    client: Address;
    cumulativeAmount: bigint;
    signature: Hex;
  }): ReceivedVoucher;
  /** Provider side: records what the chain has settled on a channel (never lowers it). */
  recordSettled(parameters: { channelId: Hex; settledAmount: bigint }): ReceivedVoucher | undefined;
  /**
   * Provider side: the channel was closed before the voucher was settled; records what the chain settled
   * and stops counting the rest as unsettled (it is forfeited).
   */
  recordForfeited(parameters: { channelId: Hex; settledAmount: bigint }): ReceivedVoucher | undefined;
  /** Provider side: every voucher a provider holds, oldest first. */
  vouchersOf(provider: Address): ReceivedVoucher[];
  /** Provider side: vouchers with an unsettled part. */
  unsettledVouchers(provider: Address): ReceivedVoucher[];
  /** Gateway side: records a channel it opened. */
  addChannel(channel: Omit<ClientChannel, "signedAmount" | "acknowledgedAmount" | "openedAt">): ClientChannel;
  /** Gateway side: the channels of a client (all states), newest first. */
  channelsOf(client: Address): ClientChannel[];
  /** Gateway side: raises the signed amount (before the voucher is sent); never lowers it. */
  recordSigned(parameters: { channelId: Hex; amount: bigint }): void;
  /** Gateway side: raises the acknowledged amount; never lowers it. */
  recordAcknowledged(parameters: { channelId: Hex; amount: bigint }): void;
  /** Gateway side: updates deposit and state from the chain. */
  updateChannel(parameters: { channelId: Hex; deposit?: bigint; state?: ClientChannel["state"] }): void;
  close(): void;
};

type VoucherRow = {
  channel_id: string;
  provider: string;
  client: string;
  cumulative_amount: string;
  signature: string;
  received_at: number;
  settled_amount: string;
  unsettled_since: number | null;
  settled_at: number | null;
  forfeited_amount: string;
};

type ChannelRow = {
  channel_id: string;
  client: string;
  provider: string;
  deposit: string;
  signed_amount: string;
  acknowledged_amount: string;
  state: ClientChannel["state"];
  opened_at: number;
};

function toVoucher(row: VoucherRow): ReceivedVoucher {
  return {
    channelId: row.channel_id as Hex,
    provider: row.provider as Address,
    client: row.client as Address,
    cumulativeAmount: BigInt(row.cumulative_amount),
    signature: row.signature as Hex,
    receivedAt: row.received_at,
    settledAmount: BigInt(row.settled_amount),
    unsettledSince: row.unsettled_since ?? undefined,
    settledAt: row.settled_at ?? undefined,
    forfeitedAmount: BigInt(row.forfeited_amount),
  };
}

function toChannel(row: ChannelRow): ClientChannel {
  return {
    channelId: row.channel_id as Hex,
    client: row.client as Address,
    provider: row.provider as Address,
    deposit: BigInt(row.deposit),
    signedAmount: BigInt(row.signed_amount),
    acknowledgedAmount: BigInt(row.acknowledged_amount),
    state: row.state,
    openedAt: row.opened_at,
  };
}

/** What a voucher's settled amount becomes when the chain reports `settledAmount`: it never goes down. */
function raisedSettled(stored: VoucherRow, settledAmount: bigint): bigint {
  const before = BigInt(stored.settled_amount);
  return before > settledAmount ? before : settledAmount;
}

/** Parameters of {@link openPaymentStore}. */
export type OpenPaymentStoreParameters = {
  path: string;
  /**
   * The chain binding (`ChainBinding.key` of the chain part) every row read or written belongs to: channel ids
   * repeat on a fresh chain, so rows of another chain (and rows from before bindings, which have none) are
   * invisible through this store and never settled, counted or reused.
   */
  chain: string;
};

/** A string as an SQL literal (quotes doubled). */
function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Opens (creating if needed) the payment store in the SQLite file at `path`, seeing only the rows of `chain`. */
export function openPaymentStore(parameters: OpenPaymentStoreParameters): PaymentStore {
  const { path } = parameters;
  const chain = parameters.chain.toLowerCase();
  if (chain === "")
    throw new InvalidInputError("a payment store needs the chain its channels are bound to", {
      hint: "pass the key of readChainBinding(connection, { deployments })",
    });
  const db: Database.Database = openDatabase(path);
  const ofChain = `chain = ${sqlString(chain)}`;
  const selectVoucher = db.prepare<[string], VoucherRow>(
    `SELECT * FROM received_vouchers WHERE chain = ${sqlString(chain)} AND channel_id = ?`,
  );
  const upsertVoucher = db.prepare(
    `INSERT INTO received_vouchers
         (chain, channel_id, provider, client, cumulative_amount, signature, received_at, settled_amount,
        unsettled_since)
     VALUES (${sqlString(chain)}, @channel_id, @provider, @client, @cumulative_amount, @signature, @received_at,
       '0', @received_at)
     ON CONFLICT (chain, channel_id) DO UPDATE SET
       cumulative_amount = excluded.cumulative_amount,
       signature = excluded.signature,
       received_at = excluded.received_at,
       unsettled_since = coalesce(received_vouchers.unsettled_since, excluded.received_at)`,
  );
  const updateSettled = db.prepare(
    `UPDATE received_vouchers SET settled_amount = @settled_amount, settled_at = @settled_at,
       unsettled_since = @unsettled_since WHERE ${ofChain} AND channel_id = @channel_id`,
  );
  const selectVouchersOf = db.prepare<[string], VoucherRow>(
    `SELECT * FROM received_vouchers WHERE ${ofChain} AND provider = ? ORDER BY received_at, channel_id`,
  );
  const selectUnsettled = db.prepare<[string], VoucherRow>(
    `SELECT * FROM received_vouchers WHERE ${ofChain} AND provider = ? AND unsettled_since IS NOT NULL
     ORDER BY unsettled_since`,
  );
  const insertChannel = db.prepare(
    `INSERT INTO client_channels
       (chain, channel_id, client, provider, deposit, signed_amount, acknowledged_amount, state, opened_at)
     VALUES (${sqlString(chain)}, @channel_id, @client, @provider, @deposit, '0', '0', @state, @opened_at)`,
  );
  const selectChannel = db.prepare<[string], ChannelRow>(
    `SELECT * FROM client_channels WHERE ${ofChain} AND channel_id = ?`,
  );
  const selectChannelsOf = db.prepare<[string], ChannelRow>(
    `SELECT * FROM client_channels WHERE ${ofChain} AND client = ? ORDER BY opened_at DESC, channel_id`,
  );
  const setSigned = db.prepare(
    `UPDATE client_channels SET signed_amount = ? WHERE ${ofChain} AND channel_id = ?`,
  );
  const setAcknowledged = db.prepare(
    `UPDATE client_channels SET acknowledged_amount = ? WHERE ${ofChain} AND channel_id = ?`,
  );
  const setDeposit = db.prepare(`UPDATE client_channels SET deposit = ? WHERE ${ofChain} AND channel_id = ?`);
  const setState = db.prepare(`UPDATE client_channels SET state = ? WHERE ${ofChain} AND channel_id = ?`);

  const forfeit = db.prepare(
    `UPDATE received_vouchers SET settled_amount = @settled_amount, settled_at = @settled_at,
       unsettled_since = NULL, forfeited_amount = @forfeited_amount WHERE ${ofChain} AND channel_id = @channel_id`,
  );
  const save = db.transaction(
    (row: Omit<VoucherRow, "settled_amount" | "unsettled_since" | "settled_at" | "forfeited_amount">) => {
      const stored = selectVoucher.get(row.channel_id);
      if (stored && BigInt(stored.cumulative_amount) >= BigInt(row.cumulative_amount))
        throw new StaleVoucherError({
          channelId: row.channel_id,
          amount: BigInt(row.cumulative_amount),
          latest: BigInt(stored.cumulative_amount),
        });
      upsertVoucher.run(row);
      return toVoucher(selectVoucher.get(row.channel_id) as VoucherRow);
    },
  );
  const settle = db.transaction((channelId: string, settledAmount: bigint) => {
    const stored = selectVoucher.get(channelId);
    if (!stored) return undefined;
    const settled = raisedSettled(stored, settledAmount);
    const fully = settled >= BigInt(stored.cumulative_amount);
    updateSettled.run({
      channel_id: channelId,
      settled_amount: settled.toString(),
      settled_at: Date.now(),
      unsettled_since: fully ? null : (stored.unsettled_since ?? Date.now()),
    });
    return toVoucher(selectVoucher.get(channelId) as VoucherRow);
  });
  const closeVoucher = db.transaction((channelId: string, settledAmount: bigint) => {
    const stored = selectVoucher.get(channelId);
    if (!stored) return undefined;
    const settled = raisedSettled(stored, settledAmount);
    const cumulative = BigInt(stored.cumulative_amount);
    forfeit.run({
      channel_id: channelId,
      settled_amount: settled.toString(),
      settled_at: Date.now(),
      forfeited_amount: (cumulative > settled ? cumulative - settled : 0n).toString(),
    });
    return toVoucher(selectVoucher.get(channelId) as VoucherRow);
  });
  const raise = (statement: Database.Statement, column: "signed_amount" | "acknowledged_amount") =>
    db.transaction((channelId: string, amount: bigint) => {
      const stored = selectChannel.get(channelId);
      if (!stored || BigInt(stored[column]) >= amount) return;
      statement.run(amount.toString(), channelId);
    });
  const raiseSigned = raise(setSigned, "signed_amount");
  const raiseAcknowledged = raise(setAcknowledged, "acknowledged_amount");
  const key = (channelId: Hex) => channelId.toLowerCase();

  return {
    path,
    latestVoucher(channelId) {
      const row = selectVoucher.get(key(channelId));
      return row ? toVoucher(row) : undefined;
    },
    saveVoucher(voucher) {
      return save.immediate({
        channel_id: key(voucher.channelId),
        provider: getAddress(voucher.provider),
        client: getAddress(voucher.client),
        cumulative_amount: voucher.cumulativeAmount.toString(),
        signature: voucher.signature,
        received_at: Date.now(),
      });
    },
    recordSettled(input) {
      return settle.immediate(key(input.channelId), input.settledAmount);
    },
    recordForfeited(input) {
      return closeVoucher.immediate(key(input.channelId), input.settledAmount);
    },
    vouchersOf(provider) {
      return selectVouchersOf.all(getAddress(provider)).map(toVoucher);
    },
    unsettledVouchers(provider) {
      return selectUnsettled.all(getAddress(provider)).map(toVoucher);
    },
    addChannel(channel) {
      insertChannel.run({
        channel_id: key(channel.channelId),
        client: getAddress(channel.client),
        provider: getAddress(channel.provider),
        deposit: channel.deposit.toString(),
        state: channel.state,
        opened_at: Date.now(),
      });
      return toChannel(selectChannel.get(key(channel.channelId)) as ChannelRow);
    },
    channelsOf(client) {
      return selectChannelsOf.all(getAddress(client)).map(toChannel);
    },
    recordSigned(input) {
      raiseSigned.immediate(key(input.channelId), input.amount);
    },
    recordAcknowledged(input) {
      raiseAcknowledged.immediate(key(input.channelId), input.amount);
    },
    updateChannel(input) {
      if (input.deposit !== undefined) setDeposit.run(input.deposit.toString(), key(input.channelId));
      if (input.state !== undefined) setState.run(input.state, key(input.channelId));
    },
    close() {
      if (db.open) db.close();
    },
  };
}
