/** Payment vouchers: EIP-712 `{channelId, cumulativeAmount}` a client signs for its provider. */
import { type Address, getAddress, type Hex, hashTypedData, recoverTypedDataAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";

/** The EIP-712 types of a voucher (primary type `Voucher`), as PaymentChannels checks them. */
export const voucherTypes = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint256" },
  ],
} as const;

/** The EIP-712 domain of vouchers: one PaymentChannels contract on one chain. */
export type VoucherDomain = {
  name: "Mycel PaymentChannels";
  version: "1";
  chainId: number;
  verifyingContract: Address;
};

/** Builds the voucher domain of a PaymentChannels deployment. */
export function voucherDomain(parameters: { chainId: number; paymentChannels: Address }): VoucherDomain {
  return {
    name: "Mycel PaymentChannels",
    version: "1",
    chainId: parameters.chainId,
    verifyingContract: getAddress(parameters.paymentChannels),
  };
}

/** A voucher: the total the client owes on a channel so far. */
export type VoucherMessage = { channelId: Hex; cumulativeAmount: bigint };

/** The EIP-712 digest of a voucher (what PaymentChannels.voucherDigest returns). */
export function hashVoucher(parameters: { domain: VoucherDomain; message: VoucherMessage }): Hex {
  return hashTypedData({
    domain: parameters.domain,
    types: voucherTypes,
    primaryType: "Voucher",
    message: parameters.message,
  });
}

/** Signs a voucher with the client's key; returns the 65-byte signature. */
export async function signVoucher(parameters: {
  privateKey: Hex;
  domain: VoucherDomain;
  message: VoucherMessage;
}): Promise<Hex> {
  return privateKeyToAccount(parameters.privateKey).signTypedData({
    domain: parameters.domain,
    types: voucherTypes,
    primaryType: "Voucher",
    message: parameters.message,
  });
}

/** The address that signed a voucher. */
export async function recoverVoucherSigner(parameters: {
  domain: VoucherDomain;
  message: VoucherMessage;
  signature: Hex;
}): Promise<Address> {
  return recoverTypedDataAddress({
    domain: parameters.domain,
    types: voucherTypes,
    primaryType: "Voucher",
    message: parameters.message,
    signature: parameters.signature,
  });
}
