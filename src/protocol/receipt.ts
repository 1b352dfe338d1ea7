/** Receipts: EIP-712 typed data a provider signs for each answer, binding model, request, prompt and output. */
import { type Address, getAddress, type Hex, recoverTypedDataAddress, zeroAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { z } from "zod";

/** The EIP-712 types of a receipt (primary type `Receipt`). */
export const receiptTypes = {
  Receipt: [
    { name: "requestId", type: "bytes32" },
    { name: "client", type: "address" },
    { name: "provider", type: "address" },
    { name: "modelHash", type: "bytes32" },
    { name: "requestHash", type: "bytes32" },
    { name: "promptHash", type: "bytes32" },
    { name: "outputHash", type: "bytes32" },
    { name: "commitment", type: "bytes32" },
    { name: "promptTokens", type: "uint32" },
    { name: "completionTokens", type: "uint32" },
    { name: "price", type: "uint256" },
    { name: "timestamp", type: "uint64" },
  ],
} as const;

/** The EIP-712 domain receipts are signed under. */
export type ReceiptDomain = { name: "Mycel"; version: "1"; chainId: number; verifyingContract: Address };

/** Where receipts point until a chain deployment is in use: chain 31337, the zero address. */
export const defaultReceiptChain = { chainId: 31337, verifyingContract: zeroAddress as Address };

/** Builds the receipt domain for a deployment (defaults: 31337 and the zero address). */
export function receiptDomain(
  parameters: { chainId?: number; verifyingContract?: Address } = {},
): ReceiptDomain {
  return {
    name: "Mycel",
    version: "1",
    chainId: parameters.chainId ?? defaultReceiptChain.chainId,
    verifyingContract: parameters.verifyingContract ?? defaultReceiptChain.verifyingContract,
  };
}

/** A receipt's message with EIP-712 value types (uint256 and uint64 as bigint). */
export type ReceiptMessage = {
  requestId: Hex;
  client: Address;
  provider: Address;
  modelHash: Hex;
  requestHash: Hex;
  promptHash: Hex;
  outputHash: Hex;
  /** keccak256 of the answer's fingerprints and finish reason (see evidence.ts). */
  commitment: Hex;
  promptTokens: number;
  completionTokens: number;
  price: bigint;
  timestamp: bigint;
};

const bytes32 = z.string().regex(/^0x[0-9a-f]{64}$/, "must be 32 bytes of lowercase hex");
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, "must be an address");
const uintString = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal integer string");
const uint32 = z.number().int().min(0).max(0xffffffff);

/** A signed receipt as JSON travels (wire, API, storage): uint256/uint64 as decimal strings. */
export const signedReceiptSchema = z.object({
  domain: z.object({
    name: z.literal("Mycel"),
    version: z.literal("1"),
    chainId: z.number().int().positive(),
    verifyingContract: address,
  }),
  types: z.unknown().optional(),
  primaryType: z.literal("Receipt").optional(),
  message: z.object({
    requestId: bytes32,
    client: address,
    provider: address,
    modelHash: bytes32,
    requestHash: bytes32,
    promptHash: bytes32,
    outputHash: bytes32,
    commitment: bytes32,
    promptTokens: uint32,
    completionTokens: uint32,
    price: uintString,
    timestamp: uintString,
  }),
  signature: z.string().regex(/^0x[0-9a-fA-F]{130}$/, "must be a 65-byte signature"),
});

/** A signed receipt in its JSON form: `{domain, types, primaryType, message, signature}`. */
export type SignedReceipt = {
  domain: ReceiptDomain;
  types: typeof receiptTypes;
  primaryType: "Receipt";
  message: Omit<ReceiptMessage, "price" | "timestamp"> & { price: string; timestamp: string };
  signature: Hex;
};

/** Converts a JSON receipt message to EIP-712 value types (for viem's verifyTypedData). */
export function receiptMessageFromJson(message: SignedReceipt["message"]): ReceiptMessage {
  return { ...message, price: BigInt(message.price), timestamp: BigInt(message.timestamp) };
}

/** Parameters of {@link signReceipt}. */
export type SignReceiptParameters = { privateKey: Hex; domain: ReceiptDomain; message: ReceiptMessage };

/** Signs a receipt with the provider's key and returns its JSON form. */
export async function signReceipt(parameters: SignReceiptParameters): Promise<SignedReceipt> {
  const account = privateKeyToAccount(parameters.privateKey);
  const message = { ...parameters.message, provider: getAddress(parameters.message.provider) };
  const signature = await account.signTypedData({
    domain: parameters.domain,
    types: receiptTypes,
    primaryType: "Receipt",
    message,
  });
  return {
    domain: parameters.domain,
    types: receiptTypes,
    primaryType: "Receipt",
    message: { ...message, price: message.price.toString(), timestamp: message.timestamp.toString() },
    signature,
  };
}

/** Recovers the address that signed a receipt (throws on a malformed signature). */
export async function recoverReceiptSigner(receipt: SignedReceipt): Promise<Address> {
  return recoverTypedDataAddress({
    domain: receipt.domain,
    types: receiptTypes,
    primaryType: "Receipt",
    message: receiptMessageFromJson(receipt.message),
    signature: receipt.signature,
  });
}

/** Price of an answer in the payment token's smallest unit, from prices per 1M tokens (rounded down). */
export function priceOfTokens(parameters: {
  promptTokens: number;
  completionTokens: number;
  pricePerMillion: { input: bigint; output: bigint };
}): bigint {
  const total =
    BigInt(parameters.promptTokens) * parameters.pricePerMillion.input +
    BigInt(parameters.completionTokens) * parameters.pricePerMillion.output;
  return total / 1_000_000n;
}
