/**
 * Providers that answer badly, as processes of their own (test/fixtures/attackers/malformedAnswers.ts), against a
 * real gateway process over libp2p: vectors holding NaN, a flood of embedding frames (~220 MB meant), a flood of
 * logprobs frames (~150 MB meant). Each attacker announces a model of its own (so the request goes to it), beside an
 * honest `mycel provider` of the tiny test model. The gateway answers each request with an error instead of the
 * attacker's data, cuts the flood at the first frame too many (a reset stream: what the attacker threw costs the
 * gateway well under a second of CPU and a few MB), stops routing to it, and still answers through the honest
 * provider.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { privateKeyToAddress } from "viem/accounts";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { mycelBin, type RoleProcess, repositoryRoot, startRole, temporaryHome, waitFor } from "../helpers.ts";

const password = "malformed-answers-test";
const env = { MYCEL_PASSWORD: password };
const attacks = ["nan-embedding", "embedding-flood", "logprobs-flood"] as const;
type Attack = (typeof attacks)[number];

type ProvidersBody = { data: { address: string; untrusted: boolean }[] };
type ErrorBody = { error?: { message: string; type?: string } };

/** The CPU time a process has used, in ms (Linux: utime + stime of /proc/<pid>/stat, at 100 ticks a second). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The resident memory of a process, in bytes (Linux). */
function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(match, "VmRSS is readable");
  return Number(match[1]) * 1024;
}

describe("providers that answer with malformed frames (attackers as real processes)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  let model: { hash: string; name: string };
  const roles: RoleProcess[] = [];
  const attackers = new Map<Attack, { process: RoleProcess; address: string; model: string }>();
  let gateway: RoleProcess;
  let url: string;

  const post = (path: string, body: Record<string, unknown>) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const untrusted = async (address: string) =>
    ((await (await fetch(`${url}/mycel/v1/providers`)).json()) as ProvidersBody).data.find(
      (entry) => entry.address.toLowerCase() === address.toLowerCase(),
    )?.untrusted;
  /** Sends `body` to the attacker of `attack`; returns the answer and what the attacker says it sent. */
  const attackWith = async (attack: Attack, path: string, body: Record<string, unknown>) => {
    const attacker = attackers.get(attack);
    assert.ok(attacker);
    const pid = gateway.child.pid as number;
    const before = { rss: residentBytes(pid), cpu: cpuMs(pid), at: performance.now() };
    const response = await post(path, { model: attacker.model, ...body });
    const answer = (await response.json()) as ErrorBody & Record<string, unknown>;
    const answeredMs = performance.now() - before.at;
    // The attacker's count is what its own stream accepted (libp2p buffers on the sender's side): the flood is
    // over when it says so, and what it cost the gateway is the gateway's CPU time and memory meanwhile.
    const line = await attacker.process.waitForOutput(/^MYCEL_ATTACK (.+)$/m, { timeoutMs: 60_000 });
    const sent = JSON.parse(line[1] as string) as {
      frames: number;
      bytesWritten: number;
      bytesWanted: number;
    };
    const cost = { cpuMs: cpuMs(pid) - before.cpu, grownBytes: residentBytes(pid) - before.rss, answeredMs };
    return { response, answer, sent, cost, attacker };
  };

  before(async () => {
    directory = await temporaryHome("mycel-malformed-answers-");
    const store = openModelStore({ home: directory.home });
    const made = generateTestModel({ size: "tiny" });
    const { model: added } = await store.addBytes({ bytes: made.bytes, name: made.name, source: "test" });
    model = { hash: added.hash, name: added.name };
    for (const name of ["honest", "gateway"])
      await createKeystore({
        home: directory.home,
        name,
        password,
        privateKey: devPrivateKey(`malformed-answers:${name}`),
      });
    const honest = await startRole(
      [mycelBin, "--home", directory.home, "provider", "--key", "honest", "--model", model.hash],
      { env },
    );
    roles.push(honest);
    const bootstrap = honest.ready.multiaddrs?.[0] ?? "";
    for (const attack of attacks) {
      const privateKey = devPrivateKey(`malformed-answers:${attack}`);
      const attackModel = `attack-${attack}`;
      const process = await startRole([
        "--import",
        "tsx",
        join(repositoryRoot, "test", "fixtures", "attackers", "malformedAnswers.ts"),
        randomBytes(32).toString("hex"),
        attackModel,
        privateKey,
        attack,
        bootstrap,
      ]);
      roles.push(process);
      attackers.set(attack, { process, address: privateKeyToAddress(privateKey), model: attackModel });
    }
    gateway = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "gateway",
        "--key",
        "gateway",
        "--port",
        "0",
        "--bootstrap",
        bootstrap,
      ],
      { env },
    );
    roles.push(gateway);
    url = String(gateway.ready.url);
    await waitFor("the gateway to list the honest model and the three attackers' models", async () => {
      const listed = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      const ids = listed.data.map((entry) => entry.id);
      return [model.name, ...attacks.map((attack) => `attack-${attack}`)].every((id) => ids.includes(id))
        ? true
        : undefined;
    });
  });

  after(async () => {
    await Promise.all(roles.map((role) => role.stop().catch(() => undefined)));
    await directory?.remove();
  });

  it("refuses vectors holding NaN: an error, not the vector, and the provider is no longer trusted", async () => {
    const { response, answer, sent, cost, attacker } = await attackWith("nan-embedding", "/v1/embeddings", {
      input: "mycelium",
    });
    assert.equal(response.status, 503, JSON.stringify(answer));
    assert.equal(answer.data, undefined);
    assert.match(answer.error?.message ?? "", /caught cheating or breaking the protocol/);
    assert.equal(sent.frames, 1);
    assert.ok(cost.answeredMs < 10_000, `answered in ${cost.answeredMs} ms (no wait for a receipt)`);
    assert.equal(await untrusted(attacker.address), true);
  });

  // What the floods would cost a gateway that read them: ~220 and ~150 MB decrypted, parsed and validated (seconds
  // of CPU, the logprobs' 40 million numbers most); cut at the first frame too many, well under a second.
  const checkCut = (cost: { cpuMs: number; grownBytes: number }, sent: { bytesWanted: number }) => {
    assert.ok(sent.bytesWanted > 1e8, JSON.stringify(sent));
    assert.ok(cost.cpuMs < 2_000, `the gateway spent ${cost.cpuMs} ms of CPU on the flood`);
    assert.ok(cost.grownBytes < 200 * 1024 * 1024, `the gateway grew by ${cost.grownBytes} bytes`);
  };

  it("cuts a flood of embedding frames at the first one too many, at little cost to the gateway", async () => {
    const { response, answer, sent, cost, attacker } = await attackWith("embedding-flood", "/v1/embeddings", {
      input: ["spores", "hyphae"],
    });
    assert.equal(response.status, 503, JSON.stringify(answer));
    assert.equal(answer.data, undefined);
    checkCut(cost, sent);
    assert.equal(await untrusted(attacker.address), true);
  });

  it("cuts a flood of logprobs frames beyond max_tokens, at little cost to the gateway", async () => {
    const { response, answer, sent, cost, attacker } = await attackWith(
      "logprobs-flood",
      "/v1/chat/completions",
      {
        messages: [{ role: "user", content: "tell me about spores" }],
        max_tokens: 8,
        logprobs: true,
        top_logprobs: 2,
      },
    );
    assert.equal(response.status, 503, JSON.stringify(answer));
    assert.equal(answer.choices, undefined);
    checkCut(cost, sent);
    assert.equal(await untrusted(attacker.address), true);
  });

  it("still answers through the honest provider afterwards", async () => {
    const response = await post("/v1/embeddings", { model: model.name, input: ["spores", "hyphae"] });
    const body = (await response.json()) as { data?: { embedding: number[] }[] };
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(body.data?.length, 2);
    for (const entry of body.data ?? []) assert.ok(entry.embedding.every((value) => Number.isFinite(value)));
  });
});
