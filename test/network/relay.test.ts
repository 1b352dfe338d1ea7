import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import type { Hex } from "viem";
import { exactReplayMaxTokens } from "../../src/engine/index.ts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { RELAY_MAX_RESERVATIONS_PER_HOST } from "../../src/p2p/index.ts";
import { mycelBin, type RoleProcess, repositoryRoot, startRole, temporaryHome, waitFor } from "../helpers.ts";

const password = "relay-test";
const env = { MYCEL_PASSWORD: password };
/** Small enough that a long answer crosses it, large enough for a short one and the connection's own traffic. */
const relayDataLimitBytes = 24 * 1024;

type MycelFields = { providers: string[]; failovers: number; receipts: { message: { provider: Hex } }[] };
type ProviderRow = { peer_id: string; address: string; connection: "direct" | "relayed" | null };

describe("a provider reachable only through a relay (real relay, provider and gateway processes)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let modelName: string;
  let modelHash: string;
  const roles: RoleProcess[] = [];
  let relay: RoleProcess;
  let hidden: RoleProcess;
  let direct: RoleProcess;
  let url: string;
  let client: OpenAI;
  const longRequest = () => ({
    model: modelName,
    messages: [{ role: "user" as const, content: "Tell me a long story about relays." }],
    max_tokens: 900,
    temperature: 0,
    seed: 1,
  });
  let baseline = "";

  const listProviders = async () =>
    ((await (await fetch(`${url}/mycel/v1/providers`)).json()) as { data: ProviderRow[] }).data;

  const providerArgs = (key: string, price: number, extra: string[]) => [
    mycelBin,
    "--home",
    directory.home,
    "provider",
    "--model",
    modelHash,
    "--key",
    key,
    "--price",
    String(price),
    "--bootstrap",
    relay.ready.multiaddrs?.[0] ?? "",
    ...extra,
  ];

  before(async () => {
    directory = await temporaryHome("mycel-relay-");
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await openModelStore({ home: directory.home }).addBytes({
      bytes: made.bytes,
      name: made.name,
      source: "test",
    });
    modelName = model.name;
    modelHash = model.hash;
    for (const name of ["relay", "hidden", "direct", "gw"])
      await createKeystore({
        home: directory.home,
        name,
        password,
        privateKey: devPrivateKey(`relay-test-${name}`),
      });
    relay = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "relay",
        "--key",
        "relay",
        "--relay-data-limit",
        String(relayDataLimitBytes),
      ],
      { env },
    );
    roles.push(relay);
    direct = await startRole(providerArgs("direct", 2000, []), { env });
    roles.push(direct);
    const gateway = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "gateway",
        "--key",
        "gw",
        "--port",
        "0",
        "--stall-timeout",
        "3000",
        // At home too: the hidden provider cannot dial it, so they meet through the relay.
        "--listen",
        "none",
        "--bootstrap",
        relay.ready.multiaddrs?.[0] ?? "",
      ],
      { env },
    );
    roles.push(gateway);
    url = String(gateway.ready.url);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
    await waitFor("the gateway to see the direct provider", async () =>
      (await listProviders()).length >= 1 ? true : undefined,
    );
    // The greedy answer with no relay in the way (only the direct provider exists yet).
    baseline = (await client.chat.completions.create(longRequest())).choices[0]?.message.content ?? "";
    if (process.env.RELAY_TEST_DEBUG) console.log("baseline", baseline.length, Buffer.byteLength(baseline));
    // Cheaper, so the gateway prefers it; it listens on nothing and is reachable only through the relay.
    hidden = await startRole(providerArgs("hidden", 1000, ["--listen", "none"]), { env });
    roles.push(hidden);
    await waitFor("the gateway to see the hidden provider", async () =>
      (await listProviders()).length >= 2 ? true : undefined,
    );
  });

  after(async () => {
    if (process.env.RELAY_TEST_DEBUG)
      for (const role of roles)
        console.log(
          `---- ${role.ready.role}\n${role.output().slice(-(Number(process.env.RELAY_TEST_DEBUG_CHARS) || 6000))}`,
        );
    await Promise.all(roles.map((role) => role.stop()));
    await directory.remove();
  });

  it("the relay prints its ready line; the hidden provider announces only relayed addresses and logs it is private", async () => {
    assert.ok(relay.ready.multiaddrs?.some((address) => address.includes(`/p2p/${relay.ready.peerId}`)));
    const addresses = hidden.ready.multiaddrs ?? [];
    assert.ok(addresses.length > 0, "a relayed address by the time it is ready");
    for (const address of addresses)
      assert.ok(
        address.includes(`/p2p/${relay.ready.peerId}/p2p-circuit/p2p/${hidden.ready.peerId}`),
        address,
      );
    await hidden.waitForOutput(/reachability.*private/, { timeoutMs: 5_000 });
  });

  it("serves a gateway through the relay: the gateway's connection to it is relayed (no hole punch on loopback)", async () => {
    const answer = await client.chat.completions.create({
      model: modelName,
      messages: [{ role: "user", content: "Hello through a relay" }],
      max_tokens: 16,
      temperature: 0,
    });
    const mycel = (answer as unknown as { mycel: MycelFields }).mycel;
    assert.equal(mycel.receipts[0]?.message.provider, hidden.ready.address);
    const row = (await listProviders()).find((entry) => entry.peer_id === hidden.ready.peerId);
    // DCUtR dials only public addresses, and both ends listen on nothing: on loopback it stays relayed.
    assert.equal(row?.connection, "relayed");
    const other = (await listProviders()).find((entry) => entry.peer_id === direct.ready.peerId);
    assert.equal(other?.connection, "direct");
  });

  it("the relay's data limit reached mid-stream loses no token: the answer resumes on the provider and equals the greedy run", async () => {
    // Streamed tokens travel in frames of tens of bytes each: 900 of them cross the relay's 24 KiB whatever the batching.
    const stream = await client.chat.completions.create({ ...longRequest(), stream: true });
    let text = "";
    let mycel: MycelFields | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      mycel ??= (chunk as unknown as { mycel?: MycelFields }).mycel;
    }
    assert.ok(mycel, "the last event carries mycel fields");
    // The relay reset the stream (the provider saw it cancelled); the gateway resumed the answer on the same provider
    // over a new relayed connection, which has a fresh limit, without blaming it.
    await hidden.waitForOutput(/request cancelled/, { timeoutMs: 5_000 });
    const gateway = roles.find((role) => role.ready.role === "gateway");
    await gateway?.waitForOutput(/stream through a relay was cut: resuming it on the same provider/, {
      timeoutMs: 5_000,
    });
    // Every receipt is the hidden provider's (a cut that falls after the last token leaves that segment unsigned).
    for (const receipt of mycel.receipts)
      assert.equal(receipt.message.provider, hidden.ready.address, "resumed on the hidden provider");
    // Byte-level test model: a token is a byte. A resume replays a prefix of at most exactReplayMaxTokens one token
    // at a time (the same logits as the uninterrupted run); a longer one is evaluated in one batch, whose logits may
    // differ in the last bits, so the greedy text may part from the baseline at a near-tie from there on.
    const cuts = [
      ...(gateway?.output() ?? "").matchAll(/stream through a relay was cut.*?tokensSoFar=(\d+)/g),
    ].map((match) => Number(match[1]));
    const exactUntil = cuts.find((tokens) => tokens > exactReplayMaxTokens) ?? Number.POSITIVE_INFINITY;
    const produced = Buffer.from(text);
    const expected = Buffer.from(baseline);
    assert.equal(produced.length, expected.length, "no token missing or repeated");
    assert.ok(
      produced.subarray(0, exactUntil).equals(expected.subarray(0, exactUntil)),
      `the answer equals the greedy run up to the first batched resume (cuts at ${cuts.join(", ")} tokens)`,
    );
    if (exactUntil === Number.POSITIVE_INFINITY) assert.equal(text, baseline);
  });
  it("an attacker process with 8 identities on one host gets at most that host's share of the relay's slots; the hidden provider keeps serving", async (t) => {
    // The hidden provider and the gateway (both listening on nothing) hold slots from 127.0.0.1 already.
    const attacker = await startRole(
      [
        "--import",
        "tsx",
        join(repositoryRoot, "test", "fixtures", "attackers", "reservationHog.ts"),
        relay.ready.multiaddrs?.[0] ?? "",
        "8",
        "4000",
      ],
      { env },
    );
    roles.push(attacker);
    const done = JSON.parse(
      (await attacker.waitForOutput(/ATTACK_DONE (.+)/, { timeoutMs: 45_000 }))[1] as string,
    ) as { identities: number; held: number; mostHeld: number };
    t.diagnostic(`attacker: ${JSON.stringify(done)}`);
    assert.equal(done.identities, 8);
    assert.ok(
      done.mostHeld <= RELAY_MAX_RESERVATIONS_PER_HOST - 2,
      `one host's identities held ${done.mostHeld} slots beside the 2 honest ones (share: ${RELAY_MAX_RESERVATIONS_PER_HOST})`,
    );
    // The honest provider kept its slot: the gateway still reaches it through the relay (it serves the request; a
    // relay cut between the last token and the receipt may leave the answer unsigned, so its log is the witness).
    const servedBefore = hidden.output().match(/request (served|cancelled)/g)?.length ?? 0;
    const answer = await client.chat.completions.create({
      model: modelName,
      messages: [{ role: "user", content: "Still there after the reservation flood?" }],
      max_tokens: 8,
      temperature: 0,
    });
    const mycel = (answer as unknown as { mycel: MycelFields }).mycel;
    for (const receipt of mycel.receipts) assert.equal(receipt.message.provider, hidden.ready.address);
    await waitFor("the hidden provider to log the request it served", () =>
      (hidden.output().match(/request (served|cancelled)/g)?.length ?? 0) > servedBefore ? true : undefined,
    );
  });
});
