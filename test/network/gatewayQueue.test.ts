/**
 * The gateway under more requests than its providers take, and with a dead validator: real provider, validator and
 * gateway processes over libp2p (no chain: providers serve free). Requests beyond every provider's capacity wait in
 * the gateway's queue and are all answered, with no provider blamed; only a request past its deadline gets 503 with
 * Retry-After. Audit samples of a killed validator go to the live one, and the answer names it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { mycelBin, type RoleProcess, startRole, temporaryHome, waitFor } from "../helpers.ts";

const password = "gateway-queue-test";
const env = { MYCEL_PASSWORD: password };

type ProviderRow = {
  peer_id: string;
  failures: number;
  successes: number;
  in_flight: number;
  banned: boolean;
};

describe("the gateway queues beyond its providers' capacity (real processes)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let modelName: string;
  const roles: RoleProcess[] = [];
  let providers: RoleProcess[] = [];
  let validators: RoleProcess[] = [];
  /** Default queue; samples to both validators (on request only). */
  let patient: RoleProcess;
  /** A queue of 2 with a 300 ms deadline. */
  let hurried: RoleProcess;

  const providersOf = async (gateway: RoleProcess) =>
    ((await (await fetch(`${gateway.ready.url}/mycel/v1/providers`)).json()) as { data: ProviderRow[] }).data;

  /** A streaming chat request read to its end; resolves with the HTTP status, Retry-After and the text or error. */
  async function streamChat(
    gateway: RoleProcess,
    parameters: { content: string; maxTokens: number; signal?: AbortSignal },
  ) {
    const response = await fetch(`${gateway.ready.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: modelName,
        messages: [{ role: "user", content: parameters.content }],
        max_tokens: parameters.maxTokens,
        stream: true,
      }),
      signal: parameters.signal,
    });
    const body = await response.text();
    return { status: response.status, retryAfter: response.headers.get("retry-after"), body };
  }

  before(async () => {
    directory = await temporaryHome("mycel-queue-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    modelName = model.name;
    const names = ["p1", "p2", "p3", "v1", "v2", "g1", "g2"];
    for (const name of names)
      await createKeystore({
        home: directory.home,
        name,
        password,
        privateKey: devPrivateKey(`gateway-queue-test-${name}`),
      });
    const provider = (name: string, bootstrap: string[]) =>
      startRole(
        [
          mycelBin,
          "--home",
          directory.home,
          "provider",
          "--model",
          model.hash,
          "--key",
          name,
          "--price",
          "0",
          // Capacity 2 per provider (one generating, one waiting): 6 in all.
          "--parallelism",
          "1",
          "--max-queue",
          "1",
          ...bootstrap.flatMap((address) => ["--bootstrap", address]),
        ],
        { env },
      );
    const first = await provider("p1", []);
    roles.push(first);
    const seed = first.ready.multiaddrs?.[0] ?? "";
    const rest = await Promise.all([provider("p2", [seed]), provider("p3", [seed])]);
    roles.push(...rest);
    providers = [first, ...rest];
    validators = await Promise.all(
      ["v1", "v2"].map((name) =>
        startRole(
          [
            mycelBin,
            "--home",
            directory.home,
            "validator",
            "--key",
            name,
            "--threads",
            "1",
            "--challenge-interval",
            "0",
            "--bootstrap",
            seed,
          ],
          { env },
        ),
      ),
    );
    roles.push(...validators);
    const gateway = (name: string, extra: string[]) =>
      startRole(
        [
          mycelBin,
          "--home",
          directory.home,
          "gateway",
          "--key",
          name,
          "--port",
          "0",
          ...providers.flatMap((role) => ["--bootstrap", role.ready.multiaddrs?.[0] ?? ""]),
          ...extra,
        ],
        { env },
      );
    [patient, hurried] = await Promise.all([
      gateway("g1", [
        "--audit-rate",
        "0",
        ...validators.flatMap((role) => ["--validator", role.ready.multiaddrs?.[0] ?? ""]),
      ]),
      gateway("g2", ["--queue-length", "2", "--queue-timeout", "300"]),
    ]);
    roles.push(patient, hurried);
    for (const gatewayRole of [patient, hurried])
      await waitFor("the gateway to see 3 providers", async () =>
        (await providersOf(gatewayRole)).length >= 3 ? true : undefined,
      );
  });

  after(async () => {
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await directory?.remove();
  });

  it("answers 40 concurrent streaming requests on 3 providers of capacity 2: no error, no provider blamed", async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        streamChat(patient, { content: `Concurrent question ${index}.`, maxTokens: 12 }),
      ),
    );
    const failed = results.filter((result) => result.status !== 200 || !result.body.includes("[DONE]"));
    assert.deepEqual(
      failed.map((result) => `${result.status} ${result.body.slice(0, 200)}`),
      [],
      "every request answered",
    );
    const table = await providersOf(patient);
    assert.deepEqual(
      table.map((row) => [row.failures, row.banned]),
      [
        [0, false],
        [0, false],
        [0, false],
      ],
      "no provider's failure count rose, none banned",
    );
    assert.equal(
      table.reduce((sum, row) => sum + row.successes, 0),
      40,
      "the providers served the 40 between them",
    );
  });

  it("gives 503 with Retry-After only to requests past the deadline or beyond the queue, and serves the rest", async () => {
    const hogs = new AbortController();
    const held = Array.from({ length: 6 }, (_, index) =>
      streamChat(hurried, {
        content: `Tell a long story ${index}.`,
        maxTokens: 1500,
        signal: hogs.signal,
      }).catch((error: unknown) => ({ status: 0, retryAfter: null, body: String(error) })),
    );
    try {
      await waitFor("6 requests in flight on the 3 providers (all at capacity)", async () => {
        const table = await providersOf(hurried);
        return table.reduce((sum, row) => sum + row.in_flight, 0) === 6 ? true : undefined;
      });
      const started = Date.now();
      const late = await Promise.all(
        Array.from({ length: 3 }, (_, index) =>
          streamChat(hurried, { content: `Late question ${index}.`, maxTokens: 4 }),
        ),
      );
      const waited = Date.now() - started;
      assert.deepEqual(
        late.map((result) => result.status),
        [503, 503, 503],
        `past the deadline or beyond the queue of 2: ${late.map((result) => result.body.slice(0, 120)).join(" | ")}`,
      );
      for (const result of late) assert.equal(result.retryAfter, "1", "each 503 says when to retry");
      const codes = late
        .map((result) => (JSON.parse(result.body) as { error: { code: string } }).error.code)
        .sort();
      assert.deepEqual(codes, ["queue_full", "queue_timeout", "queue_timeout"]);
      assert.ok(waited >= 250, `the queued ones waited for their deadline (${waited} ms)`);
      const table = await providersOf(hurried);
      assert.ok(
        table.every((row) => row.failures === 0 && !row.banned),
        "refusing at the gateway blames no provider",
      );
    } finally {
      hogs.abort();
      await Promise.all(held);
    }
    const afterwards = await streamChat(hurried, { content: "And now?", maxTokens: 4 });
    assert.equal(afterwards.status, 200, "served again once capacity freed");
  });

  it("sends audit samples of a killed validator to the live one, and the answer names it", async () => {
    const [dead, live] = validators as [RoleProcess, RoleProcess];
    await dead.stop();
    const reassigned = /audit sample not taken: trying another validator/;
    const from = patient.output().length;
    // Until a sample was drawn for the dead one first and moved on (bounded: even odds each time until then).
    let sent = 0;
    while (!reassigned.test(patient.output().slice(from)) && sent < 20) {
      const response = await fetch(`${patient.ready.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: modelName,
          messages: [{ role: "user", content: `Audited question ${sent++}.` }],
          max_tokens: 4,
          mycel: { audit: true },
        }),
      });
      assert.equal(response.status, 200);
      const answer = (await response.json()) as {
        mycel: { request_id: string; audit?: { validators: string[] } };
      };
      assert.deepEqual(answer.mycel.audit?.validators, [live.ready.peerId], "mycel.audit names the live one");
      const stored = (await (
        await fetch(`${patient.ready.url}/mycel/v1/receipts?q=${answer.mycel.request_id}`)
      ).json()) as { data: { sampled_to: string | null }[] };
      assert.deepEqual(
        stored.data.map((receipt) => receipt.sampled_to),
        [live.ready.peerId],
        "the stored sample names the live one",
      );
    }
    assert.match(patient.output().slice(from), reassigned, "a sample drawn for the dead one went on");
    assert.ok(patient.output().slice(from).includes(String(dead.ready.peerId)), "naming the dead one");
    await live.waitForOutput(/audited/, { timeoutMs: 30_000 });
  });
});
