/** Provider announcements on gossipsub: what a provider serves, at what price, signed by its address. */
import { type Address, getAddress, type Hex, verifyMessage } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { z } from "zod";
import { canonicalJson } from "./canonicalJson.ts";
import { announcementTiming, wireVersion } from "./constants.ts";
import { ProtocolError } from "./frames.ts";

/** The text an address signs (EIP-191) to bind a libp2p peer id to itself. */
export function peerBindingMessage(peerId: string): string {
  return `Mycel peer binding\npeer: ${peerId}`;
}

const uintString = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal integer string");
const signature = z.string().regex(/^0x[0-9a-fA-F]{130}$/, "must be a 65-byte signature");

/** What a model can do on a provider: `grammar` constrained output, `tools` a chat template that renders tools. */
export const modelCapabilitySchema = z.enum(["chat", "completion", "embeddings", "tools", "grammar"]);
/** One of {@link modelCapabilitySchema}'s values. */
export type ModelCapability = z.infer<typeof modelCapabilitySchema>;

/** What an announced model can do: its `capabilities`, or chat and completion for an announcement without them. */
export function capabilitiesOf(model: {
  capabilities?: readonly ModelCapability[];
}): readonly ModelCapability[] {
  return model.capabilities ?? ["chat", "completion"];
}

/** A provider announcement as it travels (JSON). */
export const announcementSchema = z
  .object({
    v: z.literal(wireVersion),
    address: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
    peer_id: z.string().min(1).max(128),
    peer_binding: signature,
    multiaddrs: z.array(z.string().min(1).max(512)).max(16),
    models: z
      .array(
        z
          .object({
            hash: z.string().regex(/^0x[0-9a-f]{64}$/),
            name: z.string().min(1).max(200),
            context_size: z.number().int().min(1),
            /** What the model can do here; absent (providers before issue 18): ["chat", "completion"]. */
            capabilities: z.array(modelCapabilitySchema).max(16).optional(),
            /** How the model's chat template writes tool calls; absent: it cannot call tools. */
            tool_call_format: z.enum(["hermes", "llama3-json"]).optional(),
          })
          .strict(),
      )
      .min(1)
      .max(32),
    /** Prices per 1M tokens in the payment token's smallest unit. */
    price: z.object({ input: uintString, output: uintString }).strict(),
    /**
     * How this provider is paid: vouchers on the PaymentChannels contract of this chain, with at most
     * `credit_window` (smallest units) of output served before it is paid. Absent: it serves unpaid.
     */
    payment: z
      .object({
        chain_id: z.number().int().min(1),
        payment_channels: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
        credit_window: uintString,
      })
      .strict()
      .optional(),
    capacity: z
      .object({
        parallelism: z.number().int().min(1),
        max_queue: z.number().int().min(0),
        busy: z.number().int().min(0),
        waiting: z.number().int().min(0),
      })
      .strict(),
    version: z.string().min(1).max(32),
    issued_at: z.number().int().min(0),
    expires_at: z.number().int().min(0),
    signature,
  })
  .strict();

/** A provider announcement (see {@link announcementSchema}). */
export type Announcement = z.infer<typeof announcementSchema>;
/** An announcement before it is signed. */
export type UnsignedAnnouncement = Omit<Announcement, "signature" | "peer_binding" | "address" | "v">;

/** Signs an announcement (and the peer binding inside it) with the provider's key. */
export async function signAnnouncement(parameters: {
  privateKey: Hex;
  announcement: UnsignedAnnouncement;
}): Promise<Announcement> {
  const account = privateKeyToAccount(parameters.privateKey);
  const peerBinding = await account.signMessage({
    message: peerBindingMessage(parameters.announcement.peer_id),
  });
  const unsigned = {
    ...parameters.announcement,
    v: wireVersion,
    address: account.address,
    peer_binding: peerBinding,
  } as const;
  const signed = await account.signMessage({ message: canonicalJson(unsigned) });
  return { ...unsigned, signature: signed };
}

/** Parameters of {@link verifyAnnouncement}. */
export type VerifyAnnouncementParameters = {
  value: unknown;
  /**
   * The peer that handed it over when that must be its author (a stream's authenticated peer on
   * `/mycel/announcement/1.0.0`): it must be the announced peer. `undefined` for one heard on gossip (unsigned by libp2p,
   * relayed by any peer) or relayed by another peer in a snapshot (`/mycel/announcements/1.0.0`): then the peer
   * binding alone ties `peer_id` to `address`, and a gateway routes to it only once the chain's registration of
   * `address` names the same peer id.
   */
  from: string | undefined;
  now?: number;
};

/** Peer bindings already verified, remembered (most recent last) so that a provider's next announcements skip the check. */
const verifiedPeerBindings = new Set<string>();
/** Bindings remembered at most: more than any snapshot holds. */
const maxRememberedPeerBindings = 4_096;

/**
 * Whether `binding` is `address`'s signature of the text naming `peerId`. A provider signs its binding once and sends
 * the same one in every announcement, so a binding that verified once is remembered (keyed by all three, exactly) and
 * not recovered again: one signature check per announcement instead of two.
 */
async function verifyPeerBinding(parameters: { address: Address; peerId: string; binding: Hex }) {
  const key = `${parameters.address}|${parameters.peerId}|${parameters.binding.toLowerCase()}`;
  if (verifiedPeerBindings.has(key)) return true;
  const bound = await verifyMessage({
    address: parameters.address,
    message: peerBindingMessage(parameters.peerId),
    signature: parameters.binding,
  });
  if (bound) {
    verifiedPeerBindings.add(key);
    if (verifiedPeerBindings.size > maxRememberedPeerBindings)
      verifiedPeerBindings.delete(verifiedPeerBindings.values().next().value as string);
  }
  return bound;
}

/**
 * Checks an announcement: schema, the address's signature over it, the peer binding, that the peer that handed it
 * over is the announced peer (when `from` is given), and its validity window. Returns it with a checksummed address, or throws
 * {@link ProtocolError}.
 */
export async function verifyAnnouncement(parameters: VerifyAnnouncementParameters): Promise<Announcement> {
  const parsed = announcementSchema.safeParse(parameters.value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProtocolError(`malformed announcement: ${issue?.path.join(".")} ${issue?.message}`, {
      code: "malformed_announcement",
    });
  }
  const announcement = parsed.data;
  const now = parameters.now ?? Date.now();
  if (parameters.from !== undefined && announcement.peer_id !== parameters.from)
    throw new ProtocolError("announcement published by another peer than it names", {
      code: "peer_mismatch",
    });
  if (announcement.expires_at <= now)
    throw new ProtocolError("announcement expired", { code: "announcement_expired" });
  if (
    announcement.issued_at > now + announcementTiming.maxSkewMs ||
    announcement.expires_at - announcement.issued_at > announcementTiming.maxTtlMs
  )
    throw new ProtocolError("announcement validity window out of bounds", { code: "announcement_window" });
  const address = getAddress(announcement.address) as Address;
  const { signature: announcementSignature, ...unsigned } = announcement;
  const [signedByAddress, peerBound] = await Promise.all([
    verifyMessage({ address, message: canonicalJson(unsigned), signature: announcementSignature as Hex }),
    verifyPeerBinding({ address, peerId: announcement.peer_id, binding: announcement.peer_binding as Hex }),
  ]);
  if (!signedByAddress)
    throw new ProtocolError("announcement signature does not match its address", { code: "bad_signature" });
  if (!peerBound)
    throw new ProtocolError("peer binding signature does not match its address", {
      code: "bad_peer_binding",
    });
  return { ...announcement, address };
}
