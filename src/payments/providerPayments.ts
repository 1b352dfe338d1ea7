/**
 * The provider's side of payment channels: admits requests on funded channels, checks and stores vouchers
 * (durably, before acknowledging them), meters unpaid output against a credit window, and settles on chain. This
 * file wires the ledger (channelLedger.ts), admission (admission.ts) and settlement (settlement.ts).
 */
import { type Address, getAddress, type Hex, hexToBigInt, isAddressEqual } from "viem";
import { type ChainConnection, type Deployments, deploymentVoucherDomain } from "../chain/index.ts";
import { describeError } from "../errors/index.ts";
import { type Logger, silentLogger } from "../log/index.ts";
import { priceOfTokens, recoverVoucherSigner } from "../protocol/index.ts";
import { type PaymentStore, type ReceivedVoucher, StaleVoucherError } from "../store/index.ts";
import { admitRequest, type ChannelCharge } from "./admission.ts";
import { createChannelLedger } from "./channelLedger.ts";
import { VoucherRejectedError } from "./errors.ts";
import { createSettler, defaultSettlementPolicy, type SettlementPolicy } from "./settlement.ts";

/** Half the secp256k1 group order: signatures above it (high s) are refused by PaymentChannels. */
const halfCurveOrder = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** Parameters of {@link createProviderPayments}. */
export type CreateProviderPaymentsParameters = {
  /** A connection that signs with the provider's key (it pays the gas of settlements). */
  connection: ChainConnection;
  deployments: Deployments;
  store: PaymentStore;
  /** The provider's address: the payee of the channels it accepts. */
  provider: Address;
  /** Output price per 1M tokens: unpaid output is metered with it. */
  outputPricePerMillion: bigint;
  /** Unpaid output, in tokens, served before a client must pay. */
  creditWindowTokens: number;
  settlement?: Partial<SettlementPolicy>;
  logger?: Logger;
};

/** The provider's payments (see {@link createProviderPayments}). */
export type ProviderPayments = {
  /** What the provider's announcements say about how it is paid. */
  announcement: { chain_id: number; payment_channels: Address; credit_window: string };
  /** The credit window in smallest units. */
  creditWindow: bigint;
  /** Checks that a channel may pay for a new request (on chain, funded, this provider's, not too far behind). */
  admit(parameters: { channelId: Hex; client: Address }): Promise<ChannelCharge>;
  /** Whether `client` has a channel this provider admitted a request on, or holds vouchers from (a paying client). */
  isPayingClient(client: Address): boolean;
  /** Checks a voucher and stores it durably; returns the stored voucher. Throws {@link VoucherRejectedError}. */
  acceptVoucher(parameters: {
    channelId: Hex;
    cumulativeAmount: bigint;
    signature: Hex;
  }): Promise<ReceivedVoucher>;
  /** Settles every unsettled voucher now (what start and shutdown do); resolves when each was tried. */
  settleAll(): Promise<void>;
  /** Vouchers held, with what is settled. */
  vouchers(): ReceivedVoucher[];
  /** Starts the settlement timer and settles what a previous run left unsettled. */
  start(): void;
  /** Stops the timer and settles everything unsettled (bounded by `timeoutMs`). */
  stop(parameters?: { timeoutMs?: number }): Promise<void>;
};

/** Parses a 65-byte signature's s and v, for the checks PaymentChannels makes. */
function signatureParts(signature: Hex): { s: bigint; v: number } {
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) return { s: 2n ** 256n, v: 0 };
  return {
    s: hexToBigInt(`0x${signature.slice(66, 130)}`),
    v: Number.parseInt(signature.slice(130, 132), 16),
  };
}

/** Recovers who signed a voucher, refusing signatures PaymentChannels would refuse. */
async function voucherSigner(parameters: {
  domain: ReturnType<typeof deploymentVoucherDomain>;
  channelId: Hex;
  cumulativeAmount: bigint;
  signature: Hex;
}): Promise<Address> {
  const { s, v } = signatureParts(parameters.signature);
  if (s > halfCurveOrder || (v !== 27 && v !== 28))
    throw new VoucherRejectedError("the voucher's signature is not in the form PaymentChannels accepts", {
      code: "voucher_forged",
      details: "signatures must have low s and v of 27 or 28",
    });
  try {
    return await recoverVoucherSigner({
      domain: parameters.domain,
      message: { channelId: parameters.channelId, cumulativeAmount: parameters.cumulativeAmount },
      signature: parameters.signature,
    });
  } catch (cause) {
    throw new VoucherRejectedError("the voucher's signature cannot be recovered", {
      code: "voucher_forged",
      details: describeError(cause),
    });
  }
}

/** Creates the provider's payment side. Call `start()` once serving begins. */
export function createProviderPayments(parameters: CreateProviderPaymentsParameters): ProviderPayments {
  const { connection, deployments, store } = parameters;
  const logger = parameters.logger ?? silentLogger;
  const provider = getAddress(parameters.provider);
  const domain = deploymentVoucherDomain(deployments);
  const priceOfOutput = (tokens: number) =>
    priceOfTokens({
      promptTokens: 0,
      completionTokens: tokens,
      pricePerMillion: { input: 0n, output: parameters.outputPricePerMillion },
    });
  const creditWindow = priceOfOutput(parameters.creditWindowTokens);
  const ledger = createChannelLedger({ connection, deployments, store, provider, priceOfOutput });
  const settler = createSettler({
    connection,
    deployments,
    store,
    provider,
    ledger,
    policy: { ...defaultSettlementPolicy, ...parameters.settlement },
    logger,
  });

  // Clients that paid before (vouchers kept from earlier runs) or whose channel was admitted in this run.
  const payingClients = new Set(store.vouchersOf(provider).map((voucher) => voucher.client.toLowerCase()));
  const admit = async (input: { channelId: Hex; client: Address }) => {
    const charge = await admitRequest({ ledger, ...input, creditWindow, priceOfOutput });
    payingClients.add(input.client.toLowerCase());
    return charge;
  };

  async function acceptVoucher(input: { channelId: Hex; cumulativeAmount: bigint; signature: Hex }) {
    const { channelId, cumulativeAmount, signature } = input;
    const latest = store.latestVoucher(channelId)?.cumulativeAmount ?? 0n;
    if (cumulativeAmount <= latest)
      throw new VoucherRejectedError(
        `a voucher for ${cumulativeAmount} is not above the ${latest} already received on channel ${channelId} (replayed or stale)`,
        { code: "voucher_stale", hint: "vouchers are cumulative: sign one for everything owed so far" },
      );
    let state = await ledger.state(channelId, false);
    if (cumulativeAmount > state.record.deposit) state = await ledger.state(channelId, true);
    ledger.checkPayee(state, channelId);
    if (cumulativeAmount > state.record.deposit)
      throw new VoucherRejectedError(
        `a voucher for ${cumulativeAmount} exceeds channel ${channelId}'s deposit of ${state.record.deposit} (underfunded)`,
        { code: "voucher_underfunded", hint: "top up the channel before paying more than its deposit" },
      );
    const signer = await voucherSigner({ domain, channelId, cumulativeAmount, signature });
    if (!isAddressEqual(signer, state.record.client))
      throw new VoucherRejectedError(
        `the voucher is signed by ${signer}, but channel ${channelId} belongs to ${state.record.client} (forged)`,
        { code: "voucher_forged", hint: "sign vouchers with the key that opened the channel" },
      );
    let stored: ReceivedVoucher;
    try {
      stored = store.saveVoucher({ channelId, provider, client: signer, cumulativeAmount, signature });
    } catch (error) {
      if (error instanceof StaleVoucherError)
        throw new VoucherRejectedError(error.shortMessage, { code: "voucher_stale", hint: error.hint });
      throw error;
    }
    payingClients.add(signer.toLowerCase());
    if (cumulativeAmount > state.paid) state.paid = cumulativeAmount;
    // Everything finished before this voucher was signed is covered by it (vouchers are cumulative).
    state.grace = [];
    for (const waiter of [...state.waiters]) waiter();
    if (settler.overThreshold(stored)) void settler.queue(channelId);
    return stored;
  }

  return {
    announcement: {
      chain_id: deployments.chainId,
      payment_channels: deployments.contracts.paymentChannels,
      credit_window: creditWindow.toString(),
    },
    creditWindow,
    admit,
    isPayingClient: (client) => payingClients.has(client.toLowerCase()),
    acceptVoucher,
    settleAll: settler.settleAll,
    vouchers: () => store.vouchersOf(provider),
    start: settler.start,
    stop: (input = {}) => settler.stop(input.timeoutMs ?? 10_000),
  };
}
