/**
 * The HTTP edges of a gateway (issue 15, finding 8), real processes on loopback (a free provider, a gateway with
 * `--body-timeout 10`): an attacker process holding 300 slow-body connections is cut within the body timeout with
 * 408 while honest chat requests keep succeeding and the gateway's memory stays bounded; malformed URLs sent on raw
 * sockets get 400, event streams asked for by a foreign page get 403, and the gateway keeps serving.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createKeystore, devPrivateKey } from "../../src/identity/index.ts";
import { generateTestModel, openModelStore } from "../../src/model/index.ts";
import { mycelBin, type RoleProcess, repositoryRoot, startRole, temporaryHome, waitFor } from "../helpers.ts";

const attackers = join(repositoryRoot, "test", "fixtures", "attackers");
const password = "http-edges-test";
const env = { MYCEL_PASSWORD: password };
const bodyTimeoutSeconds = 10;

/** Resident memory of a process, in bytes (Linux). */
function residentBytes(pid: number): number {
  const kilobytes = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kilobytes) * 1024;
}

describe("HTTP edges of a gateway (real processes, attackers on raw sockets)", () => {
  let directory: { home: string; remove: () => Promise<void> };
  const roles: RoleProcess[] = [];
  let gateway: RoleProcess;
  let url: string;
  let modelName: string;

  const chat = async () => {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: modelName, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
      signal: AbortSignal.timeout(15_000),
    }).catch(() => undefined);
    if (response) await response.arrayBuffer().catch(() => undefined);
    return response?.status === 200;
  };

  before(async () => {
    directory = await temporaryHome("mycel-http-edges-");
    const made = generateTestModel({ size: "tiny", seed: 1 });
    const { model } = await openModelStore({ home: directory.home }).addBytes({
      bytes: made.bytes,
      name: made.name,
      source: "test",
    });
    modelName = model.name;
    for (const name of ["p", "gw"])
      await createKeystore({
        home: directory.home,
        name,
        password,
        privateKey: devPrivateKey(`http-edges-${name}`),
      });
    const provider = await startRole(
      [mycelBin, "--home", directory.home, "provider", "--model", model.hash, "--key", "p", "--price", "0"],
      { env },
    );
    roles.push(provider);
    gateway = await startRole(
      [
        mycelBin,
        "--home",
        directory.home,
        "gateway",
        "--key",
        "gw",
        "--port",
        "0",
        "--body-timeout",
        String(bodyTimeoutSeconds),
        "--bootstrap",
        provider.ready.multiaddrs?.[0] ?? "",
      ],
      { env },
    );
    roles.push(gateway);
    url = String(gateway.ready.url);
    await waitFor(
      "the gateway to route to the provider",
      async () => ((await chat()) ? true : undefined),
      30_000,
    );
  });
  after(async () => {
    await Promise.all(roles.map((role) => role.stop()));
    await directory?.remove();
  });

  it(`cuts 300 slow-body connections within ${bodyTimeoutSeconds} s while honest requests keep succeeding`, async () => {
    for (let index = 0; index < 3; index++) assert.ok(await chat(), "warm-up request");
    const pid = gateway.child.pid as number;
    const before = residentBytes(pid);
    const attacker = await startRole(
      [
        "--import",
        "tsx",
        join(attackers, "slowBody.ts"),
        url,
        "300",
        "1000",
        String(bodyTimeoutSeconds * 4000),
      ],
      { timeoutMs: 30_000 },
    );
    roles.push(attacker);
    assert.equal(attacker.ready.opened, 300, "the attacker holds 300 connections");
    let done = false;
    const report = attacker
      .waitForOutput(/SLOW_BODY_DONE (.+)/, { timeoutMs: bodyTimeoutSeconds * 5000 })
      .finally(() => {
        done = true;
      });
    let honest = 0;
    let succeeded = 0;
    let peak = before;
    while (!done) {
      honest += 1;
      if (await chat()) succeeded += 1;
      peak = Math.max(peak, residentBytes(pid));
    }
    const outcome = JSON.parse((await report)[1] as string) as {
      opened: number;
      closed: number;
      statuses: Record<string, number>;
      longestHeldMs: number;
    };
    await attacker.stop();
    assert.equal(outcome.closed, 300, `the gateway closed every slow connection: ${JSON.stringify(outcome)}`);
    assert.ok(
      outcome.longestHeldMs <= bodyTimeoutSeconds * 1000 + 3_000,
      `none held past the body timeout (and the 1 s check): ${outcome.longestHeldMs} ms`,
    );
    assert.equal(outcome.statuses["408"], 300, `each was answered 408: ${JSON.stringify(outcome.statuses)}`);
    assert.ok(honest >= 10, `honest requests ran during the attack: ${honest}`);
    assert.ok(succeeded / honest >= 0.99, `honest requests succeeded: ${succeeded} of ${honest}`);
    const grownMb = (peak - before) / 2 ** 20;
    assert.ok(grownMb < 64, `the gateway's memory stayed bounded: +${grownMb.toFixed(1)} MB`);
  });

  it("answers malformed URLs 400 and foreign pages' event streams 403, and keeps serving", async () => {
    const attacker = await startRole(["--import", "tsx", join(attackers, "malformedHttp.ts"), url], {
      timeoutMs: 30_000,
    });
    await attacker.stop();
    const answers = attacker.ready.answers as { request: string; status: string }[];
    assert.deepEqual(
      answers.map((answer) => [answer.request, answer.status]),
      [
        ["GET /v1/models/% HTTP/1.1", "400"],
        ["GET /v1/models/%zz HTTP/1.1", "400"],
        ["GET /mycel/v1/receipts/%E0%A4%A HTTP/1.1", "400"],
        ["GET http://[/v1/models HTTP/1.1", "400"],
        ["GET /mycel/v1/events HTTP/1.1 (Origin)", "403"],
        ["GET /mycel/v1/events HTTP/1.1 (Sec-Fetch-Site)", "403"],
      ],
    );
    const failures = gateway
      .output()
      .split("\n")
      .filter((line) => line.includes("request failed"));
    assert.deepEqual(failures, [], "nothing (slow bodies, malformed URLs) was logged as a server failure");
    const models = await fetch(`${url}/v1/models`);
    assert.equal(models.status, 200);
    assert.ok(await chat(), "a chat still succeeds");
    // The explorer's own page (no Origin: same-origin GET) still gets its event stream.
    const controller = new AbortController();
    const events = await fetch(`${url}/mycel/v1/events`, { signal: controller.signal });
    assert.equal(events.status, 200);
    assert.match(events.headers.get("content-type") ?? "", /^text\/event-stream/);
    controller.abort();
  });
});
